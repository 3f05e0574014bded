"""The constraint language: whitelisted ast, never eval; fuzzed to raise only InputError."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dse.errors import InputError
from dse.expressions import parse_expression


@pytest.mark.parametrize("text, env, expected", [
    ("gb % (mb * (gpus // (tp * pp))) == 0", {"gb": 128, "mb": 2, "gpus": 8, "tp": 2, "pp": 1}, True),
    ("gb % (mb * (gpus // (tp * pp))) == 0", {"gb": 130, "mb": 2, "gpus": 8, "tp": 2, "pp": 1}, False),
    ("tp in [1, 2] and not pp > 2", {"tp": 2, "pp": 2}, True),
    ("tp not in (1, 2) or cp == 1", {"tp": 2, "cp": 2}, False),
    ("min(tp, pp) <= 2 and max(tp, pp, cp) == 4 and abs(-tp) == tp", {"tp": 4, "pp": 2, "cp": 1}, True),
    ("impl == 'local'", {"impl": "local"}, True),
    ("model.seq_length >= 4096", {"model.seq_length": 8192}, True),
    ("1 < tp <= 4", {"tp": 4}, True),
])
def test_scalar_evaluation(text: str, env: dict, expected: bool) -> None:
    assert parse_expression(text).evaluate(env) is expected


def test_vectorised_evaluation_matches_scalar() -> None:
    expr = parse_expression("gb % (mb * (gpus // (tp * pp))) == 0 and tp * pp <= 8")
    rng = np.random.default_rng(0)
    env = {k: rng.choice([1, 2, 4, 8], size=200) for k in ("mb", "tp", "pp")}
    env.update(gb=rng.choice([64, 96, 128], size=200), gpus=8)
    vec = expr.evaluate(env)
    for i in range(200):
        scalar = expr.evaluate({k: (v[i] if isinstance(v, np.ndarray) else v) for k, v in env.items()})
        assert bool(vec[i]) == bool(scalar)


def test_division_by_zero_is_invalid_not_an_error() -> None:
    expr = parse_expression("gpus // (tp - 1) >= 1")
    out = expr.evaluate({"gpus": 8, "tp": np.array([1, 2, 3])})
    assert out.tolist() == [False, True, True]


@pytest.mark.parametrize("text", [
    "__import__('os').system('true')", "tp.__class__", "open('x')", "[x for x in y]", "lambda: 1",
    "tp if", "", "tp = 1", "f'{tp}'", "tp in pp", "eval('1')", "(1).real", "tp[0]", "{'a': 1}",
])
def test_refused(text: str) -> None:
    with pytest.raises(InputError):
        parse_expression(text)


def test_names_are_collected() -> None:
    assert parse_expression("gb % (mb * dp) == 0 and model.seq_length > 1").names == {"gb", "mb", "dp",
                                                                                     "model.seq_length"}


@given(st.text(max_size=80))
@settings(max_examples=300, deadline=None)
def test_fuzz_parser_raises_only_input_error(text: str) -> None:
    try:
        expr = parse_expression(text)
    except InputError:
        return
    env = {n: 3 for n in expr.names}
    with contextlib.suppress(InputError):
        expr.evaluate(env)
