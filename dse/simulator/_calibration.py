"""Calibration range: whether a prediction is a fitted published row, inside their ranges, or extrapolated.

The constants were fitted to the 26.02 published rows only; `_calibration` compares a configuration with
those rows (same run, same recipe's dtypes, sequence lengths, parallelism ranges and features) and says
why a prediction is extrapolated, for `Prediction.extrapolated` / `.calibration`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from dse.megatron import architecture_for
from dse.simulator._resolve import _Config, _config

_RANGE_FIELDS = ("mb", "tp", "pp", "cp", "vp", "ep", "n")
# what the presets of the published rows switch on, by what a reason calls it
_FEATURES: dict[str, Callable[[_Config], Any]] = {
    "use_megatron_fsdp": lambda c: c.fsdp,
    "recompute_num_layers": lambda c: c.recompute_layers,
    "recompute_modules": lambda c: ",".join(sorted(c.recompute_modules)) or "none",
    "activation_offload_layers": lambda c: c.offload_layers,
    "moe_a2a_overlap": lambda c: c.a2a_overlap,
    "cuda_graph_scope": lambda c: ",".join(sorted(c.scopes)) or "none",
    "dispatcher": lambda c: c.dispatcher,
}


def _run_key(c: _Config) -> tuple[Any, ...]:
    """What identifies one run of the published table (architecture overrides are checked apart)."""
    return (c.arch.recipe, c.gpu.name, c.dtype, c.n, c.tp, c.pp, c.cp, c.vp, c.ep, c.etp, c.mb, c.gb, c.seq,
            c.domain, c.fsdp, c.scopes, c.recompute_layers, c.recompute_modules, c.offload_layers,
            c.a2a_overlap, c.dispatcher, c.task)


@dataclass(frozen=True)
class _RecipeRange:
    """What the published rows of one recipe cover."""

    dtypes: Mapping[str, frozenset[str]]  # gpu -> dtypes
    seqs: frozenset[int]
    ranges: Mapping[str, tuple[int, int]]
    features: Mapping[str, frozenset[Any]]


@functools.cache
def _published_index() -> tuple[dict[tuple[Any, ...], str], dict[str, _RecipeRange]]:
    """The 26.02 published rows (`dse.megatron._published`), resolved as `predict` resolves a configuration:
    their run keys (-> label), and per recipe the ranges they cover."""
    from dse.megatron import PUBLISHED_26_02

    configs = [(row.label, _config(row.cmd_args(), None)) for row in PUBLISHED_26_02]
    runs = {_run_key(c): label for label, c in configs}
    recipes: dict[str, _RecipeRange] = {}
    for recipe in {c.arch.recipe for _, c in configs}:
        rows = [c for _, c in configs if c.arch.recipe == recipe]
        gpus = {c.gpu.name for c in rows}
        recipes[recipe] = _RecipeRange(
            dtypes={g: frozenset(c.dtype for c in rows if c.gpu.name == g) for g in gpus},
            seqs=frozenset(c.seq for c in rows),
            ranges={f: (min(getattr(c, f) for c in rows), max(getattr(c, f) for c in rows)) for f in _RANGE_FIELDS},
            features={name: frozenset(value_of(c) for c in rows) for name, value_of in _FEATURES.items()},
        )
    return runs, recipes


def _calibration(c: _Config) -> tuple[bool, str]:
    """(extrapolated, why): where `c` stands relative to the rows the constants were fitted to."""
    runs, recipes = _published_index()
    recipe, gpu = c.arch.recipe, c.gpu.name
    native = c.arch == architecture_for(recipe)
    label = runs.get(_run_key(c)) if native else None
    if label:
        return False, f"published 26.02 row ({label}): fitted"
    cover = recipes.get(recipe)
    if cover is None:
        return True, f"extrapolated: recipe {recipe} is not in the published 26.02 table"
    reasons = []
    if c.task != "pretrain":
        reasons.append(f"task {c.task} (the published rows are pretraining)")
    if not native:
        reasons.append("model shape overridden (num_layers / hidden_size / mtp)")
    if gpu not in cover.dtypes:
        reasons.append(f"recipe x gpu ({recipe} on {gpu}) not in the published table")
    elif c.dtype not in cover.dtypes[gpu]:
        reasons.append(f"dtype {c.dtype} not published for {recipe} on {gpu}")
    if c.seq not in cover.seqs:
        reasons.append(f"seq_length {c.seq} differs from the published {'/'.join(map(str, sorted(cover.seqs)))}")
    for name, (lo, hi) in cover.ranges.items():
        if not lo <= getattr(c, name) <= hi:
            shown = "num_gpus" if name == "n" else name
            reasons.append(f"{shown}={getattr(c, name)} outside the published rows' range {lo}..{hi} for {recipe}")
    if c.gpn != min(c.n, c.gpu.gpus_per_node):
        reasons.append(f"{c.gpn} GPUs per node (the published runs fill {c.gpu.gpus_per_node}-GPU nodes)")
    for name, value_of in _FEATURES.items():
        value = value_of(c)
        if value not in cover.features[name]:
            reasons.append(f"{name}={value} not used by the published {recipe} rows")
    if reasons:
        return True, "extrapolated: " + "; ".join(reasons)
    return False, f"interpolated: within the published 26.02 rows' ranges for {recipe}"
