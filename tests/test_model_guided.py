"""model_guided: ranks by the performance model, skips what it says cannot fit, learns what it gets wrong (a
time correction from measurements, a memory threshold from out-of-memory trials), spreads parallel asks, handles
env_params, warm-starts from tells of points it never asked, explains each proposal, treats early-stopped trials
as lower bounds, and refuses a sweep without a model (Command) in one line naming the agents that fit."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from conftest import make_test, sweep_from

from dse.agents import Agent, create_agent
from dse.errors import InputError
from dse.simulator import GPUS, KNOBS, predict
from dse.space import SweepSpace
from dse.trial import TrialResult

SMALL = {"gpu_type": "h100", "num_gpus": 8, "model_family_name": "llama", "model_recipe_name": "llama3_8b",
         "compute_dtype": "bf16", "gb": 128, "tp": [1, 2, 4, 8], "pp": [1, 2, 4, 8], "mb": [1, 2], "cp": [1, 2]}
# Llama3 70B on 32 H100s: most of the space does not fit, a few points fit with room to spare.
TIGHT = {"gpu_type": "h100", "num_gpus": 32, "gpus_per_node": 8, "model_family_name": "llama",
         "model_recipe_name": "llama3_70b", "compute_dtype": "fp8_cs", "gb": 128, "tp": [1, 2, 4, 8],
         "pp": [1, 2, 4, 8], "mb": [1, 2], "vp": [1, 2]}
GB_PER_GIB = 1024**3 / 1e9


def space_of(cmd_args: dict[str, Any], **fields: Any) -> SweepSpace:
    return SweepSpace(sweep_from(make_test(dict(cmd_args), **fields)))


def model(space: SweepSpace, action: dict[str, Any], env: dict[str, Any] | None = None) -> tuple[float, float]:
    """The model's step time and memory need / capacity (the ratio it decides `fits` by)."""
    cfg = space.resolve(action, env)
    p = predict(cfg.flat_cmd_args(), num_nodes=cfg.num_nodes)
    need = (p.mem_max_alloc_gb * KNOBS.fragmentation + KNOBS.context_gb) / (GPUS["h100"].hbm_gb * GB_PER_GIB)
    return p.step_time_s, need


def measured(step: float, mem: float = 10.0) -> TrialResult:
    return TrialResult(reward=1.0 / step, status="completed", values=[step])


OOM = TrialResult(reward=-math.inf, status="failed", reason="out-of-memory")


def reality(space: SweepSpace, action: dict[str, Any], bias: dict[tuple[str, Any], float] | None = None) -> TrialResult:
    """The model's own numbers (times a bias per dimension value): out of memory where it does not fit."""
    step, need = model(space, action)
    if need > 1.0:
        return OOM
    for (path, value), factor in (bias or {}).items():
        if action.get(path) == value:
            step *= factor
    return measured(step)


def points(space: SweepSpace) -> list[dict[str, Any]]:
    return [space.agent.decode(i) for i in space.valid_indices().tolist()]


def factor_in(note: str) -> float:
    """The learnt factor an explanation names ("... x0.92 learnt ...")."""
    return float(note.split(" x", 1)[1].split(" ", 1)[0])


def p_fit_in(note: str) -> float:
    return float(note.rsplit("P(fit) ", 1)[1])


def agent_on(space: SweepSpace, seed: int = 0, **config: Any) -> Agent:
    return create_agent("model_guided", space, seed=seed, steps=100, config=config)


# ---- ranking and memory ------------------------------------------------------------------------------------
def test_ranks_by_the_prediction_and_skips_what_cannot_fit() -> None:
    space = space_of(SMALL)
    agent = agent_on(space)
    pts = points(space)
    fitting = sorted((model(space, a)[0], space.agent.encode(a)) for a in pts if model(space, a)[1] <= 1.0)
    oom = {space.agent.encode(a) for a in pts if model(space, a)[1] > 1.0}
    assert oom and len(fitting) > 8
    asked = []
    for _ in range(len(fitting)):
        action = agent.ask()
        assert action is not None
        asked.append(space.agent.encode(action))
        agent.tell(action, reality(space, action))
    assert asked[0] in [i for _, i in fitting[:3]], "the first proposal is one of the fastest that fit"
    assert set(asked[:4]) <= {i for _, i in fitting[:6]}, "the most promising first"
    assert not set(asked) & oom, "a point the model says cannot fit was proposed before the others ran out"


def test_an_out_of_memory_moves_the_threshold() -> None:
    space = space_of(TIGHT)
    by_need = sorted((model(space, a)[1], space.agent.encode(a)) for a in points(space))
    fits = [(r, i) for r, i in by_need if r <= 0.95]
    assert len(fits) >= 5
    r_oom, i_oom = fits[-1]  # the tightest point that fits by the model ...
    r_near, i_near = fits[-2]  # ... the next tightest, and one the model says just fits
    r_edge, i_edge = next((r, i) for r, i in by_need if r_oom < r <= 1.0)
    agent = agent_on(space)

    def p_fit(index: int) -> float:
        return p_fit_in(agent.explain(space.agent.decode(index)) or "")

    before = p_fit(i_near), p_fit(i_edge)
    agent.tell(space.agent.decode(i_oom), OOM)  # ... ran out of memory all the same
    after = p_fit(i_near), p_fit(i_edge)
    assert before[0] > 0.9 and after[0] < before[0] - 0.2, (before, after)
    assert before[1] > 0.4 and after[1] < 0.05, (before, after)
    roomy = [i for r, i in fits if r < r_oom - 0.1]
    for _ in roomy:  # everything with room to spare is proposed before anything as tight as what failed
        action = agent.ask()
        assert action is not None
        assert model(space, action)[1] < r_oom, action
        agent.tell(action, measured(model(space, action)[0]))


def test_a_reality_biased_on_one_dimension_changes_the_ranking() -> None:
    space = space_of(SMALL)
    fresh = agent_on(space)
    first = fresh.ask()
    assert first is not None and first["tp"] == 2  # the model's favourite tp here
    bias = {("tp", 2): 1.3}  # the model does not know tp = 2 is 30 % slower here
    agent = agent_on(space)
    taught = 0
    while taught < 4:  # four trials, whatever the agent proposes
        action = agent.ask()
        assert action is not None
        agent.tell(action, reality(space, action, bias))
        taught += 1
    assert factor_in(agent.explain({**first}) or "") > 1.15, "the correction learnt that tp = 2 is slower"
    nxt = [agent.ask() for _ in range(3)]
    assert all(a is not None and a["tp"] != 2 for a in nxt), nxt


def test_censored_results_are_lower_bounds() -> None:
    space = space_of(SMALL)
    action = points(space)[5]
    step = model(space, action)[0]

    def factor_after(result: TrialResult) -> float:
        agent = agent_on(space)
        agent.tell(action, result)
        return factor_in(agent.explain(action) or "")

    pruned_fast = TrialResult(reward=2.0 / step, status="pruned", values=[0.5 * step], reason="early-stopped")
    pruned_slow = TrialResult(reward=1.0 / (1.5 * step), status="pruned", values=[1.5 * step], reason="early-stopped")
    assert factor_after(measured(0.5 * step)) < 0.6  # a completed measurement is believed ...
    assert factor_after(pruned_fast) == pytest.approx(1.0, abs=0.05)  # ... a bound below the prediction says nothing
    assert factor_after(pruned_slow) > 1.35  # a bound above it pushes the estimate up to it
    agent = agent_on(space)
    agent.tell(action, pruned_fast)
    assert agent._best_measured() is None  # type: ignore[attr-defined]  # a censored trial is never the best


# ---- parallel asks, env_params, warm start -------------------------------------------------------------------
def test_parallel_asks_are_distinct_and_spread_out() -> None:
    space = space_of(SMALL)
    agent = agent_on(space)
    asked = [agent.ask() for _ in range(4)]
    assert all(a is not None for a in asked)
    indices = [space.agent.encode(a) for a in asked if a is not None]
    assert len(set(indices)) == 4
    first = asked[0]
    assert first is not None
    differs = [sum(a[k] != first[k] for k in first) for a in asked[1:] if a is not None]
    assert max(differs) >= 2, f"all parallel proposals are neighbours of the first: {asked}"
    notes = [agent.explain(a) for a in asked if a is not None]
    assert all(n and n.startswith("model: ") for n in notes)


def test_env_params_average_the_prediction_over_the_draws() -> None:
    space = space_of({**SMALL, "mb": [1, 2]}, env_params={"mb": {"weights": [0.75, 0.25]}})
    assert space.env.names == ["mb"] and "mb" not in space.agent.names
    agent = agent_on(space)
    action = agent.ask()
    assert action is not None and "mb" not in action
    expect = 0.75 * model(space, action, {"mb": 1})[0] + 0.25 * model(space, action, {"mb": 2})[0]
    note = agent.explain(action) or ""
    assert note.startswith(f"model: {expect:.3g} s/step"), note
    agent.tell({**action, "mb": 2}, measured(model(space, action, {"mb": 2})[0]))  # the draw it ran with
    rest = [agent.ask() for _ in range(len(points(space)) - 1)]
    assert all(a is not None for a in rest) and agent.ask() is None


def test_warm_start_learns_from_tells_of_points_it_never_asked() -> None:
    space = space_of(SMALL)
    fresh = agent_on(space)
    first = fresh.ask()
    assert first is not None
    agent = agent_on(space)
    told = [a for a in points(space) if a["tp"] == first["tp"]]  # the cache: all of one tp, 40 % slower
    for a in told:
        agent.tell(a, reality(space, a, {("tp", first["tp"]): 1.4}))
    assert factor_in(agent.explain(first) or "") > 1.25
    asked = []
    while (a := agent.ask()) is not None:
        asked.append(space.agent.encode(a))
        agent.tell(a, reality(space, a))
    told_idx = {space.agent.encode(a) for a in told}
    assert not set(asked) & told_idx
    assert sorted(asked) == sorted({space.agent.encode(a) for a in points(space)} - told_idx)


# ---- explanation, refusal, config ------------------------------------------------------------------------------
def test_explain_names_prediction_correction_and_memory() -> None:
    space = space_of(SMALL)
    agent = agent_on(space)
    action = agent.ask()
    assert action is not None
    step, need = model(space, action)
    note = agent.explain(action) or ""
    assert note.startswith(f"model: {step:.3g} s/step x1.00 learnt = {step:.3g} s"), note
    assert " GB" in note and "P(fit)" in note and "\n" not in note
    agent.tell(action, measured(1.1 * step))
    assert factor_in(agent.explain(action) or "") == pytest.approx(1.1, abs=0.02)


def test_refuses_a_sweep_without_a_model(tmp_path: Path) -> None:
    command = SweepSpace(sweep_from(make_test({"command": "echo {x}", "x": [1, 2, 3]}, workload="Command")))
    with pytest.raises(InputError) as err:
        create_agent("model_guided", command, seed=0)
    text = str(err.value)
    assert "\n" not in text and err.value.field == "agent"
    assert "needs a performance model" in text
    for name in ("grid_search", "random_search", "optuna"):
        assert name in text


def test_config_keys_are_checked() -> None:
    space = space_of(SMALL)
    with pytest.raises(InputError) as err:
        agent_on(space, memory_margin=2.0)
    assert err.value.field == "agent_config.memory_margin"
    agent = agent_on(space, exploration=0.0, min_fit_probability=0.0, max_candidates=5)
    seen = []
    while (a := agent.ask()) is not None:  # a sampled pool is refilled until every valid point has run
        seen.append(space.agent.encode(a))
        agent.tell(a, reality(space, a))
    assert sorted(seen) == sorted(space.agent.encode(a) for a in points(space))
