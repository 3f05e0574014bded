"""The trial vocabulary: statuses as an enum, a frozen record whose transitions check its state, and a store
that never rewrites a finished row."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from dse.storage import TrialStore
from dse.trial import (
    DETERMINISTIC_FAILURES,
    FAILURE_STATUSES,
    SUCCESS_STATUSES,
    FailureReason,
    TrialRecord,
    TrialStateError,
    TrialStatus,
)


def test_statuses_are_one_enum_with_the_table_words() -> None:
    assert [s.value for s in TrialStatus] == ["pending", "running", "completed", "cached", "failed", "infeasible",
                                              "timeout", "preempted", "pruned"]
    assert TrialStatus.COMPLETED == "completed" and f"{TrialStatus.CACHED}" == "cached"
    assert set(SUCCESS_STATUSES) == {TrialStatus.COMPLETED, TrialStatus.CACHED}
    assert set(FAILURE_STATUSES) == {TrialStatus.FAILED, TrialStatus.TIMEOUT, TrialStatus.PREEMPTED}
    assert not TrialStatus.INFEASIBLE.is_failure and TrialStatus.INFEASIBLE.is_finished
    assert TrialStatus.PRUNED.is_finished and not TrialStatus.PRUNED.is_success and not TrialStatus.PRUNED.is_failure
    assert DETERMINISTIC_FAILURES == ("out-of-memory", "rejected-config")
    assert FailureReason.NODE_FAILURE.is_transient and not FailureReason.OUT_OF_MEMORY.is_transient


def test_a_record_is_frozen_and_moves_only_through_its_transitions() -> None:
    rec = TrialRecord(1, "pending", {"tp": 2}, {})
    assert rec.status is TrialStatus.PENDING
    with pytest.raises(dataclasses.FrozenInstanceError):
        rec.status = TrialStatus.COMPLETED  # type: ignore[misc]
    running = rec.hashed("abc", 10.0).submitted("42", "trials/1")
    assert (running.status, running.attempts, running.config_hash, running.started_at) == ("running", 1, "abc", 10.0)
    again = running.retrying("timeout").hashed("abc", 99.0).submitted("43", "trials/1")
    assert (again.attempts, again.started_at, again.job_id, again.error) == (2, 10.0, "43", "timeout")
    done = again.finished(TrialStatus.COMPLETED, reward=0.5, finished_at=20.0, metrics={"step-time": 2.0})
    assert (done.status, done.reward, done.metrics, done.duration_s) == ("completed", 0.5, {"step-time": 2.0}, 10.0)
    assert rec.status is TrialStatus.PENDING  # the original is untouched
    for step in (lambda r: r.submitted("1", "d"), lambda r: r.retrying(None), lambda r: r.hashed("x", 1.0),
                 lambda r: r.finished(TrialStatus.FAILED, reward=0.0, finished_at=1.0)):
        with pytest.raises(TrialStateError, match="completed trial"):
            step(done)
    with pytest.raises(TrialStateError, match="not a final state"):
        running.finished(TrialStatus.RUNNING, reward=0.0, finished_at=1.0)


def test_the_agent_hears_a_record_as_its_result() -> None:
    rec = TrialRecord(3, "failed", {}, {}, reward=float("-inf"), reason="out-of-memory")
    result = rec.result()
    assert not result.ok and result.infeasible and result.status == "failed"


def test_the_store_never_rewrites_a_finished_row(tmp_path: Path) -> None:
    store = TrialStore(tmp_path / "trials.db")
    rec = store.reserve({"tp": 1}, {})
    running = rec.hashed("h", 1.0).submitted("7", "trials/1")
    store.save(running)
    done = running.finished(TrialStatus.COMPLETED, reward=1.0, finished_at=2.0, metrics={"step-time": 1.0})
    store.save(done)
    with pytest.raises(TrialStateError, match="never rewritten"):
        store.save(dataclasses.replace(done, reward=99.0))
    with pytest.raises(TrialStateError, match="never rewritten"):
        store.save(running)  # a stale copy cannot roll a finished trial back either
    stored = store.get(1)
    assert stored is not None and stored.reward == 1.0 and stored.status is TrialStatus.COMPLETED


def test_a_corrupt_status_in_the_store_is_one_input_error(tmp_path: Path) -> None:
    from dse.errors import InputError

    store = TrialStore(tmp_path / "trials.db")
    store.reserve({}, {})
    with store._write() as conn:
        conn.execute("UPDATE trials SET status = 'exploded' WHERE trial = 1")
    with pytest.raises(InputError, match=r"trials\[1\]\.status"):
        store.all()
