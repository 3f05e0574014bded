"""Red-team findings on input and metrics: impossible metrics never win, constraint expressions cannot
exhaust memory or the stack, and every piece of bad input is one `error: ...` line with exit code 2."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, write_toml

from dse.errors import InputError
from dse.metrics import MetricsError, RunMetrics, metric_value, parse_metrics_json, score

PY = [sys.executable]


def dse(*args: str, timeout: float = 180, pre: str = "") -> subprocess.CompletedProcess[str]:
    """The CLI in a fresh interpreter; `pre` is Python run before it (e.g. to block an import)."""
    if pre:
        cmd = [*PY, "-c", f"{pre}\nimport sys\nfrom dse.cli import main\nsys.exit(main(sys.argv[1:]))", *args]
    else:
        cmd = [*PY, "-m", "dse.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=timeout, env=os.environ.copy())


def one_error_line(r: subprocess.CompletedProcess[str]) -> str:
    """The run was refused as bad input: exit 2, exactly one `error:` line, no traceback."""
    assert r.returncode == 2, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr[-3000:]
    return lines[0]


def command_sweep(tmp_path: Path, command: str, x: str = "[1, 2]", extra: str = "", args: str = "") -> Path:
    text = (f'name = "r"\ntest_template_name = "Command"\n{extra}\n[cmd_args]\n'
            f"command = {json.dumps(command)}\nx = {x}\n{args}")
    return write_toml(tmp_path / "sweep.toml", text)


# ------------------------------------------------------------------------------- (7) impossible metrics

@pytest.mark.parametrize("value", [0.0, -1.0, 1e-320, 1e-12, math.nan, math.inf, -math.inf])
def test_impossible_step_time_is_a_metrics_error(value: float) -> None:
    m = RunMetrics(source="flat-json", extra={"step-time": value})
    with pytest.raises(MetricsError, match="step-time") as err:
        metric_value("step-time", m)
    assert "step-time" in err.value.reason
    with pytest.raises(MetricsError):  # derived from the step time
        metric_value("tokens-per-second-per-gpu", m, gbs=8, seq_length=4096, num_gpus=8)


def test_impossible_per_step_times_and_time_like_metrics_are_errors() -> None:
    per_step = RunMetrics(source="log", step_times_s={0: 5.0, 1: 1.0, 2: 0.0, 3: 1.0})
    with pytest.raises(MetricsError, match="step 2"):
        metric_value("step-time", per_step)
    ms = RunMetrics(source="flat-json", extra={"step-time-ms": 0.0})
    with pytest.raises(MetricsError, match="step-time"):
        metric_value("step-time", ms)
    custom = RunMetrics(source="flat-json", extra={"latency_ms": -3.0, "iteration-time": 1e-320, "loss-delta": -2.0})
    with pytest.raises(MetricsError, match="latency_ms"):
        metric_value("latency_ms", custom)
    with pytest.raises(MetricsError, match="iteration-time"):
        metric_value("iteration-time", custom)
    assert metric_value("loss-delta", custom) == -2.0  # not time-like: any finite value
    from dse.metrics import MIN_TIME

    assert metric_value("step-time", RunMetrics(extra={"step-time": MIN_TIME})) == MIN_TIME


@pytest.mark.parametrize("name, key", [("tflops-per-gpu", "tflops"), ("tokens-per-second-per-gpu", "tokens-per-s-per-gpu"),
                                       ("max-alloc-gb", "max-alloc-gb"), ("samples-per-second", "samples_per_second")])
def test_throughput_and_memory_must_be_finite_and_not_negative(name: str, key: str) -> None:
    assert metric_value(name, parse_metrics_json(json.dumps({key: 0.0}))) == 0.0
    for bad in (-1.0, -1e-300, math.nan, math.inf):
        with pytest.raises(MetricsError):
            metric_value(name, parse_metrics_json(json.dumps({key: bad})))


def test_a_successful_reward_is_always_finite() -> None:
    assert math.isfinite(score("inverse", [1e-320], ok=True))
    assert math.isfinite(score("identity", [math.inf], ok=True))


def test_impossible_step_times_fail_the_trial_and_never_become_best(tmp_path: Path) -> None:
    from dse.analysis._table import best_record, load_trials
    from dse.storage import TrialStore

    values = ["0", "-1", "1e-320", "NaN", "2", "5"]
    sweep = command_sweep(tmp_path, "echo '{{\"step-time\": {x}}}' > metrics.json", x=json.dumps(values))
    out = tmp_path / "runs"
    r = dse("run", str(sweep), "--out", str(out), "--executor", "debug", "--no-cache")
    assert r.returncode == 1, r.stdout + r.stderr  # failures the user must see
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    df = load_trials(run).set_index("param.x")
    for bad in ("0", "-1", "1e-320", "NaN"):
        assert df.loc[bad, "status"] == "failed", df.loc[bad].to_dict()
        assert df.loc[bad, "reward"] == -math.inf
        assert "step-time" in df.loc[bad, "error"], df.loc[bad, "error"]
    assert "1e-320" in df.loc["1e-320", "error"] and "-1" in df.loc["-1", "error"]
    assert list(df.loc[["2", "5"], "status"]) == ["completed", "completed"]
    with TrialStore(run / "trials.db") as store:
        best = best_record(store.all())
    assert best is not None and best.action == {"x": "2"}
    b = dse("best", str(run))
    assert b.returncode == 0 and "'x': '2'" in b.stdout, b.stdout + b.stderr


# ------------------------------------------------------------------------------ (9) constraint sizes

@pytest.mark.parametrize("constraint", ["x != 'ab' * 99999999", "x != 'a' * 10**10", "x != ('ab' * 5000) * 3",
                                        "x != ('a' * 9000) * 9000", "x != 'a' * 9999 + 'b' * 9999 + 'c' * 9999",
                                        "x > ((10**64)**64)**64"])
def test_huge_constant_sequences_are_refused_at_parse_time(constraint: str) -> None:
    from dse.expressions import parse_expression

    with pytest.raises(InputError, match="too large|more than"):
        parse_expression(constraint)


@pytest.mark.parametrize("constraint", ["x != 'ab' * 99999999", "x != 'a' * 10**10"])
def test_huge_constant_sequences_give_one_line_from_dse_space(tmp_path: Path, constraint: str) -> None:
    sweep = command_sweep(tmp_path, "true", extra=f"constraints = [{json.dumps(constraint)}]")
    line = one_error_line(dse("space", str(sweep), timeout=60))
    assert line.startswith(f"error: {sweep}: constraints[0]: "), line


def test_a_huge_sequence_at_evaluation_is_an_input_error_naming_the_constraint(tmp_path: Path) -> None:
    sweep = command_sweep(tmp_path, "true", x="[1, 99999999]", args='s = ["ab", "cd"]\n',
                          extra='constraints = ["s * x != \'z\'"]')
    line = one_error_line(dse("space", str(sweep), timeout=60))
    assert line.startswith(f"error: {sweep}: constraints[0]: ") and "s * x" in line, line


def test_small_sequences_still_work() -> None:
    from dse.expressions import parse_expression

    assert parse_expression("s * 2 == 'abab'").evaluate({"s": "ab"}) is True
    assert parse_expression("s + 'b' == 'ab'").evaluate({"s": "a"}) is True
    assert parse_expression("x ** 3 == 8").evaluate({"x": 2}) is True


# ----------------------------------------------------------------------- (8) tracebacks on input

def test_a_chain_of_500_nots_is_refused_at_parse_time(tmp_path: Path) -> None:
    from dse.expressions import parse_expression

    text = "not " * 499 + "x"
    with pytest.raises(InputError, match="deep"):
        parse_expression(text)
    sweep = command_sweep(tmp_path, "true", extra=f"constraints = [{json.dumps(text)}]")
    line = one_error_line(dse("space", str(sweep), timeout=60))
    assert line.startswith(f"error: {sweep}: constraints[0]: ") and "deep" in line, line[:300]


def test_a_long_flat_constraint_is_still_accepted() -> None:
    from dse.expressions import parse_expression

    assert parse_expression(" + ".join(["x"] * 150) + " > 0").evaluate({"x": 1}) is True
    assert parse_expression(" and ".join(["x > 0"] * 150)).evaluate({"x": 1}) is True
    deepest = "not " * 198 + "x"  # 199 levels: at the limit, evaluated within the stack
    assert parse_expression(deepest).evaluate({"x": np.array([True, False])}).tolist() == [True, False]
    with pytest.raises(InputError, match="deep"):
        parse_expression("not not " + deepest)


def test_a_space_of_more_than_2_to_the_62_points_is_refused(tmp_path: Path) -> None:
    dims = "".join(f"d{i} = [1, 2, 3]\n" for i in range(50))
    sweep = command_sweep(tmp_path, "true", args=dims)
    line = one_error_line(dse("space", str(sweep), timeout=60))
    assert "51 dimensions" in line and "2**62" in line, line


@pytest.mark.parametrize("depth", [600, 3000])
def test_deep_toml_nesting_is_one_line(tmp_path: Path, depth: int) -> None:
    sweep = command_sweep(tmp_path, "true", args="y = " + "[" * depth + "]" * depth + "\n")
    for command in ("space", "dry-run"):
        line = one_error_line(dse(command, str(sweep), timeout=60))
        assert line.startswith(f"error: {sweep}: ") and "nesting too deep" in line, line[:300]


@pytest.mark.parametrize("command", ["run", "dry-run"])
def test_unknown_agent_option_lists_the_known_agents(tmp_path: Path, command: str) -> None:
    sweep = command_sweep(tmp_path, "true")
    out = tmp_path / "out"
    line = one_error_line(dse(command, str(sweep), "--agent", "foo", "--out", str(out)))
    assert "--agent" in line and "'foo'" in line and "grid_search" in line and "optuna" in line, line
    assert not out.exists()


def test_parquet_without_pyarrow_says_what_to_install(tmp_path: Path) -> None:
    sweep = command_sweep(tmp_path, "echo '{{\"step-time\": {x}}}' > metrics.json")
    out = tmp_path / "runs"
    assert dse("run", str(sweep), "--out", str(out), "--executor", "debug", "--no-cache").returncode == 0
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    target = tmp_path / "t.parquet"
    block = "import sys\nsys.modules['pyarrow'] = None\nsys.modules['fastparquet'] = None"
    line = one_error_line(dse("table", str(run), "--format", "parquet", "-o", str(target), pre=block))
    assert "pyarrow" in line and "pip install" in line, line
    assert not target.exists()


# ----------------------------------------------------------------------------------- (12) smaller ones

def test_double_braces_without_placeholders_become_braces() -> None:
    from dse.workloads import render_command

    assert render_command("echo '{{\"a\": 1}}'", {"x": 1}) == "echo '{\"a\": 1}'"
    assert render_command("echo '{{\"a\": {x}}}'", {"x": 1}) == "echo '{\"a\": 1}'"


def test_double_braces_without_placeholders_run_as_braces(tmp_path: Path) -> None:
    sweep = command_sweep(tmp_path, "echo '{{\"step-time\": 1.5}}' > metrics.json", x='["a"]')
    out = tmp_path / "runs"
    r = dse("run", str(sweep), "--out", str(out), "--executor", "debug", "--no-cache")
    assert r.returncode == 0, r.stdout + r.stderr


def test_a_100_mb_metrics_json_is_parsed(tmp_path: Path) -> None:
    from dse.workloads._outcomes import collect_metrics

    path = tmp_path / "metrics.json"
    with open(path, "w") as fh:
        fh.write('{"pad": "')
        chunk = "x" * (1 << 20)
        for _ in range(100):
            fh.write(chunk)
        fh.write('", "step-time": 1.25}')
    assert path.stat().st_size > 100_000_000
    outcome = collect_metrics(tmp_path, [path], 0)
    assert outcome.ok, outcome.error
    assert metric_value("step-time", outcome.metrics) == 1.25


def test_a_metrics_file_above_the_limit_is_refused_unread(tmp_path: Path) -> None:
    from dse.workloads._outcomes import MAX_METRICS_FILE_BYTES, collect_metrics

    path = tmp_path / "metrics.json"
    with open(path, "wb") as fh:  # sparse: no disk space used
        fh.truncate(MAX_METRICS_FILE_BYTES + 1)
    outcome = collect_metrics(tmp_path, [path], 0)
    assert not outcome.ok and outcome.reason == "no-metrics" and "limit" in (outcome.error or ""), outcome.error


def test_parse_metrics_json_still_takes_text() -> None:
    assert metric_value("step-time", parse_metrics_json('{"step-time": 2}')) == 2.0


@pytest.mark.parametrize("where, field", [
    ('y = "a\\u0000b"\n', "cmd_args.y"),
    ('y = ["a", "b\\u0000"]\n', "cmd_args.y[1]"),
    ('[cmd_args.model]\nname = "a\\u0000b"\n', "cmd_args.model.name"),
])
def test_nul_in_a_cmd_args_value_is_refused_at_load(tmp_path: Path, where: str, field: str) -> None:
    sweep = command_sweep(tmp_path, "echo {x}", args=where)
    for command in ("space", "dry-run", "run"):
        out = tmp_path / "out"
        line = one_error_line(dse(command, str(sweep), "--out", str(out)) if command != "space"
                              else dse(command, str(sweep)))
        assert line.startswith(f"error: {sweep}: {field}: ") and "NUL" in line, line
        assert not out.exists()


def test_nul_in_an_env_var_value_is_refused_at_load(tmp_path: Path) -> None:
    sweep = command_sweep(tmp_path, "echo {x}", extra='[extra_env_vars]\nK = ["a", "b\\u0000"]\n')
    line = one_error_line(dse("space", str(sweep)))
    assert line.startswith(f"error: {sweep}: extra_env_vars.K[1]: ") and "NUL" in line, line


def test_dotted_placeholders_are_filled() -> None:
    from dse.workloads import render_command

    assert render_command("run --seq {model.seq_length} {x}", {"model.seq_length": 4096, "x": "a b"}) == \
        "run --seq 4096 'a b'"
    with pytest.raises(InputError, match="placeholder"):
        render_command("echo {nope}", {"x": 1})
    with pytest.raises(InputError, match="bad template"):
        render_command("echo {x", {"x": 1})
