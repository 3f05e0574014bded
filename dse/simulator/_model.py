"""An analytic performance model of Megatron-Core training, as launched by Megatron-Bridge v0.3.0.

It predicts the step time, model TFLOP/s/GPU, tokens/s/GPU and memory of one training configuration
(flat cmd_args, resolved against the presets) as a transparent sum of named terms, so that a simulated
sweep behaves like a real one: bigger micro-batches help until memory runs out, TP or EP groups that
leave the NVLink domain hurt, pipeline bubbles shrink with more micro-batches, FP8 beats BF16, and so on.

Sources of the numbers: the FLOPs formula is Megatron-Bridge's `transformer_flops`
(docs/reference/megatron-bridge.md §6) so TFLOP/s/GPU means what the real log prints; peak TFLOP/s, HBM and link speeds
are the vendors' dense datasheet figures; the efficiency and overhead constants in `Knobs` are fitted
by `dse.simulator._fit` (bounded least squares with weak physical priors) to all 29 rows of the 26.02
published table (§5, `dse.megatron._published`). `benchmarks/bench_perfmodel.py` measures the error honestly:
leave-one-out median ~4 % but up to ~23 % on rows whose regime no other row shares (B300 Qwen3 235B,
B200 DeepSeek-V3), ~6 % median on the older 25.11 rows no fit has seen, and larger errors far from the
published configurations -- `Prediction.extrapolated` / `.calibration` say when a configuration is
outside the published rows' ranges. It is a model, not a simulator of kernels. Pure functions, no I/O.

This module assembles one step from the terms of its private siblings: `_hardware` (GPU datasheets,
`Knobs`), `_resolve` (cmd_args -> `_Config`), `_flops` (FLOPs and parameters), `_compute` (GPU and host
time), `_comm` (collectives), `_memory` (memory and OOM) and `_calibration` (published ranges). The public
names of the first ones are re-exported here too, so `dse.simulator._model.Knobs` etc. keep working.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dse.simulator._calibration import _calibration
from dse.simulator._comm import _comm_terms, _per_domain, _ring_time
from dse.simulator._compute import _compute_terms, _host_terms, _recompute_s
from dse.simulator._flops import (
    _kinds,
    _params,
    flops_parts_per_token,
    model_flops_per_step,
    padded_vocab,
    parameter_count,
)
from dse.simulator._hardware import GB, GIB, GPU, GPUS, KNOBS, Knobs
from dse.simulator._memory import _act_bytes, _memory, _oom_message
from dse.simulator._resolve import _config

__all__ = [
    "GPU",
    "GPUS",
    "KNOBS",
    "Knobs",
    "Prediction",
    "flops_parts_per_token",
    "model_flops_per_step",
    "padded_vocab",
    "parameter_count",
    "predict",
]


@dataclass(frozen=True)
class Prediction:
    """What one configuration would do; `breakdown` is seconds per step for each named component."""

    step_time_s: float
    tflops_per_gpu: float
    tokens_per_s_per_gpu: float
    mem_alloc_gb: float
    mem_max_alloc_gb: float
    fits: bool
    oom_message: str | None
    flops_per_step: float
    breakdown: dict[str, float]
    memory: dict[str, float] = field(default_factory=dict)  # GB per component (worst pipeline stage)
    # How far the constants' calibration reaches for this configuration (`calibration_of`):
    # extrapolated=False for a published row or a configuration inside the published rows' ranges.
    extrapolated: bool = False
    calibration: str = ""


def predict(cmd_args: Mapping[str, Any], num_nodes: int | None = None, knobs: Knobs | None = None) -> Prediction:
    """Predict one training step of `cmd_args` (Megatron-Bridge launcher fields) on `num_nodes` nodes.

    Raises `InputError` for what the launcher rejects before training (world size or GBS not divisible,
    unknown GPU or recipe). Memory that does not fit is not an error: the prediction has `fits=False`
    and the CUDA OOM message a real run would print.
    """
    k = knobs or KNOBS
    c = _config(cmd_args, num_nodes)
    a, gpu = c.arch, c.gpu
    parts = flops_parts_per_token(a, c.seq, c.tp)
    flops_step = float(c.gb) * c.seq * sum(parts.values())

    t = _compute_terms(c, parts, k)
    if c.task == "lora":  # frozen weights: backward computes data gradients only (2 of 3 GEMM passes)
        for key in ("attn_linear", "dense_mlp", "moe_experts", "shared_experts", "mamba"):
            t[key] *= 2 / 3
    compute = sum(t.values())
    comm = _comm_terms(c, t, k)
    host = _host_terms(c, compute + sum(comm.values()), k)
    recompute = _recompute_s(c, t, parts)

    _, _, n_layers = _kinds(a)
    layer_s = (compute - t["logits"]) / max(1, n_layers)
    offload = 0.0
    if c.offload_layers:  # D2H after forward, H2D before backward, overlapped with the other layers
        n_off = min(c.offload_layers, n_layers)
        xfer = n_off * _act_bytes(c)["per_layer"] * c.mb * c.seq / (c.cp * c.tp) / (gpu.host_link_gbps * GB)
        offload = 2 * max(0.0, xfer - k.offload_hide * n_off * layer_s / 2) + 0.02 * xfer

    params = _params(a, c.tp)
    p_dense_gpu = (params["dense"] + params["embedding"] + params["output"]) / (c.tp * c.pp)
    p_exp_gpu = params["expert"] / (c.etp * c.ep * c.pp)
    dp_dom = _per_domain(c.dp * c.cp, c.tp, c.domain)
    edp_dom = _per_domain(c.edp, c.etp * c.ep, c.domain)
    fsdp = 0.0
    if c.fsdp:  # all-gather params for forward and again for backward, reduce-scatter grads, per micro-batch
        gather_bytes = 2.0 if c.dtype == "bf16" else 1.5  # FP8 param all-gather where the recipe allows it
        fs = 2 * _ring_time(p_dense_gpu * gather_bytes, c.dp * c.cp, dp_dom, gpu, k)
        fs += _ring_time(p_dense_gpu * 2, c.dp * c.cp, dp_dom, gpu, k)
        fs += 3 * _ring_time(p_exp_gpu * 2, c.edp, edp_dom, gpu, k)
        if c.nccl_ub:
            fs *= 0.8  # NVLS / zero-copy collectives
        fsdp = max(0.0, fs - k.fsdp_hide * compute) + k.fsdp_slowdown * compute

    # ---- pipeline: steady 1F1B phase + warm-up/cool-down bubble ------------------------------------
    per_mb = compute + sum(comm.values()) + sum(host.values()) + recompute + offload + fsdp
    stage_mb = per_mb / c.pp
    if c.pp > 1 and not c.pp_layout and a.num_layers % c.pp == 0:
        # an even layer split leaves the output layer and loss on top of the last stage; recipes whose
        # layer count does not divide (235B: 94+2, DeepSeek) count embedding and loss as layers instead
        stage_mb += t["logits"] * (1 - 1 / c.pp)
    elif c.pp > 1 and not c.pp_layout and a.pipeline_split_counts_embedding_and_loss and k.pp_loss_slot:
        # the loss takes one layer's slot on the last stage, whatever it costs
        slots = a.pipeline_layers / c.pp
        layer_mb = (per_mb - t["logits"]) / a.num_layers
        stage_mb = max(slots * layer_mb, (slots - 1) * layer_mb + t["logits"])
    steady = c.m * stage_mb
    bubble = (c.pp - 1) / c.vp * stage_mb if c.pp > 1 else 0.0

    # ---- once per step: DP grad reduce-scatter + param all-gather (distributed optimizer), Adam ------
    dp_s = 0.0
    if not c.fsdp and c.task != "lora":
        dp_s = 2 * _ring_time(p_dense_gpu * 2, c.dp * c.cp, dp_dom, gpu, k)
        dp_s += 2 * _ring_time(p_exp_gpu * 2, c.edp, edp_dom, gpu, k)
        dp_s = max(0.0, dp_s - k.dp_hide * stage_mb)  # overlapped with the last micro-batch's backward
    shard = (p_dense_gpu / (c.dp * c.cp) + p_exp_gpu / c.edp) * (0.0 if c.task == "lora" else 1.0)
    optim_s = shard * k.optimizer_bytes_per_param / (gpu.hbm_tbps * 1e12 * k.hbm_eff)
    step = steady + bubble + dp_s + optim_s + k.step_fixed_s

    scale = c.m / c.pp  # per-micro-batch, whole-model seconds -> seconds per step on one stage
    breakdown = {
        "compute": (compute - t["elementwise"]) * scale,
        "elementwise": t["elementwise"] * scale,
        **{name: v * scale for name, v in comm.items()},
        **{name: v * scale for name, v in host.items()},
        "recompute": recompute * scale,
        "offload": offload * scale,
        "fsdp_comm": fsdp * scale,
        "pp_imbalance": steady - c.m * per_mb / c.pp,
        "bubble": bubble,
        "dp_comm": dp_s,
        "optimizer": optim_s,
        "fixed": k.step_fixed_s,
    }

    extrapolated, note = _calibration(c)
    mem = _memory(c, params, k)
    need = mem["max_allocated"] * k.fragmentation + k.context_gb
    fits = need * GB <= gpu.hbm_gb * GIB
    return Prediction(
        step_time_s=step,
        tflops_per_gpu=flops_step / step / c.n / 1e12,
        tokens_per_s_per_gpu=c.gb * c.seq / step / c.n,
        mem_alloc_gb=mem["allocated"],
        mem_max_alloc_gb=mem["max_allocated"],
        fits=fits,
        oom_message=None if fits else _oom_message(need, mem["allocated"], mem["largest_tensor"], gpu),
        flops_per_step=flops_step,
        breakdown=breakdown,
        memory={key: v for key, v in mem.items() if key not in ("allocated", "max_allocated", "largest_tensor")},
        extrapolated=extrapolated,
        calibration=note,
    )
