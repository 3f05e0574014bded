"""dse: design-space exploration for Megatron-Bridge training performance on Slurm.

The package is layered; each layer imports only the ones above it in this list (`tests/test_layering.py`):

- core: `dse.errors`, `dse.trial` (TrialStatus, TrialRecord, TrialResult), `dse.hashing`, `dse.expressions`,
  `dse.cmd_args`, `dse.timelimit`, `dse.tomlwrite`, `dse.agent_names`
- `dse.megatron`: Megatron knowledge (architectures, presets, published runs, rules), no I/O
- `dse.simulator`: the SIMULATED run's performance model and its program
- `dse.metrics`: parsing a run's metrics, the metric catalogue, failure classes, rewards
- `dse.storage`: the trial table and the shared result cache (SQLite)
- `dse.workloads`: what a trial runs (MegatronBridge, MegatronBridgeSim, Command), as a registry
- `dse.spec`: the sweep TOML -> `Sweep`
- `dse.space`: the search space, its validity and env_params draws
- `dse.analysis`: the trial table as pandas, best trial, figures (`dse.analysis.plots`), report
- `dse.agents`: search agents (folder `agents/`)
- `dse.engine`: executors, the trial engine, the sweep loop
- `dse.envs`: the gymnasium env (folder `envs/`)
- `dse.export`: `--log-to` / `dse export`, each finished trial to W&B or MLflow (the engine's trial observers)
- `dse.cli`, `dse.api`: the `dse` command and `dse.run(...)` / `dse.load(...)`, which compose the engine with
  the agents

Library entry points, re-exported here: `dse.run(sweep, agent=..., steps=...)` and `dse.load(run_dir)` (a
`RunResult`: `.trials`, `.best`, `.baseline`, `.speedup`, `.run_dir`), `dse.load_trials(run_dir)`, `dse.load_sweep(path)`,
`dse.SweepSpace(sweep)`, `dse.plots`, and the trial vocabulary (`TrialStatus`, `TrialRecord`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dse.analysis import load_trials, plots
    from dse.api import RunResult, load, run
    from dse.space import SweepSpace
    from dse.spec import Sweep, load_sweep
    from dse.trial import FailureReason, TrialRecord, TrialResult, TrialStatus

__all__ = [
    "FailureReason",
    "RunResult",
    "Sweep",
    "SweepSpace",
    "TrialRecord",
    "TrialResult",
    "TrialStatus",
    "load",
    "load_sweep",
    "load_trials",
    "plots",
    "run",
]

_LAZY = {  # lazy: `import dse` stays cheap for the CLI (pandas, optuna and matplotlib load on first use)
    "load_trials": "dse.analysis",
    "run": "dse.api",
    "load": "dse.api",
    "RunResult": "dse.api",
    "plots": "dse.analysis",
    "load_sweep": "dse.spec",
    "Sweep": "dse.spec",
    "SweepSpace": "dse.space",
    "FailureReason": "dse.trial",
    "TrialRecord": "dse.trial",
    "TrialResult": "dse.trial",
    "TrialStatus": "dse.trial",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dse' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
