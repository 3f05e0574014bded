"""Workloads by `test_template_name`."""

from __future__ import annotations

from dse.spec import Sweep
from dse.workloads.base import Workload


def workload_for(sweep: Sweep) -> Workload:
    name = sweep.workload
    if name == "Command":
        from dse.workloads.command import CommandWorkload

        return CommandWorkload(sweep)
    if name == "MegatronBridgeSim":
        from dse.workloads.sim_workload import SimulatedMegatronBridge

        return SimulatedMegatronBridge(sweep)
    from dse.workloads.megatron_bridge import MegatronBridgeWorkload

    return MegatronBridgeWorkload(sweep)
