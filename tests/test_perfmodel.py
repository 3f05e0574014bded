"""The analytic performance model: docs/reference/megatron-bridge.md §6 FLOPs, calibration against the 26.02 table (§5, `dse.megatron._published`),
the fit that produces its constants, the calibration-range flag, sanity properties.

Run with `pytest -s tests/test_perfmodel.py` to see the calibration table; `python benchmarks/bench_perfmodel.py`
for the leave-one-out and held-out errors.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest

from dse.megatron import ARCHITECTURES, PRESETS, PUBLISHED_26_02, PublishedRow
from dse.simulator import GPUS, KNOBS, Prediction, model_flops_per_step, predict

IN_SAMPLE_TOLERANCE = 0.25  # every published row, with the shipped (fitted) constants
MEDIAN_TOLERANCE = 0.10
ROWS = PUBLISHED_26_02


def test_flops_per_token_match_reference_section_6() -> None:
    expected = {"llama3_8b": (8192, 5.147e10), "llama3_70b": (8192, 4.492e11), "llama31_405b": (8192, 2.524e12),
                "qwen3_30b_a3b": (4096, 2.301e10), "qwen3_235b_a22b": (4096, 1.480e11),
                "deepseek_v3": (4096, 2.600e11), "gpt_oss_120b": (4096, 2.716e10)}
    for recipe, (seq, per_token) in expected.items():
        got = model_flops_per_step(ARCHITECTURES[recipe], 1, seq) / seq
        assert got == pytest.approx(per_token, rel=2e-3), recipe


def test_calibration_against_published_26_02_table() -> None:
    print(f"\n{'config (26.02, §5)':28s} {'pub':>8s} {'model':>8s} {'err':>7s} {'step s':>7s} {'mem GB':>9s}")
    failures, errors = [], []
    for row in ROWS:
        p = predict(row.cmd_args())
        err = p.tflops_per_gpu / row.tflops_per_gpu - 1
        errors.append(abs(err))
        print(f"{row.label:28s} {row.tflops_per_gpu:8.0f} {p.tflops_per_gpu:8.1f} {err * 100:+6.1f}% "
              f"{p.step_time_s:7.2f} {p.mem_max_alloc_gb:6.1f}{'' if p.fits else ' OOM'}")
        if abs(err) > IN_SAMPLE_TOLERANCE:
            failures.append(f"{row.label}: {err * 100:+.1f}%")
    assert not failures, failures
    assert statistics.median(errors) <= MEDIAN_TOLERANCE, statistics.median(errors)


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.label)
def test_published_configs_fit_in_memory(row: PublishedRow) -> None:
    p = predict(row.cmd_args())
    assert p.fits, p.oom_message
    assert 0 < p.mem_alloc_gb <= p.mem_max_alloc_gb <= GPUS[row.gpu].hbm_gb


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.label)
def test_published_rows_are_not_extrapolated(row: PublishedRow) -> None:
    p = predict(row.cmd_args())
    assert not p.extrapolated
    assert p.calibration == f"published 26.02 row ({row.label}): fitted"


def test_extrapolation_flag_says_why() -> None:
    inside = predict({"model_recipe_name": "llama3_70b", "gpu_type": "h100", "compute_dtype": "fp8_cs",
                      "num_gpus": 64, "gb": 128})  # the published H100 row at half the GBS
    assert not inside.extrapolated and inside.calibration.startswith("interpolated"), inside.calibration
    big_mb = predict({"model_recipe_name": "llama3_70b", "gpu_type": "h100", "compute_dtype": "fp8_cs",
                      "num_gpus": 64, "tp": 4, "pp": 8, "vp": 5, "mb": 8, "gb": 256})
    assert big_mb.extrapolated and "mb=8 outside the published rows' range 1..2 for llama3_70b" in big_mb.calibration
    preset = predict({"model_recipe_name": "gpt_oss_120b", "gpu_type": "h100", "compute_dtype": "bf16"})
    assert not preset.extrapolated  # the V2 preset is the published H100 GPT-OSS row
    pair = predict({"model_recipe_name": "deepseek_v3", "gpu_type": "h100", "compute_dtype": "fp8_cs"})
    assert pair.extrapolated and "recipe x gpu (deepseek_v3 on h100) not in the published table" in pair.calibration
    unknown = predict({"model_recipe_name": "llama3_8b", "gpu_type": "gb200", "compute_dtype": "fp8_mx"})
    assert unknown.extrapolated and "llama3_8b is not in the published" in unknown.calibration
    h100_70b = next(r for r in ROWS if r.label == "H100 Llama3 70B FP8")
    half_nodes = predict(h100_70b.cmd_args(), num_nodes=16)  # 4 GPUs per node
    assert half_nodes.extrapolated and "4 GPUs per node" in half_nodes.calibration


def test_prediction_keeps_its_fields_and_adds_the_calibration() -> None:
    row = ROWS[0]
    p = predict(row.cmd_args())
    q = predict({**row.cmd_args(), "mb": 1})  # off the published row, still inside its ranges
    assert not q.extrapolated and q.calibration.startswith("interpolated") and q.calibration != p.calibration
    assert {f for f in Prediction.__dataclass_fields__} >= {"step_time_s", "tflops_per_gpu", "tokens_per_s_per_gpu",
                                                             "mem_alloc_gb", "mem_max_alloc_gb", "fits", "oom_message",
                                                             "flops_per_step", "breakdown", "memory", "extrapolated",
                                                             "calibration"}


def test_deepseek_without_mtp_counts_the_25_11_flops() -> None:
    """§6: DeepSeek-V3 2.600e11 FLOPs/token with MTP, 2.498e11 without (the 25.11 "no MTP" rows)."""
    base = {"model_recipe_name": "deepseek_v3", "gpu_type": "gb300", "compute_dtype": "fp8_mx", "num_gpus": 256,
            "gb": 4096, "mb": 1, "tp": 1, "pp": 2, "vp": 4, "ep": 32}
    with_mtp = predict(base)
    without = predict({**base, "mtp_num_layers": 0})
    hydra = predict({**base, "extra_cmd_args": {"model.mtp_num_layers": 0}})
    assert with_mtp.flops_per_step / (4096 * 4096) == pytest.approx(2.600e11, rel=2e-3)
    assert without.flops_per_step / (4096 * 4096) == pytest.approx(2.498e11, rel=2e-3)
    assert hydra.flops_per_step == without.flops_per_step
    assert without.extrapolated and "model shape overridden" in without.calibration


def test_fit_reproduces_the_shipped_knobs() -> None:
    """The shipped constants are the fit's output (rounded), not hand-edited: refitting lands on them.

    Deterministic (starts from the nominal values, unique minimum thanks to the priors) and ~3 s.
    If this fails after a model change, run `python -m dse.simulator._fit` and paste its values into Knobs.
    """
    pytest.importorskip("scipy")
    from dse.simulator import FIT_PARAMS, fit, get_knob, rounded

    result = fit()
    fitted = rounded(result.values)
    assert set(fitted) == {p.path for p in FIT_PARAMS}
    mismatched = {path: (get_knob(KNOBS, path), value) for path, value in fitted.items()
                  if not math.isclose(get_knob(KNOBS, path), value, rel_tol=0.01)}
    assert not mismatched, f"shipped vs refitted: {mismatched}"
    for p in FIT_PARAMS:  # every fitted value within its physical bounds
        assert p.lo * (1 - 1e-9) <= result.values[p.path] <= p.hi * (1 + 1e-9), p.path


def test_knobs_with_and_get_knob_round_trip() -> None:
    from dse.simulator import get_knob, knobs_with

    k = knobs_with({"gemm_eff.blackwell.fp8": 0.5, "sustained.b200": 1.1, "launch_s": 1e-5})
    assert get_knob(k, "gemm_eff.blackwell.fp8") == 0.5 and get_knob(k, "gemm_eff.hopper.fp8") == get_knob(
        KNOBS, "gemm_eff.hopper.fp8")
    assert get_knob(k, "sustained.b200") == 1.1 and get_knob(k, "launch_s") == 1e-5
    assert math.isnan(get_knob(KNOBS, "sustained.h100"))
    assert predict(BASE_8B, knobs=k) != predict(BASE_8B)


def test_simulated_run_reports_its_calibration(tmp_path: Path) -> None:
    import io

    from dse.simulator import BANNER, run_simulation

    out = io.StringIO()
    cmd = {"model_recipe_name": "llama3_70b", "gpu_type": "h100", "compute_dtype": "fp8_cs", "num_gpus": 64,
           "tp": 4, "pp": 8, "vp": 5, "mb": 8, "gb": 256}
    run_simulation({"cmd_args": cmd}, tmp_path, stream=out, err_stream=io.StringIO())
    lines = out.getvalue().splitlines()
    assert lines[0].startswith(BANNER)
    assert lines[1].startswith(f"{BANNER}: calibration: extrapolated: ") and "mb=8" in lines[1]
    sim = json.loads((tmp_path / "simulation.json").read_text())
    assert sim["extrapolated"] is True and sim["calibration"] == sim["prediction"]["calibration"]


def test_presets_themselves_fit() -> None:
    for recipe, gpu, dtype in (("llama3_8b", "h100", "fp8_cs"), ("llama3_70b", "h100", "fp8_cs"),
                               ("qwen3_30b_a3b", "gb200", "fp8_mx"), ("llama3_70b", "gb200", "fp8_cs")):
        p = predict({"model_recipe_name": recipe, "gpu_type": gpu, "compute_dtype": dtype})
        assert p.fits, (recipe, gpu, dtype, p.oom_message)


def test_every_pretrain_preset_fits() -> None:
    """They ran. Nemotron-H's FP8_CS preset reused for other dtypes (§4) is not known to have run."""
    checked = 0
    for (recipe, task, gpu, dtype, variant), preset in PRESETS.items():
        if task != "pretrain" or (recipe == "nemotronh_56b" and dtype != "fp8_cs"):
            continue
        p = predict({"model_recipe_name": recipe, "gpu_type": gpu, "compute_dtype": dtype, "config_variant": variant,
                     "num_gpus": preset.num_gpus})
        assert p.fits, (recipe, gpu, dtype, variant, p.mem_max_alloc_gb)
        assert p.tflops_per_gpu > 0.05 * GPUS[gpu].peak_bf16_tflops, (recipe, gpu, dtype, p.tflops_per_gpu)
        checked += 1
    assert checked > 120


BASE_8B = {"model_recipe_name": "llama3_8b", "gpu_type": "h100", "compute_dtype": "bf16", "num_gpus": 8,
           "tp": 8, "pp": 1, "cp": 1, "mb": 1, "gb": 32}


def test_tp_across_nodes_is_slower_than_inside_a_node() -> None:
    inside = predict(BASE_8B, num_nodes=1)
    across = predict(BASE_8B, num_nodes=2)  # 4 GPUs per node: the TP group leaves NVLink
    assert across.step_time_s > inside.step_time_s * 1.1
    assert across.breakdown.get("tp_comm", 0) > inside.breakdown.get("tp_comm", 0)


def test_huge_micro_batch_ooms_on_h100() -> None:
    p = predict({"model_recipe_name": "llama3_70b", "gpu_type": "h100", "compute_dtype": "bf16", "num_gpus": 8,
                 "tp": 1, "pp": 1, "cp": 1, "vp": 1, "mb": 16, "gb": 128})
    assert not p.fits and p.oom_message
    assert p.mem_max_alloc_gb > GPUS["h100"].hbm_gb


def test_bubble_grows_when_microbatches_shrink() -> None:
    base = {"model_recipe_name": "llama3_70b", "gpu_type": "h100", "compute_dtype": "fp8_cs", "num_gpus": 64,
            "tp": 4, "pp": 8, "vp": 5, "mb": 1}
    many, few = predict({**base, "gb": 256}), predict({**base, "gb": 16})
    assert few.breakdown["bubble"] / few.step_time_s > many.breakdown["bubble"] / many.step_time_s
    assert few.tflops_per_gpu < many.tflops_per_gpu


def test_fp8_is_faster_than_bf16() -> None:
    bf16 = predict({**BASE_8B, "tp": 1, "compute_dtype": "bf16", "gb": 64})
    fp8 = predict({**BASE_8B, "tp": 1, "compute_dtype": "fp8_cs", "gb": 64})
    assert fp8.step_time_s < bf16.step_time_s
    assert fp8.flops_per_step == bf16.flops_per_step  # same model FLOPs, different speed


def test_deterministic_and_consistent() -> None:
    a: Prediction = predict(BASE_8B)
    b: Prediction = predict(dict(BASE_8B))
    assert a == b
    assert a.step_time_s == pytest.approx(sum(a.breakdown.values()), rel=1e-6)
    assert a.tflops_per_gpu == pytest.approx(a.flops_per_step / a.step_time_s / 8 / 1e12, rel=1e-9)
    assert a.tokens_per_s_per_gpu == pytest.approx(32 * 8192 / a.step_time_s / 8, rel=1e-9)
