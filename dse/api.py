"""One call from a tuning script or a notebook: `dse.run(sweep, agent=..., steps=...)` and `dse.load(run_dir)`.

Both return a `RunResult`: the run directory, the trial table (`.trials`, a pandas DataFrame), the best trial
and the baseline (the preset's configuration) with the speed-up, as `dse best --json` gives them. This module
sits at the top of the layers, beside the CLI: it composes the engine with the agents.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dse.agents import create_sweep_agent
from dse.analysis import best_summary, load_trials
from dse.engine import RunOptions, SweepRunner, new_run_dir
from dse.errors import InputError
from dse.export import make_loggers, parse_log_to
from dse.spec import Sweep, load_sweep

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["RunResult", "load", "run"]


@dataclass(frozen=True)
class RunResult:
    """A finished (or interrupted) run, read from its directory whenever asked."""

    run_dir: Path
    exit_code: int | None = None  # `dse run`'s exit code; None for a run loaded from disk

    @property
    def trials(self) -> pd.DataFrame:
        return load_trials(self.run_dir)

    @property
    def summary(self) -> dict[str, Any] | None:
        """`dse best --json`: the best trial, the baseline, the speed-up and the GPU-hours; None: no success."""
        try:
            return best_summary(self.run_dir)
        except InputError:
            return None

    @property
    def best(self) -> dict[str, Any] | None:
        s = self.summary
        return None if s is None else {k: v for k, v in s.items() if k not in ("baseline", "baseline_note")}

    @property
    def baseline(self) -> dict[str, Any] | None:
        s = self.summary
        return None if s is None else s["baseline"]

    @property
    def speedup(self) -> float | None:
        s = self.summary
        return None if s is None else s["speedup"]


def run(sweep: str | Path | Sweep, *, agent: str | None = None, steps: int | None = None, parallel: int = 1,
        seed: int | None = None, out: str | Path = "runs", cache: str | Path | None = None, no_cache: bool = False,
        executor: str | None = None, early_stopping: bool = False, time_scale: float | None = None,
        system: str | Path | None = None, log_to: Sequence[str] = (),
        wandb_project: str | None = None) -> RunResult:
    """`dse run` as a function: run the sweep (a TOML path or a `Sweep`) and return its `RunResult`.
    `log_to` ("wandb", "mlflow") sends each finished trial to those trackers, as `--log-to` does."""
    names = parse_log_to(list(log_to), flag="log_to") if log_to else []  # a missing extra is refused before anything runs
    loaded = sweep if isinstance(sweep, Sweep) else load_sweep(sweep, system=system)
    opts = RunOptions(agent=agent, steps=steps, parallel=parallel, seed=seed, out=Path(out),
                      cache=None if cache is None else Path(cache), no_cache=no_cache, executor=executor,
                      time_scale=time_scale, early_stopping=early_stopping, log_to=names,
                      trial_observers=list(make_loggers(names, wandb_project=wandb_project)))
    run_dir = new_run_dir(Path(out), loaded.name)
    code = SweepRunner(loaded, run_dir, opts, create_sweep_agent).run()
    return RunResult(run_dir, code)


def load(run_dir: str | Path) -> RunResult:
    """The `RunResult` of an existing run directory."""
    path = Path(run_dir)
    if not (path / "trials.db").is_file():
        raise InputError("not a dse run directory (no trials.db)", file=str(path))
    return RunResult(path)
