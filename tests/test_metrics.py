"""Metrics parsing: golden-values JSON, flat JSON, launcher logs, metric values, failure classes."""

from __future__ import annotations

import contextlib
import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dse.metrics import (
    FLAKY_PATTERNS,
    OOM_PATTERNS,
    REJECT_PATTERNS,
    MetricsError,
    RunMetrics,
    classify_failure,
    metric_value,
    parse_flat_json,
    parse_golden_values,
    parse_log,
    parse_metrics_json,
)


def golden(n: int = 50, *, first_ms: float = 53048.6) -> dict[str, object]:
    """A golden-values dict as Megatron-Bridge writes it: step i takes 200+i ms (step 0: warm-up)."""
    data: dict[str, object] = {}
    for i in range(n):
        data[str(i)] = {
            "lm loss": 11.9 - i * 0.05,
            "elapsed time per iteration (ms)": first_ms if i == 0 else 200.0 + i,
            "GPU utilization": 1.0 if i == 0 else 250.0 + i,
        }
    data["alloc"] = 81.904
    data["max_alloc"] = 93.2
    return data


def mb_log(times_s: list[float], *, tflops: float = 600.1, total: int | None = None) -> str:
    """Launcher output as Megatron-Bridge prints it (docs/reference/megatron-bridge.md §2c): Step Time line before each iteration line."""
    total = total or len(times_s)
    lines = ["[dse] starting", "Theoretical memory footprints: weight and optimizer=1234.5 MB"]
    for i, t in enumerate(times_s, start=1):
        lines.append(f"Step Time : {t:.2f}s GPU utilization: {tflops + i:.1f}MODEL_TFLOP/s/GPU")
        lines.append(
            f" [2026-01-01 10:00:{i:02d}] iteration {i:8d}/{total:8d} | consumed samples: {i * 512:12d} | "
            f"elapsed time per iteration (ms): {t * 1000:.1f} | learning rate: 3.000000E-04 | "
            f"global batch size:   512 | lm loss: {10.0 - i * 0.1:.6E} | loss scale: 1.0 | grad norm: 1.234 | "
            "number of skipped iterations:   0 | number of nan iterations:   0 |"
        )
        if i == 1:
            lines.append(
                "[Rank 0] (after 1 iterations) memory (GB) | mem-allocated-gigabytes: 40.1 | "
                "mem-active-gigabytes: 40.1 | mem-max-allocated-gigabytes: 60.5 | "
                "mem-max-reserved-gigabytes: 70.25 | mem-alloc-retires: 0 | mem-allocated-count: 5"
            )
            lines.append(
                "[Rank 4] (after 1 iterations) memory (GB) | mem-allocated-gigabytes: 42.0 | "
                "mem-active-gigabytes: 42.0 | mem-max-allocated-gigabytes: 61.5 | "
                "mem-max-reserved-gigabytes: 71.0 | mem-alloc-retires: 0 | mem-allocated-count: 5"
            )
    lines.append("after training is done")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------ golden JSON


def test_golden_values_convert_ms_and_window_skips_warmup() -> None:
    m = parse_golden_values(json.dumps(golden(50)))
    assert m.source == "golden-values-json"
    assert m.step_times_s[0] == pytest.approx(53.0486)
    assert m.step_times_s[49] == pytest.approx(0.249)
    assert m.alloc_gb == pytest.approx(81.904) and m.max_alloc_gb == pytest.approx(93.2)
    # last 10 steps (40..49) -> 200+40 .. 200+49 ms, mean 244.5 ms
    assert metric_value("step-time", m) == pytest.approx(0.2445)
    assert metric_value("default", m) == pytest.approx(0.2445)
    assert metric_value("tflops-per-gpu", m) == pytest.approx(294.5)
    assert metric_value("max-alloc-gb", m) == pytest.approx(93.2)


def test_short_run_uses_all_steps_after_warmup() -> None:
    m = parse_golden_values(json.dumps(golden(4)))
    assert metric_value("step-time", m) == pytest.approx((0.201 + 0.202 + 0.203) / 3)


def test_only_warmup_step_is_an_error() -> None:
    m = parse_golden_values(json.dumps(golden(1)))
    with pytest.raises(MetricsError, match="no steps after warm-up"):
        metric_value("step-time", m)


def test_missing_per_step_values_do_not_raise_key_error() -> None:
    data = golden(5)
    del data["3"]["elapsed time per iteration (ms)"]  # type: ignore[index]
    data["4"] = {"lm loss": 1.0}
    data["max_reserved"] = 99.5
    m = parse_metrics_json(json.dumps(data))
    assert sorted(m.step_times_s) == [0, 1, 2]
    assert m.lm_loss[4] == 1.0
    assert metric_value("max_reserved", m) == 99.5
    assert metric_value("step-time", m) == pytest.approx(0.2015)


def test_null_memory_falls_back_and_wandb_wrapper_unwraps() -> None:
    data = golden(3)
    data["max_alloc"] = None
    m = parse_metrics_json(json.dumps({"01.02.26": data}))
    assert m.source == "golden-values-json"
    assert m.max_alloc_gb is None
    assert metric_value("max-alloc-gb", m) == pytest.approx(81.904)


def test_nan_step_time_is_a_metrics_error() -> None:
    text = json.dumps(golden(5)).replace("203.0", "NaN")
    m = parse_golden_values(text)
    with pytest.raises(MetricsError, match="metric step-time is NaN"):
        metric_value("step-time", m)
    assert metric_value("tflops-per-gpu", m) == pytest.approx(252.5)  # other metrics still usable


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("   \n", "empty"),
        ("[1, 2]", "not an object"),
        ("{}", "empty object"),
        ('{"0": 5}', "not an object"),
        ('{"0": {"elapsed time per iteration (ms)": "fast"}}', "not a number"),
        ('{"0": {"elapsed time per iteration (ms)": true}}', "not a number"),
        ('{"0": {"lm loss": 1.0', "partial"),
        ('{"1": {}, "alloc": "x"}', "not a number"),
    ],
)
def test_bad_json_is_a_one_line_metrics_error(text: str, reason: str) -> None:
    with pytest.raises(MetricsError) as info:
        parse_metrics_json(text)
    assert reason in info.value.reason
    assert "\n" not in str(info.value)


def test_golden_parser_refuses_flat_json() -> None:
    with pytest.raises(MetricsError, match="no step keys"):
        parse_golden_values('{"step_time": 1.0}')


# -------------------------------------------------------------------------------------- flat JSON


def test_flat_json_names_are_normalised() -> None:
    m = parse_metrics_json(json.dumps({"step_time": 1.25, "TFLOPS": 400, "max_alloc_gb": 70.0, "note": "x"}))
    assert m.source == "flat-json"
    assert metric_value("default", m) == 1.25
    assert metric_value("tflops-per-gpu", m) == 400.0
    assert metric_value("max-alloc-gb", m) == 70.0
    with pytest.raises(MetricsError, match="metric note is not a number"):
        metric_value("note", m)
    with pytest.raises(MetricsError, match="metric accuracy is missing"):
        metric_value("accuracy", m)


def test_flat_json_step_time_in_ms_and_tokens_given_directly() -> None:
    m = parse_flat_json('{"step-time-ms": 250, "tokens_per_second_per_gpu": 1234.5}')
    assert metric_value("step-time", m) == 0.25
    assert metric_value("tokens-per-second-per-gpu", m) == 1234.5


def test_flat_json_without_numbers_is_an_error() -> None:
    with pytest.raises(MetricsError, match="no numeric values"):
        parse_flat_json('{"status": "ok"}')


# ---------------------------------------------------------------------------------------------- log


def test_log_lines_give_steps_memory_and_tflops() -> None:
    times = [53.0] + [10.0 + 0.01 * i for i in range(1, 15)]
    m = parse_log(mb_log(times))
    assert m.source == "log"
    assert sorted(m.step_times_s) == list(range(15))  # iteration N -> step N-1
    assert m.step_times_s[0] == pytest.approx(53.0)
    assert m.tflops_per_gpu[0] == pytest.approx(601.1)
    assert m.lm_loss[0] == pytest.approx(9.9)
    assert (m.alloc_gb, m.max_alloc_gb, m.extra["max_reserved"]) == (42.0, 61.5, 71.0)  # last memory line
    expected = sum(10.0 + 0.01 * i for i in range(5, 15)) / 10
    assert metric_value("step-time", m) == pytest.approx(expected, rel=1e-6)
    assert metric_value("tflops-per-gpu", m) == pytest.approx(sum(600.1 + i for i in range(6, 16)) / 10)


def test_step_time_lines_alone_are_numbered_in_order() -> None:
    # CloudAI's check: step times 1..12 s; warm-up excluded, last 10 -> 3..12, mean 7.5.
    text = "\n".join(f"0: Step Time : {t}.00s GPU utilization: 100.0MODEL_TFLOP/s/GPU" for t in range(1, 13))
    m = parse_log(text)
    assert metric_value("step-time", m) == pytest.approx(7.5)


def test_throughput_field_is_a_tflops_fallback() -> None:
    line = (
        " [2026-01-01] iteration        2/      10 | elapsed time per iteration (ms): 1500.0 | "
        "throughput per GPU (TFLOP/s/GPU): 321.5 | lm loss: nan |"
    )
    m = parse_log(line)
    assert m.step_times_s == {1: 1.5}
    assert m.tflops_per_gpu == {1: 321.5}
    assert math.isnan(m.lm_loss[1])


def test_dse_metric_lines_for_command_workloads() -> None:
    m = parse_log("hello\nDSE_METRIC throughput=12.5\ndse-metric: latency_ms = 3e2\n")
    assert metric_value("throughput", m) == 12.5
    assert metric_value("latency-ms", m) == 300.0


@pytest.mark.parametrize("text", ["", "nothing to see\nhere\n", "Step Time : s GPU utilization:"])
def test_log_without_metrics_is_an_error(text: str) -> None:
    with pytest.raises(MetricsError, match="no metric lines"):
        parse_log(text)


# ------------------------------------------------------------------------------------------ tokens


def test_tokens_per_second_per_gpu_derivation() -> None:
    m = parse_golden_values(json.dumps(golden(12)))
    t = metric_value("step-time", m)
    value = metric_value("tokens-per-second-per-gpu", m, gbs=128, seq_length=8192, num_gpus=8)
    assert value == pytest.approx(128 * 8192 / (t * 8))


def test_tokens_names_what_is_missing() -> None:
    m = parse_golden_values(json.dumps(golden(12)))
    with pytest.raises(MetricsError, match="needs seq_length, num_gpus"):
        metric_value("tokens-per-second-per-gpu", m, gbs=128)


# -------------------------------------------------------------------------------------------- fuzz

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["0", "1", "2", "12", "alloc", "max_alloc", "step_time", "x"]),
            children,
            max_size=5,
        )
        | st.dictionaries(
            st.sampled_from(["lm loss", "elapsed time per iteration (ms)", "GPU utilization"]),
            children,
            max_size=3,
        )
    ),
    max_leaves=20,
)
METRIC_NAMES = ["default", "step-time", "tflops-per-gpu", "max-alloc-gb", "tokens-per-second-per-gpu", "x"]


def _all_metrics(m: RunMetrics) -> None:
    for name in METRIC_NAMES:
        try:
            value = metric_value(name, m, gbs=8, seq_length=16, num_gpus=2)
        except MetricsError as exc:
            assert exc.reason and "\n" not in exc.reason
        else:
            assert math.isfinite(value)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_fuzz_random_json_values_raise_only_metrics_error(value: object) -> None:
    text = json.dumps(value)
    for parser in (parse_metrics_json, parse_golden_values, parse_flat_json):
        try:
            m = parser(text)
        except MetricsError as exc:
            assert exc.reason and "\n" not in exc.reason
        else:
            _all_metrics(m)


@settings(max_examples=250, deadline=None)
@given(st.text(max_size=300))
def test_fuzz_random_text_raises_only_metrics_error(text: str) -> None:
    for parser in (parse_metrics_json, parse_log):
        try:
            m = parser(text)
        except MetricsError:
            pass
        else:
            _all_metrics(m)
    result = classify_failure(text)
    assert result is None or result[0] in ("out-of-memory", "rejected-config", "transient")


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.sampled_from(mb_log([5.0, 1.0, 1.1, 1.2]).splitlines()), max_size=12), st.text(max_size=40)
)
def test_fuzz_shuffled_log_lines(lines: list[str], noise: str) -> None:
    with contextlib.suppress(MetricsError):
        _all_metrics(parse_log("\n".join(lines) + noise))


def test_every_truncation_of_real_json_is_a_metrics_error() -> None:
    text = json.dumps(golden(6))
    for cut in range(len(text)):
        with pytest.raises(MetricsError):
            parse_metrics_json(text[:cut])
    assert metric_value("step-time", parse_metrics_json(text)) == pytest.approx(0.203)


def test_deeply_nested_json_is_a_metrics_error() -> None:
    with pytest.raises(MetricsError):
        parse_metrics_json("[" * 100_000 + "]" * 100_000)


def test_huge_numbers_are_metrics_errors_or_finite() -> None:
    with pytest.raises(MetricsError, match="infinite"):
        metric_value(
            "step-time", parse_golden_values('{"0": {}, "1": {"elapsed time per iteration (ms)": 1e999}}')
        )
    with pytest.raises(MetricsError):
        parse_flat_json('{"x": ' + "9" * 5000 + "}")


# -------------------------------------------------------------------------------- classification

OOM_LOG = """\
[rank3]: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 3 has a total capacity of 79.1 GiB
[rank0]:[E ProcessGroupNCCL.cpp:616] [Rank 0] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=5)
"""


def test_oom_wins_over_the_nccl_timeouts_it_causes() -> None:
    kind, line = classify_failure("\n".join(reversed(OOM_LOG.splitlines()))) or ("", "")
    assert kind == "out-of-memory"
    assert line.startswith("[rank3]: torch.OutOfMemoryError: CUDA out of memory.")


def test_framework_rejection_is_rejected_config() -> None:
    log = (
        "some setup\n"
        "    AssertionError: world size (6) is not divisible by total_model_size "
        "(tensor_model_parallel_size=4 * pipeline_model_parallel_size=1 * context_parallel_size=1)\n"
    )
    kind, line = classify_failure(log) or ("", "")
    assert kind == "rejected-config"
    assert line.startswith("AssertionError: world size (6)")
    assert classify_failure(
        "RuntimeError: pipeline-model-parallel size should be greater than 1 with interleaved schedule"
    )


def test_golden_value_assertion_is_not_a_rejection() -> None:
    log = "AssertionError: Convergence check failed due to missing golden values.\nexit 1\n"
    assert classify_failure(log) is None


@pytest.mark.parametrize(
    "line",
    [
        "NCCL WARN NET/IB : Got completion from peer with error 12, opcode 0, len 0, vendor err 129: Connection reset by peer",
        "RuntimeError: CUDA error: an illegal memory access was encountered",
        "torch.distributed.DistBackendError: NCCL error in: ... unhandled system error",
        "srun: error: node17: task 3: Segmentation fault",
        "[E ProcessGroupNCCL.cpp:475] [Rank 1] Watchdog caught collective operation timeout: WorkNCCL(OpType=ALLREDUCE)",
        "RuntimeError: NCCL communicator was aborted: the operation timed out",
        "slurmstepd: error: *** JOB 42 ON node3 CANCELLED AT 2026-01-01T00:00:00 DUE TO NODE FAILURE ***",
    ],
)
def test_transient_failures(line: str) -> None:
    assert classify_failure(f"start\n{line}\n") == ("transient", " ".join(line.split()))


def test_clean_log_is_not_classified_and_long_lines_are_trimmed() -> None:
    assert classify_failure(mb_log([1.0, 1.0])) is None
    assert classify_failure("TORCH_NCCL_HEARTBEAT_TIMEOUT_SEC=600\nNCCL_TIMEOUT=1800\n") is None
    kind, line = classify_failure("CUDA out of memory " + "x" * 1000) or ("", "")
    assert kind == "out-of-memory" and len(line) <= 240


def test_pattern_tuples_are_regexes_that_compile() -> None:
    import re

    assert len(FLAKY_PATTERNS) >= 8 and len(OOM_PATTERNS) >= 3 and len(REJECT_PATTERNS) >= 10
    for pattern in FLAKY_PATTERNS + OOM_PATTERNS + REJECT_PATTERNS:
        re.compile(pattern)
