"""An analytic performance model of Megatron-Core training, as launched by Megatron-Bridge v0.3.0.

It predicts the step time, model TFLOP/s/GPU, tokens/s/GPU and memory of one training configuration
(flat cmd_args, resolved against the presets) as a transparent sum of named terms, so that a simulated
sweep behaves like a real one: bigger micro-batches help until memory runs out, TP or EP groups that
leave the NVLink domain hurt, pipeline bubbles shrink with more micro-batches, FP8 beats BF16, and so on.

Sources of the numbers: the FLOPs formula is Megatron-Bridge's `transformer_flops` (reference
megatron-bridge.md §6) so TFLOP/s/GPU means what the real log prints; peak TFLOP/s, HBM and link speeds
are the vendors' dense datasheet figures; the efficiency and overhead constants in `Knobs` were fitted
by hand against the 26.02 published table (§5; see tests/test_perfmodel.py for the calibration table).
It is a model, not a simulator of kernels: expect ~10-25 % error on the published configs and larger
errors far from them. Pure functions, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from dse.architectures import Architecture, architecture_for
from dse.errors import InputError
from dse.presets import resolve_defaults

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
    hbm_gb: float
    nvlink_domain: int  # GPUs that reach each other over NVLink (8 per HGX node, 72 per NVL72 rack)
    nvlink_gbps: float
    network_gbps: float  # scale-out NIC bandwidth per GPU
    hbm_tbps: float = 3.35  # HBM bandwidth, TB/s
    host_link_gbps: float = 55.0  # GPU <-> CPU memory (activation offload): PCIe 5 x16 or NVLink-C2C
    gpus_per_node: int = 8
    blackwell: bool = True


GPUS: dict[str, GPU] = {
    # H100 SXM: 989 / 1979 dense TFLOP/s, no FP4 (nvfp4 runs at FP8 speed), 80 GB HBM3 at 3.35 TB/s,
    # NVLink 4 450 GB/s per direction, 8x 400 Gb/s ConnectX-7 (50 GB/s per GPU).
    "h100": GPU("h100", 989.0, 1979.0, 1979.0, 80.0, 8, 450.0, 50.0, hbm_tbps=3.35, host_link_gbps=55.0,
                blackwell=False),
    # HGX B200: 2.25 / 4.5 / 9 PFLOP/s dense, ~180 GB HBM3e at 8 TB/s, NVLink 5 900 GB/s, 400 Gb/s NICs.
    "b200": GPU("b200", 2250.0, 4500.0, 9000.0, 180.0, 8, 900.0, 50.0, hbm_tbps=8.0, host_link_gbps=55.0),
    # HGX B300: FP4 dense 13.5 PFLOP/s, ~270 GB HBM3e, 800 Gb/s ConnectX-8 (100 GB/s per GPU).
    "b300": GPU("b300", 2250.0, 4500.0, 13500.0, 270.0, 8, 900.0, 100.0, hbm_tbps=8.0, host_link_gbps=55.0),
    # GB200 NVL72: 2.5 / 5 / 10 PFLOP/s dense per GPU, ~186 GB, 72-GPU NVLink domain, 4 GPUs per tray,
    # Grace NVLink-C2C (450 GB/s per direction, shared by 2 GPUs) for offload, 400 Gb/s NICs.
    "gb200": GPU("gb200", 2500.0, 5000.0, 10000.0, 186.0, 72, 900.0, 50.0, hbm_tbps=8.0, host_link_gbps=200.0,
                 gpus_per_node=4),
    # GB300 NVL72: FP4 dense 15 PFLOP/s, ~279 GB HBM3e, 800 Gb/s NICs.
    "gb300": GPU("gb300", 2500.0, 5000.0, 15000.0, 279.0, 72, 900.0, 100.0, hbm_tbps=8.0, host_link_gbps=200.0,
                 gpus_per_node=4),
}


# ---------------------------------------------------------------------------------------------------
# calibration constants
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Knobs:
    """Efficiencies and overheads; each says where its value comes from."""

    # Best-case fraction of the dtype's dense peak a large GEMM reaches (cuBLAS/TE on big shapes reach
    # ~75-80 % in BF16; FP8/FP4 reach a smaller fraction of their doubled/quadrupled peaks).
    gemm_eff: Mapping[str, Mapping[str, float]] = field(default_factory=lambda: {
        "hopper": {"bf16": 0.72, "fp8": 0.55, "fp4": 0.55},
        "blackwell": {"bf16": 0.72, "fp8": 0.55, "fp4": 0.40},
    })
    # GEMM efficiency falls off for small shapes: eff = best / (1 + m0/M + n0/N + n0/K) (tokens M, local N, K).
    # Grouped (MoE expert) GEMMs: Hopper runs TE's GroupedLinear as one cuBLAS GEMM (plus casts) per local
    # expert; Blackwell has fused grouped GEMM kernels.
    grouped_gemm_eff: Mapping[str, float] = field(default_factory=lambda: {"hopper": 0.5, "blackwell": 0.9})
    # Sustained clocks relative to the datasheet: GB300 (1.4 kW) runs the same configs ~1.2x faster than
    # GB200 in the published table although both list 5 PFLOP/s dense FP8.
    sustained: Mapping[str, float] = field(default_factory=lambda: {"gb300": 1.2})
    gemm_m0: float = 128.0
    gemm_n0: float = 192.0
    # Flash attention (cuDNN/FA3) fwd+bwd reaches ~50-60 % of BF16 peak on long sequences.
    attn_eff: float = 0.55
    attn_s0: float = 1024.0  # ... less for short per-rank sequences: eff * s / (s + s0)
    mamba_scan_eff: float = 0.15  # SSD scan kernels are far from GEMM speed
    # Memory-bound (elementwise) traffic, in tensor elements per token per layer, forward + backward:
    # norms, residual adds, rotary, activation functions, MoE permute/unpermute and router.
    elem_attn: float = 36.0  # x hidden
    elem_mlp: float = 10.0  # x ffn width (x1.5 for gated units)
    elem_moe_token: float = 18.0  # x hidden x top-k (permute/unpermute/gather copies)
    elem_quant: Mapping[str, float] = field(default_factory=lambda: {
        # extra quantize/transposes of GEMM inputs, x (sum of GEMM input widths); MXFP8 is fused in TE
        "bf16": 0.0, "fp8_cs": 3.0, "fp8_mx": 2.0, "fp8_sc": 3.5, "nvfp4": 3.0,
    })
    hbm_eff: float = 0.7  # elementwise kernels reach ~70 % of HBM bandwidth
    nvlink_eff: float = 0.75  # NCCL bus bandwidth / link bandwidth
    net_eff: float = 0.8
    lat_nvlink_s: float = 12e-6  # per collective
    lat_net_s: float = 30e-6
    # TP with sequence parallelism: exposed share of AG/RS time (TE userbuffers overlap inside NVLink).
    tp_exposed_nvlink: float = 0.35
    tp_exposed_net: float = 0.9
    cp_exposed: float = 0.3  # ring attention P2P overlaps with attention compute
    pp_exposed: float = 0.3  # async P2P between stages
    # MoE token dispatch: fraction of link bandwidth reached and fixed cost per MoE layer per micro-batch
    # (host syncs for dropless token counts, kernel launches) by dispatcher.
    a2a_eff: Mapping[str, float] = field(default_factory=lambda: {
        "alltoall": 0.55, "deepep": 0.7, "hybridep": 0.8, "flex": 0.7})
    moe_fixed_s: Mapping[str, float] = field(default_factory=lambda: {
        "alltoall": 2.0e-3, "deepep": 0.8e-3, "hybridep": 0.6e-3, "flex": 0.8e-3})
    moe_graph_saving: float = 0.5  # share of that fixed cost removed by CUDA graphs of moe_router/preprocess
    a2a_exposed_overlap: float = 0.3  # --moe_a2a_overlap hides the dispatch behind the other micro-batch
    # CPU launch: kernels per layer per micro-batch (fwd+bwd) and the cost of launching one.
    kernels_dense_layer: float = 90.0
    kernels_moe_layer: float = 220.0
    launch_s: float = 5e-6
    graph_launch_factor: float = 0.1  # launch cost left inside a CUDA graph
    dp_hide: float = 0.8  # share of one micro-batch's backward that hides the DP reduce-scatter/all-gather
    fsdp_hide: float = 0.85  # Megatron FSDP prefetch overlaps per-layer all-gathers with compute
    fsdp_slowdown: float = 0.04  # SM contention of the overlapped FSDP collectives
    offload_hide: float = 0.8
    optimizer_bytes_per_param: float = 32.0  # Adam: fp32 param, grad, m, v read + write, bf16 copy
    step_fixed_s: float = 0.05  # per-iteration host work: logging, loss reduce, grad-norm, timers
    # memory
    act_bytes_attn: float = 11.0  # bytes per token per layer x hidden kept for backward (Korthikanti)
    act_bytes_mlp: float = 2.0  # x ffn width x (gated 3 : 2) kept for backward
    act_bytes_moe_token: float = 6.0  # x hidden x top-k (permuted tokens, expert inputs)
    workspace_gb: float = 3.0  # cuBLAS/TE workspaces, NCCL buffers, allocator slack
    fragmentation: float = 1.07  # reserved / allocated
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
    remote = nbytes * (size - per_dom) / size / (gpu.network_gbps * k.net_eff * eff / 0.8 * GB)
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


def _gemm_eff(best: float, m: float, n: float, kdim: float, k: Knobs) -> float:
    return best / (1.0 + k.gemm_m0 / max(m, 1.0) + k.gemm_n0 / max(n, 1.0) + k.gemm_n0 / max(kdim, 1.0))


def _scopes(text: Any) -> set[str]:
    return {p.strip().lower() for p in str(text or "").replace("[", "").replace("]", "").split(",") if p.strip()}


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
    if r.get("hidden_size") and int(r["hidden_size"]) != arch.hidden_size:
        changes["hidden_size"] = int(r["hidden_size"])
    return replace(arch, **changes) if changes else arch


def _check_int(name: str, value: Any) -> int:
    if value is None:
        raise InputError("is not set and the recipe has no preset for it", field=name)
    v = int(value)
    if v < 1:
        raise InputError(f"must be a positive integer, got {v}", field=name)
    return v


def predict(cmd_args: Mapping[str, Any], num_nodes: int | None = None, knobs: Knobs | None = None) -> Prediction:
    """Predict one training step of `cmd_args` (Megatron-Bridge launcher fields) on `num_nodes` nodes.

    Raises `InputError` for configurations the launcher would reject before training (world size not
    divisible, GBS not divisible, unknown GPU or recipe); memory that does not fit is *not* an error:
    the prediction says `fits=False` with the CUDA OOM message a real run would print.
    """
    k = knobs or KNOBS
    r = resolve_defaults(cmd_args)
    gpu = GPUS.get(str(r["gpu_type"]))
    if gpu is None:
        raise InputError(f"unknown gpu_type {r['gpu_type']!r} (one of {', '.join(GPUS)})", field="gpu_type")
    arch = _arch_for(r)
    dtype = str(r["compute_dtype"])
    n = _check_int("num_gpus", r["num_gpus"])
    tp, pp, cp, ep = (_check_int(f, r[f]) for f in ("tp", "pp", "cp", "ep"))
    etp = int(r["et"]) if r.get("et") else tp
    vp = int(r["vp"]) if r.get("vp") else 1
    mb = _check_int("mb", r["mb"])
    gb = _check_int("gb", r["gb"])
    seq = _check_int("seq_length", r["seq_length"])
    if n % (tp * pp * cp):
        raise InputError(f"world size ({n}) is not divisible by tp*pp*cp ({tp * pp * cp})", field="num_gpus")
    dp = n // (tp * pp * cp)
    if gb % (mb * dp):
        raise InputError(f"global batch size ({gb}) is not divisible by micro batch size ({mb}) times data "
                         f"parallel size ({dp})", field="gb")
    if n % (etp * ep * pp):
        raise InputError(f"world size ({n}) is not divisible by etp*ep*pp ({etp * ep * pp})", field="ep")
    m = gb // (mb * dp)  # micro-batches per step per pipeline
    edp = n // (etp * ep * pp)
    nodes = int(num_nodes) if num_nodes else None
    gpn = max(1, n // nodes) if nodes else min(n, gpu.gpus_per_node)
    domain = gpu.nvlink_domain if gpu.nvlink_domain > gpu.gpus_per_node else min(gpu.nvlink_domain, gpn)

    fsdp = bool(r.get("use_megatron_fsdp"))
    graph_impl = str(r.get("cuda_graph_impl") or "none").lower()
    scopes = _scopes(r.get("cuda_graph_scope")) if graph_impl != "none" else set()
    if graph_impl == "local" and not scopes:
        scopes = {"full_iteration"}
    rl = int(r["recompute_num_layers"]) if r.get("recompute_num_layers") else 0
    rmods = _scopes(r.get("recompute_modules"))
    offload = int(r.get("activation_offload_layers") or 0)
    a2a_overlap = bool(r.get("moe_a2a_overlap"))
    dispatcher = str(r.get("dispatcher") or "alltoall")

    family = "blackwell" if gpu.blackwell else "hopper"
    gemm_dtype = {"bf16": "bf16", "nvfp4": "fp4"}.get(dtype, "fp8")
    peak = {"bf16": gpu.peak_bf16_tflops, "fp8": gpu.peak_fp8_tflops, "fp4": gpu.peak_fp4_tflops}[gemm_dtype]
    best = k.gemm_eff[family][gemm_dtype]
    best_bf16 = k.gemm_eff[family]["bf16"]

    # ---- FLOPs -------------------------------------------------------------------------------------
    parts = flops_parts_per_token(arch, seq, tp)
    flops_step = float(gb) * seq * sum(parts.values())
    h = arch.hidden_size
    tok = mb * seq / cp  # tokens of one micro-batch seen by one TP group
    tok_gpu = tok / tp  # ... and held by one GPU (sequence parallel)
    g_mult = 1.5 if arch.gated_linear else 1.0
    dense_layers, moe_layers = (0, 0) if arch.mamba_layers else _layer_counts(arch)
    n_layers = arch.num_layers + (arch.mtp_layers if arch.is_moe else 0)
    topk = arch.moe_router_topk
    experts = arch.num_moe_experts or 1

    def gemm_s(part: str, flops_tok: float, n_width: float, k_width: float, m_tokens: float = tok,
               bf16: bool = False) -> float:
        """Seconds per micro-batch (whole model, this GPU's share) for one family of GEMMs."""
        eff = _gemm_eff(best_bf16 if bf16 else best, m_tokens, n_width, k_width, k)
        p = gpu.peak_bf16_tflops if bf16 else peak
        return flops_tok * mb * seq / (tp * cp) / (p * 1e12 * eff)

    attn_width = arch.num_attention_heads * arch.kv_channels
    t = {}  # seconds per micro-batch for the whole model on one GPU, before pipelining
    t["attn_linear"] = gemm_s("attn_linear", parts["attn_linear"], attn_width / tp, h)
    t["dense_mlp"] = gemm_s("dense_mlp", parts["dense_mlp"], arch.ffn_hidden_size / tp, h)
    tok_per_expert = tok_gpu * ep * topk / experts
    t["moe_experts"] = gemm_s("moe_experts", parts["moe_experts"], arch.moe_ffn_hidden_size / etp, h,
                              m_tokens=tok_per_expert)
    t["shared_experts"] = gemm_s("shared_experts", parts["shared_experts"], max(1, arch.moe_shared_expert_size) / tp, h)
    vpad = padded_vocab(arch, tp)
    t["logits"] = gemm_s("logits", parts["logits"] + parts["mtp_proj"], vpad / tp, h, bf16=True)
    t["mamba"] = gemm_s("mamba", parts.get("mamba_linear", 0.0), 2 * h / tp, h)
    t["mamba"] += parts.get("mamba_scan", 0.0) * mb * seq / (tp * cp) / (gpu.peak_bf16_tflops * 1e12 * k.mamba_scan_eff)
    s_local = seq / cp
    attn_core = parts["attn_core"]
    if arch.sliding_window:  # every other layer attends to a window only: s/2 -> window keys per query
        attn_core *= 0.5 + 0.5 * min(1.0, 2.0 * arch.sliding_window / seq)
    t["attn_core"] = attn_core * mb * seq / (tp * cp) / (
        gpu.peak_bf16_tflops * 1e12 * k.attn_eff * s_local / (s_local + k.attn_s0))

    # memory-bound elementwise work (bytes per micro-batch on this GPU)
    hbm = gpu.hbm_tbps * 1e12 * k.hbm_eff
    ffn_elems = arch.ffn_hidden_size * g_mult * dense_layers + (arch.moe_shared_expert_size * g_mult * moe_layers)
    if arch.mamba_layers:
        ffn_elems = arch.ffn_hidden_size * max(0, arch.num_layers - arch.mamba_layers - (arch.attention_layers or 0))
    elems = k.elem_attn * h * n_layers + k.elem_mlp * ffn_elems
    elems += moe_layers * (k.elem_moe_token * h * topk + k.elem_mlp * arch.moe_ffn_hidden_size * g_mult * topk)
    quant_widths = n_layers * (2 * h + attn_width) + ffn_elems / g_mult + moe_layers * topk * (
        h + arch.moe_ffn_hidden_size)
    elems += k.elem_quant.get(dtype, 0.0) * quant_widths
    t["elementwise"] = elems * 2 * tok_gpu / hbm

    compute_mb = sum(t.values())  # one micro-batch through every layer, this GPU's share

    # ---- communication per micro-batch (whole model) ------------------------------------------------
    comm: dict[str, float] = {}
    # TP (sequence parallel): per layer fwd AG+RS around attention and MLP, twice that in backward.
    tp_dom = _per_domain(tp, 1, domain)
    coll_per_layer = 6 * (n_layers - moe_layers) + 3 * moe_layers * (1 if etp == 1 else 2)
    tp_bytes = tok * h * 2  # full activation of one micro-batch (bf16)
    tp_time = coll_per_layer * _ring_time(tp_bytes, tp, tp_dom, gpu, k)
    comm["tp_comm"] = tp_time * (k.tp_exposed_nvlink if tp_dom >= tp else k.tp_exposed_net)
    # CP: ring attention passes K,V chunks (cp-1) times per layer forward, K,V and their grads backward.
    kv_width = 2 * (arch.num_query_groups or arch.num_attention_heads) * arch.kv_channels
    if arch.mla:
        kv_width = 2 * arch.num_attention_heads * (arch.mla["qk"] + arch.mla["rope"])
    cp_dom = _per_domain(cp, tp, domain)
    cp_layers = (arch.attention_layers or 0) if arch.mamba_layers else n_layers
    cp_bytes = 3 * (cp - 1) * tok * kv_width * 2 / tp
    cp_time = cp_layers * (_p2p_time(cp_bytes, cp_dom < cp, gpu, k) if cp > 1 else 0.0)
    comm["cp_comm"] = max(cp_time * k.cp_exposed, cp_time - t["attn_core"])
    # EP: dispatch + combine, forward and backward (4 all-to-alls per MoE layer).
    ep_dom = _per_domain(ep, etp, domain)
    a2a_bytes = tok_gpu * topk * h * 2
    ep_time = 4 * moe_layers * _a2a_time(a2a_bytes, ep, ep_dom, gpu, k.a2a_eff.get(dispatcher, 0.55), k)
    comm["ep_comm"] = ep_time * (k.a2a_exposed_overlap if a2a_overlap else 1.0)
    # PP: each virtual stage sends its output forward and receives a gradient backward.
    pp_stride = n // pp
    pp_bytes = tok_gpu * h * 2
    comm["pp_comm"] = 2 * vp * _p2p_time(pp_bytes, pp_stride >= domain, gpu, k) * k.pp_exposed if pp > 1 else 0.0

    # ---- host overheads per micro-batch --------------------------------------------------------------
    over: dict[str, float] = {}
    moe_fixed = k.moe_fixed_s.get(dispatcher, 2e-3) * moe_layers
    if scopes & {"moe_router", "moe_preprocess", "moe", "full_iteration"}:
        moe_fixed *= 1.0 - k.moe_graph_saving
    over["moe_overhead"] = moe_fixed if ep > 1 or experts > 1 else 0.0
    kernels = k.kernels_dense_layer * (n_layers - moe_layers) + k.kernels_moe_layer * moe_layers
    if "full_iteration" in scopes:
        launch = kernels * k.launch_s * k.graph_launch_factor
    else:
        covered = 0.0
        covered += 0.35 if "attn" in scopes else 0.0
        covered += 0.15 if scopes & {"moe_router", "moe_preprocess"} else 0.0
        covered += 0.35 if scopes & {"mlp", "moe"} else 0.0
        covered += 0.6 if "mamba" in scopes else 0.0
        launch = kernels * k.launch_s * (1 - min(0.9, covered) * (1 - k.graph_launch_factor))
    gpu_busy = compute_mb + sum(comm.values())
    over["launch"] = max(0.0, launch - 0.85 * gpu_busy)  # the CPU runs ahead unless kernels are tiny

    # ---- recompute and offload --------------------------------------------------------------------
    layers_stage = n_layers / pp
    layer_s = (compute_mb - t["logits"]) / max(1, n_layers)
    recompute = 0.0
    if rl:
        recompute += min(rl * vp, layers_stage) * layer_s / 3 * pp  # extra forward (model-wide units)
    if "core_attn" in rmods:
        recompute += t["attn_core"] / 3
    if "mlp" in rmods:
        recompute += (t["dense_mlp"] + t["shared_experts"]) / 3
    if "moe" in rmods:
        recompute += t["moe_experts"] / 3
    if "mla_up_proj" in rmods and arch.mla:
        up = arch.mla["q_lora"] * arch.num_attention_heads * (arch.mla["qk"] + arch.mla["rope"]) + arch.mla[
            "kv_lora"] * arch.num_attention_heads * (arch.mla["qk"] + arch.mla["v"])
        recompute += t["attn_linear"] * up / max(1.0, parts["attn_linear"] / (6 * n_layers)) / 3
    if rmods & {"moe_act", "layernorm", "mla_up_proj"}:
        recompute += 0.05 * t["elementwise"]

    act = _activation_bytes_per_layer(arch, tok_gpu, mb, seq, cp, tp, etp, ep, dtype, k)
    off_s = 0.0
    if offload:
        xfer = min(offload, n_layers) * act["per_layer"] / (gpu.host_link_gbps * GB)
        window = min(offload, n_layers) * layer_s
        off_s = 2 * max(0.0, xfer - k.offload_hide * window / 2) + 0.02 * xfer

    fsdp_s = 0.0
    params = _params(arch, tp)
    p_dense_gpu = (params["dense"] + params["embedding"] + params["output"]) / (tp * pp)
    p_exp_gpu = params["expert"] / (etp * ep * pp)
    if fsdp:
        # all-gather params for forward and again for backward, reduce-scatter grads: every micro-batch
        bw_bytes = 2.0 if gemm_dtype == "bf16" else 1.5  # fp8 param all-gather where the recipe allows it
        dp_dom = _per_domain(dp * cp, tp, domain)
        fs = 2 * _ring_time(p_dense_gpu * bw_bytes, dp * cp, dp_dom, gpu, k)
        fs += _ring_time(p_dense_gpu * 2, dp * cp, dp_dom, gpu, k)
        if p_exp_gpu:
            edp_dom = _per_domain(edp, etp * ep, domain)
            fs += 3 * _ring_time(p_exp_gpu * 2, edp, edp_dom, gpu, k)
        if r.get("nccl_ub"):
            fs *= 0.8  # NVLS / zero-copy collectives
        fsdp_s = max(0.0, fs - k.fsdp_hide * compute_mb) + k.fsdp_slowdown * compute_mb

    # ---- pipeline -----------------------------------------------------------------------------------
    per_mb = compute_mb + sum(comm.values()) + sum(over.values()) + recompute + off_s + fsdp_s
    logits_s = t["logits"]
    stage_mb = (per_mb - logits_s) / pp + logits_s if pp > 1 and not r.get("pp_layout") else per_mb / pp
    steady = m * stage_mb
    bubble = (pp - 1) / vp * stage_mb if pp > 1 else 0.0

    # ---- once per step: DP gradient reduce-scatter + param all-gather (distributed optimizer) -----
    dp_s = 0.0
    if not fsdp:
        dp_dom = _per_domain(dp * cp, tp, domain)
        dp_s = 2 * _ring_time(p_dense_gpu * 2, dp * cp, dp_dom, gpu, k)
        if p_exp_gpu:
            dp_s += 2 * _ring_time(p_exp_gpu * 2, edp, _per_domain(edp, etp * ep, domain), gpu, k)
        dp_s = max(0.0, dp_s - k.dp_hide * stage_mb)
    shard = p_dense_gpu / (dp * cp) + p_exp_gpu / edp
    optim_s = shard * k.optimizer_bytes_per_param / (gpu.hbm_tbps * 1e12 * k.hbm_eff)
    step = steady + bubble + dp_s + optim_s + k.step_fixed_s

    scale = m / pp  # model-wide per-micro-batch terms -> seconds per step on one stage
    breakdown = {
        "compute": (compute_mb - t["elementwise"]) * scale,
        "elementwise": t["elementwise"] * scale,
        "tp_comm": comm["tp_comm"] * scale,
        "cp_comm": comm["cp_comm"] * scale,
        "ep_comm": comm["ep_comm"] * scale,
        "pp_comm": comm["pp_comm"] * scale,
        "moe_overhead": over["moe_overhead"] * scale,
        "launch": over["launch"] * scale,
        "recompute": recompute * scale,
        "offload": off_s * scale,
        "fsdp_comm": fsdp_s * scale,
        "pp_imbalance": (steady - m * per_mb / pp) if pp > 1 else 0.0,
        "bubble": bubble,
        "dp_comm": dp_s,
        "optimizer": optim_s,
        "fixed": k.step_fixed_s,
    }

    mem = _memory(arch, params, gpu, dtype, tp, pp, cp, dp, ep, etp, edp, vp, m, n_layers, act, rl, rmods,
                  offload, fsdp, k)
    max_alloc = mem["max_allocated"]
    need = max_alloc * k.fragmentation + k.context_gb
    fits = need <= gpu.hbm_gb
    oom = None
    if not fits:
        total = gpu.hbm_gb * GB / GIB
        in_use = min(total - 0.02, max(0.0, total - 0.3))
        tried = max(0.02, need - gpu.hbm_gb) * GB / GIB
        oom = (f"torch.OutOfMemoryError: CUDA out of memory. Tried to allocate {tried:.2f} GiB. GPU 0 has a "
               f"total capacity of {total:.2f} GiB of which {total - in_use:.2f} GiB is free. Including "
               f"non-PyTorch memory, this process has {in_use:.2f} GiB memory in use. Of the allocated memory "
               f"{mem['allocated'] * GB / GIB:.2f} GiB is allocated by PyTorch, and "
               f"{max(0.0, in_use - mem['allocated'] * GB / GIB):.2f} GiB is reserved by PyTorch but "
               "unallocated. If reserved but unallocated memory is large try setting "
               "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation.  See documentation "
               "for Memory Management  (https://pytorch.org/docs/stable/notes/cuda.html#environment-variables)")
    return Prediction(
        step_time_s=step,
        tflops_per_gpu=flops_step / step / n / 1e12,
        tokens_per_s_per_gpu=gb * seq / step / n,
        mem_alloc_gb=mem["allocated"],
        mem_max_alloc_gb=max_alloc,
        fits=fits,
        oom_message=oom,
        flops_per_step=flops_step,
        breakdown=breakdown,
        memory={key: v for key, v in mem.items() if key not in ("allocated", "max_allocated")},
    )


def _activation_bytes_per_layer(arch: Architecture, tok_gpu: float, mb: int, seq: int, cp: int, tp: int,
                                etp: int, ep: int, dtype: str, k: Knobs) -> dict[str, float]:
    """Activation bytes one layer keeps for backward for one micro-batch on one GPU (SP + flash attention)."""
    h = arch.hidden_size
    g = 1.5 if arch.gated_linear else 1.0
    low = 0.8 if dtype != "bf16" else 1.0  # FP8 recipes keep GEMM inputs in 8 bits
    attn = k.act_bytes_attn * h * tok_gpu
    if arch.mla:  # MLA keeps the up-projected q/k/v: 128 heads x (192 + 192 + 128)
        attn += 2 * arch.num_attention_heads * (2 * (arch.mla["qk"] + arch.mla["rope"]) + arch.mla["v"]) * tok_gpu
    dense_mlp = k.act_bytes_mlp * arch.ffn_hidden_size * 2 * g * tok_gpu
    moe = 0.0
    if arch.is_moe:
        moe = (k.act_bytes_moe_token * h + k.act_bytes_mlp * arch.moe_ffn_hidden_size * 2 * g) * arch.moe_router_topk
        moe = moe * tok_gpu + k.act_bytes_mlp * arch.moe_shared_expert_size * 2 * g * tok_gpu
    mamba = 0.0
    if arch.mamba_layers:
        mamba = 2 * (2 * h + 2 * (arch.mamba_num_heads * arch.mamba_head_dim or 2 * h)) * tok_gpu
    n = arch.num_layers
    dense_layers, moe_layers = _layer_counts(arch) if not arch.mamba_layers else (0, 0)
    if arch.mamba_layers:
        n_attn = arch.attention_layers or 0
        n_mlp = max(0, n - n_attn - arch.mamba_layers)
        avg = (n_attn * attn + n_mlp * (dense_mlp + 4 * h * tok_gpu) + arch.mamba_layers * mamba) / n
        return {"per_layer": avg * low, "attn": attn * low, "mlp": dense_mlp * low, "input": 2 * h * tok_gpu}
    per_layer = attn + (dense_layers * dense_mlp + moe_layers * moe) / max(1, dense_layers + moe_layers)
    return {"per_layer": per_layer * low, "attn": attn * low, "mlp": (per_layer - attn) * low,
            "input": 2 * h * tok_gpu}


def _memory(arch: Architecture, params: dict[str, float], gpu: GPU, dtype: str, tp: int, pp: int, cp: int,
            dp: int, ep: int, etp: int, edp: int, vp: int, m: int, n_layers: int, act: dict[str, float],
            rl: int, rmods: set[str], offload: int, fsdp: bool, k: Knobs) -> dict[str, float]:
    """Memory of the worst pipeline stage in GB: weights, grads, optimizer, activations, logits, workspace.

    Distributed optimizer: fp32 master weights + Adam m, v (12 B/param; BF16 runs use the precision-aware
    optimizer, 8 B) sharded over DP x CP (experts over expert-DP); bf16 weights (+1 B FP8 copy for FP8
    recipes) and fp32 main grads per rank, all sharded too under Megatron FSDP.
    """
    stage_layers_dense = params["dense"] / pp
    first_or_last = max(params["embedding"], params["output"]) if pp > 1 else params["embedding"] + params["output"]
    p_dense = (stage_layers_dense + first_or_last) / tp
    p_exp = params["expert"] / (pp * etp * ep)
    w_bytes = 2.0 + (1.0 if dtype != "bf16" else 0.0)
    opt_bytes = 8.0 if dtype == "bf16" else 12.0
    shard_d, shard_e = dp * cp, edp
    if fsdp:
        weights = (p_dense / shard_d + p_exp / shard_e) * w_bytes
        weights += 2 * (p_dense + p_exp) / max(1, n_layers / pp) * 2  # two gathered layers in flight
        grads = (p_dense / shard_d + p_exp / shard_e) * 4.0
    else:
        weights = (p_dense + p_exp) * w_bytes
        grads = (p_dense + p_exp) * 4.0
    optim = (p_dense / shard_d + p_exp / shard_e) * opt_bytes
    static = weights + grads + optim

    layers_stage = n_layers / pp
    if pp > 1:
        in_flight = min(m, pp) * (1 + (pp - 1) / (pp * vp))  # 1F1B (interleaved: Korthikanti et al.)
    else:
        in_flight = 1.0
    per_layer = act["per_layer"]
    if "core_attn" in rmods:
        per_layer -= 0.1 * act["attn"]
    if "mlp" in rmods or "moe" in rmods:
        per_layer -= 0.6 * act["mlp"]
    if "moe_act" in rmods:
        per_layer -= 0.15 * act["mlp"]
    if "mla_up_proj" in rmods and arch.mla:
        per_layer -= 0.3 * act["attn"]
    if "layernorm" in rmods:
        per_layer -= 0.1 * act["per_layer"]
    per_layer = max(per_layer, act["input"])
    recomputed = min(layers_stage, rl * vp) if rl else 0.0
    offloaded = min(layers_stage, float(offload)) if offload else 0.0
    kept = max(0.0, layers_stage - recomputed - offloaded)
    activations = in_flight * (kept * per_layer + recomputed * act["input"]) + min(offloaded, 2.0) * per_layer
    if recomputed:
        activations += per_layer  # the layer being recomputed
    vpad = padded_vocab(arch, tp)
    tok_gpu = act["input"] / (2 * arch.hidden_size)
    logits = tok_gpu * tp * vpad / tp * 4.0 * 2  # fp32 logits and their grad on the last stage
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
    }
