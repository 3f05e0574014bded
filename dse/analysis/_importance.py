"""Which parameters matter: Optuna's fANOVA (`optuna.importance.FanovaImportanceEvaluator`) over the search.

On the run's own Optuna study (`RUN_DIR/optuna.db`, under the sweep's name) when there is one: its COMPLETE
trials with a finite objective, so FAIL (never run, failed) and PRUNED (stopped early) trials and the
infeasible ones (told -inf) are left out, as Optuna leaves them out. Otherwise (grid and random search) on an
in-memory study built from the table's successful trials, with the step time (else the reward) as objective.
fANOVA needs scikit-learn (`pip install 'megatron-dse[report]'`); without it, or with too few trials or one
dimension, `Importance.why` says so in one line and nothing raises.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from dse.analysis._figures import SUCCESS, _is_missing, _param_columns

if TYPE_CHECKING:
    import optuna

__all__ = ["EXTRA", "MIN_TRIALS", "Importance", "run_importance", "study_importance", "table_importance"]

MIN_TRIALS = 5  # fewer completed trials give a forest of a handful of leaves: no importance worth showing
EXTRA = "pip install 'megatron-dse[report]' (scikit-learn)"
_SEED = 0


@dataclass(frozen=True)
class Importance:
    """Each parameter's share of the objective's variance (sums to 1, largest first), what it was computed
    on, or `why` there is none."""

    values: dict[str, float] = field(default_factory=dict)
    source: str = ""
    objective: str = ""
    trials: int = 0
    why: str | None = None


def _sklearn_missing() -> bool:
    try:
        importlib.import_module("sklearn.ensemble")
    except ImportError:
        return True
    return False


@contextmanager
def _quiet_optuna() -> Iterator[Any]:
    import optuna

    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield optuna
    finally:
        optuna.logging.set_verbosity(level)


def _cannot(trials: int, *, source: str, objective: str) -> Importance | None:
    """Why fANOVA cannot run on `trials` completed trials (too few, no scikit-learn); None: it can."""
    why = None
    if trials < MIN_TRIALS:
        why = (f"no parameter importance: {trials} completed trial{'s' if trials != 1 else ''} with a finite "
               f"{objective} in {source}; fANOVA needs at least {MIN_TRIALS}")
    elif _sklearn_missing():
        why = f"no parameter importance: fANOVA needs scikit-learn; {EXTRA}"
    return None if why is None else Importance(source=source, objective=objective, trials=trials, why=why)


def _fanova(study: optuna.Study, target: Callable[[Any], float] | None, *, source: str, objective: str,
            trials: int) -> Importance:
    if (cannot := _cannot(trials, source=source, objective=objective)) is not None:
        return cannot
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    try:
        raw = get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=_SEED), target=target,
                                    normalize=True)
    except ImportError:
        return Importance(source=source, objective=objective, trials=trials,
                          why=f"no parameter importance: fANOVA needs scikit-learn; {EXTRA}")
    if len(raw) < 2:
        return Importance(source=source, objective=objective, trials=trials,
                          why="no parameter importance: the search has one dimension, which explains it all")
    values = {str(k): float(v) for k, v in sorted(raw.items(), key=lambda kv: -kv[1])}
    return Importance(values=values, source=source, objective=objective, trials=trials)


def _native(value: Any) -> Any:
    """A table value as a choice Optuna accepts (None, bool, int, float, str)."""
    if _is_missing(value):
        return None
    if isinstance(value, np.generic):
        value = value.item()
    return value if isinstance(value, bool | int | float | str) else str(value)


def table_importance(df: pd.DataFrame) -> Importance:
    """fANOVA on an in-memory study of the table's successful trials (the step time, else the reward)."""
    params = _param_columns(df)
    column = "metric.step-time" if "metric.step-time" in df.columns else "reward"
    objective = "step time" if column == "metric.step-time" else "reward"
    source = "an in-memory study of the table's successful trials"
    if len(params) < 2:
        why = ("no parameter importance: the search has one dimension, which explains it all" if params
               else "no parameter importance: the search has no dimension")
        return Importance(source=source, objective=objective, why=why)
    ok = df["status"].astype(str).str.lower().isin(SUCCESS) if "status" in df.columns else pd.Series(True, df.index)
    target = pd.to_numeric(df[column], errors="coerce").astype(float) if column in df.columns else None
    rows = df[ok & np.isfinite(target)] if target is not None else df.iloc[:0]
    if (cannot := _cannot(len(rows), source=source, objective=objective)) is not None:
        return cannot
    with _quiet_optuna() as optuna:
        from optuna.distributions import BaseDistribution, CategoricalDistribution
        from optuna.trial import create_trial

        choices = {c.removeprefix("param."): sorted({_native(v) for v in rows[c]}, key=lambda v: (str(type(v)), v))
                   for c in params}
        dists: dict[str, BaseDistribution] = {name: CategoricalDistribution(values) for name, values in choices.items()}
        study = optuna.create_study(direction="minimize" if column != "reward" else "maximize")
        for _, row in rows.iterrows():
            study.add_trial(create_trial(
                params={c.removeprefix("param."): _native(row[c]) for c in params}, distributions=dists,
                value=float(row[column])))
        return _fanova(study, None, source=source, objective=objective, trials=len(rows))


def study_importance(storage: str, study_name: str, *, where: str = "optuna.db") -> Importance:
    """fANOVA on an Optuna study (its first objective): COMPLETE trials with a finite value only."""
    with _quiet_optuna() as optuna:
        study = optuna.load_study(study_name=study_name, storage=storage)
        names = study.metric_names
        multi = len(study.directions) > 1
        objective = str(names[0]) if names else ("objective 1" if multi else "objective")
        target: Callable[[Any], float] | None = (lambda t: float(t.values[0])) if multi else None
        complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        trials = sum(1 for t in complete if t.values and math.isfinite(t.values[0]))
        source = f"the Optuna study '{study_name}' in {where} (its COMPLETE trials)"
        return _fanova(study, target, source=source, objective=objective, trials=trials)


def run_importance(run_dir: Path, study_name: str | None, df: pd.DataFrame) -> Importance:
    """The run's study when `RUN_DIR/optuna.db` holds it, else the table's in-memory study."""
    db = Path(run_dir) / "optuna.db"
    if db.is_file() and study_name:
        readonly = f"sqlite:///file:{db.resolve()}?mode=ro&uri=true"  # a report never writes to the run
        try:
            study = study_importance(readonly, study_name)
        except Exception as exc:  # an unreadable or foreign study: say so and fall back to the table
            return _instead(table_importance(df), f"the study in optuna.db could not be read "
                                                  f"({type(exc).__name__}: {exc})")
        if study.values or study.trials >= MIN_TRIALS:
            return study
        table = table_importance(df)  # a study too small to tell (e.g. its trials FAILed) but a table that can
        if not table.values:
            return study
        return _instead(table, f"the Optuna study in optuna.db has {study.trials} COMPLETE trials with a finite "
                               f"{study.objective}, too few")
    return table_importance(df)


def _instead(importance: Importance, why_not_study: str) -> Importance:
    return Importance(values=importance.values, source=f"{importance.source} ({why_not_study})",
                      objective=importance.objective, trials=importance.trials, why=importance.why)
