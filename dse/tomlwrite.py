"""A small TOML writer for the files dse writes (sweep.toml, best.toml): tables, scalars, lists."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ("nan" if math.isnan(v) else ("inf" if v > 0 else "-inf"))
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + "}"
    return json.dumps(str(v))


def _key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else json.dumps(k)


def dumps(data: Mapping[str, Any], header: str = "") -> str:
    """TOML text of `data` (None values are left out)."""
    lines = [f"# {ln}" for ln in header.splitlines()]
    _table(data, [], lines)
    return "\n".join(lines).strip() + "\n"


def _table(data: Mapping[str, Any], path: list[str], lines: list[str]) -> None:
    tables, arrays = [], []
    for k, v in data.items():
        if v is None:
            continue
        if isinstance(v, Mapping):
            tables.append((k, v))
        elif isinstance(v, list) and v and all(isinstance(x, Mapping) for x in v):
            arrays.append((k, v))
        else:
            lines.append(f"{_key(k)} = {_value(v)}")
    for k, items in arrays:
        for item in items:
            lines.append("")
            lines.append(f"[[{'.'.join(_key(p) for p in [*path, k])}]]")
            _table(item, [*path, k], lines)
    for k, v in tables:
        lines.append("")
        lines.append(f"[{'.'.join(_key(p) for p in [*path, k])}]")
        _table(v, [*path, k], lines)
