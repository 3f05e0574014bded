"""Resolving Megatron-Bridge cmd_args into the numbers one prediction needs (`_Config`).

The launcher's defaults (`dse.megatron.resolve_defaults`), the architecture with its overrides, and the
checks the launcher makes before training (world size and GBS divisibility, known GPU and recipe), which
raise `InputError`. Shared by the prediction itself and by the calibration-range check.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from dse.errors import InputError
from dse.megatron import Architecture, architecture_for, first_set, resolve_defaults
from dse.simulator._hardware import GPU, GPUS


@dataclass(frozen=True)
class _Config:
    """The resolved, validated numbers one prediction needs."""

    arch: Architecture
    gpu: GPU
    dtype: str
    n: int
    tp: int
    pp: int
    cp: int
    vp: int
    ep: int
    etp: int
    dp: int
    edp: int
    mb: int
    gb: int
    m: int
    seq: int
    domain: int
    fsdp: bool
    nccl_ub: bool
    scopes: frozenset[str]
    recompute_layers: int
    recompute_modules: frozenset[str]
    offload_layers: int
    a2a_overlap: bool
    dispatcher: str
    pp_layout: bool
    task: str
    gpn: int = 8  # GPUs per node as launched


def _scopes(text: Any) -> frozenset[str]:
    return frozenset(p.strip().lower() for p in str(text or "").replace("[", "").replace("]", "").split(",")
                     if p.strip())


def _arch_for(r: Mapping[str, Any]) -> Architecture:
    arch = architecture_for(r.get("model_recipe_name"))
    if arch is None:
        raise InputError(f"no architecture known for recipe {r.get('model_recipe_name')!r}; the simulator "
                         "needs one of the recipes of docs/reference/megatron-bridge.md §6", field="model_recipe_name")
    changes: dict[str, Any] = {}
    if r.get("num_layers") and int(r["num_layers"]) != arch.num_layers:
        n = int(r["num_layers"])
        changes["num_layers"] = n
        if arch.mamba_layers:  # keep the hybrid mix proportional
            changes["mamba_layers"] = round(arch.mamba_layers * n / arch.num_layers)
            changes["attention_layers"] = round((arch.attention_layers or 0) * n / arch.num_layers)
        elif arch.is_moe:
            changes["dense_layers"] = min(arch.dense_layers, n)
    if r.get("hidden_size") and int(r["hidden_size"]) != arch.hidden_size:
        changes["hidden_size"] = int(r["hidden_size"])
    mtp = first_set(r, "mtp_num_layers", "model.mtp_num_layers")
    if mtp is not None and arch.is_moe and int(mtp) != arch.mtp_layers:  # e.g. DeepSeek-V3 without MTP
        changes["mtp_layers"] = max(0, int(mtp))
    return replace(arch, **changes) if changes else arch


def _positive(r: Mapping[str, Any], name: str) -> int:
    value = r.get(name)
    if value is None:
        raise InputError("is not set and no preset gives it", field=name)
    v = int(value)
    if v < 1:
        raise InputError(f"must be a positive integer, got {v}", field=name)
    return v


def _config(cmd_args: Mapping[str, Any], num_nodes: int | None) -> _Config:
    """Resolve against the presets and refuse what the launcher would refuse before training starts."""
    r = resolve_defaults(cmd_args)
    gpu = GPUS.get(str(r["gpu_type"]))
    if gpu is None:
        raise InputError(f"unknown gpu_type {r['gpu_type']!r} (one of {', '.join(GPUS)})", field="gpu_type")
    arch = _arch_for(r)
    n = _positive(r, "num_gpus")
    tp, pp, cp, ep, mb, gb, seq = (_positive(r, f) for f in ("tp", "pp", "cp", "ep", "mb", "gb", "seq_length"))
    etp = int(r["et"]) if r.get("et") else tp
    vp = int(r["vp"]) if r.get("vp") else 1
    if n % (tp * pp * cp):
        raise InputError(f"world size ({n}) is not divisible by tp*pp*cp ({tp * pp * cp})", field="num_gpus")
    dp = n // (tp * pp * cp)
    if gb % (mb * dp):
        raise InputError(f"global batch size ({gb}) is not divisible by micro batch size ({mb}) times data "
                         f"parallel size ({dp})", field="gb")
    if n % (etp * ep * pp):
        raise InputError(f"world size ({n}) is not divisible by etp*ep*pp ({etp * ep * pp})", field="ep")
    gpn = max(1, n // int(num_nodes)) if num_nodes else min(n, gpu.gpus_per_node)
    # NVL72 racks span trays (nodes); an HGX node is its own NVLink domain
    domain = gpu.nvlink_domain if gpu.nvlink_domain > gpu.gpus_per_node else min(gpu.nvlink_domain, gpn)
    graph_impl = str(r.get("cuda_graph_impl") or "none").lower()
    scopes = _scopes(r.get("cuda_graph_scope")) if graph_impl != "none" else frozenset()
    if graph_impl == "local" and not scopes:
        scopes = frozenset({"full_iteration"})
    return _Config(
        arch=arch, gpu=gpu, dtype=str(r["compute_dtype"]), n=n, tp=tp, pp=pp, cp=cp, vp=vp, ep=ep, etp=etp,
        dp=dp, edp=n // (etp * ep * pp), mb=mb, gb=gb, m=gb // (mb * dp), seq=seq, domain=domain,
        fsdp=bool(r.get("use_megatron_fsdp")), nccl_ub=bool(r.get("nccl_ub")), scopes=scopes,
        recompute_layers=int(r.get("recompute_num_layers") or 0),
        recompute_modules=_scopes(r.get("recompute_modules")),
        offload_layers=int(r.get("activation_offload_layers") or 0),
        a2a_overlap=bool(r.get("moe_a2a_overlap")), dispatcher=str(r.get("dispatcher") or "alltoall"),
        pp_layout=bool(r.get("pp_layout")), task=str(r.get("task") or "pretrain"), gpn=gpn,
    )
