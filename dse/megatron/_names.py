"""User constraint expressions as rules, and the names they may read (cmd_args fields and builtins)."""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping, Sequence
from typing import Any

from dse.expressions import Expression
from dse.megatron._columns import RESOLVED_FIELDS, Columns, Rule
from dse.megatron._rules import _dp


def expression_rule(index: int, expr: Expression) -> Rule:
    """A user constraint as a rule named `constraints[i]`."""

    def check(c: Columns) -> Any:
        env = _ExpressionEnv(c)
        return expr.evaluate(env)

    return Rule(f"constraints[{index}]", f"user constraint '{expr.text}'", check, "user", tuple(sorted(expr.names)))


BUILTIN_NAMES: dict[str, tuple[str, str]] = {
    "gpus": ("num_gpus", "builtin: the world size, cmd_args.num_gpus"),
    "nodes": ("num_nodes", "builtin: the trial's node count (num_nodes)"),
    "etp": ("et", "builtin: cmd_args.et"), "mbs": ("mb", "builtin: cmd_args.mb"),
    "gbs": ("gb", "builtin: cmd_args.gb"), "seq": ("seq_length", "builtin: cmd_args.seq_length"),
    "dp": ("dp", "builtin: the data-parallel size num_gpus // (tp * pp * cp)"),
}
"""Names expressions may use beyond the cmd_args fields. A cmd_args field of the same name wins."""


def bind_name(key: str, user_fields: Container[str]) -> tuple[str, bool]:
    """(field, is_builtin): what an expression name reads. The sweep's own field wins over a builtin."""
    if key in user_fields or key not in BUILTIN_NAMES:
        return key, False
    return BUILTIN_NAMES[key][0], True


def describe_names(names: Iterable[str], user_fields: Container[str], swept: Container[str],
                   resolved: bool) -> list[str]:
    """One phrase per name saying which meaning it got, for `dse space`."""
    out = []
    for key in sorted(names):
        field, builtin = bind_name(key, user_fields)
        if builtin:
            out.append(f"{key} = {BUILTIN_NAMES[key][1]}")
        elif key in swept:
            out.append(f"{key} = your swept field cmd_args.{key}")
        elif resolved and key in RESOLVED_FIELDS:
            out.append(f"{key} = cmd_args.{key} (the preset's value when unset)")
        else:
            shadow = f" (shadows the builtin {key})" if key in BUILTIN_NAMES else ""
            out.append(f"{key} = your field cmd_args.{key}{shadow}")
    return out


class _ExpressionEnv(Mapping[str, Any]):
    """Names an expression may read: cmd_args fields (resolved), plus the builtins gpus, nodes, dp, ..."""

    def __init__(self, c: Columns) -> None:
        self.c = c
        self.user = set(c.dim_index) | set(c.fixed) | set(c.derived)

    def __getitem__(self, key: str) -> Any:
        c = self.c
        name, builtin = bind_name(key, self.user)
        if builtin and name == "dp":
            return _dp(c)
        if name in RESOLVED_FIELDS or name == "num_gpus":
            return c.num(name) if name not in ("vp", "et") else c.num(name, 1)
        if name in self.user:
            return c.raw(name)
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        name, builtin = bind_name(key, self.user)
        return builtin or name in RESOLVED_FIELDS or name in self.user

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.user)

    def __len__(self) -> int:
        return len(self.user)


def expression_names(fixed: Mapping[str, Any], dims: Sequence[str]) -> list[str]:
    """Every name an expression may use, for error messages."""
    return sorted({*BUILTIN_NAMES, *RESOLVED_FIELDS, *fixed, *dims})

