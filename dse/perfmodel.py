"""An honest analytic model of one Megatron-Bridge training step: time, model TFLOP/s/GPU and memory.

Why: the simulator needs plausible, *explainable* numbers so that sweeps, agents and reports can be
exercised without a GPU. The step time is a transparent sum of named terms (`Prediction.breakdown`),
each with a short comment saying where its number comes from. The FLOPs are the ones Megatron-Bridge
logs (reference/megatron-bridge.md §6), so TFLOP/s/GPU means the same thing as in the real logs.

Calibrated (a handful of efficiency constants, marked CAL) against the 26.02 published table (§5);
tests/test_perfmodel.py prints the comparison. Not a substitute for a real run: it ignores kernel-level
detail, stragglers, NCCL algorithm choice and most of the effects of the PP layout string. Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dse.architectures import Architecture, architecture_for
from dse.presets import resolve_defaults


@dataclass(frozen=True)
class GPU:
    """Per-GPU datasheet numbers (dense TFLOP/s, GB, GB/s unidirectional)."""

    name: str
    peak_bf16_tflops: float
    peak_fp8_tflops: float
    peak_fp4_tflops: float
    hbm_gb: float
    nvlink_domain: int
    nvlink_gbps: float
    network_gbps: float
    hbm_tbps: float = 8.0  # HBM bandwidth, TB/s
    host_gbps: float = 50.0  # GPU <-> CPU link used by activation offload


# Dense (no sparsity) peaks from NVIDIA datasheets; network = one 400G (H100/B200/GB200) or 800G
# (B300/GB300) NIC per GPU; GB200/GB300 have NVLink-C2C to the Grace CPU.
GPUS: dict[str, GPU] = {
    "h100": GPU("h100", 989.0, 1979.0, 1979.0, 80.0, 8, 450.0, 50.0, hbm_tbps=3.35, host_gbps=50.0),
    "b200": GPU("b200", 2250.0, 4500.0, 9000.0, 180.0, 8, 900.0, 50.0, hbm_tbps=8.0, host_gbps=50.0),
    "b300": GPU("b300", 2250.0, 4500.0, 13500.0, 270.0, 8, 900.0, 100.0, hbm_tbps=8.0, host_gbps=50.0),
    "gb200": GPU("gb200", 2500.0, 5000.0, 10000.0, 186.0, 72, 900.0, 50.0, hbm_tbps=8.0, host_gbps=200.0),
    "gb300": GPU("gb300", 2500.0, 5000.0, 15000.0, 279.0, 72, 900.0, 100.0, hbm_tbps=8.0, host_gbps=200.0),
}


@dataclass(frozen=True)
class Prediction:
    """What one step of this configuration would do on the modelled hardware."""

    step_time_s: float
    tflops_per_gpu: float
    tokens_per_s_per_gpu: float
    mem_alloc_gb: float
    mem_max_alloc_gb: float
    fits: bool
    oom_message: str | None
    flops_per_step: float
    breakdown: dict[str, float]


# ---------------------------------------------------------------------------------------------------
# FLOPs (§6, Megatron `num_floating_point_operations` / Bridge `transformer_flops`)
# ---------------------------------------------------------------------------------------------------
def padded_vocab(arch: Architecture, tp: int = 1) -> int:
    """Vocab padded to a multiple of divisor*TP, as Megatron does before building the embedding."""
    mult = arch.vocab_divisor * max(1, tp)
    return int(math.ceil(arch.vocab_size / mult) * mult)


def _flops_terms(arch: Architecture, seq: int, tp: int = 1) -> dict[str, float]:
    """Per-token training FLOPs (fwd+bwd) split into MLP, expert MLP, attention linear/core and logits."""
    h = arch.hidden_size
    g = 1.5 if arch.gated_linear else 1.0
    mtp = arch.mtp_layers
    n_layers = arch.num_layers + mtp  # MTP layers count as transformer layers (last layer kind)
    n_moe = arch.moe_layers + (mtp if arch.is_moe else 0)
    n_dense = n_layers - n_moe
    if arch.mamba_layers:  # hybrid: only the MLP layers have an FFN, only attention layers attend
        n_mlp = arch.num_layers - arch.mamba_layers - (arch.attention_layers or 0)
        n_attn = arch.attention_layers or 0
    else:
        n_mlp, n_attn = n_dense, n_layers
    dense_mlp = 12.0 * h * arch.ffn_hidden_size * g * n_mlp
    expert_mlp = 12.0 * h * arch.moe_ffn_hidden_size * arch.moe_router_topk * g * n_moe
    shared_mlp = 12.0 * h * arch.moe_shared_expert_size * g * n_moe
    heads = arch.num_attention_heads
    if arch.mla:
        m = arch.mla
        lin = (m["q_lora"] * (h + heads * (m["qk"] + m["rope"]) + 1)
               + m["kv_lora"] * (h + heads * (m["qk"] + m["v"]) + 1) + h * m["rope"] + heads * m["v"] * h)
        core = seq * heads * (m["qk"] + m["rope"]) / 2 + seq * heads * m["v"] / 2
        attn_lin, attn_core = 6.0 * n_layers * lin, 6.0 * n_layers * core
    else:
        groups = arch.num_query_groups or heads
        ratio = arch.kv_channels * heads / h
        attn_lin = 12.0 * n_attn * h * h * (1 + groups / heads) * ratio
        attn_core = 12.0 * n_attn * h * h * (seq / (2 * h)) * ratio
    # Mamba-2 mixer (hybrid_flops, approximate): in_proj to 2*d_inner + 2*groups*state + heads, out_proj.
    mamba = 0.0
    if arch.mamba_layers:
        d_inner, state, groups_m, heads_m = 2 * h, 256, 8, 256
        in_proj = 2 * d_inner + 2 * groups_m * state + heads_m
        mamba = 6.0 * arch.mamba_layers * (h * in_proj + d_inner * h + 3 * d_inner * state)
    logits = 6.0 * h * padded_vocab(arch, tp) * (mtp + 1) + 6.0 * mtp * (3 * h + 2 * h * h)
    return {"dense_mlp": dense_mlp + shared_mlp, "expert_mlp": expert_mlp, "attn_linear": attn_lin + mamba,
            "attn_core": attn_core, "logits": logits}


def model_flops_per_step(arch: Architecture, gbs: int, seq: int, tp: int = 1) -> float:
    """Model FLOPs of one step as Megatron logs them: GBS * seq * per-token FLOPs (§6)."""
    return float(gbs) * seq * sum(_flops_terms(arch, seq, tp).values())


# ---------------------------------------------------------------------------------------------------
# parameter counts (for memory and DP/FSDP traffic)
# ---------------------------------------------------------------------------------------------------
def _param_counts(arch: Architecture) -> tuple[float, float]:
    """(non-expert params, routed-expert params). Biases and norms are ignored (<0.1 %)."""
    h = arch.hidden_size
    g = 3 if arch.gated_linear else 2
    heads = arch.num_attention_heads
    if arch.mla:
        m = arch.mla
        attn = (h * m["q_lora"] + m["q_lora"] * heads * (m["qk"] + m["rope"]) + h * (m["kv_lora"] + m["rope"])
                + m["kv_lora"] * heads * (m["qk"] + m["v"]) + heads * m["v"] * h)
    else:
        groups = arch.num_query_groups or heads
        attn = h * arch.kv_channels * (2 * heads + 2 * groups)
    n_layers = arch.num_layers + arch.mtp_layers
    n_moe = arch.moe_layers + (arch.mtp_layers if arch.is_moe else 0)
    if arch.mamba_layers:
        n_mlp = arch.num_layers - arch.mamba_layers - (arch.attention_layers or 0)
        dense = (attn * (arch.attention_layers or 0) + g * h * arch.ffn_hidden_size * n_mlp
                 + arch.mamba_layers * h * (2 * 2 * h + 2 * 8 * 256 + 256 + 2 * h))
    else:
        dense = attn * n_layers + g * h * arch.ffn_hidden_size * (n_layers - n_moe)
    dense += g * h * arch.moe_shared_expert_size * n_moe + 2 * h * padded_vocab(arch)  # emb + output
    experts = g * h * arch.moe_ffn_hidden_size * (arch.num_moe_experts or 0) * n_moe
    return float(dense), float(experts)


# ---------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------
def _peak(gpu: GPU, dtype: str) -> float:
    """Peak dense TFLOP/s of the GEMM precision this recipe uses (fp8_* -> FP8, nvfp4 -> FP4)."""
    if dtype.startswith("fp8"):
        return gpu.peak_fp8_tflops
    if dtype == "nvfp4":
        return gpu.peak_fp4_tflops
    return gpu.peak_bf16_tflops


def _bw(size: int, stride: int, domain: int, gpu: GPU) -> float:
    """GB/s one rank gets in a group of `size` ranks `stride` apart (layout tp-cp-ep-dp-pp).

    Inside the NVLink domain: NVLink; a group spanning more than the domain goes over the network.
    """
    if size <= 1:
        return float("inf")
    return gpu.nvlink_gbps if size * stride <= domain else gpu.network_gbps


def _ring(bytes_: float, size: int, bw_gbps: float) -> float:
    """Seconds of a ring all-gather / reduce-scatter moving `bytes_` in total: (n-1)/n of it per rank."""
    if size <= 1 or bytes_ <= 0:
        return 0.0
    return bytes_ * (size - 1) / size / (bw_gbps * 1e9)


def _as_list(value: Any) -> list[str]:
    if not value:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v).strip().lower() for v in value]
    return [p.strip().lower() for p in str(value).replace("[", "").replace("]", "").split(",") if p.strip()]


# CAL: efficiency constants fitted to the §5 table (see tests/test_perfmodel.py).
GEMM_EFF_MAX = {"bf16": 0.80, "fp8": 0.62, "fp4": 0.45}  # best achieved fraction of peak, large GEMMs
GEMM_HALF_TOKENS = 1024.0  # tokens per GEMM at which a GEMM reaches half of its best efficiency
ATTN_EFF = 0.45  # flash attention fwd+bwd fraction of bf16 peak (cuDNN/TE, causal)
EXPERT_HALF_TOKENS = 256.0  # tokens per local expert at half grouped-GEMM efficiency
EXPERT_FFN_HALF = 1024.0  # expert FFN width at half grouped-GEMM efficiency (thin GEMMs underuse SMs)
MEMBOUND_BYTES_PER_TOKEN_H = 60.0  # elementwise/norm/rope/permute traffic per token per layer, x hidden bytes
MOE_MEMBOUND_BYTES_PER_TOKEN_H = 40.0  # router, permute/unpermute, (de)quantize per routed copy, x hidden
KERNEL_LAUNCH_S = 4e-6  # per kernel launch when not captured in a CUDA graph
KERNELS_PER_LAYER = {"dense": 60, "moe": 160}  # fwd+bwd kernels per layer per microbatch
TP_EXPOSED = 0.35  # share of TP all-gather/reduce-scatter not hidden behind GEMMs (SP + comm overlap)
CP_EXPOSED = 0.25  # share of the CP ring KV exchange not hidden behind attention
EP_EXPOSED = {"alltoall": 1.0, "flex": 0.8, "deepep": 0.7, "hybridep": 0.6}  # a2a not hidden, per dispatcher
A2A_EFF = 0.55  # all-to-all achieves this fraction of the link bandwidth
DP_EXPOSED = 0.15  # grad reduce-scatter / param all-gather mostly overlapped with backward/forward
FSDP_EXPOSED = 0.25  # Megatron-FSDP per-microbatch param gather / grad scatter not hidden
OFFLOAD_EXPOSED = 0.3  # CPU activation offload copies not hidden behind compute
MEM_OVERHEAD_GB = 4.0  # CUDA context, NCCL buffers, allocator fragmentation
HBM_USABLE = 0.97  # fraction of HBM the caching allocator can hand out


def _gemm_eff(kind: str, tokens: float, tp: int) -> float:
    """GEMM efficiency: rises with tokens per GEMM (micro-batch), falls with TP (thinner GEMMs)."""
    return GEMM_EFF_MAX[kind] * tokens / (tokens + GEMM_HALF_TOKENS) / (1.0 + 0.04 * (tp - 1))


def _kind(dtype: str) -> str:
    return "fp8" if dtype.startswith("fp8") else ("fp4" if dtype == "nvfp4" else "bf16")


# ---------------------------------------------------------------------------------------------------
# the model
# ---------------------------------------------------------------------------------------------------
def predict(cmd_args: Mapping[str, Any], num_nodes: int | None = None) -> Prediction:
    """Predict step time, TFLOP/s/GPU and memory of these (possibly partial) Megatron-Bridge cmd_args."""
    a = resolve_defaults(cmd_args)
    arch = architecture_for(a.get("model_recipe_name")) or architecture_for("llama3_8b")
    assert arch is not None
    if a.get("num_layers") and a["num_layers"] != arch.num_layers:  # model.num_layers override
        scale_dense = min(arch.dense_layers, a["num_layers"])
        arch = _replace_layers(arch, int(a["num_layers"]), scale_dense)
    if a.get("hidden_size") and a["hidden_size"] != arch.hidden_size:
        arch = _replace_hidden(arch, int(a["hidden_size"]))
    gpu = GPUS.get(str(a.get("gpu_type")), GPUS["gb200"])
    dtype = str(a.get("compute_dtype") or "bf16")
    kind = _kind(dtype)
    world = int(a["num_gpus"])
    tp, pp, cp, ep = int(a["tp"]), int(a["pp"]), int(a["cp"]), int(a["ep"])
    etp = int(a["et"]) if a.get("et") else (1 if arch.is_moe else tp)
    vp = int(a["vp"]) if a.get("vp") else 1
    mb, seq = int(a["mb"]), int(a["seq_length"])
    dp = max(1, world // max(1, tp * pp * cp))
    gb = int(a["gb"]) if a.get("gb") else mb * dp
    m = max(1, gb // max(1, mb * dp))  # microbatches per DP rank
    nodes = num_nodes or max(1, math.ceil(world / (4 if gpu.nvlink_domain > 8 else 8)))
    domain = gpu.nvlink_domain if gpu.nvlink_domain > 8 else min(gpu.nvlink_domain, math.ceil(world / nodes))
    bpe = 1 if kind != "bf16" else 2  # bytes per element of GEMM inputs on the wire / saved (fp8 & fp4 ~1)

    terms = _flops_terms(arch, seq, tp)
    flops = gb * seq * sum(terms.values())
    tok_mb = mb * seq / cp  # tokens one GPU sees per microbatch (GEMM M dim before SP split)
    b: dict[str, float] = {}

    # ---- compute: FLOPs per GPU / (peak x efficiency); model-parallel splits FLOPs evenly over world.
    per_gpu = gb * seq / world  # tokens per GPU per step, in FLOPs-per-token units
    e_lin = _gemm_eff(kind, tok_mb, tp)
    lin = (terms["dense_mlp"] + terms["attn_linear"]) * per_gpu / (_peak(gpu, dtype) * 1e12 * e_lin)
    # logits GEMM stays in bf16 in TE's low-precision recipes (first/last layers are kept high precision)
    lin += terms["logits"] * per_gpu / (gpu.peak_bf16_tflops * 1e12 * _gemm_eff("bf16", tok_mb, tp))
    attn = terms["attn_core"] * per_gpu / (gpu.peak_bf16_tflops * 1e12 * ATTN_EFF)
    expert = 0.0
    if arch.is_moe:
        e_local = (arch.num_moe_experts or 1) / ep
        tok_expert = tok_mb * ep / max(1, tp) * arch.moe_router_topk / (arch.num_moe_experts or 1)
        tok_expert *= tp / etp if etp else 1
        ffn = arch.moe_ffn_hidden_size / max(1, etp)
        e_exp = (GEMM_EFF_MAX[kind] * tok_expert / (tok_expert + EXPERT_HALF_TOKENS) * ffn / (ffn + EXPERT_FFN_HALF))
        expert = terms["expert_mlp"] * per_gpu / (_peak(gpu, dtype) * 1e12 * e_exp)
        del e_local
    b["compute"] = lin + attn + expert

    # ---- memory-bound kernels (norms, rope, activations, residuals, MoE permute): bytes / HBM bandwidth
    layers_gpu = (arch.num_layers + arch.mtp_layers) / pp
    tok_gpu_step = gb * seq / (dp * cp * max(1, tp))  # tokens per GPU per step after the SP split
    membound = tok_gpu_step * layers_gpu * MEMBOUND_BYTES_PER_TOKEN_H * arch.hidden_size
    if arch.is_moe:
        moe_layers_gpu = (arch.moe_layers + arch.mtp_layers) / pp
        membound += (tok_gpu_step * moe_layers_gpu * arch.moe_router_topk * MOE_MEMBOUND_BYTES_PER_TOKEN_H
                     * arch.hidden_size)
    b["memory_bound"] = membound / (gpu.hbm_tbps * 1e12)

    # ---- kernel launch overhead; CUDA graphs capture most of it (mainly matters for small MoE layers)
    graphs = _as_list(a.get("cuda_graph_scope")) if a.get("cuda_graph_impl", "none") != "none" else []
    k_layer = KERNELS_PER_LAYER["moe" if arch.is_moe else "dense"]
    captured = 0.9 if "full_iteration" in graphs else min(0.7, 0.2 * len(graphs))
    b["launch"] = m * vp * layers_gpu / vp * k_layer * KERNEL_LAUNCH_S * (1 - captured)

    # ---- TP: with SP, 2 all-gathers + 2 reduce-scatters per layer fwd, as many bwd, of mb*seq/cp*h
    if tp > 1:
        vol = tok_mb * arch.hidden_size * 2  # bf16 activations (fp8 AG only for some recipes: ignored)
        per_mb = 8 * _ring(vol, tp, _bw(tp, 1, domain, gpu)) * layers_gpu
        exposed = TP_EXPOSED if tp <= domain else 1.0
        b["tp_comm"] = m * per_mb * exposed
    # ---- CP: ring exchange of K,V per layer (fwd once, bwd twice), mostly overlapped with attention
    if cp > 1:
        kv = 2 * (arch.num_query_groups or arch.num_attention_heads) * arch.kv_channels
        vol = tok_mb / max(1, tp) * kv * 2 * (cp - 1)
        per_mb = 3 * vol / (_bw(cp, tp, domain, gpu) * 1e9) * layers_gpu
        exposed = CP_EXPOSED if cp * tp <= domain else 0.6
        b["cp_comm"] = m * per_mb * exposed
    # ---- EP: dispatch + combine all-to-all of top-k token copies, fwd and bwd
    if arch.is_moe and ep > 1:
        moe_layers_gpu = (arch.moe_layers + arch.mtp_layers) / pp
        vol = tok_mb / max(1, tp) * arch.moe_router_topk * arch.hidden_size * (bpe + 2) / 2 * (ep - 1) / ep
        bw = _bw(ep, tp * cp, domain, gpu) * A2A_EFF
        per_mb = 4 * vol / (bw * 1e9) * moe_layers_gpu
        exposed = EP_EXPOSED.get(str(a.get("dispatcher")), 1.0)
        if a.get("moe_a2a_overlap"):
            exposed *= 0.5  # delayed wgrad + overlapped dispatch (comm_overlap.py)
        b["ep_comm"] = m * per_mb * exposed

    # ---- DP: distributed optimizer reduce-scatter (grads) + all-gather (params) once per step
    dense_p, expert_p = _param_counts(arch)
    dense_shard = dense_p / (tp * pp)
    expert_shard = expert_p / (ep * max(1, etp) * pp)
    edp = max(1, world // (ep * max(1, etp) * pp))
    dp_bw = _bw(dp * cp, tp, domain, gpu)
    dp_time = _ring(dense_shard * 4, dp * cp, dp_bw) + _ring(expert_shard * 4, edp, _bw(edp, tp * cp * ep,
                                                                                       domain, gpu))
    fsdp = bool(a.get("use_megatron_fsdp"))
    if fsdp:
        # every microbatch: all-gather params fwd and bwd, reduce-scatter grads (optim_grads_params)
        per_mb = 2 * _ring(dense_shard * bpe, dp * cp, dp_bw) + _ring(dense_shard * 2, dp * cp, dp_bw)
        b["dp_comm"] = dp_time * DP_EXPOSED + m * per_mb * FSDP_EXPOSED
    else:
        b["dp_comm"] = dp_time * DP_EXPOSED
    # ---- optimizer step: Adam over this rank's fp32 shard, memory bound (~32 bytes per param)
    opt_shard = dense_shard / (dp * cp) + expert_shard / edp
    b["optimizer"] = opt_shard * 32 / (gpu.hbm_tbps * 1e12)

    # ---- PP: p2p of activations between stages per microbatch and chunk (small), plus the bubble
    if pp > 1:
        vol = tok_mb / max(1, tp) * arch.hidden_size * 2
        b["pp_comm"] = 2 * m * vp * vol / (_bw(pp, world // pp, domain, gpu) * 1e9) * 0.5

    # ---- recompute: full block recompute re-runs the forward (1/3 of fwd+bwd) of N layers per stage
    rl = a.get("recompute_num_layers")
    per_layer = (b["compute"] + b["memory_bound"]) / max(1e-9, layers_gpu)
    recompute = 0.0
    if rl:
        recompute += min(int(rl), layers_gpu) * per_layer / 3
    mods = _as_list(a.get("recompute_modules"))
    share = {"core_attn": attn / max(1e-9, b["compute"]) / 3, "mlp": 0.6 / 3, "moe_act": 0.01, "layernorm": 0.01,
             "mla_up_proj": 0.03, "moe": 0.5 / 3, "shared_experts": 0.02}
    recompute += sum(share.get(mod, 0.01) for mod in mods) * per_layer * layers_gpu
    b["recompute"] = recompute

    # ---- memory: states + activations
    act_tok_layer = _act_bytes_per_token_layer(arch, kind)
    n_off = int(a.get("activation_offload_layers") or 0)
    act_layers = layers_gpu
    if rl:
        act_layers = layers_gpu - min(int(rl), layers_gpu) * (1 - 1 / 8)  # keep layer inputs only
    sel = sum({"core_attn": 0.05, "mlp": 0.5, "moe_act": 0.1, "mla_up_proj": 0.1, "layernorm": 0.05,
               "moe": 0.5}.get(mod, 0.0) for mod in mods)
    act_layers = max(0.0, act_layers * (1 - min(0.8, sel)) - n_off)
    # in-flight microbatches on the first stage: 1F1B keeps pp, interleaving adds (pp-1)/vp
    inflight = 1.0 if pp == 1 else min(float(m), pp + (pp - 1) / vp)
    act = act_tok_layer * tok_mb / max(1, tp) * act_layers * inflight
    logits_mem = tok_mb / max(1, tp) * padded_vocab(arch, tp) / max(1, tp) * 4 * 2  # fp32 logits + grad
    if pp > 1:
        logits_mem /= 2  # only the last stage holds them; the first stage (peak) holds the embedding instead
    w_bytes = 2 + (1 if kind != "bf16" else 0)  # bf16 weights (+ fp8/fp4 copies)
    shard_w = dp * cp if fsdp else 1
    weights = (dense_shard / shard_w + expert_shard / (edp if fsdp else 1)) * w_bytes
    grads = (dense_shard / shard_w + expert_shard / (edp if fsdp else 1)) * 4  # fp32 main grads
    optim = (dense_shard / (dp * cp) + expert_shard / edp) * 12  # fp32 master + Adam m, v (dist. optimizer)
    gathered = 2 * (dense_p / arch.num_layers / tp) * 2 if fsdp else 0.0  # two unsharded layers in flight
    static = weights + grads + optim
    peak = static + act + logits_mem + gathered + MEM_OVERHEAD_GB * 1e9
    alloc_gb, max_gb = (static + MEM_OVERHEAD_GB * 1e9 / 2) / 1e9, peak / 1e9
    fits = max_gb <= gpu.hbm_gb * HBM_USABLE
    if n_off:  # offloaded activations go to the host and come back for backward
        vol = act_tok_layer * tok_mb / max(1, tp) * n_off * 2
        b["offload"] = m * vol / (gpu.host_gbps * 1e9) * OFFLOAD_EXPOSED

    busy = sum(b.values())
    # ---- pipeline bubble: (pp-1)/(vp*m) of the per-stage work (1F1B / interleaved 1F1B)
    b["bubble"] = (pp - 1) / (vp * m) * busy if pp > 1 else 0.0
    step = sum(b.values())
    oom = None
    if not fits:
        oom = (f"predicted peak {max_gb:.1f} GB > {gpu.hbm_gb * HBM_USABLE:.1f} GB usable on {gpu.name} "
               f"(states {static / 1e9:.1f} GB, activations {act / 1e9:.1f} GB)")
    return Prediction(
        step_time_s=step, tflops_per_gpu=flops / step / world / 1e12,
        tokens_per_s_per_gpu=gb * seq / step / world, mem_alloc_gb=alloc_gb, mem_max_alloc_gb=max_gb,
        fits=fits, oom_message=oom, flops_per_step=flops, breakdown=b,
    )


def _act_bytes_per_token_layer(arch: Architecture, kind: str) -> float:
    """Saved activations of one layer per token (Megatron's ~34*h for a 4h FFN, flash attention).

    LN input, QKV/FC1 inputs (1 byte in fp8/fp4: TE saves the quantized copy), Q/K/V, attention out,
    FC1 output (2 x ffn for GLU), FC2 input; MoE layers hold top-k routed copies of the expert part.
    """
    h = arch.hidden_size
    b = 1 if kind != "bf16" else 2
    kv = 2 * (arch.num_query_groups or arch.num_attention_heads) * arch.kv_channels
    attn = 2 * h + b * h + 2 * (h + kv) + 2 * h
    gl = 2 if arch.gated_linear else 1
    if arch.is_moe:
        f = arch.moe_ffn_hidden_size * arch.moe_router_topk + arch.moe_shared_expert_size
        mlp = 2 * h + b * h + arch.moe_router_topk * b * h + 2 * gl * f + b * f
    else:
        f = arch.ffn_hidden_size
        mlp = 2 * h + b * h + 2 * gl * f + b * f
    return float(attn + mlp)


def _replace_layers(arch: Architecture, layers: int, dense: int) -> Architecture:
    from dataclasses import replace

    return replace(arch, num_layers=layers, dense_layers=dense)


def _replace_hidden(arch: Architecture, hidden: int) -> Architecture:
    from dataclasses import replace

    return replace(arch, hidden_size=hidden)
