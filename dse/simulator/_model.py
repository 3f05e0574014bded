"""An analytic performance model of Megatron-Core training, as launched by Megatron-Bridge v0.3.0.

It predicts the step time, model TFLOP/s/GPU, tokens/s/GPU and memory of one training configuration
(flat cmd_args, resolved against the presets) as a transparent sum of named terms, so that a simulated
sweep behaves like a real one: bigger micro-batches help until memory runs out, TP or EP groups that
leave the NVLink domain hurt, pipeline bubbles shrink with more micro-batches, FP8 beats BF16, and so on.

Sources of the numbers: the FLOPs formula is Megatron-Bridge's `transformer_flops` (reference
megatron-bridge.md §6) so TFLOP/s/GPU means what the real log prints; peak TFLOP/s, HBM and link speeds
are the vendors' dense datasheet figures; the efficiency and overhead constants in `Knobs` are fitted
by `dse.simulator._fit` (bounded least squares with weak physical priors) to all 29 rows of the 26.02
published table (§5, `dse.megatron._published`). `benchmarks/bench_perfmodel.py` measures the error honestly:
leave-one-out median ~4 % but up to ~23 % on rows whose regime no other row shares (B300 Qwen3 235B,
B200 DeepSeek-V3), ~6 % median on the older 25.11 rows no fit has seen, and larger errors far from the
published configurations -- `Prediction.extrapolated` / `.calibration` say when a configuration is
outside the published rows' ranges. It is a model, not a simulator of kernels. Pure functions, no I/O.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from dse.errors import InputError
from dse.megatron import Architecture, architecture_for, resolve_defaults

GIB = 1024**3
GB = 1e9


# ---------------------------------------------------------------------------------------------------
# hardware
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GPU:
    """Datasheet numbers of one GPU (dense tensor-core peaks; bandwidths per GPU, one direction, GB/s)."""

    name: str
    peak_bf16_tflops: float
    peak_fp8_tflops: float
    peak_fp4_tflops: float
    hbm_gb: float  # capacity as PyTorch reports it (GiB)
    nvlink_domain: int  # GPUs that reach each other over NVLink (8 per HGX node, 72 per NVL72 rack)
    nvlink_gbps: float
    network_gbps: float  # scale-out NIC bandwidth per GPU
    hbm_tbps: float = 3.35  # HBM bandwidth, TB/s
    host_link_gbps: float = 55.0  # GPU <-> CPU memory (activation offload): PCIe 5 x16 or NVLink-C2C
    gpus_per_node: int = 8
    blackwell: bool = True
    # exp() throughput of the special-function units (MUFU), 10^12/s: SMs x 16/clk x boost clock.
    # Softmax needs one exp per score element (two with the backward recompute) against 4 x head_dim
    # tensor FLOPs, so attention with small heads is exp-bound; Blackwell Ultra doubles the rate.
    exp_tops: float = 4.6
    host: str = "x86"  # the host CPU kind (GB200/GB300: Grace), for `Knobs.host_slowdown`


GPUS: dict[str, GPU] = {
    # HBM capacities are what PyTorch reports (GiB): 80 GB H100 = 79.6 GiB.
    # H100 SXM: 989 / 1979 dense TFLOP/s, no FP4 (nvfp4 runs at FP8 speed), 80 GB HBM3 at 3.35 TB/s,
    # NVLink 4 450 GB/s per direction, 8x 400 Gb/s ConnectX-7 (50 GB/s per GPU).
    "h100": GPU("h100", 989.0, 1979.0, 1979.0, 79.6, 8, 450.0, 50.0, hbm_tbps=3.35, host_link_gbps=55.0,
                blackwell=False, exp_tops=3.9),
    # HGX B200: 2.25 / 4.5 / 9 PFLOP/s dense, ~180 GiB HBM3e at 8 TB/s, NVLink 5 900 GB/s, 400 Gb/s NICs.
    "b200": GPU("b200", 2250.0, 4500.0, 9000.0, 180.0, 8, 900.0, 50.0, hbm_tbps=8.0, host_link_gbps=55.0),
    # HGX B300: FP4 dense 13.5 PFLOP/s, ~270 GiB HBM3e, 800 Gb/s ConnectX-8 (100 GB/s per GPU).
    "b300": GPU("b300", 2250.0, 4500.0, 13500.0, 270.0, 8, 900.0, 100.0, hbm_tbps=8.0, host_link_gbps=55.0,
                exp_tops=9.2),
    # GB200 NVL72: 2.5 / 5 / 10 PFLOP/s dense per GPU, ~186 GiB, 72-GPU NVLink domain, 4 GPUs per tray,
    # Grace NVLink-C2C (450 GB/s per direction, shared by 2 GPUs) for offload, 400 Gb/s NICs.
    "gb200": GPU("gb200", 2500.0, 5000.0, 10000.0, 186.0, 72, 900.0, 50.0, hbm_tbps=8.0, host_link_gbps=200.0,
                 gpus_per_node=4, host="grace"),
    # GB300 NVL72: FP4 dense 15 PFLOP/s, ~279 GiB HBM3e, 800 Gb/s NICs.
    "gb300": GPU("gb300", 2500.0, 5000.0, 15000.0, 279.0, 72, 900.0, 100.0, hbm_tbps=8.0, host_link_gbps=200.0,
                 gpus_per_node=4, exp_tops=9.2, host="grace"),
}


# ---------------------------------------------------------------------------------------------------
# calibration constants
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Knobs:
    """Efficiencies and overheads of the model.

    The defaults marked FITTED are the output of `dse.simulator._fit.fit()` on all 29 rows of the 26.02
    published table (`dse.megatron._published`), rounded to 3 significant digits: bounded least squares on
    log(predicted / published TFLOP/s), each constant with a weak prior towards a textbook value.
    `python -m dse.simulator._fit` reproduces them and tests/test_perfmodel.py checks that it still does,
    so do not edit them by hand: change the model or the bounds in `dse.simulator._fit.FIT_PARAMS`, refit.
    The rest are physical defaults that the published rows do not pin down (held fixed in the fit).
    `benchmarks/bench_perfmodel.py` measures the leave-one-out error of this fit.
    """

    # Best-case fraction of the dtype's dense peak a large GEMM reaches. FITTED (Hopper has no FP4:
    # NVFP4 runs at its FP8 speed). Blackwell BF16 sits on its lower bound: the GPT-OSS rows (the only
    # BF16 rows on Blackwell) are slower than the model explains.
    gemm_eff: Mapping[str, Mapping[str, float]] = field(default_factory=lambda: {
        "hopper": {"bf16": 0.9, "fp8": 0.593},
        "blackwell": {"bf16": 0.6, "fp8": 0.523, "fp4": 0.335},
    })
    # Grouped (MoE expert) GEMMs relative to one large GEMM, by "<family>_<dtype>" or "<family>". FITTED.
    # Hopper runs TE's GroupedLinear as one cuBLAS GEMM (plus FP8 casts) per local expert.
    grouped_gemm_eff: Mapping[str, float] = field(default_factory=lambda: {
        "hopper_bf16": 0.925, "hopper_fp8": 0.468, "blackwell": 0.771})
    # Sustained clocks relative to the datasheet (power limits: GB300 1.4 kW vs GB200 1.2 kW, B300 1.1 kW
    # vs B200 1.0 kW at the same listed dense peaks). FITTED.
    sustained: Mapping[str, float] = field(default_factory=lambda: {"gb300": 1.22, "b300": 1.21})
    # GEMM efficiency falls off for small shapes: eff = best / (1 + m0/M + n0/N + n0/K) (tokens M, local
    # N, K): an additive roofline, whose m0 ~ n0 ~ peak * bytes / (2 * HBM bandwidth) ~ 250. FITTED.
    gemm_m0: float = 298.0
    gemm_n0: float = 280.0
    # expert GEMMs' m0 (0: gemm_m0): ragged per-expert tiles lose more at few tokens per expert. FITTED
    grouped_m0: float = 1.03e3
    # Flash attention (cuDNN) fwd+bwd share of BF16 peak on long sequences. FITTED.
    attn_eff: float = 0.449
    attn_s0: float = 1024.0  # ... less for short per-rank sequences: eff * s / (s + s0)
    # Softmax exp on the special-function units (GPU.exp_tops): share of that time the MMAs do not hide.
    # It makes small heads (GPT-OSS: 64) expensive and Blackwell Ultra (2x exp rate) faster. FITTED.
    attn_exp_exposed: float = 0.549
    window_skip: float = 0.606  # share of the masked-out work sliding-window kernels skip. FITTED (GPT-OSS)
    mamba_scan_eff: float = 0.15  # SSD scan kernels are far from GEMM speed
    # Memory-bound (elementwise) traffic, in tensor elements per token per layer, forward + backward:
    # norms, residual adds, rotary, activation functions, MoE permute/unpermute and router.
    elem_attn: float = 14.0  # x hidden
    elem_mlp: float = 14.0  # x ffn width (x1.5 for gated units)
    elem_moe_token: float = 17.0  # x hidden x top-k (permute/unpermute/gather copies, casts). FITTED
    # x 2 expert-ffn x top-k: a GLU written out in PyTorch ops (GPT-OSS: clamp, quick-gelu, +1, bias). FITTED
    elem_glu_unfused: float = 55.3
    elem_quant: Mapping[str, float] = field(default_factory=lambda: {
        # extra quantize/transposes of GEMM inputs, x (sum of GEMM input widths); fp8_mx, fp8_cs FITTED
        "bf16": 0.0, "fp8_cs": 3.34, "fp8_mx": 2.92, "fp8_sc": 5.0, "nvfp4": 4.3,
    })
    hbm_eff: float = 0.7  # elementwise kernels reach ~70 % of HBM bandwidth
    nvlink_eff: float = 0.75  # NCCL bus bandwidth / link bandwidth
    net_eff: float = 0.8
    lat_nvlink_s: float = 12e-6  # per collective
    lat_net_s: float = 30e-6
    # All-to-all across nodes reaches at most this per GPU whatever the NIC (64-rank NCCL all-to-all over
    # a rail-optimised fabric: PXN hops, message rates; B300's 800 Gb/s NICs ran GPT-OSS no faster than
    # B200's 400 Gb/s). FITTED, on the B200/B300 GPT-OSS rows only.
    a2a_net_gbps: float = 45.0
    # TP with sequence parallelism: exposed share of AG/RS time (TE userbuffers overlap inside NVLink).
    tp_exposed_nvlink: float = 0.3
    tp_exposed_net: float = 0.9
    cp_exposed: float = 0.3  # ring attention P2P overlaps with attention compute
    pp_exposed: float = 0.3  # async P2P between stages
    # the loss takes one layer's slot of the pipeline split (account_for_loss_in_pipeline_split), whatever
    # it costs (False: spread over all stages, as the hand-tuned model did)
    pp_loss_slot: bool = True
    # MoE token dispatch: fraction of link bandwidth reached (alltoall, hybridep FITTED) and the fixed
    # cost per MoE layer per micro-batch (host syncs for dropless token counts; all but flex FITTED).
    a2a_eff: Mapping[str, float] = field(default_factory=lambda: {
        "alltoall": 0.95, "deepep": 0.84, "hybridep": 0.639, "flex": 0.84})
    moe_fixed_s: Mapping[str, float] = field(default_factory=lambda: {
        "alltoall": 0.000721, "deepep": 0.000508, "hybridep": 0.000101, "flex": 1.0e-3})
    moe_graph_saving: float = 0.5  # share of that fixed cost removed by CUDA graphs of moe_router/preprocess
    a2a_exposed_overlap: float = 0.311  # --moe_a2a_overlap leaves this share of the dispatch exposed. FITTED
    # CPU side: kernels per layer per micro-batch (fwd+bwd) and the host time of one (Python, PyTorch
    # dispatch, launch); MoE layers add kernels per local expert (Hopper: one GEMM + casts per expert;
    # Blackwell: split/quantize per expert around the grouped GEMM). kernels_moe_layer, the expert
    # kernels (Blackwell, Hopper FP8) and launch_s FITTED.
    kernels_dense_layer: float = 90.0
    kernels_moe_layer: float = 359.0
    hopper_expert_kernels: Mapping[str, float] = field(default_factory=lambda: {"bf16": 9.0, "fp8": 31.8})
    blackwell_expert_kernels: float = 10.6
    launch_s: float = 1.82e-5
    # Host CPU time relative to the x86 hosts of B200/H100 systems, by GPU name or `GPU.host`. FITTED:
    # Grace with NVLink-C2C syncs and launches faster; the B300 factor rests on one row (Qwen3 235B).
    host_slowdown: Mapping[str, float] = field(default_factory=lambda: {"grace": 0.565, "b300": 1.51})
    graph_launch_factor: float = 0.1  # launch cost left inside a CUDA graph
    # GPU and CPU time per micro-batch combine as a p-norm, a smooth max: near a tie, syncs and launch gaps
    # expose part of both. FITTED. 0: the hand-tuned rule, CPU time beyond `cpu_overlap` x GPU time.
    cpu_smooth_p: float = 6.07
    cpu_overlap: float = 0.85
    dp_hide: float = 0.8  # share of one micro-batch's backward that hides the DP reduce-scatter/all-gather
    fsdp_hide: float = 0.85  # Megatron FSDP prefetch overlaps per-layer all-gathers with compute
    fsdp_slowdown: float = 0.034  # SM contention of the overlapped FSDP collectives. FITTED
    offload_hide: float = 0.8
    optimizer_bytes_per_param: float = 32.0  # Adam: fp32 param, grad, m, v read + write, bf16 copy
    step_fixed_s: float = 0.05  # per-iteration host work: logging, loss reduce, grad-norm, timers
    # memory (not fitted: the published table gives no memory figures)
    # Activations are counted tensor by tensor (`_act_bytes`); TE frees or aliases some of them. The scale
    # is set so that the presets whose offload/recompute counts were chosen to just fit (Llama3 70B
    # GB200/GB300 FP8 with 40/20 offloaded layers, DeepSeek-V3 GB300) do fit.
    act_scale: float = 0.85
    workspace_gb: float = 3.0  # cuBLAS/TE workspaces, NCCL buffers, allocator slack
    fragmentation: float = 1.03  # reserved / allocated (the tight presets set expandable_segments)
    context_gb: float = 1.5  # CUDA context (outside the PyTorch allocator)


KNOBS = Knobs()


# ---------------------------------------------------------------------------------------------------
# FLOPs (§6)
# ---------------------------------------------------------------------------------------------------
def padded_vocab(arch: Architecture, tp: int = 1) -> int:
    """Vocabulary padded to a multiple of `make_vocab_size_divisible_by * tp` (Megatron)."""
    div = arch.vocab_divisor * max(1, tp)
    return math.ceil(arch.vocab_size / div) * div


def _layer_counts(arch: Architecture) -> tuple[int, int]:
    """(dense layers, MoE layers) including MTP layers, which Megatron counts as MoE layers."""
    if not arch.is_moe:
        return arch.num_layers, 0
    dense = min(arch.dense_layers, arch.num_layers)
    return dense, arch.num_layers - dense + arch.mtp_layers


def flops_parts_per_token(arch: Architecture, seq: int, tp: int = 1) -> dict[str, float]:
    """Training FLOPs per token (fwd + bwd = 3x fwd) of each named part; their sum is the §6 formula."""
    h, heads = arch.hidden_size, arch.num_attention_heads
    vpad = padded_vocab(arch, tp)
    if arch.mamba_layers:
        return _hybrid_parts(arch, seq, vpad)
    g = 1.5 if arch.gated_linear else 1.0
    dense, moe = _layer_counts(arch)
    n_attn = dense + moe
    parts: dict[str, float] = {
        "dense_mlp": 12 * h * g * arch.ffn_hidden_size * dense,
        "moe_experts": 12 * h * g * arch.moe_ffn_hidden_size * arch.moe_router_topk * moe,
        "shared_experts": 12 * h * g * arch.moe_shared_expert_size * moe,
    }
    if arch.mla:
        m = arch.mla
        ql, kl, qk, rope, v = m["q_lora"], m["kv_lora"], m["qk"], m["rope"], m["v"]
        lin = (ql * (h + heads * (qk + rope) + 1) + kl * (h + heads * (qk + v) + 1) + h * rope + heads * v * h)
        parts["attn_linear"] = 6 * n_attn * lin
        parts["attn_core"] = 6 * n_attn * (seq * heads * (qk + rope) / 2 + seq * heads * v / 2)
    else:
        groups = arch.num_query_groups or heads
        ratio = arch.kv_channels * heads / h
        parts["attn_linear"] = 12 * n_attn * h * h * (1 + groups / heads) * ratio
        parts["attn_core"] = 12 * n_attn * h * h * (seq / (2 * h)) * ratio
    parts["logits"] = 6 * h * vpad * (arch.mtp_layers + 1)
    parts["mtp_proj"] = 6 * arch.mtp_layers * (3 * h + 2 * h * h)
    return parts


def _hybrid_parts(arch: Architecture, seq: int, vpad: int) -> dict[str, float]:
    """Megatron's `hybrid_flops` (Mamba + attention + MLP layers), split into named parts, x3 for training."""
    h, heads = arch.hidden_size, arch.num_attention_heads
    n_attn = arch.attention_layers or 0
    n_mamba = arch.mamba_layers
    n_mlp = max(0, arch.num_layers - n_attn - n_mamba)
    p = arch.kv_channels * heads / h
    groups = arch.num_query_groups or heads
    scale = 1.5 if arch.gated_linear else 1.0
    d_in = arch.mamba_num_heads * arch.mamba_head_dim or 2 * h
    nheads = arch.mamba_num_heads or d_in // max(1, arch.mamba_head_dim)
    ds, ng = arch.mamba_state_dim, arch.mamba_groups
    return {
        "attn_linear": 3 * n_attn * 4 * h * p * (h + h * groups / heads),
        "attn_core": 3 * n_attn * 4 * h * p * (seq / 2),
        "dense_mlp": 3 * n_mlp * 4 * (arch.ffn_hidden_size / h) * scale * h * h,
        "mamba_linear": 3 * n_mamba * (2 * h * (2 * d_in + 2 * ng * ds + nheads) + 2 * d_in * h),
        "mamba_scan": 3 * n_mamba * 7 * d_in * ds,
        "logits": 3 * 2 * h * vpad,
        "moe_experts": 0.0,
        "shared_experts": 0.0,
        "mtp_proj": 0.0,
    }


def model_flops_per_step(arch: Architecture, gbs: int, seq: int, tp: int = 1) -> float:
    """FLOPs of one step as Megatron-Bridge logs them (§6): MLA, MoE, MTP, GLU x1.5, padded vocab."""
    return float(gbs) * seq * sum(flops_parts_per_token(arch, seq, tp).values())


# ---------------------------------------------------------------------------------------------------
# parameters
# ---------------------------------------------------------------------------------------------------
def _params(arch: Architecture, tp: int) -> dict[str, float]:
    """Parameter counts: per-layer dense and expert weights, embedding and output layer."""
    h, heads = arch.hidden_size, arch.num_attention_heads
    mult = 3 if arch.gated_linear else 2
    if arch.mla:
        m = arch.mla
        attn = (h * m["q_lora"] + m["q_lora"] * heads * (m["qk"] + m["rope"]) + h * (m["kv_lora"] + m["rope"])
                + m["kv_lora"] * heads * (m["qk"] + m["v"]) + heads * m["v"] * h)
    else:
        groups = arch.num_query_groups or heads
        attn = h * arch.kv_channels * (2 * heads + 2 * groups)
    vpad = padded_vocab(arch, tp)
    if arch.mamba_layers:
        d_in = arch.mamba_num_heads * arch.mamba_head_dim or 2 * h
        mamba = h * (2 * d_in + 2 * arch.mamba_groups * arch.mamba_state_dim + arch.mamba_num_heads) + d_in * h
        n_attn = arch.attention_layers or 0
        n_mlp = max(0, arch.num_layers - n_attn - arch.mamba_layers)
        dense_total = n_attn * attn + n_mlp * mult * h * arch.ffn_hidden_size + arch.mamba_layers * mamba
        return {"dense": float(dense_total), "expert": 0.0, "embedding": float(vpad * h), "output": float(vpad * h)}
    dense, moe = _layer_counts(arch)
    experts = (arch.num_moe_experts or 0) * mult * h * arch.moe_ffn_hidden_size
    shared = mult * h * arch.moe_shared_expert_size + h * (arch.num_moe_experts or 0)
    dense_total = (dense + moe) * (attn + 2 * h) + dense * mult * h * arch.ffn_hidden_size + moe * shared
    dense_total += arch.mtp_layers * 2 * h * h
    return {"dense": float(dense_total), "expert": float(moe * experts), "embedding": float(vpad * h),
            "output": float(vpad * h)}


def parameter_count(arch: Architecture) -> float:
    """Total parameters (embedding and output layer untied), for reports and sanity checks."""
    return sum(_params(arch, 1).values())


# ---------------------------------------------------------------------------------------------------
# communication primitives
# ---------------------------------------------------------------------------------------------------
def _per_domain(size: int, stride: int, domain: int) -> int:
    """Members of a group (`size` ranks, `stride` apart) that share one NVLink domain."""
    if size <= 1:
        return 1
    if stride >= domain:
        return 1
    return max(1, min(size, domain // stride))


def _ring_time(nbytes: float, size: int, per_dom: int, gpu: GPU, k: Knobs) -> float:
    """All-gather or reduce-scatter of a `nbytes` full buffer over `size` ranks (ring, NCCL).

    Inside one NVLink domain the bus bandwidth is NVLink's; across domains the ring's inter-node hops
    share the NICs of the members in each domain, so bandwidth ~ min(NVLink, members_per_domain x NIC).
    """
    if size <= 1 or nbytes <= 0:
        return 0.0
    if per_dom >= size:
        bw, lat = gpu.nvlink_gbps * k.nvlink_eff, k.lat_nvlink_s
    else:
        bw, lat = min(gpu.nvlink_gbps * k.nvlink_eff, per_dom * gpu.network_gbps * k.net_eff), k.lat_net_s
    return nbytes * (size - 1) / size / (bw * GB) + lat * math.log2(size)


def _a2a_time(nbytes: float, size: int, per_dom: int, gpu: GPU, eff: float, k: Knobs) -> float:
    """All-to-all of `nbytes` per rank: same-domain peers over NVLink, the rest over this GPU's NIC."""
    if size <= 1 or nbytes <= 0:
        return 0.0
    local = nbytes * (per_dom - 1) / size / (gpu.nvlink_gbps * eff * GB)
    remote = nbytes * (size - per_dom) / size / (min(gpu.network_gbps * eff, k.a2a_net_gbps) * GB)
    lat = k.lat_nvlink_s if per_dom >= size else k.lat_net_s
    return max(local, remote) + lat


def _p2p_time(nbytes: float, crosses: bool, gpu: GPU, k: Knobs) -> float:
    if nbytes <= 0:
        return 0.0
    if crosses:
        return nbytes / (gpu.network_gbps * k.net_eff * GB) + k.lat_net_s
    return nbytes / (gpu.nvlink_gbps * k.nvlink_eff * GB) + k.lat_nvlink_s


# ---------------------------------------------------------------------------------------------------
# prediction
# ---------------------------------------------------------------------------------------------------
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


@dataclass(frozen=True)
class _Config:
    """The resolved, validated numbers one prediction needs."""

    arch: Architecture
    gpu: GPU
    dtype: str
    n: int
    tp: int
    pp: int
    cp: int
    vp: int
    ep: int
    etp: int
    dp: int
    edp: int
    mb: int
    gb: int
    m: int
    seq: int
    domain: int
    fsdp: bool
    nccl_ub: bool
    scopes: frozenset[str]
    recompute_layers: int
    recompute_modules: frozenset[str]
    offload_layers: int
    a2a_overlap: bool
    dispatcher: str
    pp_layout: bool
    task: str
    gpn: int = 8  # GPUs per node as launched


def _scopes(text: Any) -> frozenset[str]:
    return frozenset(p.strip().lower() for p in str(text or "").replace("[", "").replace("]", "").split(",")
                     if p.strip())


def _arch_for(r: Mapping[str, Any]) -> Architecture:
    arch = architecture_for(r.get("model_recipe_name"))
    if arch is None:
        raise InputError(f"no architecture known for recipe {r.get('model_recipe_name')!r}; the simulator "
                         "needs one of the recipes of reference §6", field="model_recipe_name")
    changes: dict[str, Any] = {}
    if r.get("num_layers") and int(r["num_layers"]) != arch.num_layers:
        n = int(r["num_layers"])
        changes["num_layers"] = n
        if arch.mamba_layers:  # keep the hybrid mix proportional
            changes["mamba_layers"] = round(arch.mamba_layers * n / arch.num_layers)
            changes["attention_layers"] = round((arch.attention_layers or 0) * n / arch.num_layers)
        elif arch.is_moe:
            changes["dense_layers"] = min(arch.dense_layers, n)
    if r.get("hidden_size") and int(r["hidden_size"]) != arch.hidden_size:
        changes["hidden_size"] = int(r["hidden_size"])
    mtp = _override(r, "mtp_num_layers", "model.mtp_num_layers")
    if mtp is not None and arch.is_moe and int(mtp) != arch.mtp_layers:  # e.g. DeepSeek-V3 without MTP
        changes["mtp_layers"] = max(0, int(mtp))
    return replace(arch, **changes) if changes else arch


def _override(r: Mapping[str, Any], *keys: str) -> Any:
    """The first of `keys` set in the cmd_args or in their Hydra overrides (`extra_cmd_args`)."""
    extra = r.get("extra_cmd_args")
    for key in keys:
        if r.get(key) is not None:
            return r[key]
        if isinstance(extra, Mapping) and extra.get(key) is not None:
            return extra[key]
    return None


def _positive(r: Mapping[str, Any], name: str) -> int:
    value = r.get(name)
    if value is None:
        raise InputError("is not set and no preset gives it", field=name)
    v = int(value)
    if v < 1:
        raise InputError(f"must be a positive integer, got {v}", field=name)
    return v


def _config(cmd_args: Mapping[str, Any], num_nodes: int | None) -> _Config:
    """Resolve against the presets and refuse what the launcher would refuse before training starts."""
    r = resolve_defaults(cmd_args)
    gpu = GPUS.get(str(r["gpu_type"]))
    if gpu is None:
        raise InputError(f"unknown gpu_type {r['gpu_type']!r} (one of {', '.join(GPUS)})", field="gpu_type")
    arch = _arch_for(r)
    n = _positive(r, "num_gpus")
    tp, pp, cp, ep, mb, gb, seq = (_positive(r, f) for f in ("tp", "pp", "cp", "ep", "mb", "gb", "seq_length"))
    etp = int(r["et"]) if r.get("et") else tp
    vp = int(r["vp"]) if r.get("vp") else 1
    if n % (tp * pp * cp):
        raise InputError(f"world size ({n}) is not divisible by tp*pp*cp ({tp * pp * cp})", field="num_gpus")
    dp = n // (tp * pp * cp)
    if gb % (mb * dp):
        raise InputError(f"global batch size ({gb}) is not divisible by micro batch size ({mb}) times data "
                         f"parallel size ({dp})", field="gb")
    if n % (etp * ep * pp):
        raise InputError(f"world size ({n}) is not divisible by etp*ep*pp ({etp * ep * pp})", field="ep")
    gpn = max(1, n // int(num_nodes)) if num_nodes else min(n, gpu.gpus_per_node)
    # NVL72 racks span trays (nodes); an HGX node is its own NVLink domain
    domain = gpu.nvlink_domain if gpu.nvlink_domain > gpu.gpus_per_node else min(gpu.nvlink_domain, gpn)
    graph_impl = str(r.get("cuda_graph_impl") or "none").lower()
    scopes = _scopes(r.get("cuda_graph_scope")) if graph_impl != "none" else frozenset()
    if graph_impl == "local" and not scopes:
        scopes = frozenset({"full_iteration"})
    return _Config(
        arch=arch, gpu=gpu, dtype=str(r["compute_dtype"]), n=n, tp=tp, pp=pp, cp=cp, vp=vp, ep=ep, etp=etp,
        dp=dp, edp=n // (etp * ep * pp), mb=mb, gb=gb, m=gb // (mb * dp), seq=seq, domain=domain,
        fsdp=bool(r.get("use_megatron_fsdp")), nccl_ub=bool(r.get("nccl_ub")), scopes=scopes,
        recompute_layers=int(r.get("recompute_num_layers") or 0),
        recompute_modules=_scopes(r.get("recompute_modules")),
        offload_layers=int(r.get("activation_offload_layers") or 0),
        a2a_overlap=bool(r.get("moe_a2a_overlap")), dispatcher=str(r.get("dispatcher") or "alltoall"),
        pp_layout=bool(r.get("pp_layout")), task=str(r.get("task") or "pretrain"), gpn=gpn,
    )


def _gemm_eff(best: float, m: float, n: float, kdim: float, k: Knobs, grouped: bool = False) -> float:
    """Fraction of peak one GEMM family reaches: falls off for few tokens (M) or narrow local N, K.

    The form is an additive roofline: time = FLOPs/peak + bytes/bandwidth, whose bytes per FLOP are
    b/(2M) for the weights, b/(2N) for the input and b/(2K) for the output, so m0 ~ n0 ~ peak*b/(2*HBM)
    (~250 on every GPU and dtype here). Grouped expert GEMMs lose more at small M (ragged per-expert
    tiles, the expert loop), hence their own `grouped_m0`.
    """
    m0 = k.grouped_m0 if grouped and k.grouped_m0 > 0 else k.gemm_m0
    return best / (1.0 + m0 / max(m, 1.0) + k.gemm_n0 / max(n, 1.0) + k.gemm_n0 / max(kdim, 1.0))


def _compute_terms(c: _Config, parts: Mapping[str, float], k: Knobs) -> dict[str, float]:
    """Seconds of GPU work per micro-batch, for the whole model, on one GPU (before pipelining)."""
    a, gpu = c.arch, c.gpu
    family = "blackwell" if gpu.blackwell else "hopper"
    low = {"bf16": "bf16", "nvfp4": "fp4"}.get(c.dtype, "fp8")
    peak = {"bf16": gpu.peak_bf16_tflops, "fp8": gpu.peak_fp8_tflops, "fp4": gpu.peak_fp4_tflops}[low]
    speed = k.sustained.get(gpu.name, 1.0)
    h = a.hidden_size
    tok = c.mb * c.seq / c.cp  # tokens of one micro-batch in one TP group
    tok_gpu = tok / c.tp  # ... held by one GPU (sequence parallel)
    share = c.mb * c.seq / (c.tp * c.cp)  # tokens' worth of model FLOPs this GPU computes per micro-batch

    def gemm(flops_tok: float, n_width: float, k_width: float, m_tokens: float = tok, bf16: bool = False,
             grouped: bool = False) -> float:
        eff_family = k.gemm_eff[family]
        best = eff_family.get("bf16" if bf16 else low, eff_family["fp8"])  # no FP4 units: FP8 speed
        best *= _grouped_eff(k, family, low) if grouped else 1.0
        eff = _gemm_eff(best, m_tokens, n_width, k_width, k, grouped)
        return flops_tok * share / ((gpu.peak_bf16_tflops if bf16 else peak) * 1e12 * eff * speed)

    real_glu = 1.5 if (a.glu_compute and not a.gated_linear) else 1.0  # GEMMs the formula does not count
    t: dict[str, float] = {}
    t["attn_linear"] = gemm(parts["attn_linear"], a.num_attention_heads * a.kv_channels / c.tp, h)
    t["dense_mlp"] = gemm(parts["dense_mlp"] * real_glu, a.ffn_hidden_size / c.tp, h)
    experts = a.num_moe_experts or 1
    tok_per_expert = tok_gpu * c.ep * a.moe_router_topk / experts  # balanced routing (force-balanced)
    t["moe_experts"] = gemm(parts["moe_experts"] * real_glu, a.moe_ffn_hidden_size / c.etp, h,
                            m_tokens=tok_per_expert, grouped=True)
    t["shared_experts"] = gemm(parts["shared_experts"], max(1, a.moe_shared_expert_size) / c.tp, h)
    vpad = padded_vocab(a, c.tp)
    t["logits"] = gemm(parts["logits"] + parts["mtp_proj"], vpad / c.tp, h, bf16=True)  # output layer in BF16
    t["mamba"] = gemm(parts.get("mamba_linear", 0.0), 2 * h / c.tp, h)
    t["mamba"] += parts.get("mamba_scan", 0.0) * share / (gpu.peak_bf16_tflops * 1e12 * k.mamba_scan_eff * speed)
    s_local = c.seq / c.cp
    core = parts["attn_core"]
    if a.sliding_window:  # every other layer attends to a window only; kernels skip only part of the rest
        window = min(1.0, 2.0 * a.sliding_window / c.seq)
        core *= 0.5 + 0.5 * (1.0 - k.window_skip * (1.0 - window))
    head_dim = (a.mla["qk"] + a.mla["rope"]) if a.mla else a.kv_channels
    attn_eff = k.attn_eff * s_local / (s_local + k.attn_s0)
    t["attn_core"] = core * share / (gpu.peak_bf16_tflops * 1e12 * attn_eff * speed)
    # softmax exp: core FLOPs count 12 x head_dim per score element (fwd + bwd), the kernels 2 exps
    t["attn_core"] += k.attn_exp_exposed * core * share / (6 * head_dim * gpu.exp_tops * 1e12 * speed)

    # memory-bound work: elements touched per token, x2 bytes, at HBM speed
    g = 1.5 if (a.gated_linear or a.glu_compute) else 1.0
    dense_layers, moe_layers, n_layers = _kinds(a)
    ffn_elems = a.ffn_hidden_size * g * dense_layers + a.moe_shared_expert_size * g * moe_layers
    attn_width = a.num_attention_heads * a.kv_channels
    elems = k.elem_attn * h * n_layers + k.elem_mlp * ffn_elems
    elems += moe_layers * a.moe_router_topk * (k.elem_moe_token * h + k.elem_mlp * a.moe_ffn_hidden_size * g)
    gemm_inputs = n_layers * (2 * h + attn_width) + ffn_elems / g + moe_layers * a.moe_router_topk * (
        h + a.moe_ffn_hidden_size)
    elems += k.elem_quant.get(c.dtype, 0.0) * gemm_inputs
    if a.glu_compute and not a.gated_linear:  # GLU written out in PyTorch ops (GPT-OSS: clamp, quick-gelu, +1)
        elems += k.elem_glu_unfused * moe_layers * a.moe_router_topk * 2 * a.moe_ffn_hidden_size
    t["elementwise"] = elems * 2 * tok_gpu / (gpu.hbm_tbps * 1e12 * k.hbm_eff * speed)
    return t


def _grouped_eff(k: Knobs, family: str, low: str) -> float:
    """Grouped (expert) GEMM efficiency relative to a dense GEMM: by family and dtype where fitted so."""
    return k.grouped_gemm_eff.get(f"{family}_{low}", k.grouped_gemm_eff.get(family, 1.0))


def _kinds(a: Architecture) -> tuple[int, int, int]:
    """(dense-MLP layers, MoE layers, all transformer layers incl. MTP); hybrid: MLP-only and all layers."""
    if a.mamba_layers:
        n_mlp = max(0, a.num_layers - a.mamba_layers - (a.attention_layers or 0))
        return n_mlp, 0, a.num_layers
    dense, moe = _layer_counts(a)
    return dense, moe, dense + moe


def _comm_terms(c: _Config, t: Mapping[str, float], k: Knobs) -> dict[str, float]:
    """Exposed communication seconds per micro-batch, whole model, one GPU (ranks laid out tp-cp-ep-dp-pp)."""
    a, gpu = c.arch, c.gpu
    h = a.hidden_size
    tok = c.mb * c.seq / c.cp
    tok_gpu = tok / c.tp
    dense_layers, moe_layers, n_layers = _kinds(a)
    out: dict[str, float] = {}
    # TP + sequence parallel: all-gather and reduce-scatter of the full activation around attention and
    # MLP, forward and backward (6 per layer; 3 for MoE layers whose experts are not TP-split).
    tp_dom = _per_domain(c.tp, 1, c.domain)
    colls = 6 * (n_layers - moe_layers) + moe_layers * (3 if c.etp == 1 else 6)
    tp_time = colls * _ring_time(tok * h * 2, c.tp, tp_dom, gpu, k)
    out["tp_comm"] = tp_time * (k.tp_exposed_nvlink if tp_dom >= c.tp else k.tp_exposed_net)
    # CP: ring attention passes K,V chunks (cp-1) times per layer forward; K,V and their grads backward.
    groups = a.num_query_groups or a.num_attention_heads
    kv_width = 2 * groups * a.kv_channels
    if a.mla:
        kv_width = 2 * a.num_attention_heads * (a.mla["qk"] + a.mla["rope"])
    cp_layers = (a.attention_layers or 0) if a.mamba_layers else n_layers
    cp_time = 0.0
    if c.cp > 1:
        cp_bytes = 3 * (c.cp - 1) * tok * kv_width * 2 / c.tp
        cp_time = cp_layers * _p2p_time(cp_bytes, _per_domain(c.cp, c.tp, c.domain) < c.cp, gpu, k)
    out["cp_comm"] = max(cp_time * k.cp_exposed, cp_time - t["attn_core"])
    # EP: token dispatch + combine, forward and backward: 4 all-to-alls per MoE layer.
    ep_dom = _per_domain(c.ep, c.etp, c.domain)
    a2a = _a2a_time(tok_gpu * a.moe_router_topk * h * 2, c.ep, ep_dom, gpu, k.a2a_eff.get(c.dispatcher, 0.55), k)
    out["ep_comm"] = 4 * moe_layers * a2a * (k.a2a_exposed_overlap if c.a2a_overlap else 1.0)
    # PP: every virtual stage sends its output forward and a gradient backward (async, mostly hidden).
    crosses = c.n // c.pp >= c.domain
    out["pp_comm"] = 2 * c.vp * _p2p_time(tok_gpu * h * 2, crosses, gpu, k) * k.pp_exposed if c.pp > 1 else 0.0
    return out


def _host_terms(c: _Config, busy: float, k: Knobs) -> dict[str, float]:
    """CPU-side costs per micro-batch: MoE host syncs and kernel launches the GPU cannot hide."""
    a = c.arch
    _, moe_layers, n_layers = _kinds(a)
    out: dict[str, float] = {}
    host = k.host_slowdown.get(c.gpu.name, k.host_slowdown.get(c.gpu.host, 1.0))  # vs the reference x86 host
    fixed = k.moe_fixed_s.get(c.dispatcher, 2e-3) * moe_layers * host
    if c.scopes & {"moe_router", "moe_preprocess", "moe", "full_iteration"}:
        fixed *= 1.0 - k.moe_graph_saving
    out["moe_overhead"] = fixed
    kernels = k.kernels_dense_layer * (n_layers - moe_layers) + k.kernels_moe_layer * moe_layers
    if not c.gpu.blackwell and a.is_moe:  # Hopper: per-expert GEMMs (and FP8 casts) launched one by one
        local = (a.num_moe_experts or 1) / c.ep
        kernels += moe_layers * local * k.hopper_expert_kernels["bf16" if c.dtype == "bf16" else "fp8"]
    elif a.is_moe:  # Blackwell: TE still quantizes and splits per local expert around the grouped GEMM
        kernels += moe_layers * (a.num_moe_experts or 1) / c.ep * k.blackwell_expert_kernels
    if "full_iteration" in c.scopes:
        covered = 1.0
    else:
        covered = (0.35 * ("attn" in c.scopes) + 0.15 * bool(c.scopes & {"moe_router", "moe_preprocess"})
                   + 0.35 * bool(c.scopes & {"mlp", "moe"}) + 0.6 * ("mamba" in c.scopes))
    launch = kernels * k.launch_s * host * (1 - min(1.0, covered) * (1 - k.graph_launch_factor))
    if k.cpu_smooth_p > 0:  # GPU and CPU overlap; near a tie, syncs and launch gaps expose part of both
        p = k.cpu_smooth_p
        hi = max(busy, launch)
        out["launch"] = hi * ((busy / hi) ** p + (launch / hi) ** p) ** (1 / p) - busy if hi > 0 else 0.0
    else:  # the CPU runs ahead unless kernels are tiny
        out["launch"] = max(0.0, launch - k.cpu_overlap * busy)
    return out


def _recompute_s(c: _Config, t: Mapping[str, float], parts: Mapping[str, float]) -> float:
    """Extra forward work of activation recomputation, per micro-batch, whole model."""
    a = c.arch
    _, _, n_layers = _kinds(a)
    layer_s = (sum(t.values()) - t["logits"]) / max(1, n_layers)
    extra = 0.0
    if c.recompute_layers:  # full recompute of N layers per (virtual) stage: one more forward (1/3)
        extra += min(c.recompute_layers * c.vp, n_layers / c.pp) * c.pp * layer_s / 3
    mods = c.recompute_modules
    if "core_attn" in mods:
        extra += t["attn_core"] / 3
    if "mlp" in mods:
        extra += (t["dense_mlp"] + t["shared_experts"]) / 3
    if "moe" in mods:
        extra += t["moe_experts"] / 3
    if "mla_up_proj" in mods and a.mla:
        m = a.mla
        up = a.num_attention_heads * (m["q_lora"] * (m["qk"] + m["rope"]) + m["kv_lora"] * (m["qk"] + m["v"]))
        per_layer_lin = parts["attn_linear"] / (6 * n_layers)
        extra += t["attn_linear"] * min(1.0, up / max(1.0, per_layer_lin)) / 3
    if mods & {"moe_act", "layernorm", "mla_up_proj", "mlp"}:
        extra += 0.05 * t["elementwise"]
    return extra


def _act_bytes(c: _Config) -> dict[str, float]:
    """Bytes one layer keeps for backward per token (selective recompute applied), and its input.

    Counted tensor by tensor (flash attention, sequence parallel): layer-norm inputs, GEMM inputs (1 byte
    in FP8 recipes), Q/K/V and attention output, MLP/expert intermediates, MoE permuted tokens.
    """
    a = c.arch
    h, heads = a.hidden_size, a.num_attention_heads
    gi = 1.0 if c.dtype != "bf16" else 2.0  # GEMM inputs saved in 8 bits by FP8/FP4 recipes
    mods = c.recompute_modules
    ln = 0.0 if "layernorm" in mods else gi * h  # layer-norm outputs = next GEMM input
    if a.mla:
        m = a.mla
        attn = 2 * h + ln + (2 + gi) * (m["q_lora"] + m["kv_lora"]) + 2 * heads * m["v"]
        if "mla_up_proj" not in mods:
            attn += 2 * heads * (2 * (m["qk"] + m["rope"]) + m["v"])
    else:
        groups = a.num_query_groups or heads
        attn = 2 * h + ln + 2 * a.kv_channels * (2 * heads + 2 * groups)
    gated = a.gated_linear or bool(a.glu_compute)

    def mlp(width: float) -> float:
        if width <= 0:
            return 0.0
        return 2 * width * (2 if gated else 1) + (0.0 if "moe_act" in mods and width else gi * width)

    dense = 2 * h + (2 * h if "mlp" in mods else ln + mlp(a.ffn_hidden_size))
    moe = 0.0
    if a.is_moe:
        per_copy = gi * h + h + mlp(a.moe_ffn_hidden_size)  # permuted input, (fused) unpermute, intermediates
        moe = 2 * h + ln + a.moe_router_topk * per_copy + (gi * h + mlp(a.moe_shared_expert_size)
                                                          if a.moe_shared_expert_size else 0.0)
        if "moe" in mods:
            moe = 2 * h
    dense_layers, moe_layers, n_layers = _kinds(a)
    if a.mamba_layers:
        d_in = a.mamba_num_heads * a.mamba_head_dim or 2 * h
        # the fused conv1d + scan kernel keeps its input (z, x, B, C, dt) and recomputes the rest
        mamba = 2 * h + ln + 2 * (2 * d_in + 2 * a.mamba_groups * a.mamba_state_dim + a.mamba_num_heads) + gi * d_in
        n_attn = a.attention_layers or 0
        per_layer = (n_attn * attn + dense_layers * dense + a.mamba_layers * mamba) / max(1, n_layers)
    else:
        per_layer = attn + (dense_layers * dense + moe_layers * moe) / max(1, n_layers)
    return {"per_layer": per_layer, "input": 2.0 * h}


def _memory(c: _Config, params: Mapping[str, float], k: Knobs) -> dict[str, float]:
    """Memory of the worst pipeline stage in GB: weights, grads, optimizer, activations, logits, workspace.

    Distributed optimizer: fp32 master weights + Adam m, v (12 B/param) sharded over DP x CP (experts
    over expert-DP); bf16 weights (+1 B cached FP8 copy in FP8/FP4 recipes) and main grads (fp32 for BF16,
    bf16 for FP8 recipes, which set grad_reduce_in_fp32=False) on every rank; Megatron FSDP shards those
    too, keeping two gathered layers in flight.
    """
    a = c.arch
    _, _, n_layers = _kinds(a)
    edge = max(params["embedding"], params["output"]) if c.pp > 1 else params["embedding"] + params["output"]
    p_dense = (params["dense"] / c.pp + edge) / c.tp
    p_exp = params["expert"] / (c.pp * c.etp * c.ep)
    w_bytes = 2.0  # bf16 weights (TE's cached FP8 copies are short-lived: counted in the workspace)
    g_bytes = 4.0 if c.dtype == "bf16" else 2.0
    if c.task == "lora":  # frozen base weights: no grads, no optimizer state (adapters are negligible)
        g_bytes = 0.0
    shard_dense, shard_exp = c.dp * c.cp, c.edp
    if c.fsdp:
        per_rank = p_dense / shard_dense + p_exp / shard_exp
        weights = per_rank * w_bytes + 2 * (p_dense + p_exp) / max(1.0, n_layers / c.pp) * 2.0
        grads = per_rank * g_bytes
    else:
        weights = (p_dense + p_exp) * w_bytes
        grads = (p_dense + p_exp) * g_bytes
    optim = (p_dense / shard_dense + p_exp / shard_exp) * (0.0 if c.task == "lora" else 12.0)
    static = weights + grads + optim

    act = _act_bytes(c)
    tok_gpu = c.mb * c.seq / (c.cp * c.tp)
    per_layer, layer_in = act["per_layer"] * tok_gpu, act["input"] * tok_gpu
    layers_stage = n_layers / c.pp
    # 1F1B keeps pp micro-batches in flight on the first stage; interleaving adds (pp-1)/(pp*vp)
    in_flight = float(min(c.m, c.pp))
    if c.vp > 1:
        in_flight *= 1 + (c.pp - 1) / (c.pp * c.vp)
    recomputed = min(layers_stage, float(c.recompute_layers * c.vp))
    offloaded = min(layers_stage - recomputed, float(c.offload_layers))
    kept = layers_stage - recomputed - offloaded
    activations = in_flight * (kept * per_layer + recomputed * layer_in) * k.act_scale
    activations += min(offloaded, 2.0) * per_layer + (per_layer if recomputed else 0.0)  # buffers in flight
    logits = tok_gpu * c.tp * padded_vocab(a, c.tp) / c.tp * 2.0  # bf16 logits, grad in place (TE fused CE)
    workspace = k.workspace_gb * GB
    return {
        "weights": weights / GB,
        "grads": grads / GB,
        "optimizer": optim / GB,
        "activations": activations / GB,
        "logits": logits / GB,
        "workspace": workspace / GB,
        "allocated": static / GB,
        "max_allocated": (static + activations + logits + workspace) / GB,
        "largest_tensor": max(logits, per_layer / 4, 0.25 * GB) / GB,
    }


def _oom_message(need_gb: float, allocated_gb: float, chunk_gb: float, gpu: GPU) -> str:
    """The message PyTorch prints when the caching allocator cannot satisfy a request.

    The failing request is one tensor: the overshoot, at most the largest activation chunk (`chunk_gb`).
    """
    total = gpu.hbm_gb
    in_use = total - 0.31
    tried = max(0.02, min(need_gb * GB / GIB - gpu.hbm_gb, chunk_gb * GB / GIB))
    alloc = min(allocated_gb * GB / GIB, in_use - 1.9)  # the CUDA context is not PyTorch's
    return (f"torch.OutOfMemoryError: CUDA out of memory. Tried to allocate {tried:.2f} GiB. GPU 0 has a total "
            f"capacity of {total:.2f} GiB of which {total - in_use:.2f} GiB is free. Including non-PyTorch "
            f"memory, this process has {in_use:.2f} GiB memory in use. Of the allocated memory {alloc:.2f} GiB "
            f"is allocated by PyTorch, and {max(0.0, in_use - alloc - 1.5):.2f} GiB is reserved by PyTorch but "
            "unallocated. If reserved but unallocated memory is large try setting "
            "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation.  See documentation for "
            "Memory Management  (https://pytorch.org/docs/stable/notes/cuda.html#environment-variables)")


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


# ---------------------------------------------------------------------------------------------------
# calibration range
# ---------------------------------------------------------------------------------------------------
_RANGE_FIELDS = ("mb", "tp", "pp", "cp", "vp", "ep", "n")
_FEATURES = {  # what the presets of the published rows switch on, by what a reason calls it
    "use_megatron_fsdp": lambda c: c.fsdp,
    "recompute_num_layers": lambda c: c.recompute_layers,
    "recompute_modules": lambda c: ",".join(sorted(c.recompute_modules)) or "none",
    "activation_offload_layers": lambda c: c.offload_layers,
    "moe_a2a_overlap": lambda c: c.a2a_overlap,
    "cuda_graph_scope": lambda c: ",".join(sorted(c.scopes)) or "none",
    "dispatcher": lambda c: c.dispatcher,
}


def _run_key(c: _Config) -> tuple[Any, ...]:
    """What identifies one run of the published table (architecture overrides are checked apart)."""
    return (c.arch.recipe, c.gpu.name, c.dtype, c.n, c.tp, c.pp, c.cp, c.vp, c.ep, c.etp, c.mb, c.gb, c.seq,
            c.domain, c.fsdp, c.scopes, c.recompute_layers, c.recompute_modules, c.offload_layers,
            c.a2a_overlap, c.dispatcher, c.task)


@dataclass(frozen=True)
class _RecipeRange:
    """What the published rows of one recipe cover."""

    dtypes: Mapping[str, frozenset[str]]  # gpu -> dtypes
    seqs: frozenset[int]
    ranges: Mapping[str, tuple[int, int]]
    features: Mapping[str, frozenset[Any]]


@functools.cache
def _published_index() -> tuple[dict[tuple[Any, ...], str], dict[str, _RecipeRange]]:
    """The 26.02 published rows (`dse.megatron._published`), resolved as `predict` resolves a configuration:
    their run keys (-> label), and per recipe the ranges they cover."""
    from dse.megatron import PUBLISHED_26_02

    configs = [(row.label, _config(row.cmd_args(), None)) for row in PUBLISHED_26_02]
    runs = {_run_key(c): label for label, c in configs}
    recipes: dict[str, _RecipeRange] = {}
    for recipe in {c.arch.recipe for _, c in configs}:
        rows = [c for _, c in configs if c.arch.recipe == recipe]
        gpus = {c.gpu.name for c in rows}
        recipes[recipe] = _RecipeRange(
            dtypes={g: frozenset(c.dtype for c in rows if c.gpu.name == g) for g in gpus},
            seqs=frozenset(c.seq for c in rows),
            ranges={f: (min(getattr(c, f) for c in rows), max(getattr(c, f) for c in rows)) for f in _RANGE_FIELDS},
            features={name: frozenset(value_of(c) for c in rows) for name, value_of in _FEATURES.items()},
        )
    return runs, recipes


def _calibration(c: _Config) -> tuple[bool, str]:
    """(extrapolated, why): where `c` stands relative to the rows the constants were fitted to."""
    runs, recipes = _published_index()
    recipe, gpu = c.arch.recipe, c.gpu.name
    native = c.arch == architecture_for(recipe)
    label = runs.get(_run_key(c)) if native else None
    if label:
        return False, f"published 26.02 row ({label}): fitted"
    cover = recipes.get(recipe)
    if cover is None:
        return True, f"extrapolated: recipe {recipe} is not in the published 26.02 table"
    reasons = []
    if c.task != "pretrain":
        reasons.append(f"task {c.task} (the published rows are pretraining)")
    if not native:
        reasons.append("model shape overridden (num_layers / hidden_size / mtp)")
    if gpu not in cover.dtypes:
        reasons.append(f"recipe x gpu ({recipe} on {gpu}) not in the published table")
    elif c.dtype not in cover.dtypes[gpu]:
        reasons.append(f"dtype {c.dtype} not published for {recipe} on {gpu}")
    if c.seq not in cover.seqs:
        reasons.append(f"seq_length {c.seq} differs from the published {'/'.join(map(str, sorted(cover.seqs)))}")
    for name, (lo, hi) in cover.ranges.items():
        if not lo <= getattr(c, name) <= hi:
            shown = "num_gpus" if name == "n" else name
            reasons.append(f"{shown}={getattr(c, name)} outside the published rows' range {lo}..{hi} for {recipe}")
    if c.gpn != min(c.n, c.gpu.gpus_per_node):
        reasons.append(f"{c.gpn} GPUs per node (the published runs fill {c.gpu.gpus_per_node}-GPU nodes)")
    for name, value_of in _FEATURES.items():
        value = value_of(c)
        if value not in cover.features[name]:
            reasons.append(f"{name}={value} not used by the published {recipe} rows")
    if reasons:
        return True, "extrapolated: " + "; ".join(reasons)
    return False, f"interpolated: within the published 26.02 rows' ranges for {recipe}"
