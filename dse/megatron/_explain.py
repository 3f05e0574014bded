"""Why a rule prunes: the values of one pruned point, where each value came from, and how to sweep past it.

A sweep names only some fields; the preset fills the rest, as Megatron-Bridge's launcher does. When a
preset's value (vp = 12, a CPU offload, a pipeline layout) breaks a rule on points the user did sweep,
the user must be told that the value is the preset's, not theirs, and how to sweep it. Pure: it reads the
space's values, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dse.megatron._columns import Rule
from dse.megatron._names import bind_name
from dse.megatron._presets import resolve_defaults

if TYPE_CHECKING:
    from dse.space import SweepSpace

__all__ = ["explain_pruning", "value_origins"]

# Fields the preset fills when the sweep leaves them unset, and the value that switches each off.
_PRESET_FIELDS = {"tp": 1, "pp": 1, "cp": 1, "vp": 1, "ep": 1, "et": 1, "mb": None, "gb": None, "num_gpus": None,
                  "seq_length": None, "cuda_graph_impl": "none", "cuda_graph_scope": None,
                  "recompute_num_layers": None, "recompute_modules": None, "activation_offload_layers": None,
                  "moe_a2a_overlap": None, "use_megatron_fsdp": None, "pp_layout": None}
_ARCH_FIELDS = ("num_layers", "hidden_size")


def _point(space: SweepSpace, index: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The agent action of `index` and the first env draw under which some rule breaks it."""
    action = space.agent.decode(index)
    draws = [space.env.decode(e) for e in range(space.env.size)] if space.env.dimensions else [{}]
    for env in draws:
        if space.violations(action, env):
            return action, env
    return action, draws[0]


def value_origins(space: SweepSpace, action: Mapping[str, Any], env: Mapping[str, Any],
                  fields: tuple[str, ...]) -> dict[str, tuple[Any, str]]:
    """field -> (effective value, where it came from) for one point: swept, drawn, set, preset, recipe."""
    values: dict[str, Any] = {**space.fixed, **action, **env}
    for name, (deps, fn) in space.derived.items():
        values[name] = fn(*[values.get(d) for d in deps])
    megatron = space.sweep.kind.megatron
    try:
        resolved = resolve_defaults(values) if megatron else values
    except (ValueError, TypeError):  # a malformed value: the rules say so, the explanation shows it raw
        resolved, megatron = values, False
    preset = resolved.get("preset") if megatron else None
    user_set = {k for k, v in values.items() if v is not None and k in space.sweep_fields}
    out: dict[str, tuple[Any, str]] = {}
    for raw in fields:
        name, _ = bind_name(raw, space.fixed)
        value = resolved.get(name, values.get(name))
        if name in action:
            value, origin = action[name], "swept"
        elif name in env:
            value, origin = env[name], "drawn per trial"
        elif name in space.derived:
            origin = "derived from " + " x ".join(space.derived[name][0])
        elif name in user_set:
            origin = "set in the sweep"
        elif megatron and preset and name in _PRESET_FIELDS:
            origin = "the " + _preset_phrase(str(preset))
        elif megatron and name in _ARCH_FIELDS:
            origin = f"the {resolved.get('model_recipe_name')} architecture"
        else:
            origin = "default"
        out[raw] = (value, origin)
    return out


def _preset_phrase(preset: str) -> str:
    """'qwen3_30b_a3b/h100/fp8_cs/v1' -> 'qwen3_30b_a3b h100 fp8_cs preset (v1)'."""
    fallback = preset.endswith("~fallback")
    recipe, gpu, dtype, variant = (preset.removesuffix("~fallback").split("/") + ["", "", "", ""])[:4]
    text = f"{recipe} {gpu} {dtype} preset ({variant})"
    return text + (", the nearest shipped one" if fallback else "")


def _fmt(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def explain_pruning(space: SweepSpace, rule: Rule, index: int | None) -> str | None:
    """One line: the values of a point `rule` prunes, their origins, and the fix when a preset set one."""
    if index is None or not rule.fields:
        return None
    action, env = _point(space, index)
    origins = value_origins(space, action, env, rule.fields)
    shown = [(f, v, o) for f, (v, o) in origins.items() if _telling(f, v, o)]
    if not shown:
        return None
    parts = [f"{f} = {_fmt(v)} ({o})" if o in ("swept", "set in the sweep", "drawn per trial", "default")
             else f"{f} = {_fmt(v)} from {o}" for f, v, o in shown]
    text = f"e.g. {', '.join(parts)}"
    fix = _fix(origins)
    return f"{text}; {fix}" if fix else text


def _telling(field: str, value: Any, origin: str) -> bool:
    """Worth showing: the sweep's own values, and defaults or preset values that switch something on."""
    if origin in ("swept", "set in the sweep", "drawn per trial") or origin.startswith("derived"):
        return True
    return value not in (None, "", False, "none") and value != _PRESET_FIELDS.get(field)


def _fix(origins: Mapping[str, tuple[Any, str]]) -> str | None:
    """How to sweep past a preset's value: list the value that switches it off beside the preset's."""
    for field, (value, origin) in origins.items():
        if not origin.startswith("the ") or "preset" not in origin or value in (None, "", False):
            continue
        off = _PRESET_FIELDS.get(field)
        if off is not None and value == off:
            continue
        if off is not None:
            return f"to sweep it, write {field} = [{_fmt(off)}, {_fmt(value)}] in cmd_args"
        return f"{field} is the preset's and no flag switches it off: choose another preset or drop the points"
    return None
