"""SQLite trial store and result cache: round trips, concurrency across processes, interrupted writes."""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import pickle
import signal
import sqlite3
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from dse.errors import InputError
from dse.storage import CacheEntry, ResultCache, TrialStore
from dse.trial import TrialRecord

WORKERS = 4
TRIALS_PER_WORKER = 50
PUTS_PER_WORKER = 100


def _entry(config_hash: str, **kw: object) -> CacheEntry:
    values: dict[str, object] = {
        "config_hash": config_hash,
        "status": "completed",
        "metrics": {"step-time": 1.5},
        "reason": None,
        "error": None,
        "workload": "MegatronBridgeSim",
        "created_at": 1_700_000_000.0,
        "run_dir": "/runs/a",
        "trial": 3,
    }
    values.update(kw)
    return CacheEntry(**values)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------ round trips


def test_trial_round_trip_with_infinite_and_nan_values(tmp_path: Path) -> None:
    store = TrialStore(tmp_path / "run" / "trials.db")
    first = store.reserve({"tp": 2, "mb": 1.0, "recompute": None}, {"seq_length": 4096})
    assert (first.trial, first.status) == (1, "pending")
    second = store.reserve({"tp": 4}, {})
    assert second.trial == 2 and store.next_trial_number() == 3
    first = replace(
        first, status="failed", reward=float("-inf"), metrics={"step-time": float("nan"), "tflops": float("inf")},
        cache_hit=True, job_id="123_4", attempts=2, started_at=100.0, finished_at=130.5,
        error="out-of-memory: CUDA out of memory", reason="out-of-memory", trial_dir="trials/1",
        config_hash="0123456789abcdef",
    )
    store.save(first)
    second = replace(second, status="completed", reward=float("nan"))
    store.save(second)
    store.close()

    again = TrialStore(tmp_path / "run" / "trials.db")
    got = again.get(1)
    assert got is not None
    assert got.reward == float("-inf")
    assert math.isnan(got.metrics["step-time"]) and got.metrics["tflops"] == float("inf")
    assert got.action == {"tp": 2, "mb": 1.0, "recompute": None} and isinstance(got.action["mb"], float)
    assert (got.job_id, got.attempts, got.cache_hit, got.duration_s) == ("123_4", 2, True, 30.5)
    assert (got.reason, got.trial_dir, got.config_hash) == ("out-of-memory", "trials/1", "0123456789abcdef")
    nan_rec = again.get(2)
    assert nan_rec is not None and nan_rec.reward is not None and math.isnan(nan_rec.reward)
    assert [r.trial for r in again.all()] == [1, 2] and len(again) == 2
    assert again.get(99) is None
    assert TrialRecord(trial=5, status="running", action={}, env={}).duration_s is None


def test_meta_values_are_json(tmp_path: Path) -> None:
    store = TrialStore(tmp_path / "trials.db")
    assert store.get_meta("seed", default=7) == 7
    store.set_meta("seed", 42)
    store.set_meta("agent", {"name": "optuna", "steps": [1, 2]})
    store.set_meta("seed", 43)
    assert store.get_meta("seed") == 43
    assert store.get_meta("agent") == {"name": "optuna", "steps": [1, 2]}


def test_bad_status_and_trial_number_are_refused(tmp_path: Path) -> None:
    store = TrialStore(tmp_path / "trials.db")
    with pytest.raises(ValueError, match="unknown trial status"):
        store.save(TrialRecord(trial=1, status="done", action={}, env={}))
    with pytest.raises(ValueError, match=">= 1"):
        store.save(TrialRecord(trial=0, status="pending", action={}, env={}))
    assert store.all() == []


def test_pragmas(tmp_path: Path) -> None:
    for db in (TrialStore(tmp_path / "t.db"), ResultCache(tmp_path / "c.db")):
        conn = db._conn()
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 30_000
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL


def test_cache_round_trip_and_replace(tmp_path: Path) -> None:
    cache = ResultCache(tmp_path / "deep" / "dir" / "cache.db")
    assert cache.get("abc") is None and len(cache) == 0
    cache.put(_entry("abc"))
    cache.put(_entry("def", status="failed", metrics={}, reason="out-of-memory", error="OOM", trial=None))
    assert cache.get("abc") == _entry("abc")
    cache.put(_entry("abc", metrics={"step-time": 2.0}))
    got = cache.get("abc")
    assert got is not None and got.metrics == {"step-time": 2.0}
    failed = cache.get("def")
    assert failed is not None and (failed.status, failed.reason, failed.trial) == (
        "failed",
        "out-of-memory",
        None,
    )
    assert len(cache) == 2
    with pytest.raises(ValueError, match="cache status"):
        cache.put(_entry("x", status="cached"))


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("metrics", "{not json", "corrupt metrics JSON"),
        ("metrics", "[1, 2]", "JSON object of numbers"),
        ("metrics", '{"step-time": "fast"}', "JSON object of numbers"),
        ("status", "exploded", "status must be one of"),
        ("created_at", "yesterday", "created_at must be a number"),
        ("trial", "three", "trial must be an integer"),
    ],
)
def test_corrupt_cache_row_is_an_input_error(tmp_path: Path, column: str, value: str, message: str) -> None:
    path = tmp_path / "cache.db"
    cache = ResultCache(path)
    cache.put(_entry("feedface00000000"))
    with sqlite3.connect(path) as raw:
        raw.execute(f"UPDATE cache SET {column} = ? WHERE config_hash = ?", (value, "feedface00000000"))
    with pytest.raises(InputError) as info:
        cache.get("feedface00000000")
    assert info.value.field == "cache[feedface00000000]"
    assert info.value.file == str(path)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_corrupt_trial_row_is_an_input_error(tmp_path: Path) -> None:
    store = TrialStore(tmp_path / "trials.db")
    store.reserve({"tp": 1}, {})
    with sqlite3.connect(tmp_path / "trials.db") as raw:
        raw.execute("UPDATE trials SET action = '[1' WHERE trial = 1")
    with pytest.raises(InputError, match=r"trials\[1\]\.action"):
        store.all()


def test_not_a_database_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "cache.db"
    path.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(InputError, match="not a usable SQLite database"):
        ResultCache(path)


def test_store_pickles_as_its_path(tmp_path: Path) -> None:
    store = TrialStore(tmp_path / "trials.db")
    store.reserve({"tp": 1}, {})
    clone = pickle.loads(pickle.dumps(store))
    assert clone.path == store.path and [r.trial for r in clone.all()] == [1]


# ------------------------------------------------------------------------------------ concurrency


def _worker(trials_db: str, cache_db: str, worker: int, go: mp.synchronize.Event | None = None) -> None:  # type: ignore[name-defined]
    """Spawned: reserve + save trials and put cache entries as fast as possible, all starting at once."""
    store = TrialStore(trials_db)
    cache = ResultCache(cache_db)
    if go is not None:
        go.wait(timeout=60)
    for i in range(max(TRIALS_PER_WORKER, PUTS_PER_WORKER)):
        if i < TRIALS_PER_WORKER:
            rec = store.reserve({"worker": worker, "i": i}, {"seed": i})
            rec = replace(rec, status="completed", reward=float(rec.trial), metrics={"step-time": 1.0 / rec.trial})
            store.save(rec)
        if i < PUTS_PER_WORKER:
            cache.put(_entry(f"w{worker}-{i:04d}", trial=i))
    store.close()
    cache.close()


def test_concurrent_processes_lose_nothing(tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    trials_db, cache_db = str(tmp_path / "trials.db"), str(tmp_path / "cache.db")
    TrialStore(trials_db).close()  # the same file, created by the parent as the driver would
    go = ctx.Event()
    procs = [ctx.Process(target=_worker, args=(trials_db, cache_db, w, go)) for w in range(WORKERS)]
    for p in procs:
        p.start()
    time.sleep(0.5)  # let every worker import and open its connections, then release them together
    go.set()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * WORKERS  # a "database is locked" would exit 1

    records = TrialStore(trials_db).all()
    assert [r.trial for r in records] == list(range(1, WORKERS * TRIALS_PER_WORKER + 1))
    assert all(r.status == "completed" and r.reward == float(r.trial) for r in records)
    pairs = {(r.action["worker"], r.action["i"]) for r in records}
    assert pairs == {(w, i) for w in range(WORKERS) for i in range(TRIALS_PER_WORKER)}
    cache = ResultCache(cache_db)
    assert len(cache) == WORKERS * PUTS_PER_WORKER
    assert cache.get("w3-0099") == _entry("w3-0099", trial=99)


def test_threads_sharing_one_store_get_unique_numbers(tmp_path: Path) -> None:
    store = TrialStore(tmp_path / "trials.db")
    taken: list[int] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(25):
            rec = store.reserve({}, {})
            with lock:
                taken.append(rec.trial)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(taken) == list(range(1, 101))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_opens_its_own_connection(tmp_path: Path) -> None:
    store = TrialStore(tmp_path / "trials.db")
    store.reserve({"by": "parent"}, {})  # the parent's connection is open when forking
    proc = mp.get_context("fork").Process(target=store.reserve, args=({"by": "child"}, {}))
    proc.start()
    proc.join(timeout=60)
    assert proc.exitcode == 0
    store.reserve({"by": "parent"}, {})
    assert [r.action["by"] for r in store.all()] == ["parent", "child", "parent"]


# ------------------------------------------------------------------------------- interrupted writes


def _killed_writer(trials_db: str, inside: mp.synchronize.Event) -> None:  # type: ignore[name-defined]
    """Spawned: writes two rows inside one transaction and waits there to be SIGKILLed."""
    store = TrialStore(trials_db)
    with store._write() as conn:
        store._upsert(conn, TrialRecord(trial=3, status="running", action={"half": 1}, env={}))
        inside.set()
        time.sleep(60)
        store._upsert(conn, TrialRecord(trial=4, status="running", action={"half": 2}, env={}))


def test_writer_killed_inside_a_transaction_leaves_previous_rows(tmp_path: Path) -> None:
    db = str(tmp_path / "trials.db")
    store = TrialStore(db)
    for n in (1, 2):
        rec = replace(store.reserve({"tp": n}, {}), status="completed")
        store.save(rec)
    ctx = mp.get_context("spawn")
    inside = ctx.Event()
    proc = ctx.Process(target=_killed_writer, args=(db, inside))
    proc.start()
    assert inside.wait(timeout=60), "writer never entered its transaction"
    os.kill(proc.pid, signal.SIGKILL)  # type: ignore[arg-type]
    proc.join(timeout=30)
    assert proc.exitcode == -signal.SIGKILL

    reopened = TrialStore(db)
    assert [(r.trial, r.status) for r in reopened.all()] == [(1, "completed"), (2, "completed")]
    started = time.monotonic()
    assert reopened.reserve({"tp": 3}, {}).trial == 3  # the dead writer's lock is gone
    assert time.monotonic() - started < 5
    assert reopened._conn().execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_progress_handler_abort_rolls_back_the_whole_write(tmp_path: Path) -> None:
    cache = ResultCache(tmp_path / "cache.db")
    cache.put(_entry("kept"))
    calls = {"n": 0}

    conn = cache._conn()

    def trace(sql: str) -> None:
        calls["armed"] = calls.get("armed", 0) or int(sql.lstrip().upper().startswith("INSERT"))

    def abort() -> int:
        if calls.get("armed"):  # interrupt the INSERT itself, after BEGIN IMMEDIATE took the lock
            calls["n"] += 1
            raise RuntimeError("interrupted mid-write")
        return 0

    conn.set_trace_callback(trace)
    conn.set_progress_handler(abort, 1)
    with pytest.raises(sqlite3.OperationalError):
        cache.put(_entry("lost"))
    assert calls["n"] >= 1
    assert calls["armed"]
    calls["armed"] = 0
    conn.set_trace_callback(None)
    conn.set_progress_handler(None, 0)
    assert not cache._conn().in_transaction  # rolled back, not left holding the write lock
    other = ResultCache(tmp_path / "cache.db")  # another writer must not find the file locked
    started = time.monotonic()
    other.put(_entry("other"))
    assert time.monotonic() - started < 5
    assert cache.get("lost") is None and cache.get("kept") == _entry("kept") and len(cache) == 2
    cache.put(_entry("after"))
    assert len(other) == 3
