"""Megatron-Bridge v0.3.0 performance presets as data, and the launcher's default resolution.

The real launcher (`scripts/performance`) starts from a preset named
`{RECIPE}_{TASK}_CONFIG_{GPU}_{DTYPE}_{VARIANT}` and lets CLI flags override it (docs/reference/megatron-bridge.md
§0, §1, §4). A sweep sets only some flags, so both the constraint checker and the simulator need the
*effective* values; `resolve_defaults` computes them the way the launcher would. Pure data, no I/O.

Where the table comes from:
* §4 (the v0.3.0 `*_workload_base_configs.py`) for qwen3_30b_a3b, llama3_8b, llama3_70b, deepseek_v3,
  nemotronh_56b, gpt_oss_120b, qwen3_235b_a22b (gb200/gb300/h100) and llama31_405b V1 (gb200).
* §5 (the published 26.02 rows, which ran the V2 presets) where §4 is silent: qwen3_235b_a22b on
  b200/b300 and gb300 fp8, llama31_405b V2 on gb300/gb200/h100.
* Dispatchers not stated in the reference default to `alltoall`.

Fallbacks (`lookup_preset`), for combinations v0.3.0 does not ship: the same GPU with the nearest dtype
(nvfp4 -> fp8_mx -> fp8_cs -> bf16, fp8_sc -> fp8_cs -> bf16, ...), then the sibling GPU (gb300 <-> gb200,
b300 <-> b200, then the other Blackwell pair). H100 falls back to no other GPU. The real launcher would
raise `ValueError` for such a combination; a fallback preset carries `exact=False` so callers can say so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, TypedDict, Unpack

from dse.megatron._architectures import architecture_for
from dse.megatron._pipeline_layout import DEEPSEEK_V3_LAYOUTS, deepseek_v3_layout, parse_layout

GPUS = ("h100", "b200", "b300", "gb200", "gb300")
DTYPES = ("bf16", "fp8_cs", "fp8_mx", "fp8_sc", "nvfp4")
DEFAULT_VARIANT = "v2"  # launcher default; falls back to v1, then to the un-versioned name


@dataclass(frozen=True)
class Preset:
    """One preset: the launcher's starting point for a (recipe, task, gpu, dtype, variant)."""

    recipe: str
    gpu: str
    dtype: str
    num_gpus: int
    tp: int = 1
    pp: int = 1
    cp: int = 1
    vp: int | None = None
    ep: int = 1
    etp: int | None = None
    mb: int = 1
    gb: int = 1
    seq_length: int = 4096
    use_megatron_fsdp: bool = False
    cuda_graph_impl: str = "none"
    cuda_graph_scope: str = ""  # comma string
    recompute_num_layers: int | None = None
    recompute_modules: str = ""  # comma string
    activation_offload_layers: int = 0
    moe_a2a_overlap: bool = False
    nccl_ub: bool = False
    dispatcher: str = "alltoall"  # alltoall | deepep | hybridep | flex
    # added: where the entry comes from
    task: str = "pretrain"
    variant: str = "v1"
    pp_layout: str | None = None  # pipeline_model_parallel_layout (DeepSeek)
    exact: bool = True  # False: a fallback for a combination v0.3.0 does not ship


class _Fields(TypedDict, total=False):
    """The `Preset` fields one row of the table sets by keyword (`_add`), and the shared parts of rows."""

    num_gpus: int
    tp: int
    pp: int
    cp: int
    vp: int | None
    ep: int
    etp: int | None
    mb: int
    gb: int
    seq_length: int
    use_megatron_fsdp: bool
    cuda_graph_impl: str
    cuda_graph_scope: str
    recompute_num_layers: int | None
    recompute_modules: str
    activation_offload_layers: int
    moe_a2a_overlap: bool
    nccl_ub: bool
    dispatcher: str
    pp_layout: str | None


_TABLE: dict[tuple[str, str, str, str, str], Preset] = {}


def _add(recipe: str, gpus: str, dtypes: str, variants: str = "v1", task: str = "pretrain",
         base: _Fields | None = None, **kw: Unpack[_Fields]) -> None:
    """Register one row of §4 for every (gpu, dtype, variant) it names (space-separated lists).

    `base` holds the fields the rows of one recipe share; a row may not set one of them again.
    """
    shared: _Fields = base or {}
    twice = shared.keys() & kw.keys()
    if twice:
        raise TypeError(f"_add() got multiple values for keyword argument {sorted(twice)[0]!r}")
    fields: _Fields = {**shared, **kw}
    for gpu in gpus.split():
        for dtype in dtypes.split():
            for variant in variants.split():
                _TABLE[(recipe, task, gpu, dtype, variant)] = Preset(
                    recipe=recipe, gpu=gpu, dtype=dtype, task=task, variant=variant, **fields
                )


_G_MOE = "moe_router,moe_preprocess"
_G_ATTN_MOE = "attn,moe_router,moe_preprocess"
_TE = "transformer_engine"

# ---- qwen3_30b_a3b: seq 4096, ETP 1, GBS 512, V1 only (§4) --------------------------------------------
_q30 = _Fields(seq_length=4096, etp=1, gb=512, num_gpus=8, ep=8)
_add("qwen3_30b_a3b", "gb300", "bf16 fp8_cs fp8_mx", mb=8, dispatcher="hybridep", cuda_graph_impl=_TE,
     cuda_graph_scope=_G_MOE, base=_q30)
_add("qwen3_30b_a3b", "gb200", "bf16 fp8_cs", mb=4, dispatcher="hybridep", cuda_graph_impl=_TE,
     cuda_graph_scope=_G_ATTN_MOE, base=_q30)
_add("qwen3_30b_a3b", "gb200", "fp8_mx", mb=4, dispatcher="hybridep", cuda_graph_impl=_TE,
     cuda_graph_scope=_G_MOE, base=_q30)
_add("qwen3_30b_a3b", "b300", "bf16 fp8_cs fp8_mx", mb=8, dispatcher="hybridep", cuda_graph_impl=_TE,
     cuda_graph_scope=_G_MOE, base=_q30)
_add("qwen3_30b_a3b", "b200", "bf16 fp8_cs fp8_mx", mb=1, dispatcher="alltoall", cuda_graph_impl=_TE,
     cuda_graph_scope=_G_MOE, base=_q30)
_q30h: _Fields = {**_q30, "num_gpus": 16, "pp": 2, "vp": 12, "mb": 1, "gb": 1024, "dispatcher": "deepep",
                  "moe_a2a_overlap": True}
_add("qwen3_30b_a3b", "h100", "bf16", cuda_graph_impl=_TE, cuda_graph_scope=_G_MOE, base=_q30h)
_add("qwen3_30b_a3b", "h100", "fp8_cs", base=_q30h)

# ---- llama3_8b: n=8, GBS 128, seq 8192, V1 only ---------------------------------------------------------
_l8 = _Fields(seq_length=8192, num_gpus=8, gb=128)
_add("llama3_8b", "gb300", "bf16 fp8_cs fp8_mx nvfp4", mb=4, cuda_graph_impl="local",
     cuda_graph_scope="full_iteration", base=_l8)
_add("llama3_8b", "gb200", "bf16 fp8_cs fp8_mx", mb=2, cuda_graph_impl="local",
     cuda_graph_scope="full_iteration", base=_l8)
_add("llama3_8b", "gb200", "nvfp4", mb=4, base=_l8)
_add("llama3_8b", "b300", "bf16 fp8_cs fp8_mx", mb=4, cuda_graph_impl="local",
     cuda_graph_scope="full_iteration", base=_l8)
_add("llama3_8b", "b300", "nvfp4", mb=4, base=_l8)
_add("llama3_8b", "b200", "bf16 fp8_cs fp8_mx", mb=2, cuda_graph_impl="local",
     cuda_graph_scope="full_iteration", base=_l8)
_add("llama3_8b", "b200", "nvfp4", mb=4, base=_l8)
_add("llama3_8b", "h100", "bf16", cp=2, mb=1, base=_l8)
_add("llama3_8b", "h100", "fp8_cs", mb=1, recompute_num_layers=5, base=_l8)

# ---- llama3_70b: n=64, seq 8192; V1 GBS 128, V2 (default) GBS 256 ---------------------------------------
for _variant, _gbs in (("v1", 128), ("v2", 256)):
    _l70 = _Fields(seq_length=8192, num_gpus=64, gb=_gbs)
    _add("llama3_70b", "gb300", "bf16", _variant, mb=2, use_megatron_fsdp=True, nccl_ub=True,
         activation_offload_layers=30, base=_l70)
    _add("llama3_70b", "gb300", "fp8_cs", _variant, mb=2, use_megatron_fsdp=True, activation_offload_layers=20,
         base=_l70)
    _add("llama3_70b", "gb300", "fp8_mx nvfp4", _variant, pp=4, vp=5, mb=1, base=_l70)
    _add("llama3_70b", "gb200", "bf16", _variant, mb=1, use_megatron_fsdp=True, activation_offload_layers=20,
         base=_l70)
    _add("llama3_70b", "gb200", "fp8_cs", _variant, mb=2, use_megatron_fsdp=True, activation_offload_layers=40,
         base=_l70)
    _add("llama3_70b", "gb200", "fp8_mx nvfp4", _variant, tp=2, pp=4, vp=5, mb=1, base=_l70)
    _add("llama3_70b", "b300", "bf16 fp8_cs", _variant, mb=1, use_megatron_fsdp=True, base=_l70)
    _add("llama3_70b", "b300", "fp8_mx nvfp4", _variant, pp=4, vp=5, mb=1, base=_l70)
    _add("llama3_70b", "b200", "bf16", _variant, tp=2, pp=4, cp=2, vp=5, mb=1, cuda_graph_impl="local",
         cuda_graph_scope="full_iteration", base=_l70)
    _add("llama3_70b", "b200", "fp8_cs", _variant, mb=1, use_megatron_fsdp=True, activation_offload_layers=5,
         base=_l70)
    _add("llama3_70b", "b200", "fp8_mx nvfp4", _variant, tp=2, pp=4, vp=5, mb=1, base=_l70)
    _add("llama3_70b", "h100", "bf16", _variant, tp=4, pp=4, cp=2, vp=5, mb=1, base=_l70)
    _add("llama3_70b", "h100", "fp8_cs", _variant, tp=4, pp=8, vp=5, mb=1, base=_l70)
# SFT / LoRA (§4 gives the H100 examples only; dtype and sequence length are not stated: registered for
# bf16 and fp8_cs with the 4096 tokens of the packed-SQuAD fine-tuning recipes, an assumption)
_add("llama3_70b", "h100", "bf16 fp8_cs", task="sft", num_gpus=32, tp=4, pp=4, vp=5, mb=1, gb=32,
     seq_length=4096)
_add("llama3_70b", "h100", "bf16 fp8_cs", task="lora", num_gpus=8, tp=1, pp=4, vp=20, mb=1, gb=32,
     seq_length=4096)

# ---- deepseek_v3: seq 4096, ETP 1, MTP 1; V1 GBS 2048 (H100 8192), V2 GBS 4096 (H100 16384) -------------
_DS_LAYOUT_GB300 = "Et*4|(t*4|)*14tmL"
_DS_LAYOUT_H100 = "Et|(tt|)*30mL"
for _variant, _gbs, _gbs_h in (("v1", 2048, 8192), ("v2", 4096, 16384)):
    _ds = _Fields(seq_length=4096, etp=1, num_gpus=256, dispatcher="hybridep")
    _ds_h100: _Fields = {**_ds, "num_gpus": 1024}
    _add("deepseek_v3", "gb300", "fp8_cs fp8_mx nvfp4", _variant, pp=2, vp=8, ep=32, mb=2, gb=_gbs,
         recompute_modules="mla_up_proj", pp_layout=_DS_LAYOUT_GB300, base=_ds)
    _add("deepseek_v3", "gb300", "bf16", _variant, pp=4, vp=4, ep=64, mb=1, gb=_gbs, cuda_graph_impl=_TE,
         cuda_graph_scope=_G_ATTN_MOE, recompute_modules="moe_act", base=_ds)
    _add("deepseek_v3", "gb200", "bf16 fp8_cs fp8_mx fp8_sc nvfp4", _variant, pp=4, vp=4, ep=64, mb=1, gb=_gbs,
         cuda_graph_impl=_TE, cuda_graph_scope=_G_ATTN_MOE, recompute_modules="mla_up_proj", base=_ds)
    _add("deepseek_v3", "b300 b200", "bf16 fp8_cs fp8_mx fp8_sc nvfp4", _variant, pp=16, ep=8, mb=1, gb=_gbs,
         recompute_modules="mla_up_proj", base=_ds)
    _add("deepseek_v3", "h100", "bf16 fp8_cs fp8_sc", _variant, base=_ds_h100, tp=2, pp=8, vp=4,
         ep=64, mb=1, gb=_gbs_h, recompute_modules="mla_up_proj,mlp", pp_layout=_DS_LAYOUT_H100)
_add("deepseek_v3", "b300", "bf16", "v2", seq_length=4096, etp=1, num_gpus=256, dispatcher="hybridep", pp=8,
     vp=2, ep=8, mb=1, gb=4096, recompute_modules="mla_up_proj")

# ---- qwen3_235b_a22b V2 (GBS 8192, seq 4096); b200/b300 and gb300 fp8 rows from §5 ----------------------
_q235 = _Fields(seq_length=4096, etp=1, num_gpus=256, gb=8192)
_add("qwen3_235b_a22b", "gb200", "bf16", "v2", pp=8, ep=8, mb=1, base=_q235)
_add("qwen3_235b_a22b", "gb200", "fp8_cs fp8_mx fp8_sc nvfp4", "v2", pp=8, ep=32, mb=1, base=_q235)
_add("qwen3_235b_a22b", "gb300", "bf16", "v2", pp=4, vp=12, ep=16, mb=2, base=_q235)
_add("qwen3_235b_a22b", "gb300", "fp8_cs fp8_mx nvfp4", "v2", pp=4, ep=32, mb=2, base=_q235)
_add("qwen3_235b_a22b", "b300", "bf16 fp8_cs fp8_mx nvfp4", "v2", pp=8, vp=4, ep=8, mb=1, base=_q235)
_add("qwen3_235b_a22b", "b200", "bf16 fp8_cs fp8_mx nvfp4", "v2", pp=8, ep=8, mb=1, base=_q235)
_add("qwen3_235b_a22b", "h100", "bf16 fp8_cs fp8_sc", "v2", tp=2, pp=8, vp=4, ep=32, mb=1, moe_a2a_overlap=True,
     base=_q235)

# ---- nemotronh_56b: FP8_CS presets only, reused for any -c; n=64 GBS192 MBS1, seq 8192 --------------------
_nh = _Fields(seq_length=8192, num_gpus=64, gb=192, mb=1, cuda_graph_impl=_TE, cuda_graph_scope="mamba,attn")
_add("nemotronh_56b", "gb300 gb200 b300 b200", " ".join(DTYPES), tp=2, base=_nh)
_add("nemotronh_56b", "h100", " ".join(DTYPES), tp=8, base=_nh)

# ---- gpt_oss_120b: BF16 only; n=64; V1 GBS512, V2 GBS1280; seq 4096 ----------------------------------------
for _variant, _gbs in (("v1", 512), ("v2", 1280)):
    _go = _Fields(seq_length=4096, num_gpus=64, gb=_gbs)
    _add("gpt_oss_120b", "gb300 gb200 b300 b200", "bf16", _variant, ep=64, mb=4, base=_go)
    _add("gpt_oss_120b", "h100", "bf16", _variant, pp=4, ep=8, mb=1, base=_go)

# ---- llama31_405b: V1 n=128 GBS64 (§4, gb200); V2 n=256 (h100 1024) GBS1536 from the §5 FP8 rows ---------
_l405 = _Fields(seq_length=8192)
_add("llama31_405b", "gb200", "bf16", "v1", num_gpus=128, gb=64, tp=4, pp=8, cp=2, vp=8, mb=1, base=_l405)
_add("llama31_405b", "gb200", "fp8_cs", "v1", num_gpus=128, gb=64, tp=2, mb=1, use_megatron_fsdp=True,
     activation_offload_layers=92, base=_l405)
_add("llama31_405b", "gb300", "fp8_cs fp8_mx nvfp4", "v2", num_gpus=256, gb=1536, tp=4, pp=8, vp=4, mb=1, base=_l405)
_add("llama31_405b", "gb200", "fp8_cs fp8_mx nvfp4", "v2", num_gpus=256, gb=1536, tp=4, pp=16, vp=4, mb=1,
     base=_l405)
_add("llama31_405b", "h100", "fp8_cs", "v2", num_gpus=1024, gb=1536, tp=8, pp=8, cp=2, vp=8, mb=1, base=_l405)

PRESETS: dict[tuple[str, str, str, str, str], Preset] = dict(_TABLE)
"""(recipe, task, gpu, dtype, variant) -> Preset, exactly the rows above (no fallbacks)."""

_DTYPE_FALLBACK = {
    "bf16": ("fp8_cs", "fp8_mx", "fp8_sc", "nvfp4"),
    "fp8_cs": ("fp8_sc", "fp8_mx", "bf16", "nvfp4"),
    "fp8_sc": ("fp8_cs", "fp8_mx", "bf16", "nvfp4"),
    "fp8_mx": ("fp8_cs", "nvfp4", "fp8_sc", "bf16"),
    "nvfp4": ("fp8_mx", "fp8_cs", "fp8_sc", "bf16"),
}
_GPU_FALLBACK = {
    "gb300": ("gb200", "b300", "b200"),
    "gb200": ("gb300", "b200", "b300"),
    "b300": ("b200", "gb300", "gb200"),
    "b200": ("b300", "gb200", "gb300"),
    "h100": (),
}


def _norm(value: Any) -> str:
    return str(value).strip().lower() if value is not None else ""


def _variants(variant: str | None) -> tuple[str, ...]:
    """The launcher's variant search order: the asked one (default v2), then v1, then un-versioned."""
    asked = _norm(variant) or DEFAULT_VARIANT
    return tuple(dict.fromkeys((asked, "v1", "v2")))


def _exact(recipe: str, task: str, gpu: str, dtype: str, variant: str | None) -> Preset | None:
    for v in _variants(variant):
        p = PRESETS.get((recipe, task, gpu, dtype, v))
        if p is not None:
            return p
    return None


def lookup_preset(recipe: str | None, gpu: str | None, dtype: str | None, task: str = "pretrain",
                  variant: str | None = None) -> Preset | None:
    """The preset the launcher would start from, or a marked fallback (`exact=False`); None if unknown.

    Unknown recipe or task -> None. A known recipe on a (gpu, dtype) v0.3.0 does not ship falls back
    to the nearest dtype on the same GPU, then to a sibling GPU (see the module docstring).
    """
    r, g, d, t = _norm(recipe), _norm(gpu), _norm(dtype) or "bf16", _norm(task) or "pretrain"
    if not r:
        return None
    hit = _exact(r, t, g, d, variant)
    if hit is not None:
        return hit
    for gg in (g, *_GPU_FALLBACK.get(g, ())):
        for dd in (d, *_DTYPE_FALLBACK.get(d, DTYPES)):
            if (gg, dd) == (g, d):
                continue
            p = _exact(r, t, gg, dd, variant)
            if p is not None:
                return replace(p, gpu=g or p.gpu, dtype=d, exact=False)
    return None


# ---------------------------------------------------------------------------------------------------
# effective values
# ---------------------------------------------------------------------------------------------------
_NONE_STRINGS = {"", "none", "null"}


def first_set(args: Mapping[str, Any], *keys: str) -> Any:
    """First non-None value among `keys` (named flag first, then the Hydra overrides in `extra_cmd_args`)."""
    extra = args.get("extra_cmd_args")
    for key in keys:
        if args.get(key) is not None:
            return args[key]
        if isinstance(extra, Mapping) and extra.get(key) is not None:
            return extra[key]
    return None


def _int(value: Any) -> int | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in _NONE_STRINGS):
        return None
    return int(value)


def _bool(value: Any) -> bool | None:
    """bool_arg semantics: true/1/t/yes/y and false/0/f/no/n."""
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "t", "yes", "y"):
        return True
    if text in ("false", "0", "f", "no", "n"):
        return False
    raise ValueError(f"not a boolean: {value!r}")


def _csv(value: Any) -> str | None:
    """A comma string from `"a,b"`, `["a", "b"]` or `"[a, b]"` (None when unset)."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        value = ",".join(str(v) for v in value)
    text = str(value).replace("[", "").replace("]", "").replace('"', "").replace("'", "")
    return ",".join(p.strip() for p in text.split(",") if p.strip())


def _vp(value: Any, preset_vp: int | None) -> int | None:
    """`-vp`: unset or -1 keeps the preset; 1 and "None" mean no interleaving (CloudAI emits vp=1 as None)."""
    if value is None:
        return preset_vp
    if isinstance(value, str) and value.strip().lower() in _NONE_STRINGS:
        return None
    v = int(value)
    if v == -1:
        return preset_vp
    return None if v <= 1 else v


def resolve_defaults(cmd_args: Mapping[str, Any]) -> dict[str, Any]:
    """The values the launcher would really use for these cmd_args (None = keep the preset).

    Returns a copy of `cmd_args` with the effective tp, pp, cp, vp (None = not interleaved), ep, et,
    mb, gb, seq_length, num_layers, hidden_size, num_gpus, gpu_type, compute_dtype, task and feature
    toggles, plus `dp`, `dispatcher`, `pp_layout` and `preset` ("<recipe>/<gpu>/<dtype>/<variant>",
    suffixed "~fallback" when not exact, None when unknown). Precedence as in §0: named flags >
    Hydra (`model.*`) > preset > recipe. Boolean perf flags only switch a feature on (§8.3);
    `cuda_graph_impl="none"` does revert. GBS scales with num_gpus when gb is unset (§1b).
    """
    args = dict(cmd_args)
    recipe = _norm(args.get("model_recipe_name")) or None
    gpu = _norm(args.get("gpu_type")) or "gb200"
    dtype = _norm(args.get("compute_dtype")) or "bf16"
    task = _norm(args.get("task")) or "pretrain"
    preset = lookup_preset(recipe, gpu, dtype, task, args.get("config_variant"))
    arch = architecture_for(recipe)
    p = preset or Preset(recipe=recipe or "", gpu=gpu, dtype=dtype, num_gpus=_int(args.get("num_gpus")) or 1,
                         seq_length=arch.seq_length if arch else 4096, exact=False)

    num_gpus = _int(args.get("num_gpus")) or p.num_gpus
    out = args
    out.update(gpu_type=gpu, compute_dtype=dtype, task=task, num_gpus=num_gpus)
    for key, default in (("tp", p.tp), ("pp", p.pp), ("cp", p.cp), ("ep", p.ep), ("mb", p.mb)):
        out[key] = _int(first_set(args, key)) or default
    et = _int(first_set(args, "et"))
    out["et"] = et if et is not None else p.etp
    out["vp"] = _vp(first_set(args, "vp"), p.vp)

    gb = _int(first_set(args, "gb"))
    out["gb"] = gb if gb is not None or preset is None else preset_gbs_scaled(preset, num_gpus)

    out["seq_length"] = _int(first_set(args, "model.seq_length", "seq_length")) or p.seq_length
    out["num_layers"] = _int(first_set(args, "num_layers", "model.num_layers")) or (arch.num_layers if arch else None)
    out["hidden_size"] = _int(first_set(args, "hidden_size", "model.hidden_size")) or (arch.hidden_size if arch else None)

    out["use_megatron_fsdp"] = bool(_bool(args.get("use_megatron_fsdp"))) or p.use_megatron_fsdp
    out["nccl_ub"] = bool(_bool(args.get("nccl_ub"))) or p.nccl_ub
    out["moe_a2a_overlap"] = bool(_bool(args.get("moe_a2a_overlap"))) or p.moe_a2a_overlap
    impl = first_set(args, "cuda_graph_impl")
    out["cuda_graph_impl"] = p.cuda_graph_impl if impl is None else (_norm(impl) or "none")
    scope = _csv(first_set(args, "cuda_graph_scope"))
    out["cuda_graph_scope"] = p.cuda_graph_scope if scope is None else scope
    rl = first_set(args, "recompute_num_layers")
    out["recompute_num_layers"] = p.recompute_num_layers if rl is None else _int(rl)
    rm = _csv(first_set(args, "recompute_modules"))
    out["recompute_modules"] = p.recompute_modules if rm is None else rm
    ol = first_set(args, "activation_offload_layers")
    out["activation_offload_layers"] = p.activation_offload_layers if ol is None else (_int(ol) or 0)

    out["pp_layout"] = _pipeline_layout(recipe, args, p, out)
    if out["pp_layout"] and out["vp"] is None:  # Megatron-Core derives vp from the layout's stage count
        stages = _layout_stages(out["pp_layout"])
        if stages and out["pp"] and stages % out["pp"] == 0 and stages // out["pp"] > 1:
            out["vp"] = stages // out["pp"]
    out["dispatcher"] = p.dispatcher
    model = out["tp"] * out["pp"] * out["cp"]
    out["dp"] = num_gpus // model if model and num_gpus % model == 0 else None
    out["preset"] = (f"{p.recipe}/{p.gpu}/{p.dtype}/{p.variant}" + ("" if p.exact else "~fallback")
                     if preset is not None else None)
    return out


def _pipeline_layout(recipe: str | None, args: Mapping[str, Any], p: Preset, out: Mapping[str, Any]) -> str | None:
    """The pipeline layout the run uses: the user's, else (DeepSeek-V3) the recipe's choice, else the preset's."""
    user = first_set(args, "pipeline_model_parallel_layout")
    if user is not None and str(user).strip().lower() not in _NONE_STRINGS:
        return str(user)
    if recipe != "deepseek_v3":
        return p.pp_layout
    built = p.pp_layout if p.pp_layout else DEEPSEEK_V3_LAYOUTS.get((p.pp, p.vp or 1))
    raw_vp = first_set(args, "vp")
    vp_given = raw_vp is not None and not (_is_int_text(raw_vp) and int(raw_vp) == -1)
    return deepseek_v3_layout(out["pp"], out["vp"], flags_given=first_set(args, "pp") is not None or vp_given,
                              built_with=built)


def _is_int_text(value: Any) -> bool:
    try:
        int(value)
    except (TypeError, ValueError):
        return False
    return True


def _layout_stages(text: str) -> int | None:
    try:
        return len(parse_layout(text).stages)
    except ValueError:
        return None


def preset_gbs_scaled(preset: Preset, num_gpus: int) -> int:
    """GBS the launcher uses when `-gb` is omitted: int(preset_gbs / preset_num_gpus * num_gpus)."""
    return preset.gb if num_gpus == preset.num_gpus else int(preset.gb / preset.num_gpus * num_gpus)


