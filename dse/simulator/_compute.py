"""GPU and host time of the performance model, per micro-batch, before pipelining and communication.

GEMMs at a shape-dependent share of the dtype's peak, flash attention (incl. the softmax exp units),
memory-bound elementwise traffic, the CPU-side launch and MoE sync costs that the GPU cannot hide, and
the extra forward work of activation recomputation.
"""

from __future__ import annotations

from collections.abc import Mapping

from dse.simulator._flops import _kinds, padded_vocab
from dse.simulator._hardware import Knobs
from dse.simulator._resolve import _Config


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
