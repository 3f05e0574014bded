"""The contract every agent keeps, as a reusable test class.

After Optuna's sampler tests (one suite run over every sampler: seeded runs repeat, NaN objectives and
failed trials do not break sampling, trials added from outside are learnt from, samples stay inside the
distributions), adapted to dse's ask/tell agents and their rules-pruned spaces.

Use it for a built-in or a plugin agent:

    from agent_contract import AgentContract

    class TestMyAgent(AgentContract):
        agent_name = "my_agent"           # built through dse.agents.create_agent
        agent_config = {"knob": 3}        # its agent_config for every test (optional)
        exhaustive = True                 # proposes each valid point at most once (the built-ins do)

or override `make_agent(space, seed, **kw)` (pass `kw` on: the suite sets `steps` and `config` there).

The contract:
- `ask` returns a dict with exactly the space's dimensions, each value one of that dimension's own
  values (type included), a point the rules allow, or None when it has nothing left (and stays None);
- an exhaustive agent never hands out a point twice: not one it was told, not one in flight (asked or
  reserved), within `steps`, and runs dry only once every valid point is taken;
- `tell` accepts actions it never asked (warm start, resume replay, the same point told twice) and
  `reserve` points it never asked (in flight in a resumed run);
- the same seed gives the same sequence;
- failed and infeasible results (a non-finite reward: -inf, +inf, NaN) are answers, not crashes;
- `steps` is the engine's budget: the agent keeps it and answers every one of `steps` asks while valid points
  remain (it need not stop itself: the engine does);
- `agent_config` is validated when the agent is built: an unknown or bad key is one `InputError` naming
  `agent_config.<key>`, and every agent accepts `random_seed` (the engine reads it as the seed).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest

from dse.agents import Agent, AgentConfig, create_agent, get_agent_class
from dse.errors import InputError
from dse.space import SweepSpace
from dse.spec import load_sweep
from dse.trial import TrialResult

# Small spaces, each a sweep TOML: parallelism rules, a user constraint, values equal under == but of
# different types, and a space of a single point.
SPACES = {
    "rules": """
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
""",
    "constrained": """
name = "c"
test_template_name = "Command"
constraints = ["x + y <= 4"]
[cmd_args]
command = "echo {x} {y}"
x = [0, 1, 2, 3]
y = [0, 1, 2, 3]
""",
    "mixed": """
name = "m"
test_template_name = "Command"
[cmd_args]
command = "echo {x} {y}"
x = [1, 1.0, true, "1"]
y = ["a", "b"]
""",
    "single": """
name = "s"
test_template_name = "Command"
[cmd_args]
command = "echo {x}"
x = [5]
""",
}

OUT_OF_MEMORY = TrialResult(reward=-math.inf, status="failed", reason="out-of-memory")  # infeasible
CRASHED = TrialResult(reward=-math.inf, status="failed", reason="exit-code")
TIMED_OUT = TrialResult(reward=-math.inf, status="timeout", reason="timeout")
NAN = TrialResult(reward=math.nan, status="completed", values=[math.nan])
PLUS_INF = TrialResult(reward=math.inf, status="completed", values=[math.inf])
RULE_BROKEN = TrialResult(reward=-math.inf, status="infeasible", reason="constraint:x + y <= 4")
FAILURES = (OUT_OF_MEMORY, CRASHED, TIMED_OUT, NAN, PLUS_INF, RULE_BROKEN)


def build_space(tmp_path: Path, name: str) -> SweepSpace:
    path = tmp_path / f"{name}.toml"
    path.write_text(SPACES[name])
    return SweepSpace(load_sweep(path))


def reward_of(space: SweepSpace, action: Mapping[str, Any]) -> TrialResult:
    """A deterministic, varied reward (so learning agents have something to learn)."""
    index = space.agent.encode(action)
    return TrialResult(reward=-float((index * 5) % 7), status="completed", values=[float((index * 5) % 7)])


def check_action(space: SweepSpace, action: Any) -> int:
    """The agent index of a proposal, after checking it is a valid point of `space.agent`."""
    assert isinstance(action, dict), f"ask returned {action!r}, not a dict or None"
    assert sorted(action) == sorted(space.agent.names), f"{action} does not name the dimensions {space.agent.names}"
    for d in space.agent.dimensions:
        value = action[d.path]
        assert any(type(v) is type(value) and v == value for v in d.values), \
            f"{d.path} = {value!r} is not one of its values {list(d.values)}"
    index = space.agent.encode(action)
    assert space.is_valid(index), f"{action} breaks {[r.name for r in space.violations(action)]}"
    return index


def drive(agent: Agent, space: SweepSpace, *, limit: int, in_flight: int = 1,
          result: Callable[[int, dict[str, Any]], TrialResult] | None = None) -> list[int]:
    """The engine's loop: keep `in_flight` asks outstanding, tell the oldest, stop at None or after `limit`
    asks. Returns the asked indices in order; every proposal is checked with `check_action`."""
    asked: list[int] = []
    pending: list[dict[str, Any]] = []
    while True:
        while len(pending) < in_flight and len(asked) < limit:
            action = agent.ask()
            if action is None:
                break
            asked.append(check_action(space, action))
            pending.append(action)
        if not pending:
            return asked
        action = pending.pop(0)
        agent.tell(action, result(len(asked), action) if result else reward_of(space, action))


def valid_points(space: SweepSpace) -> list[int]:
    return [int(i) for i in space.valid_indices()]


class AgentContract:
    """Tests every agent must pass. Subclass as `Test<Agent>` and set `agent_name` (or override `make_agent`)."""

    agent_name: ClassVar[str] = ""
    agent_config: ClassVar[Mapping[str, Any]] = {}
    exhaustive: ClassVar[bool] = True  # never proposes a point twice, runs dry only when every valid point is taken

    def make_agent(self, space: SweepSpace, seed: int, **kw: Any) -> Agent:
        """The agent under test; `kw` (steps, config) override the defaults."""
        options: dict[str, Any] = {"steps": 100, "config": dict(self.agent_config)} | kw
        return create_agent(self.agent_name, space, seed=seed, **options)

    @pytest.fixture(params=sorted(SPACES))
    def space(self, request: pytest.FixtureRequest, tmp_path: Path) -> SweepSpace:
        return build_space(tmp_path, request.param)

    # ---- ask ------------------------------------------------------------------------------------------
    def test_asks_valid_points_and_none_when_exhausted(self, space: SweepSpace) -> None:
        valid = valid_points(space)
        agent = self.make_agent(space, seed=0, steps=len(valid) + 3)
        asked = drive(agent, space, limit=len(valid) + 3, in_flight=2)
        assert asked, "the agent proposed nothing in a space with valid points"
        if self.exhaustive:
            assert sorted(asked) == valid, "each valid point exactly once before running dry"
            assert agent.ask() is None and agent.ask() is None  # dry, and stays dry

    def test_asks_without_tells_never_hand_out_a_point_twice(self, space: SweepSpace) -> None:
        if not self.exhaustive:
            pytest.skip("the agent may propose a point again")
        valid = valid_points(space)
        agent = self.make_agent(space, seed=1, steps=len(valid))
        asked: list[int] = []
        for _ in range(len(valid)):  # everything in flight at once: --parallel as large as the space
            action = agent.ask()
            assert action is not None, f"ran dry after {len(asked)} of {len(valid)} valid points"
            asked.append(check_action(space, action))
        assert sorted(asked) == valid
        assert agent.ask() is None

    def test_respects_steps(self, space: SweepSpace) -> None:
        valid = valid_points(space)
        steps = max(1, len(valid) // 2)
        agent = self.make_agent(space, seed=2, steps=steps)
        assert agent.steps == steps  # the engine's budget, kept as given
        asked = drive(agent, space, limit=steps, in_flight=1)
        assert len(asked) == steps, "ran dry before the budget with valid points left"
        if self.exhaustive:
            assert len(set(asked)) == steps

    # ---- tell and reserve for points never asked ----------------------------------------------------
    def test_warm_start_tells_for_points_never_asked(self, space: SweepSpace) -> None:
        valid = valid_points(space)
        agent = self.make_agent(space, seed=3)
        warm = valid[::2]  # from the cache, before any ask; failures too
        for n, index in enumerate(warm):
            action = space.agent.decode(index)
            agent.tell(action, FAILURES[n % len(FAILURES)] if n % 2 else reward_of(space, action))
        agent.tell(space.agent.decode(warm[0]), reward_of(space, space.agent.decode(warm[0])))  # replayed twice
        asked = drive(agent, space, limit=len(valid) + 3, in_flight=2)
        if self.exhaustive:
            assert not set(asked) & set(warm), "proposed a point it was told"
            assert sorted(asked) == sorted(set(valid) - set(warm))

    def test_reserved_points_are_never_asked(self, space: SweepSpace) -> None:
        valid = valid_points(space)
        agent = self.make_agent(space, seed=4)
        flying = valid[-2:]  # a resumed run re-attached to these
        for index in flying:
            agent.reserve(space.agent.decode(index))
        asked = drive(agent, space, limit=len(valid) + 3, in_flight=1)
        for index in flying:  # the re-attached jobs finish: told, never asked
            agent.tell(space.agent.decode(index), reward_of(space, space.agent.decode(index)))
        if self.exhaustive:
            assert not set(asked) & set(flying), "proposed a point in flight"
            assert sorted(asked) == sorted(set(valid) - set(flying))
            assert agent.ask() is None

    # ---- reproducibility and failures -----------------------------------------------------------------
    def test_same_seed_same_sequence(self, space: SweepSpace) -> None:
        limit = len(valid_points(space))
        runs = [drive(self.make_agent(space, seed=7), space, limit=limit, in_flight=2) for _ in range(2)]
        assert runs[0] == runs[1]

    def test_failed_and_infeasible_results_are_answers(self, space: SweepSpace) -> None:
        valid = valid_points(space)
        agent = self.make_agent(space, seed=5)

        def mostly_failing(n: int, action: dict[str, Any]) -> TrialResult:
            return reward_of(space, action) if n % 4 == 0 else FAILURES[n % len(FAILURES)]

        asked = drive(agent, space, limit=len(valid) + 3, in_flight=3, result=mostly_failing)
        assert asked
        if self.exhaustive:
            assert sorted(asked) == valid, "a failed point was proposed again, or the agent stopped early"
            assert agent.ask() is None

    def test_all_results_failing(self, space: SweepSpace) -> None:
        valid = valid_points(space)
        agent = self.make_agent(space, seed=6)
        asked = drive(agent, space, limit=len(valid) + 3, result=lambda n, a: FAILURES[n % len(FAILURES)])
        if self.exhaustive:
            assert sorted(asked) == valid

    # ---- agent_config -----------------------------------------------------------------------------------
    def test_config_is_typed_and_validated(self, tmp_path: Path) -> None:
        space = build_space(tmp_path, "constrained")
        cls = get_agent_class(self.agent_name) if self.agent_name else type(self.make_agent(space, seed=0))
        assert issubclass(cls.config_model, AgentConfig)
        agent = self.make_agent(space, seed=0)
        assert isinstance(agent.config, cls.config_model)
        with pytest.raises(InputError, match="unknown key 'no_such_key'") as err:
            self.make_agent(space, seed=0, config={**self.agent_config, "no_such_key": 1})
        assert err.value.field == "agent_config.no_such_key" and err.value.file == str(space.sweep.source)
        with pytest.raises(InputError) as err:
            self.make_agent(space, seed=0, config={**self.agent_config, "random_seed": "seven"})
        assert err.value.field == "agent_config.random_seed"
        seeded = self.make_agent(space, seed=0, config={**self.agent_config, "random_seed": 7})
        assert seeded.config.random_seed == 7  # every agent accepts the key the engine reads as the seed
