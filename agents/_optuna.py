"""Optuna agent: ask-and-tell on an Optuna study stored in the run directory.

The study lives in `storage_dir/optuna.db` so Optuna's own tools (optuna-dashboard, `load_study`) can
open it. Optuna knows nothing of our rules or of which points already ran, so the sampler is wrapped
(`RepairingSampler`): a proposal that is pruned, evaluated or in flight becomes the nearest point that is
none of these, and the trial carries that point. Pruned proposals are also told to the study as FAIL
trials marked `dse_not_run = "invalid"` and infeasible; they are never returned. A trial that ran out of memory or was
rejected by the framework is told as infeasible (the `dse_infeasible` constraint) to samplers that read
constraints (TPE, NSGA-II), so they learn where configurations do not fit; other failures are FAIL.
"""

from __future__ import annotations

import importlib.util
import math
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.study import StudyDirection
from optuna.trial import TrialState
from pydantic import field_validator

from dse.errors import InputError
from dse.metrics import is_step_time
from dse.trial import TrialResult

from ._base import Agent, AgentConfig, register_agent
from ._repairing_sampler import RepairingSampler

SAMPLERS = ("tpe", "gp", "cmaes", "nsga2", "qmc", "random")
DIRECTIONS = ("minimize", "maximize")
SMALL_SPACE = 1 << 20
# TPE defaults where ours differ from Optuna's: constant liar for trials in flight; fewer random start-up
# trials and more candidates per ask, because a trial here is a GPU job, not a function call (measured with
# benchmarks/bench_agents.py's spaces, mean over 120 seeds: 3.2/3.6/3.3% of the valid points to the optimum
# against 3.8/3.6/3.6% with Optuna's defaults).
TPE_DEFAULTS = {"constant_liar": True, "multivariate": True, "n_startup_trials": 5, "n_ei_candidates": 64}
CONSTRAINED_SAMPLERS = ("tpe", "nsga2")
INFEASIBLE = "dse_infeasible"  # the constraint a trial violates when it ran out of memory or was rejected
SKIP_ATTR = "dse_not_run"  # user attr on trials that were proposals, not evaluations
_NEEDS = {"gp": ("torch", "scipy"), "cmaes": ("cmaes",), "qmc": ("scipy",)}
_PLAIN = (bool, int, float, str)

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _choices(values: tuple[Any, ...]) -> tuple[Any, ...]:
    """Optuna choices for one dimension: the values themselves when Optuna can store and tell them apart."""
    plain = all(v is None or type(v) in _PLAIN for v in values)
    distinct = all(a != b for i, a in enumerate(values) for b in values[i + 1:])
    return tuple(values) if plain and distinct else tuple(repr(v) for v in values)


def make_sampler(name: str, seed: int, kwargs: Mapping[str, Any], file: str | None) -> optuna.samplers.BaseSampler:
    """The sampler `agent_config.sampler` names; optional-dependency samplers fail early and clearly."""
    field = "agent_config.sampler"
    if name not in SAMPLERS:
        raise InputError(f"unknown sampler '{name}'; known: {', '.join(SAMPLERS)}", file=file, field=field)
    missing = [m for m in _NEEDS.get(name, ()) if importlib.util.find_spec(m) is None]
    if missing:
        raise InputError(
            f"sampler '{name}' needs the Python package(s) {', '.join(missing)}; install them or use 'tpe'",
            file=file,
            field=field,
        )
    kw = dict(kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            if name == "tpe":
                return optuna.samplers.TPESampler(seed=seed, **(TPE_DEFAULTS | kw))
            if name == "gp":
                return optuna.samplers.GPSampler(seed=seed, **kw)
            if name == "cmaes":
                kw.setdefault("warn_independent_sampling", False)
                return optuna.samplers.CmaEsSampler(seed=seed, **kw)
            if name == "nsga2":
                return optuna.samplers.NSGAIISampler(seed=seed, **kw)
            if name == "qmc":
                kw.setdefault("warn_independent_sampling", False)
                return optuna.samplers.QMCSampler(seed=seed, **kw)
            return optuna.samplers.RandomSampler(seed=seed, **kw)
        except TypeError as exc:
            raise InputError(str(exc), file=file, field="agent_config.sampler_kwargs") from None


class OptunaConfig(AgentConfig):
    """`agent_config` of the optuna agent. Whether `directions` fit the sampler and the agent_metrics is
    checked by the agent, which knows both."""

    sampler: str = "tpe"  # one of SAMPLERS (checked by `make_sampler`, with the optional dependencies)
    sampler_kwargs: dict[str, Any] | None = None  # the sampler constructor's keyword arguments
    directions: list[str] | None = None  # nsga2: "minimize" or "maximize" per agent_metrics entry

    @field_validator("sampler")
    @classmethod
    def _lower(cls, v: str) -> str:
        return v.lower()

    @field_validator("directions", mode="before")
    @classmethod
    def _a_list(cls, v: Any) -> Any:
        if v is not None and not isinstance(v, list):
            raise ValueError("must be a list, one 'minimize' or 'maximize' per agent_metrics entry")
        return v


@register_agent("optuna")
class OptunaAgent(Agent):
    """Optuna ask/tell over one CategoricalDistribution per dimension.

    The study's objective is the first agent metric itself, named and in its own direction (`step-time`,
    minimised, in seconds), so `study.best_value` and optuna-dashboard read as an engineer would; the reward
    stands in only where the metric's direction is unknown or the reward function disagrees with it (then it
    is `reward (...)`, maximised). With `sampler = "nsga2"` and several agent_metrics the study is
    multi-objective over `TrialResult.values` (agent_metrics order; each built-in metric's direction, or
    `agent_config.directions`).
    """

    accepts_env_params = True
    warm_start = True  # the engine tells it the cache's results of this space before its first ask
    config_model = OptunaConfig
    config: OptunaConfig

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        file = str(self.space.sweep.source)
        sampler_name = self.config.sampler
        base = make_sampler(sampler_name, self.seed, self.config.sampler_kwargs or {}, file)
        directions = self._objective_directions(sampler_name, file)
        self.multi = len(directions) > 1
        metric_direction = None if self.multi else self._metric_direction()
        if metric_direction is not None:
            directions = [metric_direction]
        # samplers that read trial constraints learn from infeasible points; the others only get FAIL
        self.constrained = sampler_name in CONSTRAINED_SAMPLERS
        self.dims = self.space.agent.dimensions
        self.choices = {d.path: _choices(d.values) for d in self.dims}  # Optuna's value for each of ours
        self.distributions: dict[str, BaseDistribution] = {
            path: CategoricalDistribution(choices) for path, choices in self.choices.items()
        }
        sampler = RepairingSampler(base, self.distributions, self._repair)
        self.storage: str | None = None
        if self.storage_dir is not None:
            self.storage_dir.mkdir(parents=True, exist_ok=True)
            self.storage = f"sqlite:///{(self.storage_dir / 'optuna.db').resolve()}"
        self.study = optuna.create_study(
            storage=self.storage,
            sampler=sampler,
            study_name=self.study_name,
            directions=directions,
            load_if_exists=True,
        )
        self._attrs: dict[str, Any] = {}
        # the objective: the first metric itself where its direction is known, else the reward; a study
        # reopened from an older run keeps what it was created with
        test = self.space.sweep.test
        first = "step-time" if is_step_time(test.agent_metrics[0]) else test.agent_metrics[0]  # `default` too
        name = first if metric_direction is not None else (
            f"reward ({test.agent_reward_function} of {test.agent_metrics[0]})")
        if not self.multi:
            known = self.study.metric_names
            if known is not None and known[0] != name:
                metric_direction, name = None, known[0]
            elif self.study.directions != directions:
                metric_direction, name = None, "reward"
            self.study.set_metric_names([name])
        self.on_metric = metric_direction is not None  # told values are the metric's, not the reward
        self._rng = np.random.default_rng(self.seed)
        self._trial_of: dict[int, optuna.trial.Trial | int | None] = {}  # in flight -> its trial (None: reserved)
        self._known: dict[int, list[float] | None] = {}  # index -> objective values (None: failed)
        self._stale: dict[int, int] = {}  # RUNNING trials of a loaded study, re-attachable by reserve/tell
        self._rejected: set[int] = set()  # pruned points already told to the study
        self._to_reject: list[dict[str, Any]] = []
        self._approved: int | None = None  # the point the last repair let through
        self.moved = 0  # proposals moved to a neighbour because they were pruned, evaluated or in flight
        self._exhausted = False
        self._load_existing()

    def _metric_direction(self) -> StudyDirection | None:
        """The first agent metric's own direction when the reward function ranks trials the same way (inverse
        or negative of a time, identity of a throughput), else None: the reward is the objective."""
        direction = self.directions[0] if self.directions else None
        agrees = {"minimize": ("inverse", "negative"), "maximize": ("identity",)}
        if direction not in agrees or self.space.sweep.test.agent_reward_function not in agrees[direction]:
            return None
        return StudyDirection[direction.upper()]

    def _objective_directions(self, sampler_name: str, file: str) -> list[StudyDirection]:
        """[MAXIMIZE] (the reward), or with nsga2 and several agent_metrics one direction per metric:
        `agent_config.directions` where given, else each built-in metric's own."""
        given = self.config.directions  # a list: the config model checked that
        field = "agent_config.directions"
        if given is not None and sampler_name != "nsga2":
            raise InputError(f"directions apply to sampler = 'nsga2' (several metrics), not '{sampler_name}'",
                             file=file, field=field)
        if given is not None and self.directions is not None and len(given) != len(self.directions):
            raise InputError(f"{len(given)} directions for {len(self.directions)} agent_metrics", file=file,
                             field=field)
        dirs = given if given is not None else self.directions
        if sampler_name != "nsga2" or dirs is None or len(dirs) < 2:
            return [StudyDirection.MAXIMIZE]
        if not all(d in DIRECTIONS for d in dirs):
            raise InputError(
                f"nsga2 optimises every agent_metrics entry and needs 'minimize' or 'maximize' for each; got {dirs}",
                file=file, field=field,
            )
        return [StudyDirection[str(d).upper()] for d in dirs]

    # ---- translation -----------------------------------------------------------------------------
    def _params(self, index: int) -> dict[str, Any]:
        agent = self.space.agent
        return {
            d.path: self.choices[d.path][index // stride % radix]
            for d, radix, stride in zip(self.dims, agent.radices, agent.strides, strict=True)
        }

    def _index_of_params(self, params: Mapping[str, Any]) -> int:
        index = 0
        for d, radix in zip(self.dims, self.space.agent.radices, strict=True):
            index = index * radix + self.choices[d.path].index(params[d.path])
        return index

    def _objective(self, result: TrialResult) -> list[float] | None:
        """The values Optuna is told, or None for FAIL (no usable measurement)."""
        if not result.ok:
            return None
        if not self.multi and not self.on_metric:
            return [float(result.reward)]
        vals = [float(v) for v in result.values][:len(self.study.directions)]  # one objective: the first metric
        if len(vals) != len(self.study.directions) or not all(math.isfinite(v) for v in vals):
            return None
        return vals

    def _load_existing(self) -> None:
        """A reopened study: finished trials are known points, RUNNING ones may be re-attached."""
        for t in self.study.get_trials(deepcopy=False):
            if set(t.params) != set(self.distributions):
                continue
            try:
                index = self._index_of_params(t.params)
            except (KeyError, ValueError):
                continue  # the sweep changed since; the trial does not map onto this space
            mark = t.user_attrs.get(SKIP_ATTR)
            if mark == "invalid":
                self._rejected.add(index)
            elif mark is not None:
                continue  # a proposal that was never run
            elif t.state == TrialState.COMPLETE and any(v > 0 for v in t.constraints.values()):
                self._known[index] = None  # ran and did not fit, or was rejected by the framework
            elif t.state == TrialState.COMPLETE and self.space.is_valid(index):
                self._known[index] = list(t.values)
            elif t.state == TrialState.FAIL:
                self._known.setdefault(index, None)
            elif t.state == TrialState.RUNNING:
                self._stale[index] = t.number

    def _reject(self, trial: optuna.trial.Trial, why: str) -> None:
        """FAIL a proposal that was never run; the mark keeps a reopened study from reading it as a failure."""
        trial.set_user_attr(SKIP_ATTR, why)
        self.study.tell(trial, state=TrialState.FAIL)

    def _all_seen(self) -> bool:
        """Every valid point evaluated or in flight (checked only where the valid set is cheap to hold)."""
        if self.space.agent.size > SMALL_SPACE:
            return False
        valid = self.space.valid_indices()
        if len(self.told) + len(self.in_flight) + len(self._known) < valid.size:  # cheap: this runs every ask
            return False
        taken = self._taken()
        return bool(np.isin(valid, np.fromiter(taken, dtype=np.int64)).all())

    def _drop_stale(self) -> None:
        """RUNNING trials of a reopened study that the replay did not re-attach: the run lost them."""
        if not self._stale or self.storage is None:
            return
        storage = optuna.storages.get_storage(self.storage)
        study_id = storage.get_study_id_from_name(self.study_name)
        for number in self._stale.values():
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, number)
            storage.set_trial_user_attr(trial_id, SKIP_ATTR, "lost")
            self.study.tell(number, state=TrialState.FAIL)
        self._stale.clear()

    def _worst(self) -> list[float]:
        """The value an infeasible trial is told: worse than anything (its constraint keeps it out of the best)."""
        return [-math.inf if d == StudyDirection.MAXIMIZE else math.inf for d in self.study.directions]

    def _tell_trial(self, trial: optuna.trial.Trial | int, values: list[float] | None, infeasible: bool) -> None:
        if isinstance(trial, optuna.trial.Trial):
            for key, value in self._attrs.items():
                trial.set_user_attr(key, value)
        if infeasible and self.constrained and isinstance(trial, optuna.trial.Trial):
            trial.set_constraint(INFEASIBLE, 1.0)
            self.study.tell(trial, self._worst())
        elif values is None:
            self.study.tell(trial, state=TrialState.FAIL)
        else:
            self.study.tell(trial, values if self.multi else values[0])

    def _tell_pruned(self, trial: optuna.trial.Trial | int | None, index: int, partial: float) -> None:
        """A trial stopped early: its last intermediate value is the (optimistic) partial reward, its state
        PRUNED, so TPE ranks it below the completed trials, as Optuna's own pruners leave it."""
        if not math.isfinite(partial):  # worse than any real value (a reward of 0, an infinite step time)
            partial = 0.0 if self.study.directions[0] == StudyDirection.MAXIMIZE else math.inf
        if isinstance(trial, optuna.trial.Trial):
            for key, value in self._attrs.items():
                trial.set_user_attr(key, value)
            trial.report(partial, step=0)
            self.study.tell(trial, state=TrialState.PRUNED)
        elif trial is None:
            self.study.add_trial(optuna.trial.create_trial(
                params=self._params(index), distributions=self.distributions, state=TrialState.PRUNED,
                intermediate_values={0: partial}, user_attrs=dict(self._attrs)))
        else:
            self.study.tell(trial, state=TrialState.PRUNED)

    def _add_trial(self, params: dict[str, Any], values: list[float] | None, infeasible: bool) -> None:
        """A trial the sampler did not ask for (warm start, resume replay), so it learns from it."""
        kw: dict[str, Any]
        if infeasible and self.constrained:
            kw = {"values": self._worst(), "constraints": {INFEASIBLE: 1.0}}
        elif values is None:
            kw = {"state": TrialState.FAIL}
        else:
            kw = {"values": values}
        self.study.add_trial(optuna.trial.create_trial(params=params, distributions=self.distributions,
                                                       user_attrs=dict(self._attrs), **kw))

    # ---- ask/tell ----------------------------------------------------------------------------------
    def _taken(self) -> set[int]:
        """Points never to propose: evaluated (in this run or a reopened study) or in flight."""
        return self.seen() | set(self._known)

    def _usable(self, index: int) -> bool:
        """`index not in self._taken()`, without building the set."""
        return index not in self._known and index not in self.in_flight and index not in self.told

    def _nearest_unseen(self, index: int) -> int | None:
        """A random unseen valid point one dimension away from `index`, else two away, else anywhere."""
        frontier = np.array([index], dtype=np.int64)
        for _ in range(2):
            frontier = self.space.agent.neighbours(frontier)
            cands = [i for i in frontier[self.space.valid_among(frontier)].tolist() if self._usable(i)]
            if cands:
                return cands[int(self._rng.integers(len(cands)))]
        return self.space.sample_valid(self._rng, exclude=self._taken())

    def _repair(self, params: dict[str, Any]) -> dict[str, Any] | None:
        """The sampler's proposal if it can run, else the nearest point that can (None: none is left).
        A pruned proposal is noted, to be told to the study as infeasible."""
        index = self._index_of_params(params)
        if not self.space.is_valid(index):
            if index not in self._rejected:
                self._rejected.add(index)
                self._to_reject.append(params)
        elif self._usable(index):
            self._approved = index
            return params
        near = self._nearest_unseen(index)
        if near is None:
            return None
        self.moved += 1
        self._approved = near
        return self._params(near)

    def _tell_rejected(self) -> None:
        """Pruned proposals go into the study as infeasible (the `dse_infeasible` constraint) but FAIL, marked
        not-run, so samplers skip them. As COMPLETE infeasible trials, as out-of-memory points are told, they
        made TPE need more trials, not fewer (measured on the simulator spaces)."""
        for params in self._to_reject:
            self.study.add_trial(optuna.trial.create_trial(
                params=params, distributions=self.distributions, state=TrialState.FAIL,
                user_attrs={SKIP_ATTR: "invalid"}, constraints={INFEASIBLE: 1.0}))
        self._to_reject.clear()

    def ask(self) -> dict[str, Any] | None:
        if self._exhausted or self._all_seen():
            self._exhausted = True
            return None
        self._drop_stale()
        self._approved = None
        trial = self.study.ask(self.distributions)
        self._tell_rejected()
        index = self._index_of_params(trial.params)
        if index != self._approved and not (self.space.is_valid(index) and self._usable(index)):
            self._reject(trial, "exhausted")  # the repair found nothing left to run
            self._exhausted = True
            return None
        self.in_flight.add(index)
        self._trial_of[index] = trial
        return self.space.agent.decode(index)

    def reserve(self, action: Mapping[str, Any]) -> None:
        index = self.index_of(action)
        self.in_flight.add(index)
        self._trial_of.setdefault(index, self._stale.pop(index, None))

    def tell(self, action: Mapping[str, Any], result: TrialResult) -> None:
        index = self.index_of(action)
        values = self._objective(result)
        # which dse trial each study trial is; results the cache told before the run are marked as such
        self._attrs = {"dse_trial": result.trial} if result.trial is not None else (
            {"dse_cached": True} if result.status == "cached" else {})
        trial = self._trial_of.pop(index, None)
        if trial is None:
            trial = self._stale.pop(index, None)
        if result.censored and not self.multi:  # stopped early: an optimistic partial value, told as PRUNED
            partial = result.values[0] if self.on_metric and result.values else result.reward
            self._tell_pruned(trial, index, float(partial))
        elif trial is not None:
            self._tell_trial(trial, values, result.infeasible)
        elif index not in self._known or (values is not None and self._known[index] is None):
            self._add_trial(self._params(index), values, result.infeasible)  # unasked: warm start, replay
        if values is not None or index not in self._known:
            self._known[index] = values
        self._record(index, result)
