"""The v0.3.0 preset table and the launcher's default resolution (docs/reference/megatron-bridge.md §1b, §4, §8.5)."""

from __future__ import annotations

from dse.megatron import PRESETS, lookup_preset, resolve_defaults


def test_lookup_exact_rows_of_section_4() -> None:
    p = lookup_preset("qwen3_30b_a3b", "gb200", "fp8_mx")
    assert p is not None and p.exact
    assert (p.num_gpus, p.tp, p.pp, p.ep, p.mb, p.gb, p.dispatcher) == (8, 1, 1, 8, 4, 512, "hybridep")
    h = lookup_preset("llama3_70b", "h100", "fp8_cs")
    assert h is not None and (h.tp, h.pp, h.vp, h.gb, h.seq_length) == (4, 8, 5, 256, 8192)  # V2 default
    assert lookup_preset("llama3_70b", "h100", "fp8_cs", variant="v1").gb == 128  # type: ignore[union-attr]
    g = lookup_preset("llama3_70b", "gb200", "fp8_cs")
    assert g is not None and g.use_megatron_fsdp and g.activation_offload_layers == 40


def test_every_listed_recipe_has_presets() -> None:
    recipes = {k[0] for k in PRESETS}
    for r in ("qwen3_30b_a3b", "llama3_8b", "llama3_70b", "deepseek_v3", "qwen3_235b_a22b", "gpt_oss_120b",
              "nemotronh_56b", "llama31_405b"):
        assert r in recipes


def test_fallback_is_marked_and_unknown_is_none() -> None:
    p = lookup_preset("gpt_oss_120b", "gb200", "fp8_mx")  # BF16-only presets
    assert p is not None and not p.exact and p.dtype == "fp8_mx" and p.ep == 64
    assert lookup_preset("no_such_model", "gb200", "bf16") is None
    assert lookup_preset("llama3_8b", "h100", "nvfp4") is not None  # same GPU, nearest dtype


def test_resolve_fills_preset_and_scales_gbs() -> None:
    r = resolve_defaults({"model_recipe_name": "qwen3_30b_a3b", "gpu_type": "gb200", "compute_dtype": "fp8_mx",
                          "num_gpus": 16, "tp": None, "gb": None})
    assert (r["tp"], r["ep"], r["mb"], r["gb"], r["dp"], r["seq_length"], r["num_layers"]) == (
        1, 8, 4, 1024, 16, 4096, 48)
    same = resolve_defaults({"model_recipe_name": "qwen3_30b_a3b", "gpu_type": "gb200",
                             "compute_dtype": "fp8_mx", "num_gpus": 8})
    assert same["gb"] == 512
    explicit = resolve_defaults({"model_recipe_name": "qwen3_30b_a3b", "gpu_type": "gb200",
                                 "compute_dtype": "fp8_mx", "num_gpus": 16, "gb": 256, "mb": 2})
    assert (explicit["gb"], explicit["mb"]) == (256, 2)


def test_resolve_vp_seq_and_layers() -> None:
    base = {"model_recipe_name": "llama3_70b", "gpu_type": "h100", "compute_dtype": "fp8_cs", "num_gpus": 64}
    assert resolve_defaults(base)["vp"] == 5
    assert resolve_defaults({**base, "vp": 1})["vp"] is None
    assert resolve_defaults({**base, "vp": "None"})["vp"] is None
    assert resolve_defaults({**base, "vp": 10})["vp"] == 10
    assert resolve_defaults({**base, "model.seq_length": 4096})["seq_length"] == 4096
    assert resolve_defaults({**base, "seq_length": 2048})["seq_length"] == 2048
    assert resolve_defaults({**base, "model.num_layers": 40})["num_layers"] == 40
    assert resolve_defaults(base)["num_layers"] == 80


def test_resolve_bool_flags_only_switch_on() -> None:
    base = {"model_recipe_name": "llama3_70b", "gpu_type": "gb200", "compute_dtype": "fp8_cs", "num_gpus": 64}
    assert resolve_defaults({**base, "use_megatron_fsdp": False})["use_megatron_fsdp"] is True  # §8.3
    mx = {**base, "compute_dtype": "fp8_mx"}
    assert resolve_defaults({**mx, "use_megatron_fsdp": "true"})["use_megatron_fsdp"] is True
    assert resolve_defaults({**mx, "cuda_graph_impl": "none"})["cuda_graph_impl"] == "none"


def test_unknown_recipe_defaults() -> None:
    r = resolve_defaults({"model_recipe_name": "mystery", "gpu_type": "h100", "num_gpus": 8, "gb": None})
    assert (r["tp"], r["pp"], r["cp"], r["ep"], r["mb"], r["gb"], r["preset"]) == (1, 1, 1, 1, 1, None, None)
    r2 = resolve_defaults({"model_recipe_name": "mystery", "gpu_type": "h100", "num_gpus": 8, "gb": 64})
    assert r2["gb"] == 64


def test_resolve_is_pure() -> None:
    args = {"model_recipe_name": "llama3_8b", "gpu_type": "h100", "compute_dtype": "bf16", "num_gpus": 8}
    before = dict(args)
    resolve_defaults(args)
    assert args == before


def test_resolve_reports_preset_fallback_and_hydra_table() -> None:
    exact = resolve_defaults({"model_recipe_name": "llama3_8b", "gpu_type": "gb200", "compute_dtype": "fp8_mx"})
    assert exact["preset"] == "llama3_8b/gb200/fp8_mx/v1" and exact["num_gpus"] == 8 and exact["gb"] == 128
    fb = resolve_defaults({"model_recipe_name": "gpt_oss_120b", "gpu_type": "b200", "compute_dtype": "nvfp4"})
    assert fb["preset"].endswith("~fallback") and fb["ep"] == 64
    nested = resolve_defaults({"model_recipe_name": "llama3_8b", "gpu_type": "h100", "compute_dtype": "bf16",
                               "extra_cmd_args": {"model.seq_length": 4096}})
    assert nested["seq_length"] == 4096 and nested["dp"] == 4  # preset cp=2 on 8 GPUs
