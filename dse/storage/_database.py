"""SQLite persistence shared by the trial table and the result cache: one connection per process and thread.

Several processes write at once (parallel workers, a resumed driver, two sweeps sharing a cache), so
both files use WAL, a long busy timeout and `BEGIN IMMEDIATE` for every write: writers queue instead of
failing with "database is locked", and a writer killed mid-transaction leaves the previous state intact.
Connections are opened lazily, one per process and thread; a connection is never reused across `fork`
(a child opens its own), and the objects pickle as their path, so they can be sent to spawned workers.
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

from dse.errors import InputError

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
                self._migrate(conn)
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

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Bring an older file up to the current schema (inside the opening transaction)."""

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

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        return {"path": str(self.path)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"
