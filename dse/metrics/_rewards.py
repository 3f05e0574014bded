"""Reward functions by name: an observation (agent metrics, in order) -> a float, higher is better.

The built-ins are CloudAI's generic formulas (docs/reference/cloudai-dse.md §1.6). Unlike CloudAI, failure is
not an observation: `score` gives a failed or infeasible trial `FAILED_REWARD` (-inf), below every
successful trial under every function (CloudAI's -1.0 sentinel made failures win under `negative`).
Plugins register with `@register_reward("name")` or the entry-point group `dse.metrics._rewards`.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from importlib import metadata

RewardFunction = Callable[[Sequence[float]], float]
ENTRY_POINT_GROUP = "dse.metrics._rewards"
FAILED_REWARD: float = float("-inf")
_LOWEST_SUCCESS = -sys.float_info.max  # a successful -inf is clamped here, strictly above FAILED_REWARD
_HIGHEST_SUCCESS = sys.float_info.max  # and a +inf (1/1e-320 under `inverse`) here: a reward is always finite

_REGISTRY: dict[str, RewardFunction] = {}


def register_reward(name: str) -> Callable[[RewardFunction], RewardFunction]:
    """Decorator registering a reward function under `name`; a name can be taken only once."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"reward function name must be a non-empty string, got {name!r}")

    def decorate(fn: RewardFunction) -> RewardFunction:
        if name in _REGISTRY:
            raise ValueError(f"reward function {name!r} is already registered")
        if not callable(fn):
            raise ValueError(f"reward function {name!r} is not callable")
        _REGISTRY[name] = fn
        return fn

    return decorate


@register_reward("inverse")
def inverse(obs: Sequence[float]) -> float:
    """1/obs[0] (e.g. iterations per second from step time); 0.0 for an empty or zero observation."""
    if not obs or obs[0] == 0:
        return 0.0
    return 1.0 / obs[0]


@register_reward("negative")
def negative(obs: Sequence[float]) -> float:
    """-obs[0]: minimise the metric; 0.0 for an empty observation."""
    return -obs[0] if obs else 0.0


@register_reward("identity")
def identity(obs: Sequence[float]) -> float:
    """obs[0]: maximise the metric (e.g. tokens/s/GPU); 0.0 for an empty observation."""
    return obs[0] if obs else 0.0


def _entry_points() -> dict[str, metadata.EntryPoint]:
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def reward_names() -> list[str]:
    """Registered names plus installed plugins, sorted."""
    return sorted(set(_REGISTRY) | set(_entry_points()))


def get_reward(name: str) -> RewardFunction:
    """The function registered as `name` (loading a plugin on first use); KeyError lists the known names."""
    fn = _REGISTRY.get(name)
    if fn is not None:
        return fn
    ep = _entry_points().get(name) if isinstance(name, str) else None
    if ep is None:
        raise KeyError(f"reward function {name!r} not found; known: {', '.join(reward_names())}")
    loaded = ep.load()
    if not callable(loaded):
        raise KeyError(f"reward function {name!r} (entry point {ep.value}) is not callable")
    _REGISTRY.setdefault(name, loaded)
    return _REGISTRY[name]


def score(name: str, observation: Sequence[float] | None, ok: bool) -> float:
    """Reward of one trial: FAILED_REWARD when it failed, has no observation, or the function gives NaN.

    A successful trial's reward is finite: never below the lowest finite float, so it always beats a failure,
    and never +inf (`dse.metrics._catalogue.metric_value` already refuses the impossible metrics, such as a step time of
    0 or 1e-320, that would give one; this bound keeps a plugin's or an old cache entry's +inf out of tables).
    """
    fn = get_reward(name)
    if not ok or observation is None:
        return FAILED_REWARD
    value = float(fn(list(observation)))
    if math.isnan(value):
        return FAILED_REWARD
    return min(max(value, _LOWEST_SUCCESS), _HIGHEST_SUCCESS)


def is_better(a: float, b: float) -> bool:
    """Reward `a` strictly better than `b` (higher wins; NaN counts as a failure)."""
    a = FAILED_REWARD if a is None or math.isnan(a) else a
    b = FAILED_REWARD if b is None or math.isnan(b) else b
    return a > b
