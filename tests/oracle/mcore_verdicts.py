"""Megatron-Core 0.16.0's own verdicts on parallelism configs, run as a subprocess with a stub torch.

Usage: `python tests/oracle/mcore_verdicts.py < specs.json > verdicts.json`, where specs.json is a JSON
list of `{"kind": "gpt" | "mla" | "mamba", "config": {TransformerConfig keyword arguments}}`. Dtype
fields (`params_dtype`, `pipeline_dtype`) are given by name ("bfloat16", "float32").

For each spec it builds `TransformerConfig` (`MLATransformerConfig` for "mla"), which runs
`ModelParallelConfig.__post_init__` and `TransformerConfig.__post_init__` (heads / query groups vs TP,
the account_for_* pipeline splits, the pipeline layout, EP needs experts, the EP A2A overlap rules, ...).
When that passes it runs the layer split the model builder runs:
* "gpt" / "mla" without a pipeline layout: `transformer_block.get_num_layers_to_build(cfg, vp_stage=v,
  pp_rank=r)` over every (pp rank, vp stage) chunk (plain num_layers % pp and % vp live only there);
* "mamba" (hybrid Nemotron-H) with pp > 1: `MambaStack._select_layers_for_pipeline_parallel` for every
  pp rank (ssm/mamba_block.py), which refuses interleaving and floors num_layers // pp.

Prints a JSON list, one verdict per spec: `{"ok": bool, "check": short id of the failing check ("" when
ok), "message": str, "layers_built": total decoder layers the split builds (null when not computed)}`.

The stub torch (tests/oracle/torch_stub.py) is installed here, in this process only.
"""

from __future__ import annotations

import json
import os
import re
import sys
import traceback
import warnings
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_stub  # noqa: E402  (a sibling module: this file runs as a script)

# (check id, pattern over "<file>:<message>") in order; the first that matches names the failing check.
CHECKS: tuple[tuple[str, str], ...] = (
    ("heads_tp", r"num_attention_heads \(\d+\) must be a multiple of tensor_model_parallel_size"),
    ("query_groups_tp", r"num_query_groups \(\d+\) must be a multiple or divisor of tensor_model_parallel_size"),
    ("ep_needs_moe", r"num_moe_experts must be non None to use expert-parallel"),
    ("pp_layout", r"^pipeline_parallel_layer_layout\.py:|conflicts with pipeline_model_parallel_layout|"
                  r"pipeline_model_parallel_layout cannot be set"),
    ("mamba_no_vp", r"does not currently support virtual/interleaved pipeline parallelism"),
    ("layers_vp", r"number of layers on each pipeline rank|should be divisible by vp_size|"
                  r"Not enough layers in the (first|last) virtual pipeline stage"),
    ("layers_pp", r"number of middle layers: \d+ must be divisible|"
                  r"after enableaccount_for_embedding_in_pipeline_split|"
                  r"num_layers should be divisible by pipeline_model_parallel_size"),
    ("a2a_overlap", r"overlap_moe_expert_parallel_comm|EP A2A overlap|A2A Overlap"),
    ("sequence_parallel", r"Cannot use sequence parallelism without tensor parallelism"),
    ("pipeline_dtype", r"pipeline_dtype must be specified"),
)


def classify(exc: BaseException) -> str:
    """The short id of the check that raised `exc` (`other:<file>:<line>` for an unlisted one)."""
    tb = traceback.extract_tb(exc.__traceback__)
    where = tb[-1] if tb else None
    fname = os.path.basename(where.filename) if where else "?"
    text = f"{fname}:{exc}"
    for check, pattern in CHECKS:
        if re.search(pattern, text):
            return check
    return f"other:{fname}:{where.lineno if where else 0}:{type(exc).__name__}"


def _layers_gpt(cfg: Any, get_num_layers_to_build: Any) -> int | None:
    if cfg.pipeline_model_parallel_layout is not None:  # validated in __post_init__; needs parallel_state
        return None
    pp = cfg.pipeline_model_parallel_size
    vp = cfg.virtual_pipeline_model_parallel_size
    stages = range(vp) if vp is not None and pp > 1 else [None]
    return sum(get_num_layers_to_build(cfg, vp_stage=v, pp_rank=r) for r in range(pp) for v in stages)


def _layers_mamba(cfg: Any, mamba_stack: Any) -> int:
    pp = cfg.pipeline_model_parallel_size
    if pp == 1:
        return cfg.num_layers
    layer_types = list(range(cfg.num_layers))  # only the slicing matters here
    built = 0
    for rank in range(pp):
        fake = SimpleNamespace(config=cfg, pp_group=SimpleNamespace(size=lambda: pp, rank=lambda r=rank: r))
        _, selected = mamba_stack._select_layers_for_pipeline_parallel(fake, layer_types)
        built += len(selected)
    return built


def verdicts(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    torch_stub.install()
    import torch
    from megatron.core.ssm.mamba_block import MambaStack
    from megatron.core.transformer.transformer_block import get_num_layers_to_build
    from megatron.core.transformer.transformer_config import MLATransformerConfig, TransformerConfig

    out = []
    for spec in specs:
        kwargs = dict(spec["config"])
        for key in ("params_dtype", "pipeline_dtype"):
            if isinstance(kwargs.get(key), str):
                kwargs[key] = getattr(torch, kwargs[key])
        cls = MLATransformerConfig if spec["kind"] == "mla" else TransformerConfig
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cfg = cls(**kwargs)
                if spec["kind"] == "mamba":
                    built = _layers_mamba(cfg, MambaStack)
                else:
                    built = _layers_gpt(cfg, get_num_layers_to_build)
        except (AssertionError, ValueError, NotImplementedError) as exc:
            out.append({"ok": False, "check": classify(exc), "message": str(exc).strip(), "layers_built": None})
        else:
            out.append({"ok": True, "check": "", "message": "", "layers_built": built})
    return out


def main() -> None:
    specs = json.load(sys.stdin)
    real_stdout, sys.stdout = sys.stdout, sys.stderr  # whatever megatron prints must not mix with the JSON
    try:
        result = verdicts(specs)
    finally:
        sys.stdout = real_stdout
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
