"""The workload registry, as data: `test_template_name` -> the class that declares everything about it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from dse.workloads import _install
from dse.workloads._base import Workload
from dse.workloads._command import CommandWorkload
from dse.workloads._megatron_bridge import MegatronBridgeWorkload
from dse.workloads._simulated import SimulatedMegatronBridge

if TYPE_CHECKING:
    from dse.spec import Sweep

WORKLOADS: dict[str, type[Workload]] = {
    cls.name: cls for cls in (MegatronBridgeWorkload, SimulatedMegatronBridge, CommandWorkload)
}


def workload_names() -> tuple[str, ...]:
    return tuple(WORKLOADS)


def workload_class(name: str) -> type[Workload]:
    """The class registered as `name` (a `test_template_name` the spec has already checked)."""
    return WORKLOADS[name]


def workload_for(sweep: Sweep) -> Workload:
    return workload_class(sweep.workload)(sweep)


def install_sweep(sweep: Sweep, home: Path | None = None) -> _install.InstallReport:
    """Install what the sweep's workload needs before its first trial (`dse install`)."""
    return _install.install_sweep(sweep, home, launcher=workload_class(sweep.workload).submits_own_job)
