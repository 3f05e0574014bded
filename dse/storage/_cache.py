"""The result cache shared across runs (`~/.cache/dse/cache.db` by default), keyed by config hash."""

from __future__ import annotations

import json
from dataclasses import dataclass

from dse.errors import InputError
from dse.storage._database import _Database, _dumps

CACHE_STATUSES = ("completed", "failed", "pruned")  # pruned: stopped early, under the rule named in `reason`



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
