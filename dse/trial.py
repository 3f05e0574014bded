"""A trial's vocabulary: its status and failure reasons, the action made concrete, and its one record.

Like Optuna's `TrialState` and `FrozenTrial`: a trial's status is an enum, not a string spelled in a dozen
places, and a `TrialRecord` is frozen. It changes state only through the transition methods below, which
check the state it is in, so a finished trial can never be rewritten (the store refuses it too).
One finished trial travels as one `TrialRecord` from the engine to the store, the table and the agent,
which hears it as a `TrialResult` (`TrialRecord.result()`).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = [
    "Action",
    "FailureReason",
    "TrialConfig",
    "TrialRecord",
    "TrialResult",
    "TrialStateError",
    "TrialStatus",
    "flatten",
]

Action = dict[str, Any]
"""An agent's proposal: `{dimension path: value}` over the sweep's searched dimensions."""


class TrialStatus(enum.StrEnum):
    """Where a trial is. A `StrEnum`, so the table, the store and JSON keep the plain words."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    CACHED = "cached"
    FAILED = "failed"
    INFEASIBLE = "infeasible"
    TIMEOUT = "timeout"
    PREEMPTED = "preempted"
    PRUNED = "pruned"  # stopped early: confidently slower than the best trial (`--early-stopping`)

    @property
    def is_finished(self) -> bool:
        return self not in (TrialStatus.PENDING, TrialStatus.RUNNING)

    @property
    def is_success(self) -> bool:
        """A measurement was obtained (run now or read from the cache)."""
        return self in (TrialStatus.COMPLETED, TrialStatus.CACHED)

    @property
    def is_failure(self) -> bool:
        """The run was attempted and did not measure (infeasible points are never run: not a failure)."""
        return self in (TrialStatus.FAILED, TrialStatus.TIMEOUT, TrialStatus.PREEMPTED)


FINISHED_STATUSES: tuple[TrialStatus, ...] = tuple(s for s in TrialStatus if s.is_finished)
FAILURE_STATUSES: tuple[TrialStatus, ...] = tuple(s for s in TrialStatus if s.is_failure)
SUCCESS_STATUSES: tuple[TrialStatus, ...] = tuple(s for s in TrialStatus if s.is_success)


class FailureReason(enum.StrEnum):
    """Why a trial did not measure: machine-readable, stored in the `reason` column.

    A constraint violation is stored as `constraint:<rule>` (see `constraint_reason`), so `reason` is a
    plain string column; these are the reasons the engine itself assigns.
    """

    OUT_OF_MEMORY = "out-of-memory"
    REJECTED_CONFIG = "rejected-config"
    EXIT_CODE = "exit-code"
    NO_METRICS = "no-metrics"
    TIMEOUT = "timeout"
    PREEMPTED = "preempted"
    NODE_FAILURE = "node-failure"
    TRANSIENT = "transient"
    EARLY_STOPPED = "early-stopped"  # not a failure: the trial was pruned (status `pruned`)

    @property
    def is_deterministic(self) -> bool:
        """The configuration's own failure: it would recur on every run, so it is cached and learnt from."""
        return self in (FailureReason.OUT_OF_MEMORY, FailureReason.REJECTED_CONFIG)

    @property
    def is_transient(self) -> bool:
        """The cluster's failure, not the configuration's: the job is retried."""
        return self in (FailureReason.TIMEOUT, FailureReason.PREEMPTED, FailureReason.NODE_FAILURE)


DETERMINISTIC_FAILURES: tuple[str, ...] = tuple(r.value for r in FailureReason if r.is_deterministic)
TRANSIENT_FAILURES: tuple[str, ...] = tuple(r.value for r in FailureReason if r.is_transient)


def constraint_reason(rule: str) -> str:
    return f"constraint:{rule}"


class TrialStateError(RuntimeError):
    """A transition asked of a trial in the wrong state (a bug in the caller, never bad input)."""


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested tables -> dotted paths (`{"model": {"seq_length": 1}}` -> `{"model.seq_length": 1}`)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        path = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, path + "."))
        else:
            out[path] = v
    return out


@dataclass
class TrialConfig:
    """One point made concrete: the cmd_args with the action and env draws applied."""

    action: dict[str, Any]
    env: dict[str, Any]
    cmd_args: dict[str, Any]
    extra_env_vars: dict[str, str]
    num_nodes: int
    time_limit: str | None = None

    def flat_cmd_args(self) -> dict[str, Any]:
        return flatten(self.cmd_args)


@dataclass
class TrialResult:
    """What the agent hears of one point; a non-finite reward means "no usable measurement"."""

    reward: float
    status: str
    values: list[float] = field(default_factory=list)
    reason: str | None = None  # why a failed trial failed (out-of-memory, exit-code, timeout...)
    trial: int | None = None  # the dse trial number; None for what the cache told before the run (warm start)

    @property
    def ok(self) -> bool:
        return self.reward == self.reward and abs(self.reward) != float("inf")

    @property
    def infeasible(self) -> bool:
        """A failure that is the configuration's own (out of memory, rejected): it would recur on every run."""
        return not self.ok and self.reason in DETERMINISTIC_FAILURES

    @property
    def censored(self) -> bool:
        """Stopped early: `values` are partial and the true values are worse (a lower bound on step time)."""
        return self.status == TrialStatus.PRUNED


@dataclass(frozen=True)
class TrialRecord:
    """One row of the trial table (docs/DESIGN.md §6); `reason` is the machine-readable failure cause.

    Frozen: use the transition methods, each of which returns a new record after checking the state.
    """

    trial: int
    status: TrialStatus
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
    gpu_hours: float | None = None  # what its job(s) burned (simulated for a simulated workload); 0 if none ran
    note: str | None = None  # why the agent proposed it (e.g. the model's prediction), or None

    def __post_init__(self) -> None:
        if not isinstance(self.status, TrialStatus):
            try:
                object.__setattr__(self, "status", TrialStatus(self.status))
            except ValueError:
                known = ", ".join(s.value for s in TrialStatus)
                raise ValueError(f"unknown trial status {self.status!r}; expected one of {known}") from None

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    @property
    def ok(self) -> bool:
        return self.status.is_success

    # ---- transitions -----------------------------------------------------------------------------
    def _require(self, *allowed: TrialStatus, what: str) -> None:
        if self.status not in allowed:
            raise TrialStateError(f"trial {self.trial}: cannot {what} a {self.status.value} trial")

    def numbered(self, trial: int) -> TrialRecord:
        """The number the store allotted to a new (pending) record."""
        self._require(TrialStatus.PENDING, what="number")
        return replace(self, trial=trial)

    def hashed(self, config_hash: str, started_at: float) -> TrialRecord:
        """About to start (again): its configuration's hash and its first start time."""
        self._require(TrialStatus.PENDING, TrialStatus.RUNNING, what="start")
        return replace(self, config_hash=config_hash, started_at=self.started_at or started_at)

    def submitted(self, job_id: str | None, trial_dir: str) -> TrialRecord:
        """Its job was submitted (a retry resubmits a running trial)."""
        self._require(TrialStatus.PENDING, TrialStatus.RUNNING, what="submit")
        return replace(self, status=TrialStatus.RUNNING, job_id=job_id, trial_dir=trial_dir,
                       attempts=self.attempts + 1, cache_hit=False)

    def with_job_id(self, job_id: str) -> TrialRecord:
        """The job id learnt after submission (a launcher printed the id of the job it submitted)."""
        self._require(TrialStatus.RUNNING, what="relabel the job of")
        return replace(self, job_id=job_id)

    def retrying(self, error: str | None, gpu_hours: float = 0.0) -> TrialRecord:
        """A transient failure that will be resubmitted: the error is kept until the retry ends, and what the
        failed attempt burned is added to the trial's GPU-hours."""
        self._require(TrialStatus.RUNNING, what="retry")
        return replace(self, error=error, gpu_hours=(self.gpu_hours or 0.0) + gpu_hours)

    def finished(
        self,
        status: TrialStatus,
        *,
        reward: float,
        finished_at: float,
        metrics: Mapping[str, float] | None = None,
        reason: str | None = None,
        error: str | None = None,
        cache_hit: bool | None = None,
        gpu_hours: float | None = None,
    ) -> TrialRecord:
        """The final state; nothing changes a record after this."""
        self._require(TrialStatus.PENDING, TrialStatus.RUNNING, what="finish")
        if not status.is_finished:
            raise TrialStateError(f"trial {self.trial}: {status.value} is not a final state")
        return replace(
            self, status=status, reward=reward, finished_at=finished_at,
            metrics=dict(metrics or {}), reason=reason, error=error,
            cache_hit=self.cache_hit if cache_hit is None else cache_hit,
            gpu_hours=self.gpu_hours if gpu_hours is None else gpu_hours,
        )

    def result(self, values: list[float] | None = None) -> TrialResult:
        """What the agent hears of this finished trial."""
        reward = float("nan") if self.reward is None else float(self.reward)
        return TrialResult(reward=reward, status=self.status.value, values=list(values or []), reason=self.reason,
                           trial=self.trial)
