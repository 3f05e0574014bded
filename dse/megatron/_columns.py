"""The evaluation engine of the rules: a `Columns` view of a block of points, and the `Rule` it feeds.

A block of points is one numpy array per field (a scalar for fixed fields). Fields a Megatron-Bridge preset
sets when the sweep leaves them unset (tp, pp, mb, CUDA graphs, recompute...) read the preset's value, as the
launcher would, so a rule sees what the run would use. The rules themselves live in `_rules`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dse.megatron._architectures import architecture_for
from dse.megatron._presets import resolve_defaults

PRESET_KEYS = ("model_recipe_name", "gpu_type", "compute_dtype", "task", "num_gpus", "config_variant")
RESOLVED_FIELDS = ("tp", "pp", "cp", "vp", "ep", "et", "mb", "gb", "seq_length", "num_layers", "pp_layout",
                   "cuda_graph_impl", "cuda_graph_scope", "recompute_num_layers", "recompute_modules",
                   "activation_offload_layers", "moe_a2a_overlap", "use_megatron_fsdp")
"""Fields whose effective value may come from the preset (or be derived), not only from the sweep."""
_LAYOUT_DEPS = ("pipeline_model_parallel_layout", "pp", "vp")
_EXTRA_DEPS = {"seq_length": ("model.seq_length",), "num_layers": ("model.num_layers",),
               "vp": _LAYOUT_DEPS, "pp_layout": _LAYOUT_DEPS}
GPU_TYPES = ("h100", "b200", "b300", "gb200", "gb300")
COMPUTE_DTYPES = ("bf16", "fp8_cs", "fp8_mx", "fp8_sc", "nvfp4")
TE_SCOPES = {"attn", "mlp", "moe", "moe_router", "moe_preprocess", "mamba"}
_OFF = {"", "none", "null"}


def split_list(value: Any) -> list[str]:
    """`"attn,moe_router"` (or `["attn"]`, `"[attn]"`) -> `["attn", "moe_router"]`, lowercased."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        value = ",".join(str(v) for v in value)
    text = str(value).replace("[", "").replace("]", "").replace('"', "").replace("'", "")
    return [p.strip().lower() for p in text.split(",") if p.strip()]


def resolve_scalar(name: str, values: Mapping[str, Any]) -> Any:
    """Effective value of a parallelism field the launcher would use (preset when unset)."""
    try:
        resolved = resolve_defaults(dict(values))
    except Exception:  # a preset problem must not hide the rule verdicts
        resolved = {}
    if name in resolved:
        return resolved[name]
    raw = values.get(name)
    if raw is None and name in _EXTRA_DEPS:
        raw = values.get(_EXTRA_DEPS[name][0])
    if raw is None:
        defaults: dict[str, Any] = {"tp": 1, "pp": 1, "cp": 1, "ep": 1, "mb": 1}
        if name == "num_layers":
            arch = architecture_for(values.get("model_recipe_name"))
            return arch.num_layers if arch else None
        if name == "seq_length":
            arch = architecture_for(values.get("model_recipe_name"))
            return arch.seq_length if arch else None
        return defaults.get(name)
    return raw


class Columns:
    """Field values over a block of points: arrays for swept fields, scalars for fixed ones.

    `table()` evaluates a scalar function over the (small) product of the swept fields it reads and
    gathers the result per point, so string features and preset look-ups cost no Python per point.
    """

    def __init__(
        self,
        dim_names: Sequence[str],
        dim_values: Sequence[Sequence[Any]],
        digits: np.ndarray,
        fixed: Mapping[str, Any],
        cache: dict[Any, Any] | None = None,
        derived: Mapping[str, tuple[tuple[str, ...], Callable[..., Any]]] | None = None,
    ) -> None:
        self.dim_index = {n: i for i, n in enumerate(dim_names)}
        self.dim_values = [list(v) for v in dim_values]
        self.digits = digits
        self.n = digits.shape[1] if digits.ndim == 2 else 1
        self.fixed = fixed
        self.cache = cache if cache is not None else {}
        self.derived = dict(derived or {})
        self._indices: dict[tuple[tuple[int, int], ...], np.ndarray] = {}  # per block, not shared

    def raw(self, name: str) -> Any:
        if name in self.derived:
            deps, fn = self.derived[name]
            return self.table(deps, fn, key=("derived", name))
        i = self.dim_index.get(name)
        if i is None:
            return self.fixed.get(name)
        key = ("raw", name)
        arr = self.cache.get(key)
        if arr is None:
            arr = _as_array(self.dim_values[i])
            self.cache[key] = arr
        return arr[self.digits[i]]

    def table(self, names: Sequence[str], fn: Callable[..., Any], key: Any = None) -> Any:
        """`fn(*values)` for each point, computed once per combination of the swept fields in `names`."""
        names = tuple(names)
        cache_key = ("table", key if key is not None else (names, _fn_key(fn)))
        entry = self.cache.get(cache_key)
        if entry is None:
            entry = self._tabulate(names, fn)
            self.cache[cache_key] = entry
        axes, table = entry
        if not axes:
            return table
        return table[self._index(tuple(axes))]

    def _index(self, axes: tuple[tuple[int, int], ...]) -> np.ndarray:
        """Each point's row in a table over `axes`; tables over the same swept fields share it."""
        index = self._indices.get(axes)
        if index is None:
            index = np.zeros(self.n, dtype=np.int64)
            for i, radix in axes:
                index = index * radix + self.digits[i]
            self._indices[axes] = index
        return index

    def _base_dims(self, names: Sequence[str]) -> list[str]:
        """The swept dimensions that `names` read, derived fields expanded into their inputs."""
        out: list[str] = []
        for n in names:
            for d in self.derived[n][0] if n in self.derived else (n,):
                if d in self.dim_index and d not in out:
                    out.append(d)
        return out

    def _scalar(self, name: str, vals: Mapping[str, Any]) -> Any:
        if name in self.derived:
            deps, fn = self.derived[name]
            return fn(*[vals[d] if d in vals else self.fixed.get(d) for d in deps])
        return vals[name] if name in vals else self.fixed.get(name)

    def _tabulate(self, names: tuple[str, ...], fn: Callable[..., Any]) -> tuple[list[tuple[int, int]], Any]:
        base = self._base_dims(names)
        if not base:
            return [], fn(*[self._scalar(n, {}) for n in names])
        axes_values = [self.dim_values[self.dim_index[d]] for d in base]
        results = []
        for combo in itertools.product(*axes_values):
            vals = dict(zip(base, combo, strict=True))
            results.append(fn(*[self._scalar(n, vals) for n in names]))
        axes = [(self.dim_index[d], len(v)) for d, v in zip(base, axes_values, strict=True)]
        return axes, _as_array(results)

    # ---- resolved values used by the rules -------------------------------------------------------
    def value(self, name: str) -> Any:
        """The effective value: presets fill unset parallelism fields (as the launcher would)."""
        if name in RESOLVED_FIELDS:
            return self.resolved_table((name,), _identity, key=("value", name))
        return self.raw(name)

    def resolved_table(self, names: Sequence[str], fn: Callable[..., Any], key: Any) -> Any:
        """`fn(*effective values of names)` per point (presets filled in), once per combination."""
        deps = tuple(dict.fromkeys(d for n in names for d in resolved_deps(n)))

        def scalar(*v: Any) -> Any:
            values = dict(zip(deps, v, strict=True))
            return fn(*[resolve_scalar(n, values) if n in RESOLVED_FIELDS else values.get(n) for n in names])

        return self.table(deps, scalar, key=("resolved-table", key))

    def num(self, name: str, default: int = 1) -> Any:
        if name in RESOLVED_FIELDS:  # default the small table, not every point
            return self.resolved_table((name,), lambda v, _d=default: _d if v is None else v,
                                       key=("num", name, default))
        v = self.value(name)
        if isinstance(v, np.ndarray):
            if v.dtype == object:
                return np.array([default if x is None else x for x in v], dtype=np.int64)
            return v
        return default if v is None else v

    def feature(self, name: str, fn: Callable[[Any], Any]) -> Any:
        """A feature of one field's effective value (string parsing etc.), computed once per distinct value."""
        if name in RESOLVED_FIELDS:
            return self.resolved_table((name,), fn, key=("feature", name, _fn_key(fn)))
        return self.table((name,), fn, key=("feature", name, _fn_key(fn)))


def _fn_key(fn: Callable[..., Any]) -> Any:
    """A cache key for a feature function: rules build their lambdas anew on every block, so the function
    object itself would miss the cache (and grow it) every time; its code and bound defaults do not change."""
    code = getattr(fn, "__code__", None)
    if code is None or getattr(fn, "__closure__", None):
        return fn
    return (code, getattr(fn, "__defaults__", None))


def _identity(value: Any) -> Any:
    return value


def resolved_deps(name: str) -> tuple[str, ...]:
    """The fields the effective value of `name` depends on."""
    return (name, *PRESET_KEYS, *_EXTRA_DEPS.get(name, ())) if name in RESOLVED_FIELDS else (name,)


def _as_array(values: Sequence[Any]) -> np.ndarray:
    if values and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        return np.asarray(values, dtype=np.int64)
    if values and all(isinstance(v, (bool, np.bool_)) for v in values):
        return np.asarray(values, dtype=bool)
    if values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return np.asarray(values, dtype=np.float64)
    arr = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        arr[i] = v
    return arr


@dataclass(frozen=True)
class Rule:
    """A named rule: `check(columns)` is True where a point is valid; `message` says why it is not."""

    name: str
    message: str
    check: Callable[[Columns], Any]
    source: str = "megatron-bridge"
    fields: tuple[str, ...] = ()  # the values that decide it, shown when explaining a pruned point

