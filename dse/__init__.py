"""dse: design-space exploration for Megatron-Bridge training performance on Slurm.

Library entry points: `dse.load_trials(run_dir)` (the trial table), `dse.load_sweep(path)`,
`dse.SweepSpace(sweep)`; figures in `dse.plots`; agents in the `agents` package; the gymnasium env in `envs`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SweepSpace", "load_sweep", "load_trials"]


def __getattr__(name: str) -> Any:  # lazy: `import dse` stays cheap for the CLI
    if name == "load_trials":
        from dse.table import load_trials

        return load_trials
    if name == "load_sweep":
        from dse.spec import load_sweep

        return load_sweep
    if name == "SweepSpace":
        from dse.space import SweepSpace

        return SweepSpace
    raise AttributeError(name)
