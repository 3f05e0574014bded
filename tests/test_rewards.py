"""Reward functions: CloudAI's formulas, the plugin registry, and failures always ranking last."""

from __future__ import annotations

import math
from importlib import metadata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dse.metrics import FAILED_REWARD, get_reward, is_better, register_reward, reward_names, score
from dse.metrics import _rewards as rewards


@pytest.mark.parametrize(
    ("name", "obs", "expected"),
    [
        ("inverse", [4.0], 0.25),
        ("inverse", [0.0], 0.0),
        ("inverse", [], 0.0),
        ("negative", [2.5, 9.0], -2.5),
        ("negative", [], 0.0),
        ("identity", [3.0, 1.0], 3.0),
        ("identity", [], 0.0),
    ],
)
def test_builtin_formulas(name: str, obs: list[float], expected: float) -> None:
    assert get_reward(name)(obs) == expected


def test_names_sorted_and_unknown_lists_known() -> None:
    names = reward_names()
    assert names == sorted(names)
    assert {"inverse", "negative", "identity"} <= set(names)
    with pytest.raises(KeyError, match="inverse, .*negative"):
        get_reward("nope")


def test_register_and_duplicate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rewards, "_REGISTRY", dict(rewards._REGISTRY))

    @register_reward("double_first")
    def double_first(obs: list[float]) -> float:
        return 2 * obs[0]

    assert "double_first" in reward_names()
    assert score("double_first", [1.5], ok=True) == 3.0
    with pytest.raises(ValueError, match="already registered"):
        register_reward("double_first")(double_first)
    with pytest.raises(ValueError, match="already registered"):
        register_reward("inverse")(double_first)


def test_entry_point_plugins_are_listed_and_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rewards, "_REGISTRY", dict(rewards._REGISTRY))
    ep = metadata.EntryPoint(name="plugin_mean", value="statistics:mean", group="dse.metrics._rewards")
    original = metadata.entry_points

    def fake_entry_points(**kw: str) -> metadata.EntryPoints:
        if kw.get("group") == "dse.metrics._rewards":
            return metadata.EntryPoints([ep])
        return original(**kw)

    monkeypatch.setattr(rewards.metadata, "entry_points", fake_entry_points)
    assert "plugin_mean" in reward_names()
    assert get_reward("plugin_mean")([3.0, 5.0]) == 4.0
    assert score("plugin_mean", [1.0, 2.0], ok=True) == 1.5


def test_failures_score_minus_inf_and_nan_counts_as_failure() -> None:
    assert score("inverse", [2.0], ok=True) == 0.5
    assert score("negative", [2.0], ok=False) == FAILED_REWARD
    assert score("identity", None, ok=True) == FAILED_REWARD
    assert score("identity", [float("nan")], ok=True) == FAILED_REWARD
    with pytest.raises(KeyError):
        score("nope", [1.0], ok=False)


@given(
    st.sampled_from(["inverse", "negative", "identity"]),
    st.floats(allow_nan=False),
    st.one_of(st.none(), st.lists(st.floats(allow_nan=True), max_size=3)),
)
def test_a_failed_run_never_beats_a_successful_one(
    name: str, metric: float, failed_obs: list[float] | None
) -> None:
    """CloudAI's -1.0 failure sentinel scored +1.0 under `negative`; here failure is always last."""
    good = score(name, [metric], ok=True)
    bad = score(name, failed_obs, ok=False)
    assert is_better(good, bad)
    assert not is_better(bad, good)


def test_is_better_is_strict_and_nan_is_worst() -> None:
    assert is_better(1.0, 0.5)
    assert not is_better(1.0, 1.0)
    assert is_better(-1e300, FAILED_REWARD)
    assert is_better(0.0, float("nan"))
    assert not is_better(float("nan"), FAILED_REWARD)
    assert math.isinf(FAILED_REWARD) and FAILED_REWARD < 0
