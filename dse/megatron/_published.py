"""The published Megatron-Bridge v0.3.0 performance table (26.02 container) as data.

Source: Megatron-Bridge `docs/performance-summary.md` at v0.3.0, top section
(docs/reference/megatron-bridge.md §5). Used to check that dse's rules accept every configuration
NVIDIA ran, and to calibrate and judge the simulator. Pure data, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["PUBLISHED_26_02", "PublishedRow"]


@dataclass(frozen=True)
class PublishedRow:
    """One published run: its configuration and its measured model TFLOP/s per GPU."""

    label: str
    gpu: str
    recipe: str
    num_gpus: int
    dtype: str
    gb: int
    mb: int
    fsdp: bool
    tp: int
    pp: int
    cp: int
    vp: int | None
    ep: int
    tflops_per_gpu: float
    tokens_per_s_per_gpu: float

    def cmd_args(self) -> dict[str, Any]:
        """The row as MegatronBridge cmd_args (vp = 1 where the table has none, as a one-point sweep writes it)."""
        return {"gpu_type": self.gpu, "model_recipe_name": self.recipe, "num_gpus": self.num_gpus,
                "compute_dtype": self.dtype, "gb": self.gb, "mb": self.mb, "use_megatron_fsdp": self.fsdp,
                "tp": self.tp, "pp": self.pp, "cp": self.cp, "vp": self.vp or 1, "ep": self.ep}


def _row(label: str, gpu: str, recipe: str, n: int, dtype: str, gb: int, mb: int, fsdp: bool, tp: int, pp: int,
         cp: int, vp: int | None, ep: int, tflops: float, tok: float) -> PublishedRow:
    return PublishedRow(label, gpu, recipe, n, dtype, gb, mb, fsdp, tp, pp, cp, vp, ep, tflops, tok)


PUBLISHED_26_02: tuple[PublishedRow, ...] = (
    _row("GB300 Llama3 70B FP8-FSDP", "gb300", "llama3_70b", 64, "fp8_cs", 256, 2, True, 1, 1, 1, None, 1, 2248, 5003),
    _row("GB300 Llama3 70B MXFP8", "gb300", "llama3_70b", 64, "fp8_mx", 256, 1, False, 1, 4, 1, 5, 1, 2064, 4596),
    _row("GB300 Llama3 70B NVFP4", "gb300", "llama3_70b", 64, "nvfp4", 256, 1, False, 1, 4, 1, 5, 1, 3056, 6798),
    _row("GB300 Llama3.1 405B FP8", "gb300", "llama31_405b", 256, "fp8_cs", 1536, 1, False, 4, 8, 1, 4, 1, 2495, 988),
    _row("GB300 DeepSeek-V3 MXFP8", "gb300", "deepseek_v3", 256, "fp8_mx", 4096, 2, False, 1, 2, 1, 8, 32, 1199, 4612),
    _row("GB300 GPT-OSS 120B BF16", "gb300", "gpt_oss_120b", 64, "bf16", 1280, 4, False, 1, 1, 1, None, 64, 527,
         19412),
    _row("GB300 Qwen3 30B-A3B MXFP8", "gb300", "qwen3_30b_a3b", 8, "fp8_mx", 512, 8, False, 1, 1, 1, None, 8, 699,
         30376),
    _row("GB300 Qwen3 235B MXFP8", "gb300", "qwen3_235b_a22b", 256, "fp8_mx", 8192, 2, False, 1, 4, 1, None, 32, 974,
         6583),
    _row("GB200 Llama3 70B FP8-FSDP", "gb200", "llama3_70b", 64, "fp8_cs", 256, 2, True, 1, 1, 1, None, 1, 1815, 4040),
    _row("GB200 Llama3 70B MXFP8", "gb200", "llama3_70b", 64, "fp8_mx", 256, 1, False, 2, 4, 1, 5, 1, 1623, 3613),
    _row("GB200 Llama3 70B NVFP4", "gb200", "llama3_70b", 64, "nvfp4", 256, 1, False, 2, 4, 1, 5, 1, 2004, 4458),
    _row("GB200 Llama3.1 405B FP8", "gb200", "llama31_405b", 256, "fp8_cs", 1536, 1, False, 4, 16, 1, 4, 1, 2004, 793),
    _row("GB200 DeepSeek-V3 MXFP8", "gb200", "deepseek_v3", 256, "fp8_mx", 4096, 1, False, 1, 4, 1, 4, 64, 1028, 3955),
    _row("GB200 GPT-OSS 120B BF16", "gb200", "gpt_oss_120b", 64, "bf16", 1280, 4, False, 1, 1, 1, None, 64, 428,
         15784),
    _row("GB200 Qwen3 30B-A3B MXFP8", "gb200", "qwen3_30b_a3b", 8, "fp8_mx", 512, 4, False, 1, 1, 1, None, 8, 600,
         26084),
    _row("GB200 Qwen3 235B MXFP8", "gb200", "qwen3_235b_a22b", 256, "fp8_mx", 8192, 1, False, 1, 8, 1, None, 32, 806,
         5448),
    _row("B300 DeepSeek-V3 MXFP8", "b300", "deepseek_v3", 256, "fp8_mx", 4096, 1, False, 1, 16, 1, None, 8, 776, 2983),
    _row("B300 GPT-OSS 120B BF16", "b300", "gpt_oss_120b", 64, "bf16", 1280, 4, False, 1, 1, 1, None, 64, 228, 8359),
    _row("B300 Qwen3 30B-A3B MXFP8", "b300", "qwen3_30b_a3b", 8, "fp8_mx", 512, 8, False, 1, 1, 1, None, 8, 679,
         29521),
    _row("B300 Qwen3 235B MXFP8", "b300", "qwen3_235b_a22b", 256, "fp8_mx", 8192, 1, False, 1, 8, 1, 4, 8, 399, 2691),
    _row("B200 DeepSeek-V3 MXFP8", "b200", "deepseek_v3", 256, "fp8_mx", 4096, 1, False, 1, 16, 1, None, 8, 699, 2689),
    _row("B200 GPT-OSS 120B BF16", "b200", "gpt_oss_120b", 64, "bf16", 1280, 4, False, 1, 1, 1, None, 64, 219, 8047),
    _row("B200 Qwen3 30B-A3B MXFP8", "b200", "qwen3_30b_a3b", 8, "fp8_mx", 512, 1, False, 1, 1, 1, None, 8, 223, 9691),
    _row("B200 Qwen3 235B MXFP8", "b200", "qwen3_235b_a22b", 256, "fp8_mx", 8192, 1, False, 1, 8, 1, None, 8, 563,
         3805),
    _row("H100 Llama3 70B FP8", "h100", "llama3_70b", 64, "fp8_cs", 256, 1, False, 4, 8, 1, 5, 1, 728, 1621),
    _row("H100 Llama3.1 405B FP8", "h100", "llama31_405b", 1024, "fp8_cs", 1536, 1, False, 8, 8, 2, 8, 1, 784, 311),
    _row("H100 GPT-OSS 120B BF16", "h100", "gpt_oss_120b", 64, "bf16", 1280, 1, False, 1, 4, 1, None, 8, 163, 5993),
    _row("H100 Qwen3 30B-A3B FP8", "h100", "qwen3_30b_a3b", 16, "fp8_cs", 1024, 1, False, 1, 2, 1, 12, 8, 118, 5113),
    _row("H100 Qwen3 235B FP8", "h100", "qwen3_235b_a22b", 256, "fp8_cs", 8192, 1, False, 2, 8, 1, 4, 32, 242, 1633),
)
