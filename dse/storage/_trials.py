"""The run's trial table (`trials.db`): one row per trial, plus a JSON key/value `meta` table.

A row is written by the engine at each transition of its `TrialRecord`; a finished row is never rewritten
(`save` refuses it), so what a run measured cannot be lost to a later bug or a second writer.
"""

from __future__ import annotations

import json
import math
import sqlite3
from typing import Any

from dse.errors import InputError
from dse.storage._database import _Database, _dumps
from dse.trial import TrialRecord, TrialStateError, TrialStatus

TRIAL_STATUSES = tuple(s.value for s in TrialStatus)

_TRIAL_COLUMNS = (
    "trial",
    "status",
    "action",
    "env",
    "config_hash",
    "reward",
    "reward_nan",
    "metrics",
    "cache_hit",
    "job_id",
    "attempts",
    "started_at",
    "finished_at",
    "error",
    "reason",
    "trial_dir",
    "gpu_hours",
    "note",
)
_ADDED_COLUMNS = {"gpu_hours": "REAL", "note": "TEXT"}  # columns newer than the first schema: added on open


class TrialStore(_Database):
    """The run's `trials.db`: trial rows keyed by 1-based trial number, plus a JSON key/value `meta`."""

    SCHEMA = (
        """CREATE TABLE IF NOT EXISTS trials (
            trial INTEGER PRIMARY KEY,
            status TEXT NOT NULL,
            action TEXT NOT NULL,
            env TEXT NOT NULL,
            config_hash TEXT,
            reward REAL,
            reward_nan INTEGER NOT NULL DEFAULT 0,
            metrics TEXT NOT NULL DEFAULT '{}',
            cache_hit INTEGER NOT NULL DEFAULT 0,
            job_id TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            started_at REAL,
            finished_at REAL,
            error TEXT,
            reason TEXT,
            trial_dir TEXT,
            gpu_hours REAL,
            note TEXT
        )""",
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    )

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """A run directory from an older dse lacks the newer columns: add them (NULL for old rows)."""
        have = {row[1] for row in conn.execute("PRAGMA table_info(trials)")}
        for name, kind in _ADDED_COLUMNS.items():
            if name not in have:
                conn.execute(f"ALTER TABLE trials ADD COLUMN {name} {kind}")

    def _select(self) -> str:
        """The columns to read; NULL for a newer column an older, read-only trials.db does not have (a
        writable one was brought up to date when it was opened, so it is not asked again on every read)."""
        if not self.readonly:
            return ", ".join(_TRIAL_COLUMNS)
        have = {row[1] for row in self._conn().execute("PRAGMA table_info(trials)")}
        return ", ".join(c if c in have or c not in _ADDED_COLUMNS else f"NULL AS {c}" for c in _TRIAL_COLUMNS)

    def next_trial_number(self) -> int:
        """The number the next `reserve()` would take now (a peek: use `reserve()` to claim it)."""
        row = self._conn().execute("SELECT COALESCE(MAX(trial), 0) + 1 FROM trials").fetchone()
        return int(row[0])

    def reserve(self, action: dict[str, Any], env: dict[str, Any], note: str | None = None) -> TrialRecord:
        """Atomically allocate the next trial number and insert it as `pending`."""
        new = TrialRecord(trial=0, status=TrialStatus.PENDING, action=dict(action), env=dict(env), note=note)
        with self._write() as conn:
            rec = new.numbered(int(conn.execute("SELECT COALESCE(MAX(trial), 0) + 1 FROM trials").fetchone()[0]))
            self._upsert(conn, rec)
        return rec

    def save(self, rec: TrialRecord) -> None:
        """Insert the row of `rec.trial`, or update it while it is unfinished; a finished row is final."""
        with self._write() as conn:
            row = conn.execute("SELECT status FROM trials WHERE trial = ?", (rec.trial,)).fetchone()
            if row is not None and row[0] not in (TrialStatus.PENDING, TrialStatus.RUNNING):
                raise TrialStateError(f"trial {rec.trial} is already {row[0]}: a finished trial is never rewritten")
            self._upsert(conn, rec)

    @staticmethod
    def _row(rec: TrialRecord) -> tuple[Any, ...]:
        if isinstance(rec.trial, bool) or not isinstance(rec.trial, int) or rec.trial < 1:
            raise ValueError(f"trial number must be an integer >= 1, got {rec.trial!r}")
        if not isinstance(rec.status, TrialStatus):
            raise ValueError(
                f"unknown trial status {rec.status!r}; expected one of {', '.join(TRIAL_STATUSES)}"
            )
        reward = None if rec.reward is None else float(rec.reward)
        is_nan = reward is not None and math.isnan(reward)
        return (
            rec.trial,
            rec.status.value,
            _dumps(rec.action),
            _dumps(rec.env),
            rec.config_hash,
            None if is_nan else reward,
            int(is_nan),
            _dumps(rec.metrics),
            int(bool(rec.cache_hit)),
            rec.job_id,
            int(rec.attempts),
            rec.started_at,
            rec.finished_at,
            rec.error,
            rec.reason,
            rec.trial_dir,
            None if rec.gpu_hours is None else float(rec.gpu_hours),
            rec.note,
        )

    def _upsert(self, conn: sqlite3.Connection, rec: TrialRecord) -> None:
        columns = ", ".join(_TRIAL_COLUMNS)
        marks = ", ".join("?" for _ in _TRIAL_COLUMNS)
        updates = ", ".join(f"{c} = excluded.{c}" for c in _TRIAL_COLUMNS[1:])
        conn.execute(
            f"INSERT INTO trials ({columns}) VALUES ({marks}) ON CONFLICT(trial) DO UPDATE SET {updates}",
            self._row(rec),
        )

    def _record(self, row: sqlite3.Row | tuple[Any, ...]) -> TrialRecord:
        values = dict(zip(_TRIAL_COLUMNS, row, strict=True))
        trial = values["trial"]

        def load(column: str, kind: type) -> Any:
            try:
                value = json.loads(values[column])
            except (TypeError, ValueError) as exc:
                raise InputError(
                    f"corrupt value ({exc})", file=str(self.path), field=f"trials[{trial}].{column}"
                ) from None
            if not isinstance(value, kind):
                raise InputError(
                    f"expected a JSON {kind.__name__}, got {type(value).__name__}",
                    file=str(self.path),
                    field=f"trials[{trial}].{column}",
                )
            return value

        reward = float("nan") if values["reward_nan"] else values["reward"]
        if values["status"] not in TRIAL_STATUSES:
            raise InputError(f"unknown trial status {values['status']!r}; expected one of {', '.join(TRIAL_STATUSES)}",
                             file=str(self.path), field=f"trials[{trial}].status")
        return TrialRecord(
            trial=int(trial),
            status=TrialStatus(values["status"]),
            action=load("action", dict),
            env=load("env", dict),
            config_hash=values["config_hash"],
            reward=None if reward is None else float(reward),
            metrics=load("metrics", dict),
            cache_hit=bool(values["cache_hit"]),
            job_id=values["job_id"],
            attempts=int(values["attempts"] or 0),
            started_at=values["started_at"],
            finished_at=values["finished_at"],
            error=values["error"],
            reason=values["reason"],
            trial_dir=values["trial_dir"],
            gpu_hours=None if values["gpu_hours"] is None else float(values["gpu_hours"]),
            note=values["note"],
        )

    def get(self, trial: int) -> TrialRecord | None:
        row = (
            self._conn()
            .execute(f"SELECT {self._select()} FROM trials WHERE trial = ?", (int(trial),))
            .fetchone()
        )
        return None if row is None else self._record(row)

    def all(self) -> list[TrialRecord]:
        """Every trial, ordered by trial number."""
        rows = (
            self._conn().execute(f"SELECT {self._select()} FROM trials ORDER BY trial").fetchall()
        )
        return [self._record(r) for r in rows]

    def __len__(self) -> int:
        return int(self._conn().execute("SELECT COUNT(*) FROM trials").fetchone()[0])

    def set_meta(self, key: str, value: Any) -> None:
        """Store a JSON value under `key` (run settings, sweep name, agent state...)."""
        with self._write() as conn:
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (str(key), _dumps(value)))

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self._conn().execute("SELECT value FROM meta WHERE key = ?", (str(key),)).fetchone()
        if row is None:
            return default
        try:
            return json.loads(row[0])
        except (TypeError, ValueError) as exc:
            raise InputError(f"corrupt value ({exc})", file=str(self.path), field=f"meta[{key}]") from None
