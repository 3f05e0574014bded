"""The execution engine: executors (submitit local / Slurm / a launcher on the submit host), the trial
engine (one trial from action to stored record), the sweep loop (`--parallel K`, retries, Ctrl-C, resume)
and the console view. It runs whatever agent it is given (`AgentFactory`): it imports none.
"""

from dse.engine._dryrun import dry_run
from dse.engine._executors import Executor, JobHandle, JobResult, run_job
from dse.engine._sweep import (
    EXPORT_EVERY_S,
    AgentFactory,
    RunOptions,
    SearchAgent,
    SweepRunner,
    default_cache_path,
    new_run_dir,
    resume_sweep,
    run_sweep,
    safe_dir_name,
)
from dse.engine._trials import Finished, TrialEngine

__all__ = [
    "EXPORT_EVERY_S",
    "AgentFactory",
    "Executor",
    "Finished",
    "JobHandle",
    "JobResult",
    "RunOptions",
    "SearchAgent",
    "SweepRunner",
    "TrialEngine",
    "default_cache_path",
    "dry_run",
    "new_run_dir",
    "resume_sweep",
    "run_job",
    "run_sweep",
    "safe_dir_name",
]
