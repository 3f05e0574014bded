"""Optuna agent: ask-and-tell on an Optuna study stored in the run directory.

The study lives in `storage_dir/optuna.db` so Optuna's own tools (optuna-dashboard, `load_study`) can
open it. Optuna knows nothing of our rules, so invalid proposals are told FAIL and never returned;
a proposal of a point already evaluated (or in flight) is told its known value (or FAIL) and re-asked,
and after many useless proposals in a row the agent falls back to a random unseen valid point.
"""

from __future__ import annotations

import importlib.util
import math
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from agents.base import Agent, TrialResult, register_agent
from dse.errors import InputError

SAMPLERS = ("tpe", "gp", "cmaes", "nsga2", "qmc", "random")
CONFIG_KEYS = ("sampler", "sampler_kwargs", "max_useless")
MAX_USELESS = 50
SMALL_SPACE = 1 << 20
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
                kw.setdefault("constant_liar", True)
                kw.setdefault("multivariate", True)
                return optuna.samplers.TPESampler(seed=seed, **kw)
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


@register_agent("optuna")
class OptunaAgent(Agent):
    """Optuna ask/tell over one CategoricalDistribution per dimension; maximises the reward.

    With `sampler = "nsga2"` and several `directions` the study is multi-objective over
    `TrialResult.values` (agent_metrics order) instead of the scalar reward.
    """

    accepts_env_params = True

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        file = str(self.space.sweep.source)
        unknown = sorted(set(self.config) - set(CONFIG_KEYS))
        if unknown:
            raise InputError(
                f"unknown key '{unknown[0]}' for the optuna agent; known: {', '.join(CONFIG_KEYS)}",
                file=file,
                field="agent_config",
            )
        sampler_name = str(self.config.get("sampler", "tpe")).lower()
        self.max_useless = int(self.config.get("max_useless", MAX_USELESS))
        sampler = make_sampler(sampler_name, self.seed, self.config.get("sampler_kwargs") or {}, file)
        self.multi = sampler_name == "nsga2" and self.directions is not None and len(self.directions) > 1
        directions = self.directions if self.multi else ["maximize"]
        self.dims = self.space.agent.dimensions
        self.distributions = {d.path: CategoricalDistribution(_choices(d.values)) for d in self.dims}
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
        self._rng = np.random.default_rng(self.seed)
        self._trial_of: dict[int, int | None] = {}  # in-flight index -> trial number (None: fallback/reserved)
        self._known: dict[int, list[float] | None] = {}  # index -> objective values (None: failed)
        self._stale: dict[int, int] = {}  # RUNNING trials of a loaded study, re-attachable by reserve/tell
        self._exhausted = False
        self._load_existing()

    # ---- translation -----------------------------------------------------------------------------
    def _params(self, index: int) -> dict[str, Any]:
        digits = self.space.agent.digits(np.array([index]))[:, 0]
        return {d.path: self.distributions[d.path].choices[int(k)] for d, k in zip(self.dims, digits, strict=True)}

    def _index_of_params(self, params: Mapping[str, Any]) -> int:
        index = 0
        for d, radix in zip(self.dims, self.space.agent.radices, strict=True):
            index = index * radix + self.distributions[d.path].choices.index(params[d.path])
        return index

    def _objective(self, result: TrialResult) -> list[float] | None:
        """The values Optuna is told, or None for FAIL (no usable measurement)."""
        if not result.ok:
            return None
        if not self.multi:
            return [float(result.reward)]
        vals = [float(v) for v in result.values]
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
            if t.state == TrialState.COMPLETE and self.space.is_valid(index):
                self._known[index] = list(t.values)
            elif t.state == TrialState.FAIL and SKIP_ATTR not in t.user_attrs:
                self._known.setdefault(index, None)  # a real failure, not a rejected proposal
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
        taken = np.fromiter(self.seen() | set(self._known), dtype=np.int64)
        return bool(np.isin(valid, taken).all())

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

    def _tell_trial(self, number: int, values: list[float] | None) -> None:
        if values is None:
            self.study.tell(number, state=TrialState.FAIL)
        else:
            self.study.tell(number, values if self.multi else values[0])

    # ---- ask/tell ----------------------------------------------------------------------------------
    def ask(self) -> dict[str, Any] | None:
        if self._exhausted or self._all_seen():
            self._exhausted = True
            return None
        self._drop_stale()
        for _ in range(self.max_useless):
            trial = self.study.ask(self.distributions)
            index = self._index_of_params(trial.params)
            if not self.space.is_valid(index):
                self._reject(trial, "invalid")
            elif index in self._known:
                trial.set_user_attr(SKIP_ATTR, "duplicate")
                self._tell_trial(trial.number, self._known[index])
            elif index in self.in_flight or index in self.told:
                self._reject(trial, "in_flight")
            else:
                self.in_flight.add(index)
                self._trial_of[index] = trial.number
                return self.space.agent.decode(index)
        index = self.space.sample_valid(self._rng, exclude=self.seen() | set(self._known))
        if index is None:
            self._exhausted = True
            return None
        self.in_flight.add(index)
        self._trial_of[index] = None
        return self.space.agent.decode(index)

    def reserve(self, action: Mapping[str, Any]) -> None:
        index = self.index_of(action)
        self.in_flight.add(index)
        self._trial_of.setdefault(index, self._stale.pop(index, None))

    def tell(self, action: Mapping[str, Any], result: TrialResult) -> None:
        index = self.index_of(action)
        values = self._objective(result)
        number = self._trial_of.pop(index, None)
        if number is None:
            number = self._stale.pop(index, None)
        if number is not None:
            self._tell_trial(number, values)
        elif index not in self._known or (values is not None and self._known[index] is None):
            # unasked (warm start, replay) or a fallback point: add it so the sampler learns from it
            kw: dict[str, Any] = {"state": TrialState.FAIL} if values is None else (
                {"values": values} if self.multi else {"value": values[0]}
            )
            self.study.add_trial(
                optuna.trial.create_trial(params=self._params(index), distributions=self.distributions, **kw)
            )
        if values is not None or index not in self._known:
            self._known[index] = values
        self._record(index, result)
