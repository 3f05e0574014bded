"""Conformance of dse's parallelism rules with Megatron-Core 0.16.0's own config checks (the oracle).

Thousands of seeded random configurations over dse's recipes and parallelism values go, in one batch,
to tests/oracle/mcore_verdicts.py, a subprocess that imports the real `megatron.core` (0.16.0, installed
with --no-deps) under a stub `torch` and builds `TransformerConfig` (+ the model builder's layer split)
for each. dse's verdict is `dse.megatron._rules.broken_rules(cmd_args)`. Only the rules Megatron-Core also
checks are compared (`MAPPED`); every disagreement must be a dse bug or a documented exception
(`EXCEPTIONS`, each with its own cited test below).

Megatron-Core is imported only in the subprocess: this process never imports it (nor the stub torch).
Without megatron-core the tests skip, unless DSE_REQUIRE_ORACLE=1 (scripts/run-tests.sh sets it).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import math
import os
import random
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dse.megatron import (
    ARCHITECTURES,
    COMPUTE_DTYPES,
    GPU_TYPES,
    PRESETS,
    Architecture,
    broken_rules,
    dispatcher,
    resolve_defaults,
)

pytestmark = pytest.mark.oracle

MCORE_VERSION = "0.16.0"
VERDICTS = Path(__file__).resolve().parent / "oracle" / "mcore_verdicts.py"
SEED = 20260226  # megatron-core 0.16.0's release day
N_POINTS = 4000
N_OUTSIDE = 300  # a2a-overlap points dse cannot express (allgather dispatcher, fp32 model), each with a twin

TP = (1, 2, 3, 4, 8)
PP = (1, 2, 3, 4, 5, 6, 8, 16)
VP = (1, 2, 3, 4, 5, 8, 12)  # 1 = not interleaved (None)
CP = (1, 2)
EP = (1, 2, 4, 8, 16, 32, 64)
LAYERS = (24, 30, 36, 40, 48, 60, 64, 90, 96, 120)  # Hydra model.num_layers overrides, on 15% of the points
# True: a point both refuse still disagrees when Megatron-Core's failing check is not one of dse's broken
# rules (dse refuses for the wrong reason, e.g. a missing rule masked by another). False: verdicts only.
STRICT_REASONS = True
SEQ = 12288  # divisible by 2*cp*tp for every tp, cp above: the sequence rules never fire

# dse rule -> the Megatron-Core check ids (tests/oracle/mcore_verdicts.py CHECKS) that decide the same thing
MAPPED: dict[str, tuple[str, ...]] = {
    # transformer_config.py:925-929 (ValueError)
    "heads_divisible_by_tp": ("heads_tp",),
    # transformer_config.py:939-946 (ValueError)
    "query_groups_vs_tp": ("query_groups_tp",),
    # account_for_* recipes: transformer_config.py:1435-1466 (ValueError);
    # others: transformer_block.py:155-157 get_num_layers_to_build (AssertionError)
    "layers_divisible_by_pp": ("layers_pp",),
    # account_for_* recipes: transformer_config.py:1468-1479; others: transformer_block.py:174-177
    "layers_divisible_by_vp": ("layers_vp",),
    # transformer_config.py:1306-1357 + pipeline_parallel_layer_layout.py (DeepSeek-V3)
    "pipeline_layout": ("pp_layout",),
    # transformer_config.py:1048-1049 (ValueError)
    "ep_needs_moe": ("ep_needs_moe",),
    # transformer_config.py:1852-1907 (AssertionError)
    "moe_a2a_overlap": ("a2a_overlap",),
    # PROPOSED, not a dse rule yet: a Mamba hybrid (nemotronh_56b) takes no interleaving. MambaStack.__init__
    # -> _select_layers_for_pipeline_parallel (ssm/mamba_block.py:175-178) asserts vp is None when pp > 1;
    # Megatron-Bridge v0.3.0 MambaModelProvider.provide (models/mamba/mamba_provider.py:155) for any pp.
    "hybrid_no_vp": ("mamba_no_vp",),
}

# dse rules whose check Megatron-Core 0.16.0 does not run in its config (each has a cited test below)
EXCEPTIONS: dict[str, str] = {
    "experts_divisible_by_ep": (
        "num_moe_experts % ep: Megatron-Core checks it only in BaseMoELayer.__init__ "
        "(transformer/moe/moe_layer.py:101, `assert self.config.num_moe_experts % ep_size == 0`, ep_size from "
        "a process group), and Megatron-LM's megatron/training/arguments.py is not in the megatron-core wheel"),
    "vp_needs_pp": (
        "vp > 1 with pp == 1: TransformerConfig accepts it and get_num_layers_to_build ignores vp when pp == 1; "
        "parallel_state.py:747-751 initialize_model_parallel raises 'pipeline-model-parallel size should be "
        "greater than 1 with interleaved schedule'. For account_for_* recipes (llama31_405b, qwen3_235b_a22b) "
        "TransformerConfig (transformer_config.py:1468-1479) checks (num_layers + 2) / 1 % vp even at pp == 1: "
        "dse names vp_needs_pp there, mcore layers_vp; both refuse"),
    "layers_divisible_by_pp@nemotronh": (
        "Nemotron-H (Mamba hybrid, MambaStack) with num_layers % pp != 0: Megatron-Core 0.16.0 does not refuse "
        "it: ssm/mamba_block.py:172-181 _select_layers_for_pipeline_parallel floors num_layers // pp and "
        "silently drops the remaining layers (118 layers at pp 4 build 116); dse refuses the run"),
}

SKIPPED_RECIPES: dict[str, str] = {}  # recipe -> why it is not compared (none: all eight are)


def _mcore_status() -> tuple[bool, str]:
    if importlib.util.find_spec("megatron") is None or importlib.util.find_spec("megatron.core") is None:
        return False, "megatron-core is not installed (pip install --no-deps megatron-core==0.16.0 'packaging>=24.2')"
    version = importlib.metadata.version("megatron-core")
    if version != MCORE_VERSION:
        return False, f"megatron-core {version} is installed; the oracle is pinned to {MCORE_VERSION}"
    return True, ""


@pytest.fixture(scope="module")
def oracle_ready() -> None:
    ok, why = _mcore_status()
    if not ok:
        if os.environ.get("DSE_REQUIRE_ORACLE") == "1":
            pytest.fail(f"DSE_REQUIRE_ORACLE=1 but {why}")
        pytest.skip(why)


# ---------------------------------------------------------------------------------------------------
# the configurations, as dse cmd_args and as Megatron-Core TransformerConfig arguments
# ---------------------------------------------------------------------------------------------------
@dataclass
class Point:
    cmd_args: dict[str, Any]
    spec: dict[str, Any]
    outside: str = ""  # why dse cannot express this point ("" = it can)
    verdict: dict[str, Any] = field(default_factory=dict)
    dse: list[str] = field(default_factory=list)


def dse_args(recipe: str, gpu: str, dtype: str, tp: int, pp: int, vp: int, cp: int, ep: int,
             overlap: bool, full_recompute: bool) -> dict[str, Any]:
    """A flat cmd_args mapping: the preset's CUDA graphs, offload and selective recompute switched off, the
    world size, batch and sequence length chosen so that the rules Megatron-Core does not see (world and
    expert-world divisibility, batch, microbatches, sequence) hold. On-only flags (moe_a2a_overlap, FSDP)
    and an unset recompute_num_layers keep the preset's value, as in the launcher; mcore_spec follows."""
    model, expert = tp * pp * cp, ep * pp  # et = 1
    num_gpus = 2 * model * expert // math.gcd(model, expert)
    dp = num_gpus // model
    return {
        "model_recipe_name": recipe, "gpu_type": gpu, "compute_dtype": dtype, "num_gpus": num_gpus,
        "tp": tp, "pp": pp, "cp": cp, "vp": vp, "ep": ep, "et": 1, "mb": 1, "gb": dp * pp * 2,
        "seq_length": SEQ, "moe_a2a_overlap": overlap, "recompute_num_layers": 1 if full_recompute else None,
        "recompute_modules": "", "cuda_graph_impl": "none", "cuda_graph_scope": "",
        "activation_offload_layers": 0, "use_megatron_fsdp": False,
    }


def mcore_spec(args: dict[str, Any], token_dispatcher: str | None = None, bf16: bool = True) -> dict[str, Any]:
    """The TransformerConfig the Megatron-Bridge v0.3.0 launcher would build for these cmd_args.

    From the effective values (dse.megatron._presets.resolve_defaults: e.g. the qwen3 H100 presets keep
    moe_a2a_overlap on, llama3_8b H100 fp8_cs keeps full recompute of 5 layers). As
    scripts/performance/utils/overrides.py does: sequence_parallel = tp > 1; -rl N -> full/block
    recompute of N layers; --moe_a2a_overlap -> overlap_moe_expert_parallel_comm, delay_wgrad_compute,
    no moe_shared_expert_overlap. account_for_embedding/loss_in_pipeline_split where the recipe sets
    them (llama31_405b, qwen3_235b_a22b); DeepSeek-V3's pipeline layout as dse resolves it. Dtype
    recipes (bf16, fp8_*, nvfp4) all train a bf16 model; FP8/FP4 and other Transformer-Engine-dependent
    fields are left out. add_bias_linear=False (MoE with bias needs ETP == 1; ETP is 1 anyway).
    """
    arch: Architecture = ARCHITECTURES[args["model_recipe_name"]]
    r = resolve_defaults(args)  # what the launcher runs: presets fill (and on-only flags keep) some fields
    tp, pp, cp, ep, vp = r["tp"], r["pp"], r["cp"], r["ep"], r["vp"]
    layers = r["num_layers"]
    cfg: dict[str, Any] = {
        "num_layers": layers, "hidden_size": arch.hidden_size,
        "num_attention_heads": arch.num_attention_heads, "num_query_groups": arch.num_query_groups,
        "kv_channels": arch.kv_channels, "ffn_hidden_size": arch.ffn_hidden_size,
        "tensor_model_parallel_size": tp, "pipeline_model_parallel_size": pp,
        "virtual_pipeline_model_parallel_size": vp, "context_parallel_size": cp,
        "expert_model_parallel_size": ep, "expert_tensor_parallel_size": 1, "sequence_parallel": tp > 1,
        "bf16": bf16, "params_dtype": "bfloat16" if bf16 else "float32",
        "pipeline_dtype": "bfloat16" if bf16 else "float32", "add_bias_linear": False,
    }
    if arch.is_moe:
        disp = token_dispatcher or r.get("dispatcher") or dispatcher(args["model_recipe_name"], args["gpu_type"])
        cfg.update(num_moe_experts=arch.num_moe_experts, moe_ffn_hidden_size=arch.moe_ffn_hidden_size,
                   moe_router_topk=arch.moe_router_topk,
                   moe_token_dispatcher_type="alltoall" if disp == "alltoall" else
                   ("allgather" if disp == "allgather" else "flex"))
        if disp in ("deepep", "hybridep"):
            cfg["moe_flex_dispatcher_backend"] = disp
        if arch.moe_shared_expert_size:
            cfg["moe_shared_expert_intermediate_size"] = arch.moe_shared_expert_size
        if arch.dense_layers:
            cfg["moe_layer_freq"] = [0] * arch.dense_layers + [1] * (layers - arch.dense_layers)
    if arch.mtp_layers:
        cfg["mtp_num_layers"] = arch.mtp_layers
    if arch.pipeline_split_counts_embedding_and_loss:
        cfg["account_for_embedding_in_pipeline_split"] = True
        cfg["account_for_loss_in_pipeline_split"] = True
    if r.get("pp_layout"):
        cfg["pipeline_model_parallel_layout"] = r["pp_layout"]
    if r.get("moe_a2a_overlap"):
        cfg.update(overlap_moe_expert_parallel_comm=True, delay_wgrad_compute=True, moe_shared_expert_overlap=False)
    if r.get("recompute_num_layers"):
        cfg.update(recompute_granularity="full", recompute_method="block",
                   recompute_num_layers=r["recompute_num_layers"])
    kind = "mamba" if arch.mamba_layers else ("mla" if arch.mla else "gpt")
    if arch.mla:
        cfg.update(q_lora_rank=arch.mla["q_lora"], kv_lora_rank=arch.mla["kv_lora"], qk_head_dim=arch.mla["qk"],
                   qk_pos_emb_head_dim=arch.mla["rope"], v_head_dim=arch.mla["v"])
        del cfg["num_query_groups"]
    return {"kind": kind, "config": cfg}


def _draw(rng: random.Random, recipes: list[str], dtypes: tuple[str, ...], eps: tuple[int, ...],
          overlap_p: float, recompute_p: float, layers_p: float = 0.0) -> dict[str, Any]:
    """One random point. A (gpu, dtype) whose preset uses Megatron FSDP is drawn again: the launcher
    cannot switch FSDP off (on-only flag), and FSDP refuses pp > 1, which would hide the compared rules."""
    while True:
        args = dse_args(rng.choice(recipes), rng.choice(GPU_TYPES), rng.choice(dtypes), rng.choice(TP),
                        rng.choice(PP), rng.choice(VP), rng.choice(CP), rng.choice(eps),
                        overlap=rng.random() < overlap_p, full_recompute=rng.random() < recompute_p)
        if rng.random() < layers_p and not ARCHITECTURES[args["model_recipe_name"]].mamba_layers:
            # not on the Mamba hybrid: its 118-character hybrid_override_pattern must match num_layers
            # (ssm/mamba_hybrid_layer_allocation.py:75-80), which this oracle does not model
            args["model.num_layers"] = rng.choice(LAYERS)
        if not resolve_defaults(args)["use_megatron_fsdp"]:
            return args


def draw_points() -> list[Point]:
    """N_POINTS seeded random points over dse's recipes, then N_OUTSIDE a2a-overlap points outside dse's space."""
    rng = random.Random(SEED)
    recipes = sorted(r for r in ARCHITECTURES if r not in SKIPPED_RECIPES)
    moe = [r for r in recipes if ARCHITECTURES[r].is_moe]
    points = []
    for _ in range(N_POINTS):
        args = _draw(rng, recipes, COMPUTE_DTYPES, EP, overlap_p=0.4, recompute_p=0.25, layers_p=0.15)
        points.append(Point(args, mcore_spec(args)))
    for i in range(N_OUTSIDE):
        args = _draw(rng, moe, ("bf16",), EP[1:], overlap_p=1.0, recompute_p=0.0)
        # the point as the launcher builds it (its twin), then with the one sub-condition dse cannot express
        points.append(Point(args, mcore_spec(args), outside="twin"))
        if i % 2:
            points.append(Point(args, mcore_spec(args, token_dispatcher="allgather"), outside="allgather"))
        else:
            points.append(Point(args, mcore_spec(args, bf16=False), outside="fp32"))
    return points


def run_oracle(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One subprocess for the whole batch (the stub torch lives only there)."""
    proc = subprocess.run([sys.executable, str(VERDICTS)], input=json.dumps(specs), capture_output=True,
                          text=True, timeout=300)
    if proc.returncode != 0:
        raise AssertionError(f"{VERDICTS.name} exited {proc.returncode}:\n{proc.stderr[-4000:]}")
    out = json.loads(proc.stdout)
    assert len(out) == len(specs), (len(out), len(specs))
    return out


# the points of the cited exception tests, judged in the same batch
L8 = dse_args("llama3_8b", "h100", "bf16", 1, 1, 1, 1, 1, overlap=False, full_recompute=False)
EXCEPTION_POINTS: dict[str, dict[str, Any]] = {
    "experts_divisible_by_ep": dse_args("qwen3_30b_a3b", "b200", "bf16", 1, 1, 1, 1, 3, False, False),
    "vp_needs_pp": {**L8, "vp": 2},
    "layers_divisible_by_pp@nemotronh": dse_args("nemotronh_56b", "h100", "bf16", 2, 4, 1, 1, 1, False, False),
}


@pytest.fixture(scope="module")
def judged(oracle_ready: None) -> dict[str, Any]:
    points = draw_points()
    special = {name: Point(args, mcore_spec(args)) for name, args in EXCEPTION_POINTS.items()}
    batch = points + list(special.values())
    for p, v in zip(batch, run_oracle([p.spec for p in batch]), strict=True):
        p.verdict = v
        p.dse = [r.name for r in broken_rules(p.cmd_args)]
    return {"points": points, "special": special}


# ---------------------------------------------------------------------------------------------------
# comparison
# ---------------------------------------------------------------------------------------------------
CHECK_TO_RULES: dict[str, set[str]] = {}
for _rule, _checks in MAPPED.items():
    for _check in _checks:
        CHECK_TO_RULES.setdefault(_check, set()).add(_rule)


def exception_for(p: Point) -> str | None:
    """The documented exception that explains a disagreement on `p`, or None (then it is a dse bug)."""
    rules, v = set(p.dse), p.verdict
    recipe = p.cmd_args["model_recipe_name"]
    if v["ok"]:  # dse refuses, mcore accepts: every dse rule must be one mcore does not check in config
        names = set()
        for r in rules:
            if r in ("experts_divisible_by_ep", "vp_needs_pp"):
                names.add(r)
            elif (r == "layers_divisible_by_pp" and p.spec["kind"] == "mamba"
                  and (v["layers_built"] or 0) < p.spec["config"]["num_layers"]):
                names.add("layers_divisible_by_pp@nemotronh")
            else:
                return None
        return ", ".join(sorted(names)) or None
    if ("vp_needs_pp" in rules and v["check"] == "layers_vp"
            and ARCHITECTURES[recipe].pipeline_split_counts_embedding_and_loss):
        return "vp_needs_pp"
    return None


def compare(points: list[Point]) -> dict[str, Any]:
    """Classify each point; returns counts, per-rule tallies and the disagreements."""
    cats: Counter[str] = Counter()
    excluded: Counter[str] = Counter()
    per_rule: dict[str, Counter[str]] = {r: Counter() for r in MAPPED}
    explained: Counter[str] = Counter()
    bugs: list[tuple[str, Point]] = []
    for p in points:
        rules, v = set(p.dse), p.verdict
        unmapped = rules - set(MAPPED) - set(EXCEPTIONS)
        if unmapped:
            excluded.update(unmapped)
            cats["excluded"] += 1
            continue
        check = v["check"]
        for r in MAPPED:
            hit_d, hit_m = r in rules, check in MAPPED[r]
            if hit_d and hit_m:
                per_rule[r]["both refuse"] += 1
            elif hit_d and v["ok"]:
                per_rule[r]["dse only"] += 1
            elif hit_d:
                per_rule[r]["dse (mcore stopped at an earlier check)"] += 1
            elif hit_m:
                per_rule[r]["mcore only"] += 1
        if not rules and v["ok"]:
            kind = "both accept"
        elif rules and not v["ok"] and rules & CHECK_TO_RULES.get(check, set()):
            kind = "both refuse (same reason)"
        elif rules and v["ok"]:
            kind = "dse refuses, mcore accepts"
        elif not rules:
            kind = "mcore refuses, dse accepts"
        else:
            kind = "both refuse, different reasons"
        cats[kind] += 1
        if kind in ("both accept", "both refuse (same reason)") or (
                kind == "both refuse, different reasons" and not STRICT_REASONS):
            continue
        why = exception_for(p)
        if why:
            explained[why] += 1
        else:
            bugs.append((kind, p))
    return {"cats": cats, "excluded": excluded, "per_rule": per_rule, "explained": explained, "bugs": bugs}


def _describe(kind: str, p: Point) -> str:
    a = p.cmd_args
    cfg = {k: a[k] for k in ("model_recipe_name", "model.num_layers", "gpu_type", "tp", "pp", "vp", "cp", "ep",
                             "moe_a2a_overlap", "recompute_num_layers") if k in a}
    layout = p.spec["config"].get("pipeline_model_parallel_layout")
    extra = f" layout={layout}" if layout else ""
    mc = "accepts" if p.verdict["ok"] else f"raises [{p.verdict['check']}] {p.verdict['message'][:160]!r}"
    return f"  {kind}: {cfg}{extra}\n      dse broken={p.dse or '[]'}\n      mcore {mc}"


def report(points: list[Point], result: dict[str, Any]) -> str:
    lines = [f"Megatron-Core {MCORE_VERSION} oracle: {len(points)} configurations compared "
             f"(seed {SEED}; recipes {', '.join(sorted(set(ARCHITECTURES) - set(SKIPPED_RECIPES)))})"]
    for name, why in SKIPPED_RECIPES.items():
        lines.append(f"  recipe not compared: {name}: {why}")
    lines.append("  outcomes: " + ", ".join(f"{k} {n}" for k, n in sorted(result["cats"].items())))
    if result["excluded"]:
        lines.append("  excluded (an unmapped dse rule fired): " + ", ".join(
            f"{k} {n}" for k, n in sorted(result["excluded"].items())))
    lines.append("  per mapped rule (dse rule <-> mcore check):")
    for r, c in result["per_rule"].items():
        tallies = ", ".join(f"{k} {n}" for k, n in sorted(c.items())) or "never fired"
        lines.append(f"    {r} <-> {'/'.join(MAPPED[r])}: {tallies}")
    lines.append("  documented exceptions (Megatron-Core 0.16.0 does not check these in config):")
    for name, text in EXCEPTIONS.items():
        lines.append(f"    {name} [{result['explained'].get(name, 0)} disagreements explained]: {text}")
    other = {k: n for k, n in result["explained"].items() if k not in EXCEPTIONS}
    if other:
        lines.append("    combined: " + ", ".join(f"{k} {n}" for k, n in sorted(other.items())))
    lines.append(f"  unexplained disagreements: {len(result['bugs'])}")
    return "\n".join(lines)


def test_dse_rules_agree_with_megatron_core(judged: dict[str, Any]) -> None:
    """Every point where dse's mapped rules and Megatron-Core 0.16.0's config disagree is a documented
    exception; the others are listed (first 20, with the config and both verdicts)."""
    points = [p for p in judged["points"] if not p.outside]
    result = compare(points)
    text = report(points, result)
    print("\n" + text)
    assert result["cats"]["both accept"] > 0 and result["cats"]["both refuse (same reason)"] > 0
    assert result["cats"]["excluded"] < len(points) // 20, f"too many points excluded\n{text}"
    # a point both accept must build every decoder layer (a Mamba split that drops layers is refused by dse)
    for p in points:
        built = p.verdict.get("layers_built")
        if not p.dse and p.verdict["ok"] and built is not None and built != p.spec["config"]["num_layers"]:
            result["bugs"].append((f"both accept, mcore builds {built} layers", p))
    if result["bugs"]:
        shown = "\n".join(_describe(kind, p) for kind, p in result["bugs"][:20])
        kinds = Counter(kind for kind, _ in result["bugs"])
        pytest.fail(f"{text}\n{len(result['bugs'])} disagreements ({dict(kinds)}), first 20:\n{shown}",
                    pytrace=False)


def test_a2a_overlap_conditions_outside_dse_space(judged: dict[str, Any]) -> None:
    """dse's moe_a2a_overlap rule has no dispatcher or model-dtype clause because the launcher cannot
    leave them: every preset dispatcher is alltoall or flex (deepep/hybridep) and every compute dtype
    trains a bf16 model. Megatron-Core refuses the overlap with the allgather dispatcher or an fp32 model
    (transformer_config.py:1866-1869 and 1882-1884): wherever it accepts the launcher's point (the twin),
    it must refuse the same point with allgather / fp32, for exactly that reason."""
    pts = [p for p in judged["points"] if p.outside]
    pairs = list(zip(pts[0::2], pts[1::2], strict=True))
    assert pairs and all(t.outside == "twin" and o.outside in ("allgather", "fp32") for t, o in pairs)
    expected = {"allgather": "supported with alltoall/flex token dispatcher", "fp32": "only supported with bf16 or fp16"}
    live = [(t, o) for t, o in pairs if t.verdict["ok"]]
    assert len(live) > len(pairs) // 10, f"only {len(live)} of {len(pairs)} twins accepted"
    wrong = [o for _, o in live if o.verdict["check"] != "a2a_overlap" or expected[o.outside] not in o.verdict["message"]]
    assert not wrong, "\n".join(_describe(f"outside ({p.outside})", p) for p in wrong[:10])
    print(f"\n{len(live)} accepted a2a-overlap points refused with an allgather dispatcher or an fp32 model "
          f"({Counter(o.outside for _, o in live)})")
    for recipe in ARCHITECTURES:
        for gpu in GPU_TYPES:
            assert dispatcher(recipe, gpu) in ("alltoall", "deepep", "hybridep", "flex")
    assert {p.dispatcher for p in PRESETS.values()} <= {"alltoall", "deepep", "hybridep", "flex"}


def test_experts_not_divisible_by_ep_is_dse_only(judged: dict[str, Any]) -> None:
    """num_moe_experts % ep != 0 (qwen3_30b_a3b, 128 experts, ep 3): Megatron-Core 0.16.0's config accepts it.
    The check is only `assert self.config.num_moe_experts % ep_size == 0` in BaseMoELayer.__init__
    (megatron/core/transformer/moe/moe_layer.py:101), with ep_size from the expert process group, so it needs
    torch.distributed; Megatron-LM's megatron/training/arguments.py:1027 has it too but is not in the
    megatron-core wheel. dse refuses the point (experts_divisible_by_ep)."""
    p = judged["special"]["experts_divisible_by_ep"]
    assert p.verdict["ok"], p.verdict
    assert p.dse == ["experts_divisible_by_ep"]


def test_vp_without_pp_is_refused_at_initialization_not_in_config(judged: dict[str, Any]) -> None:
    """vp = 2 with pp = 1 (llama3_8b): Megatron-Core 0.16.0's TransformerConfig accepts it and
    get_num_layers_to_build ignores vp when pp == 1 (transformer_block.py:160-161); it is refused only by
    parallel_state.initialize_model_parallel (megatron/core/parallel_state.py:747-751: RuntimeError
    'pipeline-model-parallel size should be greater than 1 with interleaved schedule'), which needs
    torch.distributed. dse refuses the point (vp_needs_pp)."""
    p = judged["special"]["vp_needs_pp"]
    assert p.verdict["ok"], p.verdict
    assert p.dse == ["vp_needs_pp"]


def test_mamba_hybrid_pipeline_split_floors_layers(judged: dict[str, Any]) -> None:
    """nemotronh_56b (118 layers) at pp = 4: Megatron-Core 0.16.0 accepts it. A Mamba hybrid model is split
    by MambaStack._select_layers_for_pipeline_parallel (megatron/core/ssm/mamba_block.py:172-181):
    `num_layers // pp` layers per rank with no divisibility check, so the last 118 % 4 = 2 layers are never
    built; get_num_layers_to_build (and its assertion) is not used for it. dse refuses the point
    (layers_divisible_by_pp), which keeps sweeps off runs that silently train a smaller model."""
    p = judged["special"]["layers_divisible_by_pp@nemotronh"]
    assert p.verdict["ok"], p.verdict
    assert p.verdict["layers_built"] == 116
    assert p.dse == ["layers_divisible_by_pp"]
