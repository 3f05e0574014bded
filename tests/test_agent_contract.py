"""The agent contract (tests/agent_contract.py) run over every built-in agent and a tiny plugin; and the narrow
`Agent` base class itself: only `ask` is abstract, `tell` records, `agent_config` is a typed model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal

import pytest

pytest.register_assert_rewrite("agent_contract")

from agent_contract import SPACES, AgentContract, build_space, check_action  # noqa: E402

from dse.agent_names import BUILTIN_AGENTS  # noqa: E402
from dse.agents import Agent, AgentConfig, create_agent, get_agent_class, register_agent, unregister_agent  # noqa: E402
from dse.errors import InputError  # noqa: E402
from dse.space import SweepSpace  # noqa: E402
from dse.trial import TrialResult  # noqa: E402

PLUGIN = "contract_plugin"


class FirstUnseenConfig(AgentConfig):
    order: Literal["up", "down"] = "up"


class FirstUnseen(Agent):
    """A minimal plugin: only `ask` (the base class records tells), with one typed agent_config key."""

    config_model = FirstUnseenConfig
    config: FirstUnseenConfig

    def ask(self) -> dict[str, Any] | None:
        seen = self.seen()
        points = [int(i) for i in self.space.valid_indices()]
        for index in points if self.config.order == "up" else reversed(points):
            if index not in seen:
                return self.propose(index)
        return None


# ---- the contract, for each agent ------------------------------------------------------------------------
class TestGridSearch(AgentContract):
    agent_name = "grid_search"


class TestRandomSearch(AgentContract):
    agent_name = "random_search"


class TestOptunaTPE(AgentContract):
    agent_name = "optuna"
    agent_config: ClassVar[dict[str, Any]] = {"sampler": "tpe"}


class TestOptunaRandomSampler(AgentContract):
    agent_name = "optuna"
    agent_config: ClassVar[dict[str, Any]] = {"sampler": "random"}


# model_guided needs a performance model: it runs the contract on Megatron spaces only (rules, a user constraint,
# string/bool/env-var dimensions the model ignores, points the model says do not fit, a single point).
MEGATRON_SPACES = {
    "rules": SPACES["rules"],
    "constrained": """
name = "mc"
test_template_name = "MegatronBridgeSim"
constraints = ["tp * pp <= 4"]
[cmd_args]
gpu_type = "h100"
num_gpus = 8
model_family_name = "llama"
model_recipe_name = "llama3_8b"
tp = [1, 2, 4, 8]
pp = [1, 2, 4]
mb = [1, 2]
gb = 128
""",
    "mixed": """
name = "mm"
test_template_name = "MegatronBridgeSim"
[cmd_args]
gpu_type = "h100"
num_gpus = 32
model_family_name = "llama"
model_recipe_name = "llama3_70b"
compute_dtype = "fp8_cs"
tp = [2, 8]
pp = [1, 4]
cuda_graph_impl = ["none", "local"]
use_megatron_fsdp = [false, true]
gb = 128
[extra_env_vars]
NCCL_ALGO = ["Ring", "Tree"]
""",
    "single": """
name = "ms"
test_template_name = "MegatronBridgeSim"
[cmd_args]
gpu_type = "h100"
num_gpus = 8
model_family_name = "llama"
model_recipe_name = "llama3_8b"
tp = [2]
gb = 128
""",
}


class TestModelGuided(AgentContract):
    agent_name = "model_guided"

    @pytest.fixture(params=sorted(MEGATRON_SPACES))
    def space(self, request: pytest.FixtureRequest, tmp_path: Path) -> SweepSpace:
        return build_space(tmp_path, request.param)

    @pytest.fixture(autouse=True)
    def _megatron_spaces(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name, text in MEGATRON_SPACES.items():  # build_space (the config test's too) reads these
            monkeypatch.setitem(SPACES, name, text)


class TestPluginAgent(AgentContract):
    agent_name = PLUGIN
    agent_config: ClassVar[dict[str, Any]] = {"order": "down"}

    @pytest.fixture(autouse=True)
    def _registered(self) -> Iterator[None]:
        register_agent(PLUGIN)(FirstUnseen)
        yield
        unregister_agent(PLUGIN)


def test_every_builtin_agent_runs_the_contract() -> None:
    covered = {cls.agent_name for cls in AgentContract.__subclasses__()}
    assert set(BUILTIN_AGENTS) <= covered


# ---- the base class ------------------------------------------------------------------------------------
@pytest.fixture
def space(tmp_path: Path) -> SweepSpace:
    return build_space(tmp_path, "constrained")


def test_a_plugin_writes_only_ask_and_the_default_tell_records(space: SweepSpace) -> None:
    assert Agent.__abstractmethods__ == frozenset({"ask"})
    agent = FirstUnseen(space, seed=0, config={})  # the narrow constructor: space, seed, config
    assert agent.steps is None and agent.config == FirstUnseenConfig()
    action = agent.ask()
    index = check_action(space, action)
    assert action is not None
    assert agent.in_flight == {index}
    result = TrialResult(reward=1.0, status="completed", values=[1.0])
    agent.tell(action, result)
    assert agent.told == {index: result} and not agent.in_flight
    unasked = space.agent.decode(next(i for i in space.valid_indices() if int(i) != index))
    agent.tell(unasked, result)  # warm start: recorded like any other
    assert space.agent.encode(unasked) in agent.told


@pytest.mark.parametrize("name", BUILTIN_AGENTS)
def test_builtins_are_built_from_space_seed_and_config_alone(name: str, space: SweepSpace, tmp_path: Path) -> None:
    if name == "model_guided":  # it needs a performance model: a Megatron sweep
        space = build_space(tmp_path, "rules")
    agent = create_agent(name, space, seed=3, config={"random_seed": 3})  # no steps: the engine's own budget
    assert agent.steps is None and agent.seed == 3
    assert check_action(space, agent.ask()) >= 0


def test_typed_configs_of_the_builtins(space: SweepSpace) -> None:
    assert get_agent_class("grid_search").config_model is AgentConfig
    assert get_agent_class("random_search").config_model is AgentConfig
    optuna = create_agent("optuna", space, config={"sampler": "NSGA2", "sampler_kwargs": {"population_size": 4}})
    assert optuna.config.sampler == "nsga2" and optuna.config.sampler_kwargs == {"population_size": 4}
    with pytest.raises(InputError, match="unknown key 'sampler' for the grid_search agent") as err:
        create_agent("grid_search", space, config={"sampler": "tpe"})  # was silently ignored
    assert err.value.field == "agent_config.sampler"
    with pytest.raises(InputError, match="unknown key 'samplr' for the optuna agent") as err:
        create_agent("optuna", space, config={"samplr": "tpe"})
    assert err.value.field == "agent_config.samplr"
    with pytest.raises(InputError, match="valid dictionary") as err:
        create_agent("optuna", space, config={"sampler_kwargs": "fast"})
    assert err.value.field == "agent_config.sampler_kwargs"
    with pytest.raises(InputError, match="must be a list") as err:
        create_agent("optuna", space, config={"sampler": "nsga2", "directions": "minimize"})
    assert err.value.field == "agent_config.directions"
    with pytest.raises(InputError, match="valid string") as err:
        create_agent("optuna", space, config={"sampler": "nsga2", "directions": ["minimize", 2]})
    assert err.value.field == "agent_config.directions[1]"
    not_a_table: Any = ["sampler"]
    with pytest.raises(InputError, match="must be a table of keys") as err:
        create_agent("random_search", space, config=not_a_table)
    assert err.value.field == "agent_config"


def test_plugin_config_is_checked_at_construction(space: SweepSpace) -> None:
    with pytest.raises(InputError, match="'up' or 'down'") as err:
        FirstUnseen(space, seed=0, config={"order": "sideways"})
    assert err.value.field == "agent_config.order" and err.value.file == str(space.sweep.source)
