"""The catalogue of named parallelism rules, decided before submission, vectorised over blocks of points.

Each rule is a function of a `Columns` view (one numpy array per field over a block of points, or a
scalar for fixed fields) returning a boolean mask: True where the point satisfies the rule. The rules are
those of Megatron-Bridge v0.3.0 (docs/reference/megatron-bridge.md §3) and CloudAI's MegatronBridge
`constraint_check` (docs/reference/cloudai-dse.md §3.1) that can be decided from the config alone, including
the architecture-aware ones (heads % tp, query groups vs tp, layers % pp and % vp, experts % ep,
seq % 2cp) from the recipe's architecture table. User expressions from the test TOML are rules too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from dse.megatron._architectures import architecture_for
from dse.megatron._columns import _OFF, COMPUTE_DTYPES, GPU_TYPES, TE_SCOPES, Columns, Rule, split_list
from dse.megatron._pipeline_layout import parse_layout


# ---------------------------------------------------------------------------------------------------
# helpers over columns
# ---------------------------------------------------------------------------------------------------
def _vp_on(c: Columns) -> Any:
    return np.asarray(c.num("vp", 1)) > 1


def _vp(c: Columns) -> Any:
    return c.num("vp", 1)


def _arch_int(c: Columns, attr: str) -> Any:
    """An architecture count per point; 0 where the recipe is unknown or the model has none (MLA groups)."""
    return c.table(("model_recipe_name",), lambda r: int(getattr(architecture_for(r), attr, None) or 0),
                   key=("arch", attr))


def _layers(c: Columns) -> Any:
    return c.num("num_layers", 0)


def _dp(c: Columns) -> Any:
    model = c.num("tp") * c.num("pp") * c.num("cp")
    return np.where(model > 0, c.num("num_gpus") // np.maximum(model, 1), 0)


def _cuda_graphs_impl_on(c: Columns) -> Any:
    return c.feature("cuda_graph_impl", lambda v: str(v or "").strip().lower() not in _OFF)


def _cuda_graphs_on(c: Columns) -> Any:
    scopes = c.feature("cuda_graph_scope", lambda v: len(split_list(v)) > 0)
    return np.logical_and(_cuda_graphs_impl_on(c), scopes)


def _scope_has(c: Columns, *items: str) -> Any:
    return c.feature("cuda_graph_scope", _lists_any(items))


def _recompute_has(c: Columns, *items: str) -> Any:
    return c.feature("recompute_modules", _lists_any(items))


def _lists_any(items: tuple[str, ...]) -> Callable[[Any], bool]:
    """Whether a list field names any of `items`. `items` is bound as a default, not a closure, so that
    `Columns.feature` caches the function by its code and defaults (`_fn_key`)."""

    def has(v: Any, _i: tuple[str, ...] = items) -> bool:
        return any(x in split_list(v) for x in _i)

    return has


def _truthy(c: Columns, name: str) -> Any:
    return c.feature(name, lambda v: bool(v) and str(v).lower() not in ("false", "0", "no"))


def _implies(a: Any, b: Any) -> Any:
    return np.logical_or(np.logical_not(a), b)


def _div_ok(num: Any, den: Any) -> Any:
    den_safe = np.where(np.asarray(den) > 0, den, 1)
    return np.logical_and(np.asarray(den) > 0, np.asarray(num) % den_safe == 0)


def _no_layout(c: Columns) -> Any:
    return c.feature("pp_layout", lambda v: not v)


def _layers_known(c: Columns) -> Any:
    """The plain layers-vs-pp split applies: the layer count is known and no pipeline layout replaces it."""
    return np.logical_and(np.asarray(_layers(c)) > 0, _no_layout(c))


def _pipeline_layers(c: Columns) -> Any:
    """The count the pipeline split divides: num_layers, + 2 where the recipe accounts embedding and loss."""
    extra = c.table(("model_recipe_name",), lambda r: _extra_pipeline_layers(r), key=("pipeline-extra",))
    return np.asarray(_layers(c)) + extra


def _extra_pipeline_layers(recipe: Any) -> int:
    arch = architecture_for(recipe)
    return 2 if arch is not None and arch.pipeline_split_counts_embedding_and_loss else 0


# ---------------------------------------------------------------------------------------------------
# the built-in rules
# ---------------------------------------------------------------------------------------------------
def _r_world(c: Columns) -> Any:
    return _div_ok(c.num("num_gpus"), c.num("tp") * c.num("pp") * c.num("cp"))


def _r_expert_world(c: Columns) -> Any:
    et = np.where(c.num("et", 0) == 0, c.num("tp"), c.num("et", 0))  # unset et follows tp
    return _div_ok(c.num("num_gpus"), et * c.num("ep") * c.num("pp"))


def _r_batch(c: Columns) -> Any:
    gb = c.value("gb")
    if gb is None:
        return True
    gb = c.num("gb", 0)
    fsdp = _truthy(c, "use_megatron_fsdp")
    ndo = c.num("num_distributed_optimizer_instances", 1)
    div = c.num("mb") * _dp(c) * np.where(fsdp, ndo, 1)
    ok = _div_ok(gb, div)
    has_gb = np.not_equal(gb, 0)
    return np.where(has_gb, np.logical_and(ok, np.asarray(gb) >= div), True)


def _r_vp_needs_pp(c: Columns) -> Any:
    return _implies(_vp_on(c), c.num("pp") > 1)


def _r_layers_pp(c: Columns) -> Any:
    return _implies(_layers_known(c), _div_ok(_pipeline_layers(c), c.num("pp")))


def _r_layers_vp(c: Columns) -> Any:
    pp = np.maximum(c.num("pp"), 1)
    total = _pipeline_layers(c)
    applies = np.logical_and(np.logical_and(_layers_known(c), _vp_on(c)), pp > 1)
    applies = np.logical_and(applies, np.asarray(total) % pp == 0)  # else layers_divisible_by_pp says it
    return _implies(applies, _div_ok(np.asarray(total) // pp, _vp(c)))


def layout_problem(recipe: Any, layout: Any, pp: Any, vp: Any, num_layers: Any) -> str:
    """Why Megatron-Core refuses this pipeline layout ("" when it accepts it or there is none)."""
    if not layout:
        return ""
    if _extra_pipeline_layers(recipe):
        return ("pipeline_model_parallel_layout cannot be combined with the recipe's embedding/loss "
                "pipeline accounting")
    try:
        parsed = parse_layout(str(layout))
    except ValueError as exc:
        return str(exc)
    arch = architecture_for(recipe)
    return parsed.problem(int(pp or 1), int(vp) if vp else None, int(num_layers) if num_layers else None,
                          arch.mtp_layers if arch else parsed.mtp_layers) or ""


def _r_pipeline_layout(c: Columns) -> Any:
    problem = c.resolved_table(("model_recipe_name", "pp_layout", "pp", "vp", "num_layers"), layout_problem,
                               key="layout-problem")
    return np.equal(problem, "")


def _r_hybrid_no_vp(c: Columns) -> Any:
    """Mamba hybrids (Nemotron-H) have no interleaved schedule: Megatron-Core 0.16.0 ssm/mamba_block.py
    `_select_layers_for_pipeline_parallel` asserts it, and Megatron-Bridge v0.3.0's mamba_provider.py too."""
    hybrid = np.logical_and(np.asarray(_arch_int(c, "mamba_layers")) > 0, c.num("pp") > 1)  # pp 1: vp_needs_pp
    return _implies(hybrid, np.logical_not(_vp_on(c)))


def _r_interleaved_microbatches(c: Columns) -> Any:
    gb = c.value("gb")
    if gb is None:
        return True
    m = c.num("gb", 0) // np.maximum(c.num("mb") * np.maximum(_dp(c), 1), 1)
    pp = c.num("pp")
    ok = np.logical_and(m % np.maximum(pp, 1) == 0, m >= pp)
    return _implies(np.logical_and(_vp_on(c), pp > 1), ok)


def _r_heads_tp(c: Columns) -> Any:
    heads = _arch_int(c, "num_attention_heads")
    return np.logical_or(np.equal(heads, 0), _div_ok(heads, c.num("tp")))


def _r_query_groups_tp(c: Columns) -> Any:
    g = _arch_int(c, "num_query_groups")
    tp = c.num("tp")
    g_safe = np.maximum(g, 1)
    ok = np.logical_or(np.asarray(g) % np.maximum(tp, 1) == 0, tp % g_safe == 0)
    return np.logical_or(np.asarray(g) == 0, ok)


def _r_seq_tp(c: Columns) -> Any:
    seq = c.num("seq_length", 0)
    tp, cp = c.num("tp"), c.num("cp")
    ok = _div_ok(np.asarray(seq) // np.maximum(cp, 1), tp)
    return _implies(np.logical_and(tp > 1, np.asarray(seq) > 0), ok)


def _r_seq_cp(c: Columns) -> Any:
    seq = c.num("seq_length", 0)
    cp = c.num("cp")
    return _implies(np.logical_and(cp > 1, np.asarray(seq) > 0), _div_ok(seq, 2 * cp))


def _r_seq_consistent(c: Columns) -> Any:
    a, b = c.raw("seq_length"), c.raw("model.seq_length")
    if a is None or b is None:
        return True
    return np.equal(a, b)


def _r_experts_ep(c: Columns) -> Any:
    e = _arch_int(c, "num_moe_experts")
    return np.logical_or(np.equal(e, 0), _div_ok(e, c.num("ep")))


def _r_ep_needs_moe(c: Columns) -> Any:
    moe = c.table(("model_recipe_name",), _moe_or_unknown, key=("moe-or-unknown",))
    return _implies(c.num("ep") > 1, moe)


def _moe_or_unknown(recipe: Any) -> bool:
    arch = architecture_for(recipe)
    return arch is None or arch.is_moe


def _a2a_graphs_ok(impl: Any, scope: Any) -> bool:
    """CUDA graphs with the MoE all-to-all overlap: only transformer_engine, and not on moe or mlp."""
    i = str(impl or "").strip().lower()
    return i in _OFF or (i == "transformer_engine" and not {"moe", "mlp"} & set(split_list(scope)))


def _r_a2a_overlap(c: Columns) -> Any:
    on = _truthy(c, "moe_a2a_overlap")
    ok = c.num("ep") > 1
    ok = np.logical_and(ok, _implies(c.num("pp") > 1, _vp_on(c)))
    ok = np.logical_and(ok, np.logical_not(c.feature("recompute_num_layers", lambda v: bool(v))))
    ok = np.logical_and(ok, c.resolved_table(("cuda_graph_impl", "cuda_graph_scope"), _a2a_graphs_ok,
                                             key="a2a-graphs"))
    mtp = _arch_int(c, "mtp_layers")
    ok = np.logical_and(ok, np.logical_and(np.asarray(mtp) <= 1, _implies(np.asarray(mtp) == 1, c.num("pp") > 1)))
    return _implies(on, ok)


def _r_offload(c: Columns) -> Any:
    n = c.num("activation_offload_layers", 0)
    on = np.asarray(n) > 0
    layers = _layers(c)
    ok = np.logical_or(np.asarray(layers) == 0, np.asarray(n) < np.asarray(layers))
    ok = np.logical_and(ok, c.num("pp") == 1)
    recompute = np.logical_or(c.feature("recompute_num_layers", lambda v: bool(v)),
                              c.feature("recompute_modules", lambda v: len(split_list(v)) > 0))
    ok = np.logical_and(ok, np.logical_not(recompute))
    ok = np.logical_and(ok, np.logical_not(_cuda_graphs_on(c)))
    return _implies(on, ok)


def _r_recompute_exclusive(c: Columns) -> Any:
    full = c.feature("recompute_num_layers", lambda v: bool(v))
    selective = c.feature("recompute_modules", lambda v: len(split_list(v)) > 0)
    return np.logical_not(np.logical_and(full, selective))


def _r_recompute_layers(c: Columns) -> Any:
    n = c.num("recompute_num_layers", 0)
    per_stage = np.asarray(_layers(c)) // np.maximum(c.num("pp"), 1)
    return np.logical_or(np.asarray(_layers(c)) == 0, np.asarray(n) <= per_stage)


def _r_fsdp_graphs(c: Columns) -> Any:
    return np.logical_not(np.logical_and(_truthy(c, "use_megatron_fsdp"), _cuda_graphs_on(c)))


def _r_fsdp_parallel(c: Columns) -> Any:
    ok = np.logical_and(c.num("pp") == 1, c.num("cp") == 1)
    ok = np.logical_and(ok, np.logical_not(_vp_on(c)))
    return _implies(_truthy(c, "use_megatron_fsdp"), ok)


def _r_dist_opt_instances(c: Columns) -> Any:
    return _implies(c.num("num_distributed_optimizer_instances", 1) > 1, _truthy(c, "use_megatron_fsdp"))


def _r_graph_impl_known(c: Columns) -> Any:
    return c.feature("cuda_graph_impl",
                     lambda v: str(v or "").strip().lower() in _OFF | {"transformer_engine", "local"})


def _scope_valid(impl: Any, scope: Any) -> bool:
    i = str(impl or "").strip().lower()
    s = split_list(scope)
    if i == "local":
        return not s or s == ["full_iteration"]
    if i == "transformer_engine":
        return "full_iteration" not in s and all(x in TE_SCOPES for x in s)
    return True


def _r_graph_scope(c: Columns) -> Any:
    return c.resolved_table(("cuda_graph_impl", "cuda_graph_scope"), _scope_valid, key="scope-valid")


def _r_graph_moe_scopes(c: Columns) -> Any:
    def ok(scope: Any) -> bool:
        s = split_list(scope)
        return not ("moe" in s and "moe_router" in s) and not ("moe_preprocess" in s and "moe_router" not in s)

    return c.feature("cuda_graph_scope", ok)


def _graph_recompute_ok(impl: Any, scope: Any, modules: Any, full_layers: Any) -> bool:
    """Megatron-Core 0.16.0's CUDA-graph vs recompute checks (transformer_config.py `__post_init__`).

    Full recompute needs the full-iteration graph; with transformer_engine graphs, recomputing `moe`
    excludes a `moe_router` graph. CloudAI's stricter table (no graphed scope may be recomputed at all) is
    not used: it refuses v0.3.0's own DeepSeek-V3 GB200 preset (attn graph + mla_up_proj recompute).
    """
    i = str(impl or "").strip().lower()
    if i in _OFF:
        return True
    s, r = split_list(scope), split_list(modules)
    if full_layers:
        return s == ["full_iteration"]
    return not (i == "transformer_engine" and "moe" in r and "moe_router" in s)


def _r_graph_recompute(c: Columns) -> Any:
    return c.resolved_table(("cuda_graph_impl", "cuda_graph_scope", "recompute_modules", "recompute_num_layers"),
                            _graph_recompute_ok, key="graph-recompute")


# MoE token dispatchers of the v0.3.0 presets (docs/reference/megatron-bridge.md §4); other recipes use alltoall.
_DISPATCHERS = {
    ("qwen3_30b_a3b", "gb300"): "hybridep", ("qwen3_30b_a3b", "gb200"): "hybridep",
    ("qwen3_30b_a3b", "b300"): "hybridep", ("qwen3_30b_a3b", "b200"): "alltoall",
    ("qwen3_30b_a3b", "h100"): "deepep",
}


def dispatcher(recipe: Any, gpu: Any) -> str:
    """The MoE token dispatcher the preset of (recipe, gpu) uses."""
    r, g = str(recipe or "").lower(), str(gpu or "").lower()
    if "deepseek_v3" in r:
        return "hybridep"
    return _DISPATCHERS.get((r, g), "alltoall")


def _r_hybridep_ep(c: Columns) -> Any:
    on = c.table(("model_recipe_name", "gpu_type"),
                 lambda r, g: dispatcher(r, g) == "hybridep" and str(g) in ("gb200", "gb300"), key=("hybridep",))
    return _implies(on, c.num("ep") <= 72)


def _r_tokendrop(c: Columns) -> Any:
    flex = c.table(("model_recipe_name", "gpu_type"), lambda r, g: dispatcher(r, g) != "alltoall", key=("flex",))
    on = c.feature("use_tokendrop", lambda v: v is not None)
    return _implies(on, np.logical_not(flex))


def _r_gpu_type(c: Columns) -> Any:
    return c.feature("gpu_type", lambda v: str(v).lower() in GPU_TYPES)


def _r_compute_dtype(c: Columns) -> Any:
    return c.feature("compute_dtype", lambda v: str(v).lower() in COMPUTE_DTYPES)


def _r_nodes_capacity(c: Columns) -> Any:
    nodes = c.raw("num_nodes")
    if nodes is None:
        return True
    gpn = c.num("gpus_per_node", 8)
    return c.num("num_gpus") <= np.asarray(nodes) * gpn


NODES_CAPACITY = Rule("nodes_capacity", "num_gpus must fit in num_nodes * gpus_per_node", _r_nodes_capacity, "dse")

_MEGATRON_RULES: tuple[Rule, ...] = (
    Rule("world_divisible", "num_gpus must be divisible by tp*pp*cp", _r_world),
    Rule("expert_world_divisible", "num_gpus must be divisible by et*ep*pp (et defaults to tp)", _r_expert_world),
    Rule("batch_divisible", "gb must be a positive multiple of mb*dp (dp = num_gpus/(tp*pp*cp); x instances with FSDP)",
         _r_batch),
    Rule("vp_needs_pp", "vp > 1 (interleaved schedule) needs pp > 1", _r_vp_needs_pp),
    Rule("layers_divisible_by_pp", "num_layers (+2 where the recipe counts embedding and loss as pipeline layers: "
         "llama31_405b, qwen3_235b_a22b) must be divisible by pp", _r_layers_pp),
    Rule("layers_divisible_by_vp", "layers per pipeline stage (those layers / pp) must be divisible by vp",
         _r_layers_vp),
    Rule("pipeline_layout", "the pipeline layout (deepseek_v3: chosen by the recipe from (pp, vp), else the "
         "preset's) must have pp*vp stages holding the model's layers", _r_pipeline_layout),
    Rule("hybrid_no_vp", "a Mamba hybrid model (nemotronh) takes no vp (interleaved pipeline)", _r_hybrid_no_vp),
    Rule("interleaved_microbatches", "with vp, the number of microbatches gb/(mb*dp) must be a multiple of pp and >= pp",
         _r_interleaved_microbatches),
    Rule("heads_divisible_by_tp", "num_attention_heads must be a multiple of tp", _r_heads_tp),
    Rule("query_groups_vs_tp", "num_query_groups must be a multiple or a divisor of tp", _r_query_groups_tp),
    Rule("seq_divisible_by_tp", "with sequence parallel (tp > 1), seq_length/cp must be divisible by tp", _r_seq_tp),
    Rule("seq_divisible_by_2cp", "with cp > 1, seq_length must be divisible by 2*cp", _r_seq_cp),
    Rule("seq_length_consistent", "seq_length and the Hydra override model.seq_length must agree", _r_seq_consistent),
    Rule("experts_divisible_by_ep", "num_moe_experts must be divisible by ep", _r_experts_ep),
    Rule("ep_needs_moe", "ep > 1 needs a MoE model", _r_ep_needs_moe),
    Rule("moe_a2a_overlap", "moe_a2a_overlap needs ep > 1, vp when pp > 1, no full recompute, CUDA graphs only "
         "transformer_engine without moe/mlp scopes, and pp > 1 with an MTP layer", _r_a2a_overlap),
    Rule("activation_offload", "activation_offload_layers needs fewer layers than the model, pp == 1, no recompute "
         "and no CUDA graphs", _r_offload),
    Rule("recompute_exclusive", "recompute_num_layers (full) and recompute_modules (selective) exclude each other",
         _r_recompute_exclusive),
    Rule("recompute_layers_fit", "recompute_num_layers must not exceed the layers per pipeline stage",
         _r_recompute_layers),
    Rule("fsdp_no_cuda_graphs", "Megatron FSDP cannot be combined with CUDA graphs", _r_fsdp_graphs, "cloudai"),
    Rule("fsdp_no_pp_cp_vp", "Megatron FSDP needs pp == 1, cp == 1 and no vp", _r_fsdp_parallel, "cloudai"),
    Rule("dist_opt_instances_need_fsdp", "num_distributed_optimizer_instances > 1 needs Megatron FSDP",
         _r_dist_opt_instances, "cloudai"),
    Rule("cuda_graph_impl_known", "cuda_graph_impl must be none, local or transformer_engine", _r_graph_impl_known),
    Rule("cuda_graph_scope_valid", "local CUDA graphs take only full_iteration; transformer_engine takes "
         "attn, mlp, moe, moe_router, moe_preprocess, mamba", _r_graph_scope),
    Rule("cuda_graph_moe_scopes", "cuda_graph_scope: moe excludes moe_router; moe_preprocess needs moe_router",
         _r_graph_moe_scopes, "cloudai"),
    Rule("cuda_graph_vs_recompute", "full recompute needs the full_iteration CUDA graph; transformer_engine graphs "
         "on moe_router exclude recomputing moe", _r_graph_recompute),
    Rule("hybridep_ep_max", "HybridEP on gb200/gb300 needs ep <= 72", _r_hybridep_ep),
    Rule("tokendrop_needs_alltoall", "use_tokendrop fails on flex/HybridEP/DeepEP dispatcher presets", _r_tokendrop),
    Rule("gpu_type_known", f"gpu_type must be one of {', '.join(GPU_TYPES)}", _r_gpu_type),
    Rule("compute_dtype_known", f"compute_dtype must be one of {', '.join(COMPUTE_DTYPES)}", _r_compute_dtype),
    NODES_CAPACITY,
)

_PAR = ("num_gpus", "tp", "pp", "cp")
_GRAPHS = ("cuda_graph_impl", "cuda_graph_scope")
_RULE_FIELDS: dict[str, tuple[str, ...]] = {
    "world_divisible": _PAR, "expert_world_divisible": ("num_gpus", "et", "ep", "pp", "tp"),
    "batch_divisible": ("gb", "mb", *_PAR), "vp_needs_pp": ("vp", "pp"),
    "layers_divisible_by_pp": ("model_recipe_name", "num_layers", "pp"),
    "layers_divisible_by_vp": ("model_recipe_name", "num_layers", "pp", "vp"),
    "pipeline_layout": ("model_recipe_name", "pp_layout", "pp", "vp"),
    "interleaved_microbatches": ("gb", "mb", *_PAR, "vp"), "hybrid_no_vp": ("model_recipe_name", "vp"), "heads_divisible_by_tp": ("model_recipe_name", "tp"),
    "query_groups_vs_tp": ("model_recipe_name", "tp"), "seq_divisible_by_tp": ("seq_length", "cp", "tp"),
    "seq_divisible_by_2cp": ("seq_length", "cp"), "seq_length_consistent": ("seq_length", "model.seq_length"),
    "experts_divisible_by_ep": ("model_recipe_name", "ep"), "ep_needs_moe": ("model_recipe_name", "ep"),
    "moe_a2a_overlap": ("moe_a2a_overlap", "ep", "pp", "vp", "recompute_num_layers", *_GRAPHS),
    "activation_offload": ("activation_offload_layers", "pp", "recompute_num_layers", "recompute_modules",
                           *_GRAPHS),
    "recompute_exclusive": ("recompute_num_layers", "recompute_modules"),
    "recompute_layers_fit": ("recompute_num_layers", "num_layers", "pp"),
    "fsdp_no_cuda_graphs": ("use_megatron_fsdp", *_GRAPHS), "fsdp_no_pp_cp_vp": ("use_megatron_fsdp", "pp", "cp", "vp"),
    "dist_opt_instances_need_fsdp": ("num_distributed_optimizer_instances", "use_megatron_fsdp"),
    "cuda_graph_impl_known": ("cuda_graph_impl",), "cuda_graph_scope_valid": _GRAPHS,
    "cuda_graph_moe_scopes": ("cuda_graph_scope",),
    "cuda_graph_vs_recompute": (*_GRAPHS, "recompute_modules", "recompute_num_layers"),
    "hybridep_ep_max": ("ep", "gpu_type"), "tokendrop_needs_alltoall": ("use_tokendrop", "gpu_type"),
    "gpu_type_known": ("gpu_type",), "compute_dtype_known": ("compute_dtype",),
    "nodes_capacity": ("num_gpus", "num_nodes", "gpus_per_node"),
}
MEGATRON_RULES: tuple[Rule, ...] = tuple(replace(r, fields=_RULE_FIELDS[r.name]) for r in _MEGATRON_RULES)
GENERIC_RULES: tuple[Rule, ...] = (replace(NODES_CAPACITY, fields=_RULE_FIELDS["nodes_capacity"]),)


def rules_for(*, megatron: bool) -> tuple[Rule, ...]:
    """The built-in rules of a workload: Megatron's (for Megatron-Bridge cmd_args) or the generic ones."""
    return MEGATRON_RULES if megatron else GENERIC_RULES



def broken_rules(values: Mapping[str, Any], rules: Sequence[Rule] | None = None) -> list[Rule]:
    """The rules one concrete point breaks (default: the Megatron rules); empty when it may run.

    `values` is a flat cmd_args mapping (`{"model_recipe_name": "llama3_70b", "tp": 4, ...}`); unset
    fields take their preset value as everywhere else. For single configs (tests, oracles, what-if).
    """
    cols = Columns([], [], np.zeros((0, 1), dtype=np.int64), dict(values))
    out = []
    for rule in MEGATRON_RULES if rules is None else rules:
        if not bool(np.asarray(rule.check(cols), dtype=bool).reshape(-1)[0]):
            out.append(rule)
    return out

