"""How well the simulator's performance model predicts Megatron-Bridge's published TFLOP/s per GPU.

Run: `python benchmarks/bench_perfmodel.py [--processes N]` (about a minute on 2 cores). Prints, for each of
the 29 rows of the 26.02 published table (`dse.megatron._published`, docs/reference/megatron-bridge.md §5):
* leave-one-out (LOO): the constants fitted (`dse.simulator._fit.fit`) on the other 28 rows, this row
  predicted -- the honest figure for a configuration the fit has not seen;
* in-sample: fitted on all 29 rows (what `dse.simulator._model.Knobs` ships);
* baseline: the previous, hand-tuned constants (`BASELINE_KNOBS`, the Knobs of commit ff5c803, which
  the current model reproduces exactly when its newer terms are switched off as below);
then the median and worst |error| of each, targets LOO median <= 5 %, worst <= 10 %. Finally a HELD-OUT
set that no fit ever sees: the rows of the older 25.11 container (same document, second table), predicted
with the shipped constants and the baseline; the container's software differs, so a few % of offset
is expected there.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from dse.megatron import PUBLISHED_26_02  # noqa: E402
from dse.simulator import KNOBS, Knobs, fit, get_knob, leave_one_out, predict, rounded  # noqa: E402

# The hand-tuned constants as they were (git ff5c803, dse/perfmodel.py `Knobs`), with every term added
# since then switched off, so that the current model reproduces that model's predictions exactly.
BASELINE_KNOBS = Knobs(
    gemm_eff={"hopper": {"bf16": 0.80, "fp8": 0.62, "fp4": 0.62}, "blackwell": {"bf16": 0.60, "fp8": 0.54, "fp4": 0.33}},
    grouped_gemm_eff={"hopper": 0.3, "blackwell": 0.78},
    sustained={"gb300": 1.24},
    gemm_m0=512.0, gemm_n0=512.0, grouped_m0=0.0,
    attn_eff=0.51, attn_s0=1024.0, attn_exp_exposed=0.0, window_skip=1.0, mamba_scan_eff=0.15,
    elem_attn=14.0, elem_mlp=14.0, elem_moe_token=34.0, elem_glu_unfused=0.0,
    elem_quant={"bf16": 0.0, "fp8_cs": 4.3, "fp8_mx": 2.9, "fp8_sc": 5.0, "nvfp4": 4.3},
    hbm_eff=0.7, nvlink_eff=0.75, net_eff=0.8, lat_nvlink_s=12e-6, lat_net_s=30e-6, a2a_net_gbps=1e9,
    tp_exposed_nvlink=0.3, tp_exposed_net=0.9, cp_exposed=0.3, pp_exposed=0.3, pp_loss_slot=False,
    a2a_eff={"alltoall": 0.66, "deepep": 0.84, "hybridep": 0.9, "flex": 0.84},
    moe_fixed_s={"alltoall": 0.7e-3, "deepep": 3.0e-3, "hybridep": 0.1e-3, "flex": 1.0e-3},
    moe_graph_saving=0.5, a2a_exposed_overlap=0.3,
    kernels_dense_layer=90.0, kernels_moe_layer=220.0, hopper_expert_kernels={"bf16": 9.0, "fp8": 24.0},
    blackwell_expert_kernels=0.0, launch_s=5e-6, host_slowdown={}, graph_launch_factor=0.1,
    cpu_smooth_p=0.0, cpu_overlap=0.85,
    dp_hide=0.8, fsdp_hide=0.85, fsdp_slowdown=0.04, offload_hide=0.8, optimizer_bytes_per_param=32.0,
    step_fixed_s=0.05, act_scale=0.85, workspace_gb=3.0, fragmentation=1.03, context_gb=1.5,
)


def _row(gpu: str, recipe: str, n: int, dtype: str, gb: int, mb: int, tp: int, pp: int, cp: int, vp: int, ep: int,
         **extra: Any) -> dict[str, Any]:
    return {"gpu_type": gpu, "model_recipe_name": recipe, "num_gpus": n, "compute_dtype": dtype, "gb": gb, "mb": mb,
            "tp": tp, "pp": pp, "cp": cp, "vp": vp, "ep": ep, **extra}


# 25.11 container rows (docs/reference/megatron-bridge.md §5, second table): (label, cmd_args, published TFLOP/s/GPU). Llama3 8B
# FP8-MX figures are the bracketed ones; H100 Llama3 8B ran Megatron FSDP without the v0.3.0 preset's
# recompute; the DeepSeek-V3 rows ran without MTP. Features the table does not list come from the presets.
HELD_OUT_25_11: tuple[tuple[str, dict[str, Any], float], ...] = (
    ("GB300 Llama3 8B FP8-CS", _row("gb300", "llama3_8b", 8, "fp8_cs", 128, 2, 1, 1, 1, 1, 1), 1933),
    ("GB300 Llama3 8B FP8-MX", _row("gb300", "llama3_8b", 8, "fp8_mx", 128, 2, 1, 1, 1, 1, 1), 1858),
    ("GB200 Llama3 8B FP8-CS", _row("gb200", "llama3_8b", 8, "fp8_cs", 128, 2, 1, 1, 1, 1, 1), 1622),
    ("GB200 Llama3 8B FP8-MX", _row("gb200", "llama3_8b", 8, "fp8_mx", 128, 2, 1, 1, 1, 1, 1), 1533),
    ("B200 Llama3 8B FP8-CS", _row("b200", "llama3_8b", 8, "fp8_cs", 128, 2, 1, 1, 1, 1, 1), 1576),
    ("B200 Llama3 8B FP8-MX", _row("b200", "llama3_8b", 8, "fp8_mx", 128, 2, 1, 1, 1, 1, 1), 1519),
    ("H100 Llama3 8B FP8-CS FSDP", _row("h100", "llama3_8b", 8, "fp8_cs", 128, 1, 1, 1, 1, 1, 1,
                                        use_megatron_fsdp=True, recompute_num_layers=0), 744),
    ("GB300 Llama3 70B FP8-CS FSDP", _row("gb300", "llama3_70b", 64, "fp8_cs", 256, 2, 1, 1, 1, 1, 1,
                                          use_megatron_fsdp=True), 2030),
    ("GB200 Llama3 70B FP8-CS FSDP", _row("gb200", "llama3_70b", 64, "fp8_cs", 256, 2, 1, 1, 1, 1, 1,
                                          use_megatron_fsdp=True), 1937),
    ("H100 Llama3 70B FP8-CS", _row("h100", "llama3_70b", 64, "fp8_cs", 128, 1, 4, 8, 1, 5, 1), 719),
    ("GB300 Qwen3 30B-A3B FP8-MX", _row("gb300", "qwen3_30b_a3b", 8, "fp8_mx", 512, 4, 1, 1, 1, 1, 8), 666),
    ("GB200 Qwen3 30B-A3B FP8-MX", _row("gb200", "qwen3_30b_a3b", 8, "fp8_mx", 512, 4, 1, 1, 1, 1, 8), 547),
    ("B200 Qwen3 30B-A3B FP8-MX", _row("b200", "qwen3_30b_a3b", 8, "fp8_mx", 512, 1, 1, 1, 1, 1, 8), 214),
    ("H100 Qwen3 30B-A3B FP8-CS", _row("h100", "qwen3_30b_a3b", 16, "fp8_cs", 512, 2, 1, 2, 1, 24, 8), 121),
    ("GB300 DeepSeek-V3 BF16 no-MTP", _row("gb300", "deepseek_v3", 256, "bf16", 4096, 1, 1, 2, 1, 4, 32,
                                           mtp_num_layers=0), 961),
    ("GB300 DeepSeek-V3 FP8-MX no-MTP", _row("gb300", "deepseek_v3", 256, "fp8_mx", 4096, 1, 1, 2, 1, 4, 32,
                                             mtp_num_layers=0), 1088),
)


def _stats(errors: list[float]) -> tuple[float, float]:
    absolute = [abs(e) for e in errors]
    return statistics.median(absolute), max(absolute)


def _pct(x: float) -> str:
    return f"{x * 100:+6.1f}%"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=min(2, os.cpu_count() or 1),
                        help="worker processes for the leave-one-out fits (default: 2)")
    args = parser.parse_args()
    t0 = time.perf_counter()
    rows = list(PUBLISHED_26_02)

    full = fit(rows)
    reproduced = all(math.isclose(get_knob(KNOBS, p), v, rel_tol=1e-9) for p, v in rounded(full.values).items())
    loo = leave_one_out(rows, processes=args.processes)
    ins = [predict(r.cmd_args(), knobs=KNOBS).tflops_per_gpu for r in rows]
    base = [predict(r.cmd_args(), knobs=BASELINE_KNOBS).tflops_per_gpu for r in rows]

    print(f"Published 26.02 table, {len(rows)} rows: model TFLOP/s/GPU and error vs published")
    print(f"{'row':30s} {'published':>9s} | {'LOO':>7s} {'err':>7s} | {'in-sample':>9s} {'err':>7s} | "
          f"{'baseline':>8s} {'err':>7s}")
    errs: dict[str, list[float]] = {"loo": [], "in": [], "base": []}
    for r, p_loo, p_in, p_base in zip(rows, loo, ins, base, strict=True):
        e_loo, e_in, e_base = (p / r.tflops_per_gpu - 1 for p in (p_loo, p_in, p_base))
        errs["loo"].append(e_loo)
        errs["in"].append(e_in)
        errs["base"].append(e_base)
        flag = "  <-- LOO > 10 %" if abs(e_loo) > 0.10 else ""
        print(f"{r.label:30s} {r.tflops_per_gpu:9.0f} | {p_loo:7.0f} {_pct(e_loo)} | {p_in:9.0f} {_pct(e_in)} | "
              f"{p_base:8.0f} {_pct(e_base)}{flag}")

    held = [(label, cmd, pub, predict(cmd, knobs=KNOBS), predict(cmd, knobs=BASELINE_KNOBS))
            for label, cmd, pub in HELD_OUT_25_11]
    print(f"\nHELD OUT: older container (25.11), {len(held)} rows, never fitted; shipped constants vs baseline")
    print(f"{'row':32s} {'published':>9s} | {'model':>7s} {'err':>7s} | {'baseline':>8s} {'err':>7s} | calibration")
    held_err, held_base = [], []
    for label, _, pub, p, b in held:
        held_err.append(p.tflops_per_gpu / pub - 1)
        held_base.append(b.tflops_per_gpu / pub - 1)
        print(f"{label:32s} {pub:9.0f} | {p.tflops_per_gpu:7.0f} {_pct(held_err[-1])} | {b.tflops_per_gpu:8.0f} "
              f"{_pct(held_base[-1])} | {p.calibration.split(':')[0]}")

    print("\nSummary (|error| of TFLOP/s/GPU)                      median    worst")
    lines = [("26.02 leave-one-out (fit on the other 28 rows)", errs["loo"]),
             ("26.02 in-sample (fit on all 29 = shipped Knobs)", errs["in"]),
             ("26.02 baseline (previous hand-tuned constants)", errs["base"]),
             ("25.11 held out, older container: shipped Knobs", held_err),
             ("25.11 held out, older container: baseline", held_base)]
    for name, e in lines:
        med, worst = _stats(e)
        print(f"  {name:52s} {med * 100:5.1f} %  {worst * 100:5.1f} %")
    med, worst = _stats(errs["loo"])
    print(f"  target: leave-one-out median <= 5 % ({'met' if med <= 0.05 else 'MISSED'}), "
          f"worst <= 10 % ({'met' if worst <= 0.10 else 'MISSED'})")
    print(f"  shipped Knobs defaults reproduced by fit(): {'yes' if reproduced else 'NO (refit and update Knobs)'}")
    print(f"\nwall time {time.perf_counter() - t0:.1f} s ({args.processes} process(es))")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
