"""SQLite persistence: the run's trial table (`trials.db`) and the result cache shared across runs.

Several processes write at once (parallel workers, a resumed driver, two sweeps sharing a cache), so
both files use WAL, a long busy timeout and `BEGIN IMMEDIATE` for every write: writers queue instead of
failing with "database is locked", and a writer killed mid-transaction leaves the previous state intact.
Connections are opened lazily, one per process and thread; a connection is never reused across `fork`
(a child opens its own), and the objects pickle as their path, so they can be sent to spawned workers.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dse.errors import InputError

TRIAL_STATUSES = ("pending", "running", "completed", "cached", "failed", "infeasible", "timeout", "preempted")
CACHE_STATUSES = ("completed", "failed")
BUSY_TIMEOUT_S = 60.0


def _json_default(obj: Any) -> Any:
    """JSON for values a sweep may hold: numpy scalars/arrays, paths, sets."""
    if hasattr(obj, "dtype") and hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=repr)
    raise TypeError(f"type {type(obj).__name__} is not JSON serializable")


def _dumps(value: Any) -> str:
    # allow_nan: NaN/inf metric values must survive a round trip (Python's json reads them back).
    return json.dumps(value, default=_json_default, allow_nan=True)


class _Database:
    """One SQLite file, with a connection per (process, thread) and a write-transaction helper."""

    SCHEMA: tuple[str, ...] = ()
    READS_WHEN_READ_ONLY = False  # open a file this process may not write read-only instead of refusing it

    def __init__(self, path: Path | str, readonly: bool = False) -> None:
        self.path = Path(path).expanduser()
        self.readonly = readonly  # readers (status, table, best) work on a run dir they cannot write
        if not readonly:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._opened: list[tuple[int, sqlite3.Connection]] = []
        self._conn()  # creates the schema now, so a bad file fails here and not mid-sweep

    # -- connections ---------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        if self.readonly:
            return self._connect_readonly()
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(
                str(self.path), timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() != "wal":
                wal = conn
                self._retry(lambda: wal.execute("PRAGMA journal_mode = WAL").fetchone())
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in self.SCHEMA:
                    conn.execute(statement)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.DatabaseError as exc:
            if conn is not None:
                conn.close()
            if isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc)):
                raise
            if "readonly" in str(exc).replace("read-only", "readonly"):
                if self.READS_WHEN_READ_ONLY:
                    self.readonly = True  # still worth reading; every write will be refused (and said so)
                    return self._connect_readonly()
                raise InputError("is read-only here and this command must write it; nothing was changed",
                                 file=str(self.path)) from None
            raise InputError(f"not a usable SQLite database ({exc})", file=str(self.path)) from None
        return conn

    def _connect_readonly(self) -> sqlite3.Connection:
        """A reading connection that writes nothing: `mode=ro`, else (WAL files it may not create) `immutable`."""
        uri = self.path.resolve().as_uri()
        last: Exception | None = None
        for query in ("mode=ro", "mode=ro&immutable=1"):
            try:
                conn = sqlite3.connect(f"{uri}?{query}", uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                       check_same_thread=False)
                conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
                return conn
            except sqlite3.Error as exc:
                last = exc
        raise InputError(f"cannot read the database ({last})", file=str(self.path))

    @staticmethod
    def _retry(action: Any, attempts: int = 200) -> Any:
        """Switching to WAL needs a moment alone with the file; wait for it like any other writer."""
        for i in range(attempts):
            try:
                return action()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or i == attempts - 1:
                    raise
                time.sleep(0.05)
        return None  # pragma: no cover

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        pid = os.getpid()
        if conn is None or getattr(self._local, "pid", None) != pid:
            conn = self._connect()
            self._local.conn, self._local.pid = conn, pid
            with self._lock:
                self._opened.append((pid, conn))
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One `BEGIN IMMEDIATE` transaction: all or nothing, writers serialised across processes."""
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            try:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            except sqlite3.Error:
                self._discard(conn)  # closing rolls back; never keep a connection stuck holding the lock
            raise

    def _discard(self, conn: sqlite3.Connection) -> None:
        with self._lock:
            self._opened = [(p, c) for p, c in self._opened if c is not conn]
        if getattr(self._local, "conn", None) is conn:
            self._local.conn = None
        conn.set_progress_handler(None, 0)
        conn.close()

    def close(self) -> None:
        """Close this process's connections (those inherited through fork are left alone)."""
        pid = os.getpid()
        with self._lock:
            mine = [c for p, c in self._opened if p == pid]
            self._opened = [(p, c) for p, c in self._opened if p != pid]
        for conn in mine:
            conn.close()
        if getattr(self._local, "pid", None) == pid:
            self._local.conn = None

    def __enter__(self) -> _Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        return {"path": str(self.path)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"


# ----------------------------------------------------------------------------------------- trials


@dataclass
class TrialRecord:
    """One row of the trial table (DESIGN §6); `reason` is the machine-readable failure cause."""

    trial: int
    status: str
    action: dict[str, Any]
    env: dict[str, Any]
    config_hash: str | None = None
    reward: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    cache_hit: bool = False
    job_id: str | None = None
    attempts: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    reason: str | None = None
    trial_dir: str | None = None

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at


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
)


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
            trial_dir TEXT
        )""",
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    )

    def next_trial_number(self) -> int:
        """The number the next `reserve()` would take now (a peek: use `reserve()` to claim it)."""
        row = self._conn().execute("SELECT COALESCE(MAX(trial), 0) + 1 FROM trials").fetchone()
        return int(row[0])

    def reserve(self, action: dict[str, Any], env: dict[str, Any]) -> TrialRecord:
        """Atomically allocate the next trial number and insert it as `pending`."""
        rec = TrialRecord(trial=0, status="pending", action=dict(action), env=dict(env))
        with self._write() as conn:
            rec.trial = int(conn.execute("SELECT COALESCE(MAX(trial), 0) + 1 FROM trials").fetchone()[0])
            self._upsert(conn, rec)
        return rec

    def save(self, rec: TrialRecord) -> None:
        """Insert or replace the row of `rec.trial`."""
        with self._write() as conn:
            self._upsert(conn, rec)

    @staticmethod
    def _row(rec: TrialRecord) -> tuple[Any, ...]:
        if isinstance(rec.trial, bool) or not isinstance(rec.trial, int) or rec.trial < 1:
            raise ValueError(f"trial number must be an integer >= 1, got {rec.trial!r}")
        if rec.status not in TRIAL_STATUSES:
            raise ValueError(
                f"unknown trial status {rec.status!r}; expected one of {', '.join(TRIAL_STATUSES)}"
            )
        reward = None if rec.reward is None else float(rec.reward)
        is_nan = reward is not None and math.isnan(reward)
        return (
            rec.trial,
            rec.status,
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
        return TrialRecord(
            trial=int(trial),
            status=str(values["status"]),
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
        )

    def get(self, trial: int) -> TrialRecord | None:
        row = (
            self._conn()
            .execute(f"SELECT {', '.join(_TRIAL_COLUMNS)} FROM trials WHERE trial = ?", (int(trial),))
            .fetchone()
        )
        return None if row is None else self._record(row)

    def all(self) -> list[TrialRecord]:
        """Every trial, ordered by trial number."""
        rows = (
            self._conn().execute(f"SELECT {', '.join(_TRIAL_COLUMNS)} FROM trials ORDER BY trial").fetchall()
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


# ------------------------------------------------------------------------------------------ cache


@dataclass
class CacheEntry:
    """The outcome of one configuration, reusable by any run that hashes to the same key."""

    config_hash: str
    status: str  # "completed" or "failed"
    metrics: dict[str, float]
    reason: str | None
    error: str | None
    workload: str
    created_at: float
    run_dir: str | None
    trial: int | None


class ResultCache(_Database):
    """The result cache shared across runs (default `~/.cache/dse/cache.db`; the caller picks the path).

    A cache this process may not write is still read (its hits are used); writes then fail and the
    trial engine says so once, keeping the results in the run's own trials.db.
    """

    READS_WHEN_READ_ONLY = True

    SCHEMA = (
        """CREATE TABLE IF NOT EXISTS cache (
            config_hash TEXT PRIMARY KEY,
            status TEXT NOT NULL,
            metrics TEXT NOT NULL,
            reason TEXT,
            error TEXT,
            workload TEXT NOT NULL,
            created_at REAL NOT NULL,
            run_dir TEXT,
            trial INTEGER
        )""",
    )
    _COLUMNS = (
        "config_hash",
        "status",
        "metrics",
        "reason",
        "error",
        "workload",
        "created_at",
        "run_dir",
        "trial",
    )

    def get(self, config_hash: str) -> CacheEntry | None:
        """The entry for `config_hash`, or None; a corrupt row is an InputError naming `cache[<hash>]`."""
        row = (
            self._conn()
            .execute(f"SELECT {', '.join(self._COLUMNS)} FROM cache WHERE config_hash = ?", (config_hash,))
            .fetchone()
        )
        if row is None:
            return None
        values = dict(zip(self._COLUMNS, row, strict=True))
        where = f"cache[{config_hash}]"

        def bad(message: str) -> InputError:
            return InputError(message, file=str(self.path), field=where)

        try:
            metrics = json.loads(values["metrics"])
        except (TypeError, ValueError) as exc:
            raise bad(f"corrupt metrics JSON ({exc})") from None
        if not isinstance(metrics, dict) or not all(
            isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool)
            for k, v in metrics.items()
        ):
            raise bad("metrics must be a JSON object of numbers")
        if values["status"] not in CACHE_STATUSES:
            raise bad(f"status must be one of {', '.join(CACHE_STATUSES)}, got {values['status']!r}")
        for column in ("reason", "error", "run_dir"):
            if values[column] is not None and not isinstance(values[column], str):
                raise bad(f"{column} must be text, got {type(values[column]).__name__}")
        if not isinstance(values["workload"], str):
            raise bad(f"workload must be text, got {type(values['workload']).__name__}")
        created = values["created_at"]
        if isinstance(created, bool) or not isinstance(created, (int, float)):
            raise bad(f"created_at must be a number, got {type(created).__name__}")
        trial = values["trial"]
        if trial is not None and (isinstance(trial, bool) or not isinstance(trial, int)):
            raise bad(f"trial must be an integer, got {type(trial).__name__}")
        return CacheEntry(
            config_hash=config_hash,
            status=values["status"],
            metrics={k: float(v) for k, v in metrics.items()},
            reason=values["reason"],
            error=values["error"],
            workload=values["workload"],
            created_at=float(created),
            run_dir=values["run_dir"],
            trial=trial,
        )

    def put(self, entry: CacheEntry) -> None:
        """Insert or replace the entry for `entry.config_hash`."""
        if entry.status not in CACHE_STATUSES:
            raise ValueError(f"cache status must be one of {', '.join(CACHE_STATUSES)}, got {entry.status!r}")
        if not entry.config_hash:
            raise ValueError("cache entry needs a config_hash")
        row = (
            entry.config_hash,
            entry.status,
            _dumps({str(k): float(v) for k, v in entry.metrics.items()}),
            entry.reason,
            entry.error,
            entry.workload,
            float(entry.created_at),
            None if entry.run_dir is None else str(entry.run_dir),
            entry.trial,
        )
        with self._write() as conn:
            conn.execute(
                f"INSERT OR REPLACE INTO cache ({', '.join(self._COLUMNS)}) VALUES ({', '.join('?' * 9)})",
                row,
            )

    def __len__(self) -> int:
        return int(self._conn().execute("SELECT COUNT(*) FROM cache").fetchone()[0])
