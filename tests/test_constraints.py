"""Every built-in parallelism rule has a passing and a failing configuration; user expressions too."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import make_test, sweep_from

from dse.megatron import MEGATRON_RULES
from dse.space import SweepSpace

L70 = {"gpu_type": "h100", "num_gpus": 64, "model_family_name": "llama", "model_recipe_name": "llama3_70b",
       "compute_dtype": "bf16", "tp": 1, "pp": 1, "cp": 1, "vp": 1, "ep": 1, "mb": 1, "gb": 64}
L8 = {**L70, "model_recipe_name": "llama3_8b", "num_gpus": 8, "gb": 128}
Q30 = {**L70, "model_family_name": "qwen", "model_recipe_name": "qwen3_30b_a3b", "num_gpus": 16, "gb": 512}
DS = {**L70, "gpu_type": "gb200", "model_family_name": "deepseek", "model_recipe_name": "deepseek_v3",
      "num_gpus": 256, "gb": 4096, "compute_dtype": "fp8_mx"}

# rule -> (base, passing overrides, failing overrides[, extra test fields])
CASES: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = {
    "world_divisible": (L70, {"tp": 4, "pp": 2}, {"tp": 3}),
    "expert_world_divisible": (Q30, {"ep": 8, "et": 1, "pp": 2}, {"ep": 8, "et": 2, "pp": 2}),
    "batch_divisible": (L8, {"mb": 2, "gb": 16}, {"mb": 2, "gb": 12}),
    "vp_needs_pp": (L70, {"pp": 2, "vp": 2}, {"pp": 1, "vp": 2}),
    "hybrid_no_vp": ({**L70, "model_recipe_name": "nemotronh_56b", "model": {"num_layers": 120}}, {"pp": 2},
                     {"pp": 2, "vp": 2}),
    "layers_divisible_by_pp": ({**L70, "num_gpus": 48}, {"pp": 8, "num_gpus": 64}, {"pp": 3}),
    "layers_divisible_by_vp": (L70, {"pp": 4, "vp": 5}, {"pp": 4, "vp": 3}),
    "interleaved_microbatches": ({**L70, "num_gpus": 8}, {"pp": 4, "vp": 2, "gb": 8}, {"pp": 4, "vp": 2, "gb": 6}),
    "heads_divisible_by_tp": (L8, {"tp": 8}, {"tp": 64, "num_gpus": 64}),
    "query_groups_vs_tp": (L70, {"tp": 2}, {"tp": 6, "num_gpus": 48}),
    "seq_divisible_by_tp": (L70, {"tp": 2}, {"tp": 3, "num_gpus": 48}),
    "seq_divisible_by_2cp": (L70, {"cp": 2, "seq_length": 4096}, {"cp": 2, "seq_length": 4098}),
    "seq_length_consistent": (L70, {"seq_length": 4096, "model": {"seq_length": 4096}},
                              {"seq_length": 4096, "model": {"seq_length": 8192}}),
    "experts_divisible_by_ep": (Q30, {"ep": 8}, {"ep": 3, "num_gpus": 48}),
    "ep_needs_moe": (L8, {"ep": 1}, {"ep": 2}),
    "moe_a2a_overlap": (Q30, {"moe_a2a_overlap": True, "ep": 8}, {"moe_a2a_overlap": True, "ep": 1}),
    "activation_offload": (L70, {"activation_offload_layers": 4}, {"activation_offload_layers": 4, "pp": 2}),
    "recompute_exclusive": (L70, {"recompute_num_layers": 2}, {"recompute_num_layers": 2, "recompute_modules": "mlp"}),
    "recompute_layers_fit": (L8, {"pp": 2, "recompute_num_layers": 16}, {"pp": 2, "recompute_num_layers": 17}),
    "fsdp_no_cuda_graphs": (L70, {"use_megatron_fsdp": True},
                            {"use_megatron_fsdp": True, "cuda_graph_impl": "transformer_engine",
                             "cuda_graph_scope": "attn"}),
    "fsdp_no_pp_cp_vp": (L70, {"use_megatron_fsdp": True}, {"use_megatron_fsdp": True, "pp": 2}),
    "dist_opt_instances_need_fsdp": (L70, {"num_distributed_optimizer_instances": 2, "use_megatron_fsdp": True},
                                     {"num_distributed_optimizer_instances": 2}),
    "cuda_graph_impl_known": (L70, {"cuda_graph_impl": "local"}, {"cuda_graph_impl": "cudnn"}),
    "cuda_graph_scope_valid": (L70, {"cuda_graph_impl": "local", "cuda_graph_scope": "full_iteration"},
                               {"cuda_graph_impl": "local", "cuda_graph_scope": "attn"}),
    "cuda_graph_moe_scopes": (Q30, {"cuda_graph_scope": "moe_router,moe_preprocess"},
                              {"cuda_graph_scope": "moe,moe_router"}),
    "cuda_graph_vs_recompute": (L70, {"cuda_graph_impl": "transformer_engine", "cuda_graph_scope": "attn",
                                      "recompute_modules": "core_attn"},
                                {"cuda_graph_impl": "transformer_engine", "cuda_graph_scope": "attn",
                                 "recompute_num_layers": 2}),
    "pipeline_layout": (DS, {"pp": 2, "vp": 8}, {"pp": 2, "vp": 4}),
    "hybridep_ep_max": (DS, {"ep": 64}, {"ep": 128}),
    "tokendrop_needs_alltoall": ({**Q30, "gpu_type": "b200", "num_gpus": 8}, {"use_tokendrop": True},
                                 {"use_tokendrop": True, "gpu_type": "gb200"}),
    "gpu_type_known": (L70, {"gpu_type": "h100"}, {"gpu_type": "a100"}),
    "compute_dtype_known": (L70, {"compute_dtype": "fp8_cs"}, {"compute_dtype": "fp16"}),
    "nodes_capacity": ({**L8, "gpus_per_node": 8, "num_gpus": 16}, {}, {}),
}


def _violations(cmd_args: dict[str, Any], **fields: Any) -> list[str]:
    space = SweepSpace(sweep_from(make_test(cmd_args, **fields)))
    assert space.agent.size == 1
    return [r.name for r in space.violations({})]


def test_every_rule_has_a_case() -> None:
    assert {r.name for r in MEGATRON_RULES} == set(CASES)


@pytest.mark.parametrize("rule", sorted(CASES))
def test_rule_passes_and_fails(rule: str) -> None:
    base, good, bad = CASES[rule]
    extra_good: dict[str, Any] = {}
    extra_bad: dict[str, Any] = {}
    if rule == "nodes_capacity":
        extra_good, extra_bad = {"num_nodes": 2}, {"num_nodes": 1}
    assert rule not in _violations({**base, **good}, **extra_good)
    assert rule in _violations({**base, **bad}, **extra_bad)


def test_unset_parallelism_uses_the_preset() -> None:
    # qwen3_30b_a3b on gb200 fp8_mx: preset EP 8 (docs/reference/megatron-bridge.md §4); 8 GPUs and ep unset is valid
    cmd = {"gpu_type": "gb200", "num_gpus": 8, "model_family_name": "qwen", "model_recipe_name": "qwen3_30b_a3b",
           "compute_dtype": "fp8_mx"}
    assert _violations(cmd) == []


def test_user_expression_rule() -> None:
    cmd = {**L8, "tp": [1, 2, 4, 8], "pp": [1, 2]}
    space = SweepSpace(sweep_from(make_test(cmd, constraints=["tp * pp <= 4"])))
    count = space.count()
    assert count.total == 8
    assert count.pruned["constraints[0]"] == 3  # (4,2) (8,1) (8,2)
    for i in range(space.agent.size):
        a = space.agent.decode(i)
        assert space.is_valid(i) == (a["tp"] * a["pp"] <= 4 and not [
            r for r in space.violations(a) if r.name != "constraints[0]"])


def test_expression_with_derived_names_and_division_by_zero() -> None:
    cmd = {**L8, "tp": [1, 2, 4, 8], "mb": [1, 2], "gb": [0 + 16, 24]}
    space = SweepSpace(sweep_from(make_test(cmd, constraints=["gb % (mb * dp) == 0", "gb // (tp - 1) >= 0"])))
    for i in range(space.agent.size):
        a = space.agent.decode(i)
        names = [r.name for r in space.violations(a)]
        dp = 8 // a["tp"]
        assert ("constraints[0]" in names) == (a["gb"] % (a["mb"] * dp) != 0)
        assert ("constraints[1]" in names) == (a["tp"] == 1)  # division by zero: the point is invalid


def test_env_params_point_valid_only_if_valid_for_every_draw() -> None:
    cmd = {**L70, "cp": [1, 2], "seq_length": [4096, 4098]}
    space = SweepSpace(sweep_from(make_test(cmd, env_params={"seq_length": {}})))
    assert space.agent.names == ["cp"] and space.env.names == ["seq_length"]
    assert space.is_valid(space.agent.encode({"cp": 1}))
    assert not space.is_valid(space.agent.encode({"cp": 2}))
    assert [r.name for r in space.violations({"cp": 2}, {"seq_length": 4096})] == []
    assert [r.name for r in space.violations({"cp": 2}, {"seq_length": 4098})] == ["seq_divisible_by_2cp"]


L405 = {**L70, "model_recipe_name": "llama31_405b", "gpu_type": "gb200", "compute_dtype": "fp8_cs",
        "num_gpus": 256, "gb": 1536, "tp": 4}
Q235 = {**Q30, "model_recipe_name": "qwen3_235b_a22b", "gpu_type": "gb200", "compute_dtype": "fp8_mx",
        "num_gpus": 256, "gb": 8192, "ep": 32}


@pytest.mark.parametrize("base, good, bad", [
    # 126 layers + embedding + loss = 128: pp 8 and 16 divide it although they do not divide 126
    (L405, {"pp": 8, "vp": 4}, {"pp": 6, "num_gpus": 384}),
    (L405, {"pp": 16, "vp": 4}, {"pp": 16, "vp": 3}),
    # 94 + 2 = 96: pp 4 and 8 (the published Qwen3 235B rows) divide it; 94 % 8 != 0
    (Q235, {"pp": 8}, {"pp": 7, "num_gpus": 224}),
    (Q235, {"pp": 4, "vp": 12}, {"pp": 4, "vp": 5}),
])
def test_embedding_and_loss_count_as_pipeline_layers(base: dict[str, Any], good: dict[str, Any],
                                                     bad: dict[str, Any]) -> None:
    """Megatron-Bridge v0.3.0 sets account_for_embedding/loss_in_pipeline_split for these recipes
    (recipes/llama/llama3.py, recipes/qwen/qwen3_moe.py): Megatron-Core divides num_layers + 2 by pp."""
    assert _violations({**base, **good}) == []
    names = _violations({**base, **bad})
    assert names and set(names) <= {"layers_divisible_by_pp", "layers_divisible_by_vp"}, names


@pytest.mark.parametrize("gpu, pp, vp, valid", [
    ("gb300", 2, 8, True),   # the GB300 MXFP8 preset: its 16-stage layout fits 2 x 8
    ("gb200", 2, 8, True),   # (2, 8) is not in the recipe's map: the preset's 16-stage layout stays
    ("gb200", 4, 4, True), ("gb200", 8, 2, True), ("gb200", 16, 1, True), ("gb200", 8, 1, True),
    ("gb200", 2, 4, False),  # 16 stages over pp 2 make vp 8, not 4
    ("gb200", 3, 1, False),  # 16 stages are not a multiple of pp 3
    ("gb200", 1, 1, True),   # the map's (1, 1): no layout, 61 layers on one stage
    ("h100", 8, 4, True),    # the H100 preset's 32-stage layout
    ("h100", 4, 8, True),    # not in the map: the 32-stage layout fits 4 x 8
    ("h100", 4, 2, True),    # in the map: 8 stages
    ("h100", 4, 3, False),
])
def test_deepseek_pipeline_layout_follows_the_recipe(gpu: str, pp: int, vp: int, valid: bool) -> None:
    names = _violations({**DS, "gpu_type": gpu, "num_gpus": 1024 * pp, "gb": 16384 * pp, "pp": pp, "vp": vp})
    assert (names == []) == valid, names
    if not valid:
        assert names == ["pipeline_layout"]


def test_user_layout_is_checked_against_pp_and_layers() -> None:
    good = "Et*4|(t*4|)*14tmL"
    assert _violations({**DS, "pp": 4, "vp": 4, "pipeline_model_parallel_layout": good}) == []
    assert "pipeline_layout" in _violations({**DS, "pp": 4, "vp": 4,
                                            "pipeline_model_parallel_layout": "Et*4|(t*4|)*13tmL"})  # 57 layers
    assert "pipeline_layout" in _violations({**L405, "pp": 2, "vp": 1,
                                             "pipeline_model_parallel_layout": "Et*63|t*63L"})  # accounting flags


def test_a2a_overlap_accepts_transformer_engine_graphs_off_the_experts() -> None:
    """The H100 Qwen3 30B bf16 preset runs the all-to-all overlap with TE graphs on moe_router/moe_preprocess;
    Megatron-Core refuses only local graphs or moe/mlp scopes (transformer_config.py __post_init__)."""
    h100 = {**Q30, "pp": 2, "vp": 12, "ep": 8, "gb": 1024, "moe_a2a_overlap": True,
            "cuda_graph_impl": "transformer_engine"}
    assert _violations({**h100, "cuda_graph_scope": "moe_router,moe_preprocess"}) == []
    assert "moe_a2a_overlap" in _violations({**h100, "cuda_graph_scope": "mlp"})
    assert "moe_a2a_overlap" in _violations({**h100, "cuda_graph_impl": "local",
                                             "cuda_graph_scope": "full_iteration"})


def test_preset_features_are_seen_by_the_rules() -> None:
    """The llama3_70b gb200 fp8_cs preset offloads 40 layers: -pp > 1 fails there (docs/reference/megatron-bridge.md §8.4)."""
    cmd = {**L70, "gpu_type": "gb200", "compute_dtype": "fp8_cs", "gb": 256, "mb": 2}
    assert "activation_offload" not in _violations(cmd)
    assert "activation_offload" in _violations({**cmd, "pp": 2})


def test_a_sweep_field_named_like_a_builtin_wins() -> None:
    """`gpus` in a Command sweep's cmd_args is the user's field, not the builtin world size."""
    cmd = {"command": "true", "gpus": 32, "tp": [1, 2, 4, 8], "pp": [1, 2, 4, 8], "mb": [1, 2, 4, 8],
           "gb": [8, 16, 24, 32, 48, 64, 128, 256]}
    space = SweepSpace(sweep_from(make_test(cmd, workload="Command",
                                            constraints=["gb % (mb * (gpus // (tp * pp))) == 0"])))
    expected = 0
    for i in range(space.agent.size):
        a = space.agent.decode(i)
        d = 32 // (a["tp"] * a["pp"])
        expected += bool(d) and a["gb"] % (a["mb"] * d) == 0
    count = space.count()
    assert count.valid == expected
    assert expected > 100  # the builtin (world size 1 here) would leave almost nothing
    # without a field of that name the builtins keep their meaning
    cmd = {**L8, "tp": [1, 2, 4, 8]}
    space = SweepSpace(sweep_from(make_test(cmd, constraints=["gpus // tp >= 4", "dp >= 2"])))
    assert [space.agent.decode(i)["tp"] for i in space.valid_indices()] == [1, 2]
