"""Space indexing, property-tested: lazy decode/encode, stable order, sampling without replacement."""

from __future__ import annotations

import itertools

import numpy as np
from conftest import make_test, sweep_from
from hypothesis import given, settings
from hypothesis import strategies as st

from dse.space import Dimension, SearchSpace, SweepSpace

dims_strategy = st.lists(st.integers(min_value=1, max_value=5), min_size=0, max_size=5).map(
    lambda radices: [Dimension(f"d{i}", tuple(range(10 * i, 10 * i + r))) for i, r in enumerate(radices)]
)


@given(dims_strategy)
@settings(max_examples=60, deadline=None)
def test_decode_follows_itertools_product_and_encode_inverts(dims: list[Dimension]) -> None:
    space = SearchSpace(dims)
    expected = list(itertools.product(*(d.values for d in dims)))
    assert space.size == len(expected)
    for i, combo in enumerate(expected):
        action = space.decode(i)
        assert tuple(action[d.path] for d in dims) == combo
        assert space.encode(action) == i


@given(dims_strategy, st.data())
@settings(max_examples=40, deadline=None)
def test_digits_match_decode(dims: list[Dimension], data: st.DataObject) -> None:
    space = SearchSpace(dims)
    idx = np.array(data.draw(st.lists(st.integers(0, space.size - 1), min_size=1, max_size=20)))
    digits = space.digits(idx)
    for col, i in enumerate(idx):
        action = space.decode(int(i))
        for row, d in enumerate(dims):
            assert d.values[digits[row, col]] == action[d.path]


@given(dims_strategy, st.data())
@settings(max_examples=60, deadline=None)
def test_neighbours_are_exactly_the_points_one_dimension_away(dims: list[Dimension], data: st.DataObject) -> None:
    space = SearchSpace(dims)
    picked = data.draw(st.lists(st.integers(0, space.size - 1), min_size=1, max_size=4))
    rows = [tuple(space.decode(i).values()) for i in range(space.size)]
    expected = sorted(
        j for j in range(space.size)
        if j not in picked and any(sum(a != b for a, b in zip(rows[i], rows[j], strict=True)) == 1 for i in picked)
    )
    assert space.neighbours(np.array(picked)).tolist() == expected


def test_valid_among_agrees_with_the_rules() -> None:
    space = _toy()
    idx = np.arange(space.agent.size)
    assert space.valid_among(idx).tolist() == space.valid_mask(idx).tolist()
    assert space.valid_mask(idx).any() and not space.valid_mask(idx).all()  # both answers occur


def test_huge_space_is_lazy() -> None:
    space = SearchSpace([Dimension(f"d{i}", tuple(range(10))) for i in range(15)])
    assert space.size == 10**15
    last = space.decode(space.size - 1)
    assert all(v == 9 for v in last.values()) and space.encode(last) == space.size - 1


def _toy(**extra):  # type: ignore[no-untyped-def]
    cmd = {"gpu_type": "h100", "num_gpus": 8, "model_family_name": "llama", "model_recipe_name": "llama3_8b",
           "compute_dtype": "bf16", "tp": [1, 2, 4, 8, 16], "pp": [1, 2, 4], "mb": [1, 2], "gb": 128}
    cmd.update(extra)
    return SweepSpace(sweep_from(make_test(cmd)))


def test_count_matches_brute_force_and_iter_valid_is_stable() -> None:
    space = _toy()
    brute = [i for i in range(space.agent.size) if not space.violations(space.agent.decode(i))]
    assert space.count().valid == len(brute)
    assert list(space.iter_valid(block=3)) == brute
    assert list(space.iter_valid(start=5)) == [i for i in brute if i >= 5]


@given(st.integers(0, 2**32 - 1))
@settings(max_examples=20, deadline=None)
def test_sample_valid_without_replacement(seed: int) -> None:
    space = _toy()
    rng = np.random.default_rng(seed)
    seen: set[int] = set()
    while (i := space.sample_valid(rng, seen)) is not None:
        assert i not in seen and space.is_valid(i)
        seen.add(i)
    assert seen == set(space.iter_valid())


def test_dimensions_from_nested_tables_env_vars_and_num_nodes() -> None:
    data = make_test({"gpu_type": "h100", "num_gpus": 8, "model_recipe_name": "llama3_8b", "tp": [1, 2],
                      "model": {"seq_length": [4096, 8192]}, "recompute_modules": ["mlp", "mlp,core_attn"]},
                     extra_env_vars={"NCCL_ALGO": ["Ring", "Tree"], "FIXED": "1"}, num_nodes=[1, 2])
    space = SweepSpace(sweep_from(data))
    assert space.agent.names == ["tp", "model.seq_length", "recompute_modules", "extra_env_vars.NCCL_ALGO",
                                 "num_nodes"]
    cfg = space.resolve(space.agent.decode(space.agent.size - 1))
    assert cfg.cmd_args["model"]["seq_length"] == 8192 and cfg.cmd_args["recompute_modules"] == "mlp,core_attn"
    assert cfg.extra_env_vars == {"FIXED": "1", "NCCL_ALGO": "Tree"}
    assert cfg.num_nodes == 2 and cfg.cmd_args["num_gpus"] == 16  # a swept num_nodes sets the world size


def test_excluded_args_by_prefix_stay_literal() -> None:
    data = make_test({"gpu_type": "h100", "num_gpus": 8, "model_recipe_name": "llama3_8b", "tp": [1, 2],
                      "nsys_trace": ["cuda", "nvtx"], "model": {"a": [1, 2], "b": [3, 4]}},
                     dse_excluded_args=["cmd_args.nsys_trace", "cmd_args.model"])
    space = SweepSpace(sweep_from(data))
    assert space.agent.names == ["tp"]
    assert space.resolve({"tp": 2}).cmd_args["nsys_trace"] == ["cuda", "nvtx"]


def test_duplicate_candidates_refused() -> None:
    import pytest

    from dse.errors import InputError

    with pytest.raises(InputError, match="twice"):
        SweepSpace(sweep_from(make_test({"gpu_type": "h100", "num_gpus": 8, "tp": [1, 1]})))


def test_single_point_space() -> None:
    space = SweepSpace(sweep_from(make_test({"gpu_type": "h100", "num_gpus": 8, "model_recipe_name": "llama3_8b"})))
    assert space.agent.size == 1 and space.agent.decode(0) == {} and space.count().valid == 1
