"""What every trial logger shares: the run's settings read from its metadata, the values of one trial (redacted,
finite, with names a tracker accepts), and a ledger of the trials already sent, so that a resumed run or a
second `dse export` never logs a trial twice.

A logger is one of the engine's trial observers (`dse.engine.TrialObserver`: `start`, `on_trial`, `close`),
written here against that shape without importing the engine.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dse.hashing import redact
from dse.storage import TrialStore
from dse.tomlwrite import write_text_atomic
from dse.trial import TrialRecord, flatten

LEDGER_DIR = "export"  # RUN_DIR/export/<tracker>.json (where the run lives) and <tracker>.trials (what was sent)
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-./ ]+")


def safe_key(name: str, limit: int = 250) -> str:
    """A metric or parameter name both trackers accept (MLflow allows letters, digits, `_ - . / ` and space,
    so `step-time` stays as it is); anything else becomes `_`."""
    return (_UNSAFE.sub("_", str(name)).strip() or "_")[:limit]


def finite(value: Any) -> float | None:
    """`value` as a float when it is a finite number (a tracker's metric), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


@dataclass
class RunInfo:
    """A run's settings as its driver recorded them in trials.db (the run's own agent, steps and seed, not the
    sweep file's), redacted."""

    run_dir: Path
    sweep: str
    workload: str
    params: list[str]
    envs: list[str]
    metrics: list[str]
    config: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def read(cls, run_dir: Path) -> RunInfo:
        with TrialStore(run_dir / "trials.db", readonly=True) as store:
            data = dict(store.get_meta("sweep_data") or {})
            params = list(store.get_meta("params", []))
            envs = list(store.get_meta("env_params", []))
            metrics = list(store.get_meta("metrics", []))
            run = {"run_dir": run_dir.name, "agent": store.get_meta("agent"), "steps": store.get_meta("steps"),
                   "seed": store.get_meta("seed"), "params": params, "env_params": envs, "metrics": metrics,
                   "baseline": (store.get_meta("baseline") or {}).get("action")}
        fixed = {k: v for k, v in flatten(data).items()
                 if not isinstance(v, list) or not k.startswith("cmd_args.")}  # swept lists are the params
        fixed = {k: v for k, v in fixed.items() if v not in ([], {}, "", None)}
        return cls(run_dir=run_dir, sweep=str(data.get("name") or run_dir.name),
                   workload=str(data.get("test_template_name") or ""), params=params, envs=envs, metrics=metrics,
                   config=redact({"dse": run, "sweep": fixed}))


def trial_params(rec: TrialRecord) -> dict[str, Any]:
    """The trial's searched values and env_params draws, redacted (a secret never reaches a tracker)."""
    values = {**rec.env, **rec.action}
    return {safe_key(k): v for k, v in redact(values).items()}


def trial_metrics(rec: TrialRecord) -> dict[str, float]:
    """Its finite metrics by safe name (`step-time` stays `step-time`)."""
    return {safe_key(k): v for k, raw in rec.metrics.items() if (v := finite(raw)) is not None}


def trial_scores(rec: TrialRecord) -> dict[str, float]:
    """Its reward and GPU-hours, when finite (a failed trial has no reward)."""
    return {k: v for k, raw in (("reward", rec.reward), ("gpu_hours", rec.gpu_hours)) if (v := finite(raw)) is not None}


def trial_tags(rec: TrialRecord) -> dict[str, Any]:
    """What a trial is besides its numbers: its number, status, cache hit, config hash and failure reason."""
    tags: dict[str, Any] = {"trial": rec.trial, "status": rec.status.value, "cache_hit": bool(rec.cache_hit),
                            "config_hash": rec.config_hash or ""}
    if rec.reason:
        tags["reason"] = redact(rec.reason)
    return tags


class Ledger:
    """RUN_DIR/export/<tracker>.json holds where the run is logged (a W&B run id, an MLflow parent run), and
    <tracker>.trials the trial numbers sent, one a line, appended as each is sent (a crash loses at most the
    line being written, and a trial is sent at most once more only then)."""

    def __init__(self, run_dir: Path, tracker: str) -> None:
        self.folder = run_dir / LEDGER_DIR
        self.state_path = self.folder / f"{tracker}.json"
        self.trials_path = self.folder / f"{tracker}.trials"

    def state(self) -> dict[str, Any]:
        try:
            data = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def logged(self) -> set[int]:
        try:
            lines = self.trials_path.read_text().splitlines()
        except OSError:
            return set()
        return {int(line) for line in lines if line.strip().isdigit()}

    def begin(self, state: dict[str, Any], *, fresh: bool) -> None:
        """Record where the run is logged; `fresh` (a new destination) forgets what was sent elsewhere."""
        self.folder.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.state_path, json.dumps(state, indent=1, sort_keys=True) + "\n")
        if fresh:
            write_text_atomic(self.trials_path, "")

    def add(self, trial: int) -> None:
        with open(self.trials_path, "a", encoding="utf-8") as fh:
            fh.write(f"{trial}\n")


class TrialLogger:
    """Base of the trackers' loggers: remembers every finished trial it is told of (for the table at close)
    and sends each one not already in the ledger exactly once. Subclasses write `_open`, `_log` and `_close`."""

    name = "logger"

    def __init__(self) -> None:
        self.records: dict[int, TrialRecord] = {}
        self.sent = 0  # trials sent by this logger (the rest were in the ledger already)
        self.info: RunInfo | None = None
        self._logged: set[int] = set()
        self._ledger: Ledger | None = None

    def start(self, run_dir: Path) -> None:
        run_dir = Path(run_dir)
        self.info = RunInfo.read(run_dir)
        self._ledger = Ledger(run_dir, self.name)
        self._logged = self._open(self.info, self._ledger)

    def on_trial(self, record: TrialRecord) -> None:
        if not record.status.is_finished or self._ledger is None:
            return
        self.records[record.trial] = record
        if record.trial in self._logged:
            return
        self._log(record)
        self._logged.add(record.trial)
        self._ledger.add(record.trial)
        self.sent += 1

    def close(self) -> None:
        if self._ledger is None:
            return
        self._ledger = None
        self._close(sorted(self.records.values(), key=lambda r: r.trial))

    # ---- a tracker's part ------------------------------------------------------------------------
    def _open(self, info: RunInfo, ledger: Ledger) -> set[int]:
        """Open (or reopen) the tracker's run for this dse run; returns the trials it already holds."""
        raise NotImplementedError

    def _log(self, rec: TrialRecord) -> None:
        raise NotImplementedError

    def _close(self, records: list[TrialRecord]) -> None:
        raise NotImplementedError
