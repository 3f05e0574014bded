"""One trial end to end (docs/DESIGN.md §2), non-blocking: submit an action, collect finished trials.

action -> env_params draw -> resolved config -> rule check (infeasible: never submitted) -> config hash
-> cache (hit: no program runs) -> workload builds the job -> executor submits it -> collect metrics ->
observation -> reward -> store row + cache row. Transient failures (timeout, preemption, node failure)
are retried up to `max_retries`; deterministic ones (out-of-memory, rejected config) are cached.
"""

from __future__ import annotations

import math
import os
import sqlite3
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dse.engine._executors import Executor, JobHandle
from dse.engine._progress import LogTail
from dse.errors import InputError
from dse.hashing import config_hash, resolve_hf_token, scrub_text
from dse.metrics import (
    FAILED_REWARD,
    EarlyStopping,
    MetricsError,
    Verdict,
    is_step_time,
    metric_value,
    score,
    verdict,
)
from dse.space import SweepSpace, draw_env_params
from dse.storage import CacheEntry, ResultCache, TrialStore
from dse.trial import (
    DETERMINISTIC_FAILURES,
    TRANSIENT_FAILURES,
    FailureReason,
    TrialConfig,
    TrialRecord,
    TrialStatus,
    constraint_reason,
)
from dse.workloads import STDOUT, Outcome, Workload, workload_for


@dataclass
class Finished:
    """A trial that reached a final state, with what the agent needs to hear."""

    record: TrialRecord
    observation: list[float]

    @property
    def ok(self) -> bool:
        return self.record.status.is_success


_FAILURE_STATUS: dict[str, TrialStatus] = {FailureReason.TIMEOUT: TrialStatus.TIMEOUT,
                                            FailureReason.PREEMPTED: TrialStatus.PREEMPTED}
"""A failure reason with a status of its own (keyed by the reason's text); every other failure is `failed`."""


@dataclass
class _InFlight:
    record: TrialRecord
    cfg: TrialConfig
    handle: JobHandle
    trial_dir: Path
    payload_hash: str
    gpus: int = 0
    started: float = field(default_factory=time.time)  # this attempt's start, for its GPU-hours
    tail: LogTail = field(default_factory=LogTail)
    prunable: bool = True  # False for the baseline: the speed-up is measured against its full run


@dataclass
class TrialEngine:
    """Runs trials of one sweep: keeps the in-flight jobs and writes every state change to the store."""

    space: SweepSpace
    store: TrialStore
    run_dir: Path
    executor: Executor
    cache: ResultCache | None = None
    seed: int = 0
    max_retries: int = 2
    early_stopping: EarlyStopping | None = None  # stop running trials confidently slower than the best
    workload: Workload = field(init=False)
    in_flight: dict[int, _InFlight] = field(default_factory=dict)
    best_step_time: float | None = field(default=None, init=False)  # of the completed (or cached) trials
    _cache_warned: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.workload = workload_for(self.space.sweep)
        token = resolve_hf_token(self.space.sweep.test.cmd_args)
        if token and self.workload.submits_own_job:
            os.environ["HF_TOKEN"] = token  # jobs inherit it; it is never written to a file
        self.metrics = list(self.space.sweep.test.agent_metrics)
        self.reward_name = self.space.sweep.test.agent_reward_function
        if self.early_stopping is not None and not self.early_stopping.enabled:
            self.early_stopping = None
        if self.early_stopping is not None and not is_step_time(self.metrics[0]):
            raise InputError(f"early stopping watches step time, but the first agent metric is '{self.metrics[0]}'; "
                             "put 'step-time' (or 'default') first in agent_metrics",
                             file=str(self.space.sweep.source), field="early_stopping")

    @property
    def pruned_reason(self) -> str:
        """How a pruned result is cached: under its rule and settings, reused only under the same ones."""
        return f"{FailureReason.EARLY_STOPPED}:{self.early_stopping.signature if self.early_stopping else ''}"

    def observe(self, rec: TrialRecord) -> None:
        """Learn the best step time from a finished trial (a resumed run's stored trials too)."""
        if rec.status.is_success and self.metrics and self.metrics[0] in rec.metrics:
            value = float(rec.metrics[self.metrics[0]])
            if math.isfinite(value) and value > 0 and (self.best_step_time is None or value < self.best_step_time):
                self.best_step_time = value

    # ---- submission ------------------------------------------------------------------------------
    def config_payload(self, cfg: TrialConfig) -> dict[str, Any]:
        repo = self.space.sweep.test.megatron_bridge_repo
        return {
            **self.workload.identity(),
            "cmd_args": cfg.cmd_args,
            "extra_env_vars": cfg.extra_env_vars,
            "extra_cmd_args": self.space.sweep.test.extra_cmd_args,
            "num_nodes": cfg.num_nodes,
            "repo": repo.model_dump() if repo else None,
        }

    def submit(self, action: dict[str, Any], use_cache: bool = True, *,
               env: dict[str, Any] | None = None, note: str | None = None,
               prunable: bool = True) -> Finished | None:
        """Start one trial; returns it at once when it is infeasible or a cache hit, else None.

        `env` is the trial's env_params draw when the caller made it (the gymnasium env draws from its own
        `np_random`); otherwise it is drawn here, reproducibly from (seed, trial number)."""
        if env is None:
            env = draw_env_params(self.space, self.seed, self.store.next_trial_number())
        rec = self.store.reserve(action, env, note)
        return self._start(rec, use_cache, prunable)

    def _start(self, rec: TrialRecord, use_cache: bool, prunable: bool = True) -> Finished | None:
        cfg = self.space.resolve(rec.action, rec.env)
        broken = self.space.violations(rec.action, rec.env)
        payload_hash = config_hash(self.config_payload(cfg))
        rec = rec.hashed(payload_hash, time.time())
        if broken:
            error = "; ".join(f"{r.name}: {r.message}" for r in broken)[:500]
            return self._finish(rec, TrialStatus.INFEASIBLE, [], reason=constraint_reason(broken[0].name),
                                error=error)
        if use_cache and self.cache is not None:
            hit = self.cache.get(payload_hash)
            if hit is not None and hit.status == "completed":
                metrics = {k: v for k, v in hit.metrics.items() if k in self.metrics}
                if len(metrics) == len(self.metrics):
                    return self._finish(rec, TrialStatus.CACHED, [metrics[m] for m in self.metrics],
                                        metrics=metrics, cache_hit=True)
                # cached without the metrics this sweep asks for: run it
            elif hit is not None and hit.status == "pruned":
                if self.early_stopping is not None and hit.reason == self.pruned_reason:  # same rule: still pruned
                    metrics = {k: v for k, v in hit.metrics.items() if k in self.metrics}
                    return self._finish(rec, TrialStatus.PRUNED, [metrics[m] for m in self.metrics if m in metrics],
                                        metrics=metrics, reason=FailureReason.EARLY_STOPPED,
                                        error=f"(cached) {hit.error or ''}".strip(), cache_hit=True)
            elif hit is not None:
                return self._finish(rec, TrialStatus.FAILED, [], reason=hit.reason,
                                    error=f"(cached) {hit.error or ''}".strip(), cache_hit=True)
        trial_dir = self.run_dir / "trials" / str(rec.trial)
        trial_dir.mkdir(parents=True, exist_ok=True)
        spec = self.workload.build(cfg, trial_dir)
        (trial_dir / "command.sh").write_text(scrub_text(spec.script()))
        handle = self.executor.submit(spec, trial_dir / "submitit")
        rec = rec.submitted(handle.job_id, str(trial_dir))
        self.store.save(rec)
        self.in_flight[rec.trial] = _InFlight(rec, cfg, handle, trial_dir, payload_hash,
                                              gpus=self.workload.gpus(cfg, spec), prunable=prunable)
        return None

    def reattach(self, rec: TrialRecord) -> bool:
        """After a driver restart: follow a job still running under the executor, if it can be found."""
        if not rec.trial_dir or (not rec.job_id and not self.workload.submits_own_job):
            return False
        handle = self.executor.attach(rec.job_id, Path(rec.trial_dir) / "submitit",
                                      submit_host=self.workload.submits_own_job)
        if handle is None:
            return False
        if not (Path(rec.trial_dir) / STDOUT).exists() and handle.done():
            return False  # it ended before its program started (killed with the driver's group): run it again
        cfg = self.space.resolve(rec.action, rec.env)
        self.in_flight[rec.trial] = _InFlight(rec, cfg, handle, Path(rec.trial_dir), rec.config_hash or "",
                                              gpus=self.workload.gpus(cfg), started=rec.started_at or time.time())
        return True

    def restart(self, rec: TrialRecord) -> Finished | None:
        """Run a trial again from scratch (its job was lost with the driver)."""
        return self._start(rec, use_cache=True)

    # ---- collection ------------------------------------------------------------------------------
    def poll(self) -> list[Finished]:
        """Trials whose job ended since the last call (transient failures are resubmitted first)."""
        done: list[Finished] = []
        for trial, fl in list(self.in_flight.items()):
            if fl.handle.job_id and fl.handle.job_id != fl.record.job_id:  # a launcher printed its job's id
                fl.record = fl.record.with_job_id(fl.handle.job_id)
                self.store.save(fl.record)
            if self.early_stopping is not None and self.best_step_time is not None and fl.prunable:
                times = fl.tail.read(self.workload.progress_logs(fl.trial_dir))
                stop = verdict(times, self.best_step_time, self.early_stopping)
                if stop is not None:
                    del self.in_flight[trial]
                    fl.handle.cancel()  # the local process, or scancel of the launcher's training job
                    done.append(self._prune(fl, stop, times))
                    continue
            if not fl.handle.done():
                continue
            del self.in_flight[trial]
            result = fl.handle.result()
            rec = fl.record
            if result.state in (*TRANSIENT_FAILURES, FailureReason.OUT_OF_MEMORY):
                outcome = Outcome(False, reason=result.state, error=f"{result.state}: {result.message}".strip(": "))
            else:
                outcome = self.workload.collect(fl.cfg, fl.trial_dir, result.returncode)
            if not outcome.ok and outcome.reason in TRANSIENT_FAILURES and rec.attempts <= self.max_retries:
                self._start(rec.retrying(outcome.error, gpu_hours=self._burned(fl)), use_cache=False,
                            prunable=fl.prunable)
                continue
            done.append(self._conclude(rec, outcome, fl.payload_hash, self._spent(fl, outcome)))
        return done

    def _burned(self, fl: _InFlight) -> float:
        """The attempt's wall time x its GPUs (0 for a simulation, whose cost is simulated, not spent)."""
        if self.workload.simulated:
            return 0.0
        return max(0.0, time.time() - fl.started) * fl.gpus / 3600.0

    def _spent(self, fl: _InFlight, outcome: Outcome) -> float:
        earlier = fl.record.gpu_hours or 0.0  # attempts before a transient failure
        return earlier + (outcome.gpu_hours if outcome.gpu_hours is not None else self._burned(fl))

    def _prune(self, fl: _InFlight, stop: Verdict, times: list[float]) -> Finished:
        """End a trial stopped early: `pruned`, its partial step time kept (a lower bound), cached under its rule."""
        rec = fl.record
        metrics = {self.metrics[0]: stop.step_time_s}
        simulated = self.workload.stopped_cost(times, fl.gpus)  # a simulation's cost, when it was stopped
        spent = self._spent(fl, Outcome(False, gpu_hours=simulated))
        error = scrub_text(stop.message)[:500]
        if self.cache is not None:
            self._cache_put(CacheEntry(
                config_hash=fl.payload_hash, status="pruned", metrics=metrics, reason=self.pruned_reason,
                error=error, workload=self.workload.name, created_at=time.time(), run_dir=str(self.run_dir),
                trial=rec.trial,
            ))
        observation = [stop.step_time_s] if len(self.metrics) == 1 else []
        return self._finish(rec, TrialStatus.PRUNED, observation, metrics=metrics,
                            reason=FailureReason.EARLY_STOPPED, error=error, gpu_hours=spent)

    def _conclude(self, rec: TrialRecord, outcome: Outcome, payload_hash: str, gpu_hours: float) -> Finished:
        observation: list[float] = []
        if outcome.ok and outcome.metrics is not None:
            flat = self.space.resolve(rec.action, rec.env).flat_cmd_args()
            try:
                for name in self.metrics:
                    observation.append(metric_value(name, outcome.metrics, gbs=flat.get("gb"),
                                                    seq_length=flat.get("seq_length") or flat.get("model.seq_length"),
                                                    num_gpus=flat.get("num_gpus")))
            except MetricsError as exc:
                outcome = Outcome(False, reason=FailureReason.NO_METRICS, error=f"no-metrics: {exc.reason}")
                observation = []
        if outcome.ok:
            status, reason, error = TrialStatus.COMPLETED, None, None
            metrics = dict(zip(self.metrics, observation, strict=True))
        else:
            status = _FAILURE_STATUS.get(outcome.reason or "", TrialStatus.FAILED)
            reason, error, metrics = outcome.reason, scrub_text(outcome.error or "")[:500], {}
        if self.cache is not None and (outcome.ok or outcome.reason in DETERMINISTIC_FAILURES):
            self._cache_put(CacheEntry(
                config_hash=payload_hash, status="completed" if outcome.ok else "failed", metrics=metrics,
                reason=reason, error=error, workload=self.workload.name, created_at=time.time(),
                run_dir=str(self.run_dir), trial=rec.trial,
            ))
        return self._finish(rec, status, observation, metrics=metrics, reason=reason, error=error,
                            gpu_hours=gpu_hours)

    def _cache_put(self, entry: CacheEntry) -> None:
        """Share a result; a cache that cannot be written (read-only, full) costs reuse, not the trial."""
        try:
            self.cache.put(entry)  # type: ignore[union-attr]
        except (sqlite3.Error, OSError) as exc:
            if not self._cache_warned:
                print(f"warning: the result cache could not be written ({' '.join(str(exc).split())}); results "
                      "stay in this run's trials.db", file=sys.stderr, flush=True)
                self._cache_warned = True

    def _finish(self, rec: TrialRecord, status: TrialStatus, observation: list[float], *,
                metrics: dict[str, float] | None = None, reason: str | None = None, error: str | None = None,
                cache_hit: bool | None = None, gpu_hours: float = 0.0) -> Finished:
        """The one way a trial ends: its final record is saved (and never rewritten), then reported.

        A pruned trial's reward is that of its partial (optimistic) values: the agent hears it as censored."""
        measured = status.is_success or (status is TrialStatus.PRUNED and len(observation) == len(self.metrics))
        value = score(self.reward_name, observation if measured else None, measured)
        reward = value if not (isinstance(value, float) and math.isnan(value)) else FAILED_REWARD
        rec = rec.finished(status, reward=reward, finished_at=time.time(), metrics=metrics, reason=reason,
                           error=error, cache_hit=cache_hit, gpu_hours=gpu_hours)
        self.store.save(rec)
        self.observe(rec)
        return Finished(rec, observation)

    def cancel_all(self) -> None:
        for fl in self.in_flight.values():
            fl.handle.cancel()
