"""agents: grid, random and optuna behind ask/tell; resume, warm start, env_params refusal, plugin registry."""

from __future__ import annotations

import importlib.util
import sys
import types
from importlib import metadata
from pathlib import Path
from typing import Any

import optuna
import pytest

from dse.agents._base import Agent, agent_classes, agent_names, create_agent, register_agent, unregister_agent
from dse.agents._optuna import _choices
from dse.errors import InputError
from dse.space import SweepSpace
from dse.spec import load_sweep
from dse.trial import TrialResult

MB_TOML = """
name = "mb"
test_template_name = "MegatronBridgeSim"
[cmd_args]
gpu_type = "h100"
num_gpus = 8
model_family_name = "llama"
model_recipe_name = "llama3_8b"
tp = [1, 2, 4, 8]
pp = [1, 2]
mb = [1, 2]
gb = 128
"""


def sweep_space(tmp_path: Path, text: str, name: str = "sweep.toml") -> SweepSpace:
    path = tmp_path / name
    path.write_text(text)
    return SweepSpace(load_sweep(path))


def command_space(tmp_path: Path, extra: str = "", x: str = "[0, 1, 2, 3, 4, 5, 6, 7]") -> SweepSpace:
    text = f'name = "c"\ntest_template_name = "Command"\n{extra}\n[cmd_args]\ncommand = "echo {{x}} {{y}}"\n'
    text += f"x = {x}\ny = [0, 1, 2, 3, 4, 5, 6, 7]\n"
    return sweep_space(tmp_path, text, "command.toml")


@pytest.fixture
def mb_space(tmp_path: Path) -> SweepSpace:
    return sweep_space(tmp_path, MB_TOML)


def ok(reward: float) -> TrialResult:
    return TrialResult(reward=reward, status="completed", values=[-reward])


FAILED = TrialResult(reward=float("-inf"), status="failed", values=[])


def toy_reward(action: dict[str, Any]) -> float:
    return float(-abs(action["tp"] - 4) - abs(action["mb"] - 2))


def drive(agent: Agent, space: SweepSpace, in_flight: int, limit: int = 1000) -> list[int]:
    """Run ask/tell keeping `in_flight` asks outstanding; returns the asked indices in order."""
    asked: list[tuple[dict[str, Any], int]] = []
    pending: list[dict[str, Any]] = []
    while len(asked) < limit:
        while len(pending) < in_flight:
            action = agent.ask()
            if action is None:
                break
            asked.append((action, space.agent.encode(action)))
            pending.append(action)
        if not pending:
            break
        action = pending.pop(0)
        agent.tell(action, ok(toy_reward(action)) if "tp" in action else ok(0.0))
    return [i for _, i in asked]


# ---- grid ------------------------------------------------------------------------------------------
def test_grid_covers_valid_points_once_with_three_in_flight(mb_space: SweepSpace) -> None:
    valid = list(mb_space.iter_valid())
    assert 0 < len(valid) < mb_space.agent.size  # the space really has invalid points
    agent = create_agent("grid_search", mb_space, steps=100)
    asked = drive(agent, mb_space, in_flight=3)
    assert asked == valid
    assert agent.ask() is None


def test_grid_resume_by_replaying_tells_and_reserve(mb_space: SweepSpace) -> None:
    first = create_agent("grid_search", mb_space, steps=100)
    done = [first.ask() for _ in range(5)]
    flying = [first.ask() for _ in range(2)]
    resumed = create_agent("grid_search", mb_space, steps=100)
    for action in reversed(done):
        resumed.tell(action, ok(1.0))
    for action in flying:
        resumed.reserve(action)
    rest = drive(resumed, mb_space, in_flight=2)
    before = [mb_space.agent.encode(a) for a in done + flying]  # type: ignore[arg-type]
    assert not set(rest) & set(before)
    assert sorted(rest + before) == list(mb_space.iter_valid())


# ---- random ----------------------------------------------------------------------------------------
def test_random_is_seeded_without_replacement_and_stops(mb_space: SweepSpace) -> None:
    def order(seed: int) -> list[int]:
        return drive(create_agent("random_search", mb_space, steps=100, seed=seed), mb_space, in_flight=2)

    a, b, c = order(7), order(7), order(8)
    assert a == b
    assert a != c
    assert sorted(a) == list(mb_space.iter_valid())  # every valid point once, none invalid


def test_random_skips_warm_start_points(mb_space: SweepSpace) -> None:
    agent = create_agent("random_search", mb_space, steps=100, seed=1)
    valid = list(mb_space.iter_valid())
    for i in valid[:4]:
        agent.tell(mb_space.agent.decode(i), ok(0.0))
    assert sorted(drive(agent, mb_space, in_flight=1)) == valid[4:]


# ---- optuna ----------------------------------------------------------------------------------------
def test_optuna_never_returns_invalid_or_duplicate_and_stores_study(mb_space: SweepSpace, tmp_path: Path) -> None:
    agent = create_agent("optuna", mb_space, steps=30, seed=3, storage_dir=tmp_path / "run", study_name="s1")
    asked = drive(agent, mb_space, in_flight=2, limit=30)
    valid = set(mb_space.iter_valid())
    assert len(asked) == len(set(asked)) == len(valid)  # 14 valid points < 30: it must run dry
    assert set(asked) <= valid
    assert agent.ask() is None
    study = optuna.load_study(study_name="s1", storage=f"sqlite:///{tmp_path / 'run' / 'optuna.db'}")
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert {(t.params["tp"], t.params["pp"], t.params["mb"]) for t in complete} == {
        (a["tp"], a["pp"], a["mb"]) for a in map(mb_space.agent.decode, valid)
    }
    assert max(t.value for t in complete) == 0.0


def test_optuna_study_holds_each_evaluated_point_once_and_pruned_proposals_as_infeasible(tmp_path: Path) -> None:
    # x + y <= 9 prunes part of an 8x8 grid; the reward slopes towards the pruned corner, so TPE proposes
    # pruned points and, once the best are taken, points already evaluated.
    space = command_space(tmp_path, extra='constraints = ["x + y <= 9"]')
    agent = create_agent("optuna", space, steps=64, seed=0, storage_dir=tmp_path / "run", study_name="s")
    asked = []
    for _ in range(40):
        action = agent.ask()
        assert action is not None
        index = space.agent.encode(action)
        assert space.is_valid(index) and index not in asked
        asked.append(index)
        agent.tell(action, ok(float(action["x"] + action["y"])))
    assert agent.moved > 0  # some proposals had to be moved, or this test proves nothing
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'run' / 'optuna.db'}")
    run = [t for t in study.trials if "dse_not_run" not in t.user_attrs]
    assert [t.state for t in run] == [optuna.trial.TrialState.COMPLETE] * 40
    assert sorted(space.agent.encode(t.params) for t in run) == sorted(asked)  # one trial per evaluation
    pruned = [t for t in study.trials if t.user_attrs.get("dse_not_run") == "invalid"]
    assert pruned and all(t.state == optuna.trial.TrialState.FAIL for t in pruned)
    assert all(t.constraints == {"dse_infeasible": 1.0} for t in pruned)
    pruned_points = [space.agent.encode(t.params) for t in pruned]
    assert len(set(pruned_points)) == len(pruned_points)  # each told once
    assert not any(space.is_valid(i) for i in pruned_points)


def test_out_of_memory_is_infeasible_for_tpe_and_other_failures_fail(mb_space: SweepSpace, tmp_path: Path) -> None:
    agent = create_agent("optuna", mb_space, steps=14, seed=0, storage_dir=tmp_path / "run", study_name="s")
    oom = TrialResult(reward=float("-inf"), status="failed", reason="out-of-memory")
    crash = TrialResult(reward=float("-inf"), status="failed", reason="exit-code")
    asked = [agent.ask() for _ in range(3)]
    assert all(a is not None for a in asked)
    agent.tell(asked[0], oom)
    agent.tell(asked[1], crash)
    agent.tell(asked[2], ok(-1.0))
    unasked = next(mb_space.agent.decode(i) for i in mb_space.iter_valid()
                   if mb_space.agent.decode(i) not in asked)
    agent.tell(unasked, oom)  # a cached out-of-memory result told at warm start
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'run' / 'optuna.db'}")
    by_point = {mb_space.agent.encode(t.params): t for t in study.trials}
    for action in (asked[0], unasked):
        t = by_point[mb_space.agent.encode(action)]
        assert t.state == optuna.trial.TrialState.COMPLETE and t.constraints == {"dse_infeasible": 1.0}
    assert by_point[mb_space.agent.encode(asked[1])].state == optuna.trial.TrialState.FAIL
    assert study.best_trial.params == asked[2]  # an infeasible trial is never the best
    reopened = create_agent("optuna", mb_space, steps=14, seed=1, storage_dir=tmp_path / "run", study_name="s")
    rest = drive(reopened, mb_space, in_flight=1)
    assert not {mb_space.agent.encode(a) for a in (*asked, unasked)} & set(rest)  # none is proposed again
    assert len(rest) == mb_space.count().valid - 4


def test_samplers_without_constraints_get_out_of_memory_as_fail(mb_space: SweepSpace) -> None:
    agent = create_agent("optuna", mb_space, steps=14, seed=0, config={"sampler": "random"})
    action = agent.ask()
    assert action is not None
    agent.tell(action, TrialResult(reward=float("-inf"), status="failed", reason="out-of-memory"))
    assert [t.state for t in agent.study.trials] == [optuna.trial.TrialState.FAIL]


def test_optuna_finds_the_optimum_within_budget(tmp_path: Path) -> None:
    space = command_space(tmp_path)  # 64 points, optimum (5, 2)

    def trials_to_optimum(seed: int) -> int:
        agent = create_agent("optuna", space, steps=64, seed=seed)
        for n in range(1, 65):
            action = agent.ask()
            assert action is not None
            reward = -abs(action["x"] - 5) - abs(action["y"] - 2)
            agent.tell(action, ok(reward))
            if reward == 0:
                return n
        raise AssertionError("64 asks without the optimum: some point was proposed twice")

    counts = sorted(trials_to_optimum(seed) for seed in range(10))
    # Random order without replacement needs (64 + 1) / 2 = 32.5 trials on average; TPE must learn the slope.
    assert counts[len(counts) // 2] <= 20, counts


def test_optuna_warm_start_and_resume_from_storage(mb_space: SweepSpace, tmp_path: Path) -> None:
    valid = list(mb_space.iter_valid())
    warm = [mb_space.agent.decode(i) for i in valid[:3]]
    agent = create_agent("optuna", mb_space, steps=30, seed=0, storage_dir=tmp_path)
    agent.tell(warm[0], ok(toy_reward(warm[0])))
    agent.tell(warm[1], ok(toy_reward(warm[1])))
    agent.tell(warm[2], FAILED)
    trials = agent.study.trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "FAIL"]
    assert trials[0].value == toy_reward(warm[0])
    asked = [agent.ask() for _ in range(4)]
    for a in asked[:3]:
        agent.tell(a, ok(toy_reward(a)))  # type: ignore[arg-type]
    n_trials = len(agent.study.trials)

    resumed = create_agent("optuna", mb_space, steps=30, seed=0, storage_dir=tmp_path)
    for a in warm[:2] + asked[:3]:
        resumed.tell(a, ok(toy_reward(a)))  # type: ignore[arg-type]
    resumed.tell(warm[2], FAILED)
    resumed.reserve(asked[3])  # type: ignore[arg-type]
    assert len(resumed.study.trials) == n_trials  # replay adds nothing the study already holds
    rest = drive(resumed, mb_space, in_flight=1, limit=30)
    before = {mb_space.agent.encode(a) for a in warm + asked}  # type: ignore[arg-type]
    assert not set(rest) & before
    assert sorted(set(rest) | before) == valid
    resumed.tell(asked[3], ok(1.5))  # type: ignore[arg-type]
    reattached = [t for t in resumed.study.trials if t.value == 1.5]
    assert len(reattached) == 1 and reattached[0].number < n_trials  # the stale RUNNING trial got it


def test_optuna_nsga2_is_multi_objective(mb_space: SweepSpace) -> None:
    agent = create_agent(
        "optuna", mb_space, steps=10, seed=0, config={"sampler": "nsga2"}, directions=["minimize", "maximize"]
    )
    for _ in range(5):
        action = agent.ask()
        assert action is not None
        agent.tell(action, TrialResult(reward=1.0, status="completed", values=[float(action["tp"]), 2.0]))
    assert len(agent.study.directions) == 2
    done = [t for t in agent.study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len({tuple(t.params.values()) for t in done}) == 5 and all(t.values[1] == 2.0 for t in done)


@pytest.mark.parametrize("sampler", ["tpe", "random", "nsga2", "qmc", "cmaes", "gp"])
def test_every_sampler_covers_the_valid_points_once(sampler: str, mb_space: SweepSpace) -> None:
    needs = {"gp": ("torch", "scipy"), "cmaes": ("cmaes",), "qmc": ("scipy",)}.get(sampler, ())
    missing = [m for m in needs if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"sampler '{sampler}' needs {', '.join(missing)} (an optional dependency)")
    agent = create_agent("optuna", mb_space, steps=30, seed=1, config={"sampler": sampler})
    asked = drive(agent, mb_space, in_flight=3, limit=30)
    assert sorted(asked) == list(mb_space.iter_valid())


def test_optuna_sampler_errors(mb_space: SweepSpace) -> None:
    with pytest.raises(InputError, match="unknown sampler 'bogus'") as err:
        create_agent("optuna", mb_space, steps=1, config={"sampler": "bogus"})
    assert err.value.field == "agent_config.sampler"
    with pytest.raises(InputError, match="unknown key 'samplr'"):
        create_agent("optuna", mb_space, steps=1, config={"samplr": "tpe"})
    if importlib.util.find_spec("torch") is None:
        with pytest.raises(InputError, match="needs the Python package"):
            create_agent("optuna", mb_space, steps=1, config={"sampler": "gp"})


def test_optuna_maps_mixed_type_values_back(tmp_path: Path) -> None:
    assert _choices((1, 2, "a")) == (1, 2, "a")
    assert _choices((1, 1.0, True)) == ("1", "1.0", "True")  # equal under ==: Optuna could not tell them apart
    space = command_space(tmp_path, x='[1, 1.0, true, "1"]')
    agent = create_agent("optuna", space, steps=40, seed=0)
    got = drive(agent, space, in_flight=1, limit=40)
    assert sorted(got) == list(range(space.agent.size))
    xs = {(type(space.agent.decode(i)["x"]), space.agent.decode(i)["x"]) for i in got}
    assert xs == {(int, 1), (float, 1.0), (bool, True), (str, "1")}


# ---- env_params and the registry ---------------------------------------------------------------------
def test_env_params_refused_for_grid(tmp_path: Path) -> None:
    space = command_space(tmp_path, extra="[env_params.y]")
    assert space.env.dimensions
    with pytest.raises(InputError, match="cannot handle env_params") as err:
        create_agent("grid_search", space, steps=5)
    assert err.value.field == "agent"
    assert "random_search" in err.value.message and "optuna" in err.value.message
    agent = create_agent("random_search", space, steps=5)
    assert set(agent.ask() or {}) == {"x"}  # the env dimension is drawn by the environment, not the agent


def test_registry_plugins_and_unknown_names(monkeypatch: pytest.MonkeyPatch, mb_space: SweepSpace) -> None:
    assert {"grid_search", "random_search", "optuna"} <= set(agent_names())
    with pytest.raises(KeyError, match="unknown agent 'nope'.*grid_search"):
        create_agent("nope", mb_space, steps=1)
    with pytest.raises(ValueError, match="already registered"):
        register_agent("grid_search")(type("Other", (agent_classes()["random_search"],), {}))

    class Plugin(agent_classes()["grid_search"]):  # type: ignore[misc, valid-type]
        pass

    module = types.ModuleType("dse_fake_plugin")
    module.Plugin = Plugin  # type: ignore[attr-defined]
    module.NotAnAgent = dict  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "dse_fake_plugin", module)
    eps = [metadata.EntryPoint("fancy", "dse_fake_plugin:Plugin", "dse.agents")]
    monkeypatch.setattr(metadata, "entry_points", lambda group=None: eps if group == "dse.agents" else [])
    try:
        assert "fancy" in agent_names()
        agent = create_agent("fancy", mb_space, steps=3)
        assert type(agent) is Plugin and Plugin.name == "fancy"
        assert agent_classes()["fancy"] is Plugin
        eps.append(metadata.EntryPoint("broken", "dse_fake_plugin:NotAnAgent", "dse.agents"))
        with pytest.raises(TypeError, match="not an dse.agents._base.Agent"):
            agent_classes()

        @register_agent("in_code")
        class InCode(Plugin):
            pass

        assert "in_code" in agent_names() and create_agent("in_code", mb_space, steps=1).name == "in_code"
    finally:
        unregister_agent("fancy")
        unregister_agent("in_code")


def test_optuna_lost_in_flight_point_is_not_a_failure(mb_space: SweepSpace, tmp_path: Path) -> None:
    first = create_agent("optuna", mb_space, steps=30, seed=0, storage_dir=tmp_path)
    lost = first.ask()
    assert lost is not None
    second = create_agent("optuna", mb_space, steps=30, seed=0, storage_dir=tmp_path)  # replay forgot it
    assert second.ask() is not None  # a lost point may be proposed again: it was never measured
    states = [t.state.name for t in second.study.trials if t.user_attrs.get("dse_not_run") == "lost"]
    assert states == ["FAIL"]
    third = create_agent("optuna", mb_space, steps=30, seed=0, storage_dir=tmp_path)
    assert mb_space.agent.encode(lost) not in third._known  # so it may still be proposed and run
