"""FLOP and parameter counting of one architecture (docs/reference/megatron-bridge.md §6).

Megatron-Bridge's `transformer_flops` / `hybrid_flops`, split into named parts so that the model can time
each part at its own efficiency, and the parameter counts the memory model and the DP/FSDP traffic need.
Pure functions of an `Architecture`; they know nothing of GPUs or parallelism beyond TP's vocab padding.
"""

from __future__ import annotations

import math

from dse.megatron import Architecture


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


def _kinds(a: Architecture) -> tuple[int, int, int]:
    """(dense-MLP layers, MoE layers, all transformer layers incl. MTP); hybrid: MLP-only and all layers."""
    if a.mamba_layers:
        n_mlp = max(0, a.num_layers - a.mamba_layers - (a.attention_layers or 0))
        return n_mlp, 0, a.num_layers
    dense, moe = _layer_counts(a)
    return dense, moe, dense + moe
