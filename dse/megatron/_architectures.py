"""Model architecture numbers of the Megatron-Bridge v0.3.0 recipes (docs/reference/megatron-bridge.md §6).

Used by the architecture-aware parallelism rules (heads % tp, layers % pp, experts % ep, ...) and by
the simulator's performance model. Pure data: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Architecture:
    """Shape of one recipe's model; counts are per model, sizes in elements."""

    recipe: str
    family: str
    num_layers: int
    hidden_size: int
    num_attention_heads: int
    num_query_groups: int | None  # None = MLA (DeepSeek), no GQA groups
    kv_channels: int  # head dim
    ffn_hidden_size: int  # dense FFN
    vocab_size: int
    seq_length: int  # recipe default sequence length
    num_moe_experts: int | None = None
    moe_router_topk: int = 0
    moe_ffn_hidden_size: int = 0
    moe_shared_expert_size: int = 0
    dense_layers: int = 0  # leading dense layers in a MoE model (DeepSeek: 3)
    mtp_layers: int = 0
    gated_linear: bool = True  # SwiGLU-style (x1.5 in the FLOPs formula)
    vocab_divisor: int = 128
    mla: dict[str, int] | None = None  # q_lora, kv_lora, qk, rope, v
    mamba_layers: int = 0  # hybrid models: layers that are Mamba
    attention_layers: int | None = None  # hybrid models: layers that are attention
    mamba_state_dim: int = 0  # hybrid models: SSM state size
    mamba_head_dim: int = 0
    mamba_num_heads: int = 0
    mamba_groups: int = 0
    sliding_window: int = 0  # every other layer attends to this many tokens only (GPT-OSS), 0 = none
    glu_compute: bool | None = None  # the MLP really is gated although the FLOPs formula counts it 1x (GPT-OSS)
    # The recipe sets account_for_embedding_in_pipeline_split and account_for_loss_in_pipeline_split: the
    # pipeline split counts the embedding and the loss as one layer each (Megatron-Bridge v0.3.0
    # recipes/llama/llama3.py llama31_405b_pretrain_config, recipes/qwen/qwen3_moe.py
    # qwen3_235b_a22b_pretrain_config), so pp must divide num_layers + 2, not num_layers.
    pipeline_split_counts_embedding_and_loss: bool = False

    @property
    def pipeline_layers(self) -> int:
        """The layer count the pipeline split divides (num_layers, + 2 with the embedding/loss accounting)."""
        return self.num_layers + (2 if self.pipeline_split_counts_embedding_and_loss else 0)

    @property
    def is_moe(self) -> bool:
        return bool(self.num_moe_experts)

    @property
    def moe_layers(self) -> int:
        return self.num_layers - self.dense_layers if self.is_moe else 0


_ARCHS = [
    Architecture("llama3_8b", "llama", 32, 4096, 32, 8, 128, 14336, 128256, 8192),
    Architecture("llama3_70b", "llama", 80, 8192, 64, 8, 128, 28672, 128256, 8192),
    Architecture("llama31_405b", "llama", 126, 16384, 128, 8, 128, 53248, 128256, 8192,
                 pipeline_split_counts_embedding_and_loss=True),
    Architecture(
        "qwen3_30b_a3b", "qwen", 48, 2048, 32, 4, 128, 6144, 151936, 4096,
        num_moe_experts=128, moe_router_topk=8, moe_ffn_hidden_size=768,
    ),
    Architecture(
        "qwen3_235b_a22b", "qwen", 94, 4096, 64, 4, 128, 12288, 151936, 4096,
        num_moe_experts=128, moe_router_topk=8, moe_ffn_hidden_size=1536,
        pipeline_split_counts_embedding_and_loss=True,
    ),
    Architecture(
        "deepseek_v3", "deepseek", 61, 7168, 128, None, 128, 18432, 129280, 4096,
        num_moe_experts=256, moe_router_topk=8, moe_ffn_hidden_size=2048, moe_shared_expert_size=2048,
        dense_layers=3, mtp_layers=1, vocab_divisor=1280,
        mla={"q_lora": 1536, "kv_lora": 512, "qk": 128, "rope": 64, "v": 128},
    ),
    Architecture(
        "gpt_oss_120b", "gpt_oss", 36, 2880, 64, 8, 64, 2880, 201088, 4096,
        num_moe_experts=128, moe_router_topk=4, moe_ffn_hidden_size=2880, gated_linear=False,
        sliding_window=128, glu_compute=True,
    ),
    Architecture(
        "nemotronh_56b", "nemotronh", 118, 8192, 64, 8, 128, 32768, 32000, 8192,
        gated_linear=False, mamba_layers=54, attention_layers=10,
        mamba_state_dim=256, mamba_head_dim=64, mamba_num_heads=256, mamba_groups=8,
    ),
]

ARCHITECTURES: dict[str, Architecture] = {a.recipe: a for a in _ARCHS}


def architecture_for(recipe: str | None) -> Architecture | None:
    """The architecture of a `model_recipe_name`, or None for a recipe we do not know."""
    if not recipe:
        return None
    return ARCHITECTURES.get(recipe.strip().lower())
