"""The baseline trial: the configuration Megatron-Bridge ships (its preset), measured first in every sweep.

A performance engineer's question is "how much faster than the preset?", so each Megatron sweep runs the
preset's own values of the swept fields first, when its lists contain them. What the preset does not decide
(or a Command sweep, which has no preset) the sweep names in a `baseline = {...}` table; without one, and
when a preset value is not among the choices, there is no baseline and the run says why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dse.errors import InputError
from dse.megatron import resolve_defaults
from dse.space._space import SweepSpace
from dse.trial import Action


@dataclass(frozen=True)
class Baseline:
    action: Action | None  # None: no baseline for this sweep
    why: str  # where its values come from, or why there is none


def _same(a: Any, b: Any) -> bool:
    return a == b and type(a) is type(b) or (isinstance(a, str) and isinstance(b, str) and a.lower() == b.lower())


def baseline_action(space: SweepSpace) -> Baseline:
    """The preset's (or the sweep's `baseline`) value of every searched dimension, or why there is none."""
    given = dict(space.sweep.test.baseline or {})
    source = str(space.sweep.source)
    dims = {d.path: d for d in space.agent.dimensions}
    for key in given:
        if key not in dims:
            raise InputError(f"'{key}' is not a searched dimension (searched: {', '.join(dims) or 'none'})",
                             file=source, field=f"baseline.{key}")
    preset: dict[str, Any] = {}
    if space.sweep.kind.megatron:
        fixed = {k: v for k, v in space.fixed.items() if k not in dims}
        try:
            preset = resolve_defaults(fixed)
        except Exception:  # an unknown recipe: the preset decides nothing
            preset = {}
        if preset.get("vp") is None:
            preset["vp"] = 1  # not interleaved
    action: Action = {}
    for path, dim in dims.items():
        if path in given:
            value = given[path]
            match = next((v for v in dim.values if _same(v, value)), None)
            if match is None:
                raise InputError(f"{value!r} is not one of the values of {path} ({list(dim.values)})", file=source,
                                 field=f"baseline.{path}")
            action[path] = match
            continue
        if path not in preset or preset[path] is None:
            return Baseline(None, f"the preset does not set {path}; name the baseline with baseline = {{{path} = ...}}")
        match = next((v for v in dim.values if _same(v, preset[path])), None)
        if match is None:
            return Baseline(None, f"the preset's {path} = {preset[path]!r} is not among your values {list(dim.values)}; "
                                  f"name the baseline with baseline = {{{path} = ...}}")
        action[path] = match
    if not space.is_valid(space.agent.encode(action)):
        return Baseline(None, f"the preset's configuration {action} breaks a rule of this space")
    what = "your baseline table" if given and len(given) == len(dims) else (
        f"the {preset.get('preset') or 'preset'} preset" + (" and your baseline table" if given else ""))
    return Baseline(action, what)
