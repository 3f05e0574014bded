"""The sweep loop: agent <-> trials, `--parallel K` in flight, retries, Ctrl-C, resume.

A slot is refilled as soon as a trial finishes (no batch barrier). The run directory holds everything a
later `dse resume` needs: the resolved sweep (secrets redacted), the seed, the options and every trial.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from dse.analysis import best_record, best_toml, counts_text, frame, gpu_hours_text, write_csv_atomic
from dse.engine._console import Interrupts, Progress
from dse.engine._executors import Executor
from dse.engine._rundir_lock import RunDirLock
from dse.engine._trials import Finished, TrialEngine
from dse.errors import InputError
from dse.hashing import REDACTED, config_hash, redact, scrub_secrets
from dse.metrics import EarlyStopping, format_metrics, score
from dse.space import SweepSpace, baseline_action, space_summary, trials_to_run
from dse.spec import Sweep, SystemConfig, load_sweep
from dse.storage import ResultCache, TrialStore
from dse.tomlwrite import write_text_atomic, write_toml_atomic
from dse.trial import DETERMINISTIC_FAILURES, Action, TrialRecord, TrialResult, TrialStatus
from dse.workloads import install_sweep

EXPORT_EVERY_S = 2.0


class SearchAgent(Protocol):
    """What the loop needs of an agent (`dse.agents.Agent` is one): ask/tell, and reserve on resume."""

    def ask(self) -> Action | None: ...

    def tell(self, action: Mapping[str, Any], result: TrialResult) -> None: ...

    def reserve(self, action: Mapping[str, Any]) -> None: ...


class TrialObserver(Protocol):
    """Told of every finished trial (an experiment tracker: `dse.export`'s loggers). The engine imports none:
    the CLI hands them in. `start` comes once the run dir and its metadata exist, `on_trial` for each finished
    trial (on resume also for those finished before, which an observer must not log twice), `close` at the
    end, even after an error or Ctrl-C. An observer's exception never stops the sweep: one warning, then on."""

    name: str

    def start(self, run_dir: Path) -> None: ...

    def on_trial(self, record: TrialRecord) -> None: ...

    def close(self) -> None: ...


class AgentFactory(Protocol):
    """Makes the sweep's agent by name; the engine imports no agent (the CLI passes
    `dse.agents.create_sweep_agent`). An unknown name or bad agent_config raises `InputError`."""

    def __call__(self, name: str, space: SweepSpace, *, steps: int, seed: int,
                 storage_dir: Path | None) -> SearchAgent: ...


@dataclass
class RunOptions:
    agent: str | None = None
    steps: int | None = None
    parallel: int = 1
    seed: int | None = None
    out: Path = Path("runs")
    cache: Path | None = None
    no_cache: bool = False
    executor: str | None = None
    time_scale: float | None = None
    early_stopping: bool = False  # `--early-stopping` (the sweep's `early_stopping` setting also turns it on)
    log_to: list[str] = field(default_factory=list)  # trackers (`--log-to`), kept in the metadata for `dse resume`
    # told of each finished trial; not metadata (objects, not settings)
    trial_observers: list[TrialObserver] = field(default_factory=list, repr=False, compare=False)


def early_stopping_rule(sweep: Sweep, flag: bool) -> EarlyStopping | None:
    """The early-stopping rule in force: the sweep's `[early_stopping]` settings (or `= true`), or the defaults
    when only `--early-stopping` asks for it; None when neither does (or the sweep sets it false)."""
    setting = sweep.test.early_stopping
    if setting is None:
        return EarlyStopping() if flag else None
    if flag:
        return setting.model_copy(update={"enabled": True})
    return setting if setting.enabled else None


def _config_seed(sweep: Sweep) -> int:
    """`agent_config.random_seed` (0 when unset): the seed of the agent and of the env_params draws."""
    value = (sweep.test.agent_config or {}).get("random_seed", 0)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"must be an integer, got {value!r}", file=str(sweep.source), field="agent_config.random_seed")
    return value


def default_cache_path() -> Path:
    return Path(os.environ.get("DSE_CACHE") or Path.home() / ".cache" / "dse" / "cache.db").expanduser()


def _sweep_data(sweep: Sweep) -> dict[str, Any]:
    data = sweep.test.model_dump(mode="json", exclude_none=True, exclude_defaults=False)
    data.get("cmd_args", {}).pop("hf_token", None)
    return redact(data)


class SweepRunner:
    """Drives one sweep in one run directory (a new run or a resumed one)."""

    def __init__(self, sweep: Sweep, run_dir: Path, opts: RunOptions, make_agent: AgentFactory,
                 resumed: bool = False) -> None:
        self.make_agent = make_agent
        created = _first_missing(run_dir)
        try:
            self._setup(sweep, run_dir, opts, resumed)
        except BaseException:
            if created is not None:  # a sweep refused before its first trial leaves no folder behind
                shutil.rmtree(created, ignore_errors=True)
            raise

    def _setup(self, sweep: Sweep, run_dir: Path, opts: RunOptions, resumed: bool) -> None:
        self.sweep, self.run_dir, self.opts = sweep, run_dir, opts
        self.space = SweepSpace(sweep)
        self.count = self.space.require_valid()
        self.baseline = baseline_action(self.space)  # a bad `baseline` table is refused before anything is written
        test = sweep.test
        self.agent_name = opts.agent or test.agent
        self.seed = opts.seed if opts.seed is not None else _config_seed(sweep)
        self.steps = trials_to_run(self.space, self.count, self.agent_name, opts.steps)  # as `dse space` says
        # the agent's settings are checked before anything is written (a real agent, with the study in the
        # run dir, is made once the run dir is locked)
        self.make_agent(self.agent_name, self.space, steps=self.steps, seed=self.seed, storage_dir=None)
        cache = None if opts.no_cache else ResultCache(opts.cache or default_cache_path())
        if test.git_repos or sweep.kind.submits_own_job:
            for line in install_sweep(sweep).lines:  # the pinned checkout must exist before a trial runs
                print(f"install: {line}", flush=True)
        run_dir.mkdir(parents=True, exist_ok=True)
        self.lock = RunDirLock(run_dir)  # before anything else in it: a second driver is refused, nothing touched
        for debris in [*run_dir.glob(".*.tmp"), *run_dir.glob(".trials-*.csv")]:  # an earlier driver's, killed
            debris.unlink(missing_ok=True)                                            # mid-write
        self.agent = self.make_agent(self.agent_name, self.space, steps=self.steps, seed=self.seed,
                                        storage_dir=run_dir)
        self.store = TrialStore(run_dir / "trials.db")
        kind = opts.executor or sweep.system.scheduler
        self.engine = TrialEngine(self.space, self.store, run_dir, Executor(kind, sweep.system), cache=cache,
                                  seed=self.seed, max_retries=test.max_retries,
                                  early_stopping=early_stopping_rule(sweep, opts.early_stopping))
        cap = sweep.system.max_jobs_in_flight
        self.parallel = min(opts.parallel, cap) if cap else opts.parallel
        if self.parallel < opts.parallel:
            print(f"note: --parallel {opts.parallel} capped at the system's max_jobs_in_flight = {cap}", flush=True)
        if opts.time_scale is not None:
            os.environ["DSE_SIM_TIME_SCALE"] = str(opts.time_scale)
        if not resumed:
            self._write_run_files()
        elif opts.log_to and self.store.get_meta("options", {}).get("log_to") != opts.log_to:
            self.store.set_meta("options", {**self.store.get_meta("options", {}), "log_to": opts.log_to})
        self.observers = list(opts.trial_observers)
        self._observer_warned: set[int] = set()
        self.started = time.time()
        self._dirty, self._exported = False, 0.0

    def _write_run_files(self) -> None:
        data = _sweep_data(self.sweep)
        options = {f.name: getattr(self.opts, f.name) for f in fields(self.opts) if f.name != "trial_observers"}
        write_toml_atomic(self.run_dir / "sweep.toml", data, header=f"resolved sweep of {self.sweep.source}; "
                                                                     "secrets redacted")
        meta = {
            "sweep_data": data, "agent": self.agent_name, "steps": self.steps, "seed": self.seed,
            "options": {k: str(v) if isinstance(v, Path) else v for k, v in options.items()},
            "params": self.space.agent.names, "env_params": self.space.env.names,
            "metrics": list(self.sweep.test.agent_metrics),
            "space_summary": space_summary(self.space, self.count)[0],
            "system": self.sweep.system.model_dump(mode="json"),
        }
        for k, v in meta.items():
            self.store.set_meta(k, v)
        if self.sweep.kind.simulated:
            print(f"note: {self.sweep.workload} is a SIMULATION (analytic performance model, no GPU)", flush=True)
        print(f"run dir: {self.run_dir}", flush=True)
        print(f"trials to run: {self.steps:,} (agent {self.agent_name}, {self.count.valid:,} valid points)", flush=True)

    # ---- the observers (experiment trackers) ----------------------------------------------------
    def _tell_observers(self, what: str, *args: Any) -> None:
        """Call `what` on each observer; an exception is one warning per observer, never the sweep's end (an
        observer whose `start` failed is dropped: it has nowhere to log)."""
        for obs in list(self.observers):
            try:
                getattr(obs, what)(*args)
            except Exception as exc:
                if what == "start":
                    self.observers.remove(obs)
                if id(obs) in self._observer_warned:
                    continue
                self._observer_warned.add(id(obs))
                name = getattr(obs, "name", type(obs).__name__)
                text = scrub_secrets(" ".join(f"{type(exc).__name__}: {exc}".split()))[:300]
                print(f"warning: trial logger {name}: {what} failed ({text}); the sweep goes on, every trial "
                      f"stays in trials.db (dse export {self.run_dir} --to {name} sends them later)",
                      file=sys.stderr, flush=True)

    # ---- the loop ------------------------------------------------------------------------------
    def run(self) -> int:
        """Run the sweep to its end; the observers are closed whatever happens."""
        self._tell_observers("start", self.run_dir)
        try:
            return self._run()
        finally:
            self._tell_observers("close")

    def _run(self) -> int:
        records = self.store.all()
        for rec in records:
            if not rec.status.is_finished:
                self.agent.reserve(rec.action)
            else:
                self.agent.tell(rec.action, self._result(rec))
                self.engine.observe(rec)
                self._tell_observers("on_trial", rec)
        for rec in records:  # jobs of a dead driver: re-attach, or run again
            if not rec.status.is_finished and not self.engine.reattach(rec):
                fin = self.engine.restart(rec)
                if fin:
                    self._on_finished(fin)
        submitted = len(records)
        if not records:
            cached_best = self._warm_start()
            submitted += self._run_baseline()
            if cached_best is not None and cached_best != self.baseline.action:
                # the cache's best: a free cache hit (not one of the `steps` new trials) that makes this run's
                # best the true one
                self._submit(cached_best, "the cache's best result for this space (warm start)", unasked=True)
        exhausted = False
        with Interrupts() as stop, Progress(self.steps) as progress:
            while True:
                progress.update(self.store.all, self.started)
                while (stop.count == 0 and not exhausted and submitted < self.steps
                       and len(self.engine.in_flight) < self.parallel):
                    action = self.agent.ask()
                    if action is None:
                        exhausted = True
                        break
                    submitted += 1
                    self._submit(action, self._explain(action))
                if stop.count >= 2 or not self.engine.in_flight:
                    break
                for fin in self.engine.poll():
                    self._on_finished(fin)
                self._write_outputs(force=False)
                time.sleep(min(self.sweep.system.poll_interval_s, 0.2) if self.engine.in_flight else 0)
            stopped = stop.count > 0
        self._write_outputs(force=True)
        recs = self.store.all()
        left = [r for r in recs if not r.status.is_finished]
        failed = [r for r in recs if r.status.is_failure]
        best = best_record(recs)
        print(f"done: {len(recs)} trials ({counts_text(recs)}); {gpu_hours_text(recs, self.sweep.kind.simulated)}"
              + (f"; best trial {best.trial}: {format_metrics(best.metrics)}" if best else "; no success"),
              flush=True)
        if left or (stopped and not exhausted and submitted < self.steps):
            print(f"resume with: dse resume {self.run_dir}", flush=True)
        elif best is not None:
            print(f"next: dse best {self.run_dir}  (dse report {self.run_dir} for the figures)", flush=True)
        return 1 if best is None or any(r.reason not in DETERMINISTIC_FAILURES for r in failed) else 0

    def _warm_start(self, limit: int = 20_000) -> Action | None:
        """Tell a model-based agent what the shared cache already knows about this space, before it asks;
        returns the cache's best point of the space (re-run as a free cache hit, so the run's best is true)."""
        cache = self.engine.cache
        if (cache is None or not getattr(self.agent, "warm_start", False) or self.space.env.dimensions
                or self.count.valid > limit):
            return None
        told = 0
        best: tuple[float, Action] | None = None
        metrics = list(self.sweep.test.agent_metrics)
        for index in self.space.iter_valid():
            action = self.space.agent.decode(index)
            entry = cache.get(config_hash(self.engine.config_payload(self.space.resolve(action))))
            if entry is None:
                continue
            if entry.status == "completed" and all(m in entry.metrics for m in metrics):
                values = [entry.metrics[m] for m in metrics]
                reward = score(self.engine.reward_name, values, True)
                self.agent.tell(action, TrialResult(reward=reward, status=TrialStatus.CACHED, values=values))
                told += 1
                if best is None or reward > best[0]:
                    best = (reward, action)
            elif entry.status == "failed":
                self.agent.tell(action, TrialResult(reward=-math.inf, status=TrialStatus.FAILED, values=[],
                                                    reason=entry.reason))
                told += 1
        if told:
            whom = "the optuna study" if self.agent_name == "optuna" else f"agent {self.agent_name}"
            print(f"warm start: told {whom} {told} cached results of this space", flush=True)
        return None if best is None else best[1]

    def _result(self, rec: TrialRecord) -> TrialResult:
        """What the agent hears of a finished record: values in agent_metrics order (a cached record keeps the
        cache entry's order in `rec.metrics`)."""
        metrics = self.sweep.test.agent_metrics
        done = (rec.status.is_success or rec.status is TrialStatus.PRUNED) and all(m in rec.metrics for m in metrics)
        result = rec.result([float(rec.metrics[m]) for m in metrics] if done else [])
        if rec.reward is None:
            result.reward = -math.inf
        return result

    def _run_baseline(self) -> int:
        """Measure the preset's configuration first (the trial every speed-up is against); 1 if it was run."""
        base = self.baseline
        self.store.set_meta("baseline", {"action": base.action, "why": base.why})
        if base.action is None or self.steps < 1:
            print(f"baseline: none ({base.why})", flush=True)
            return 0
        print(f"baseline: {base.action} ({base.why})", flush=True)
        # never stopped early: every speed-up is against its full run
        self._submit(base.action, f"baseline: {base.why}", unasked=True, prunable=False)
        return 1

    def _submit(self, action: Action, note: str | None, *, unasked: bool = False, prunable: bool = True) -> None:
        """Start a trial, and report it at once when it ended on the spot (infeasible, a cache hit). An action
        the agent did not ask for is reserved first, so that it never proposes it too."""
        if unasked:
            self.agent.reserve(action)
        fin = self.engine.submit(action, use_cache=not self.opts.no_cache, note=note, prunable=prunable)
        if fin:
            self._on_finished(fin)

    def _explain(self, action: Action) -> str | None:
        """The agent's reason for a proposal (a model-guided agent's prediction), kept in the trial's `note`."""
        explain = getattr(self.agent, "explain", None)
        if explain is None:
            return None
        note = explain(action)
        return None if note is None else " ".join(str(note).split())[:300]

    def _on_finished(self, fin: Finished) -> None:
        rec = fin.record
        self.agent.tell(rec.action, self._result(rec))
        elapsed = time.time() - self.started
        shown = format_metrics(rec.metrics) or (rec.error or "")[:120]
        print(f"[{elapsed:7.1f}s] trial {rec.trial:>4} {rec.status:<10} {rec.action} {shown}", flush=True)
        self._tell_observers("on_trial", rec)
        self._dirty = True
        self._write_outputs(force=False)

    def _write_outputs(self, force: bool = True) -> None:
        """trials.csv and best.toml from the store; during the loop at most every EXPORT_EVERY_S seconds.

        Rebuilding the table after every trial made the driver's cost per trial grow with the sweep; the
        store (trials.db) is written per trial, so nothing is lost between exports.
        """
        now = time.monotonic()
        if not force and (not self._dirty or now - self._exported < EXPORT_EVERY_S):
            return
        self._dirty, self._exported = False, now
        recs = self.store.all()
        df = frame(recs, self.space.agent.names, self.space.env.names, list(self.sweep.test.agent_metrics))
        write_csv_atomic(df, self.run_dir / "trials.csv")
        best = best_record(recs)
        if best is not None:
            write_text_atomic(self.run_dir / "best.toml", best_toml(self.store.get_meta("sweep_data"), best))


def safe_dir_name(name: str, limit: int = 100) -> str:
    """`name` as one directory name: secrets scrubbed, only [A-Za-z0-9._-] (any other run of characters is
    one `_`), no run of dots (never `..`), no leading dot or dash, at most `limit` characters, never empty."""
    text = re.sub(r"[^A-Za-z0-9._-]+", "_", scrub_secrets(str(name)))
    text = re.sub(r"\.{2,}", ".", text)
    text = text.lstrip("._-")[:limit].rstrip("._-")
    return text or "sweep"


def _first_missing(path: Path) -> Path | None:
    """The outermost folder of `path` that does not exist yet (what creating `path` would create), or None."""
    missing = None
    for p in (path, *path.parents):
        if p.exists():
            break
        missing = p
    return missing


def new_run_dir(out: Path, name: str) -> Path:
    """A new run directory `OUT/<safe name>-<YYYYmmdd-HHMMSS>[-n]` (always directly under `out`)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    name = safe_dir_name(name)
    path = out / f"{name}-{stamp}"
    n = 1
    while path.exists():
        n += 1
        path = out / f"{name}-{stamp}-{n}"
    return path


def run_sweep(sweep: Sweep, opts: RunOptions, make_agent: AgentFactory) -> int:
    """`dse run`: a new run directory under `opts.out`."""
    run_dir = new_run_dir(Path(opts.out), sweep.name)
    runner = SweepRunner(sweep, run_dir, opts, make_agent)
    return runner.run()


def _restore_redacted_env(sweep: Sweep, run_dir: Path) -> None:
    """sweep.toml holds `***` for secret extra_env_vars: a resumed run takes them from the environment again."""
    for name, value in list(sweep.test.extra_env_vars.items()):
        if value != REDACTED:
            continue
        if not os.environ.get(name):
            raise InputError(f"is a secret kept out of the run dir; export {name} and resume again",
                             file=str(run_dir), field=f"extra_env_vars.{name}")
        sweep.test.extra_env_vars[name] = os.environ[name]


def resume_sweep(run_dir: Path, make_agent: AgentFactory, parallel: int | None = None,
                 observers: Sequence[TrialObserver] = (), log_to: Sequence[str] | None = None) -> int:
    """`dse resume`: finish a sweep whose driver died. `log_to` (default: the run's own) is recorded; the CLI
    makes the `observers` for it."""
    run_dir = Path(run_dir)
    if not (run_dir / "trials.db").is_file() or not (run_dir / "sweep.toml").is_file():
        raise InputError("not a dse run directory (needs trials.db and sweep.toml)", file=str(run_dir))
    with TrialStore(run_dir / "trials.db") as store:
        options = dict(store.get_meta("options", {}))
        system = SystemConfig.model_validate(store.get_meta("system", {}))
        opts = RunOptions(agent=store.get_meta("agent"), steps=store.get_meta("steps"),
                          parallel=parallel or int(options.get("parallel") or 1), seed=store.get_meta("seed"),
                          out=run_dir.parent, cache=Path(options["cache"]) if options.get("cache") else None,
                          no_cache=bool(options.get("no_cache")), executor=options.get("executor"),
                          time_scale=options.get("time_scale"),
                          early_stopping=bool(options.get("early_stopping")),
                          log_to=list(options.get("log_to") or []) if log_to is None else list(log_to),
                          trial_observers=list(observers))
    sweep = load_sweep(run_dir / "sweep.toml")
    sweep.system = system
    _restore_redacted_env(sweep, run_dir)
    print(f"resuming {run_dir}", flush=True)
    return SweepRunner(sweep, run_dir, opts, make_agent, resumed=True).run()
