"""The execution engine: executors (submitit local / Slurm / a launcher on the submit host), the trial
engine (one trial from action to stored record), the sweep loop (`--parallel K`, retries, Ctrl-C, resume)
and the console view. It runs whatever agent it is given (`AgentFactory`): it imports none.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dse.engine._dryrun import DryRun, dry_run_text, plan_dry_run
    from dse.engine._executors import Executor, JobHandle, JobResult, run_job
    from dse.engine._sweep import (
        EXPORT_EVERY_S,
        AgentFactory,
        RunOptions,
        SearchAgent,
        SweepRunner,
        TrialObserver,
        default_cache_path,
        new_run_dir,
        resume_sweep,
        run_sweep,
        safe_dir_name,
    )
    from dse.engine._trials import Finished, TrialEngine

# Lazy (PEP 562): a job process unpickles `dse.engine._executors.run_job`, which imports this package first;
# it must not pay for the sweep loop's pandas and matplotlib.
_WHERE = {
    "AgentFactory": "dse.engine._sweep",
    "EXPORT_EVERY_S": "dse.engine._sweep",
    "Executor": "dse.engine._executors",
    "Finished": "dse.engine._trials",
    "JobHandle": "dse.engine._executors",
    "JobResult": "dse.engine._executors",
    "RunOptions": "dse.engine._sweep",
    "SearchAgent": "dse.engine._sweep",
    "SweepRunner": "dse.engine._sweep",
    "TrialEngine": "dse.engine._trials",
    "TrialObserver": "dse.engine._sweep",
    "default_cache_path": "dse.engine._sweep",
    "DryRun": "dse.engine._dryrun",
    "dry_run_text": "dse.engine._dryrun",
    "plan_dry_run": "dse.engine._dryrun",
    "new_run_dir": "dse.engine._sweep",
    "resume_sweep": "dse.engine._sweep",
    "run_job": "dse.engine._executors",
    "run_sweep": "dse.engine._sweep",
    "safe_dir_name": "dse.engine._sweep",
}

__all__ = [
    "AgentFactory",
    "EXPORT_EVERY_S",
    "Executor",
    "Finished",
    "JobHandle",
    "JobResult",
    "RunOptions",
    "SearchAgent",
    "SweepRunner",
    "TrialEngine",
    "TrialObserver",
    "default_cache_path",
    "DryRun",
    "dry_run_text",
    "plan_dry_run",
    "new_run_dir",
    "resume_sweep",
    "run_job",
    "run_sweep",
    "safe_dir_name",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'dse.engine' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
