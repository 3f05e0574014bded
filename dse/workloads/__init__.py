"""Workloads: what a trial runs. Each turns a trial's config into a job, and a finished job into metrics.

`WORKLOADS` maps a test's `test_template_name` to its class; the class declares its cmd_args model, whether
it is simulated, whether its launcher submits its own job, and the rules its points obey.
"""

from dse.workloads._base import SECRET_CARRIER_PREFIX, STDERR, STDOUT, JobSpec, Outcome, Workload, read_text
from dse.workloads._command import CommandCmdArgs, CommandWorkload, render_command
from dse.workloads._install import InstallReport, cached_image, checkout_path, dse_home, launcher_python
from dse.workloads._megatron_bridge import MegatronBridgeWorkload
from dse.workloads._registry import WORKLOADS, install_sweep, workload_class, workload_for, workload_names
from dse.workloads._simulated import SimulatedMegatronBridge

__all__ = [
    "STDERR",
    "STDOUT",
    "SECRET_CARRIER_PREFIX",
    "WORKLOADS",
    "CommandCmdArgs",
    "CommandWorkload",
    "InstallReport",
    "JobSpec",
    "MegatronBridgeWorkload",
    "Outcome",
    "SimulatedMegatronBridge",
    "Workload",
    "cached_image",
    "checkout_path",
    "dse_home",
    "install_sweep",
    "launcher_python",
    "read_text",
    "render_command",
    "workload_class",
    "workload_for",
    "workload_names",
]
