"""Memory model: what the worst pipeline stage allocates, and the OOM message a real run would print.

Weights, gradients and distributed-optimizer state by sharding, activations counted tensor by tensor
(selective and full recompute, offload, 1F1B in-flight micro-batches), logits and workspaces. The
published table gives no memory figures, so nothing here is fitted.
"""

from __future__ import annotations

from collections.abc import Mapping

from dse.simulator._flops import _kinds, padded_vocab
from dse.simulator._hardware import GB, GIB, GPU, Knobs
from dse.simulator._resolve import _Config


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
