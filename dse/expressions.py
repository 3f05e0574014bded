"""User constraints: a small, safe expression language over cmd_args names.

`constraints = ["gb % (mb * (gpus // (tp * pp))) == 0", "tp * cp <= 8"]` in a test TOML. Parsed with
`ast` against a whitelist (arithmetic, comparisons, and/or/not, `in`, min/max/abs, constants); never
`eval`. Evaluation works on scalars and on numpy arrays alike, so the space can check a whole block of
points at once. A division or modulo by zero makes the point invalid rather than raising.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from dse.errors import InputError

_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_DIVISIONS = (ast.Div, ast.FloorDiv, ast.Mod)
_CMPOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}
_FUNCS = {"min", "max", "abs"}
MAX_LENGTH = 2000


@dataclass(frozen=True)
class Expression:
    """A parsed constraint; `names` are the (dotted) names it reads."""

    text: str
    tree: ast.Expression
    names: frozenset[str]

    def evaluate(self, env: Mapping[str, Any]) -> Any:
        """Truth value(s) of the expression; arrays in `env` give an array of booleans."""
        bad: list[Any] = []
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            try:
                value = _Evaluator(env, bad).visit(self.tree.body)
            except (TypeError, ValueError, OverflowError, ZeroDivisionError) as exc:
                raise InputError(f"cannot evaluate '{self.text}': {exc}", field="constraints") from None
        result = np.asarray(value).astype(bool) if not isinstance(value, bool) else value
        for mask in bad:
            result = np.logical_and(result, np.logical_not(mask))
        if isinstance(result, np.ndarray) and result.ndim == 0:
            return bool(result)
        return result


def parse_expression(text: str) -> Expression:
    """Parse and whitelist-check `text`; any problem is an InputError naming what is not allowed."""
    if not isinstance(text, str) or not text.strip():
        raise InputError("an empty constraint", field="constraints")
    if len(text) > MAX_LENGTH:
        raise InputError(f"a constraint longer than {MAX_LENGTH} characters", field="constraints")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError) as exc:
        msg = getattr(exc, "msg", None) or str(exc)
        raise InputError(f"'{text}' is not a valid expression: {msg}", field="constraints") from None
    names: set[str] = set()
    try:
        _check(tree.body, names)
    except RecursionError:
        raise InputError(f"'{text}' nests too deeply", field="constraints") from None
    return Expression(text=text, tree=tree, names=frozenset(names))


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def _refuse(node: ast.AST, what: str) -> InputError:
    return InputError(f"{what} is not allowed in a constraint (at column {getattr(node, 'col_offset', 0) + 1})",
                      field="constraints")


def _check(node: ast.AST, names: set[str]) -> None:
    if isinstance(node, ast.BoolOp):
        for v in node.values:
            _check(v, names)
    elif isinstance(node, ast.UnaryOp):
        if not isinstance(node.op, (ast.Not, ast.USub, ast.UAdd)):
            raise _refuse(node, type(node.op).__name__)
        _check(node.operand, names)
    elif isinstance(node, ast.BinOp):
        if type(node.op) not in _BINOPS:
            raise _refuse(node, f"operator {type(node.op).__name__}")
        _check(node.left, names)
        _check(node.right, names)
    elif isinstance(node, ast.Compare):
        _check(node.left, names)
        for op, comp in zip(node.ops, node.comparators, strict=True):
            if isinstance(op, (ast.In, ast.NotIn)):
                if not isinstance(comp, (ast.List, ast.Tuple, ast.Set)):
                    raise _refuse(comp, "'in' with anything but a literal list")
            elif type(op) not in _CMPOPS:
                raise _refuse(node, f"comparison {type(op).__name__}")
            _check(comp, names)
    elif isinstance(node, ast.Call):
        fname = node.func.id if isinstance(node.func, ast.Name) else None
        if fname not in _FUNCS or node.keywords:
            raise _refuse(node, f"calling {ast.unparse(node.func)}")
        if not node.args or (fname == "abs" and len(node.args) != 1):
            raise _refuse(node, f"{fname}() with {len(node.args)} arguments")
        for a in node.args:
            _check(a, names)
    elif isinstance(node, (ast.Name, ast.Attribute)):
        dotted = _dotted(node)
        if dotted is None:
            raise _refuse(node, "attribute access on an expression")
        if dotted in _FUNCS or any(part.startswith("_") for part in dotted.split(".")):
            raise _refuse(node, f"name '{dotted}'")
        names.add(dotted)
    elif isinstance(node, ast.Constant):
        if not isinstance(node.value, (int, float, str, bool)) and node.value is not None:
            raise _refuse(node, f"constant {node.value!r}")
    elif isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        for elt in node.elts:
            if not isinstance(elt, ast.Constant):
                raise _refuse(elt, "a non-constant list element")
            _check(elt, names)
    elif isinstance(node, ast.IfExp):
        for part in (node.test, node.body, node.orelse):
            _check(part, names)
    else:
        raise _refuse(node, type(node).__name__)


class _Evaluator(ast.NodeVisitor):
    def __init__(self, env: Mapping[str, Any], bad: list[Any]) -> None:
        self.env = env
        self.bad = bad

    def visit_BoolOp(self, node: ast.BoolOp) -> Any:
        values = [self.visit(v) for v in node.values]
        fn = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
        out = values[0]
        for v in values[1:]:
            out = fn(out, v)
        return out

    def visit_UnaryOp(self, node: ast.UnaryOp) -> Any:
        v = self.visit(node.operand)
        if isinstance(node.op, ast.Not):
            return np.logical_not(v)
        return -v if isinstance(node.op, ast.USub) else +v

    def visit_BinOp(self, node: ast.BinOp) -> Any:
        left, right = self.visit(node.left), self.visit(node.right)
        if isinstance(node.op, _DIVISIONS):
            zero = np.equal(right, 0)
            if np.any(zero):
                self.bad.append(zero)
                right = np.where(zero, 1, right)
        if isinstance(node.op, ast.Pow) and np.any(np.abs(np.asarray(right, dtype=float)) > 64):
            raise ValueError("exponent larger than 64")
        return _BINOPS[type(node.op)](left, right)

    def visit_Compare(self, node: ast.Compare) -> Any:
        left = self.visit(node.left)
        result: Any = True
        for op, comp in zip(node.ops, node.comparators, strict=True):
            if isinstance(op, (ast.In, ast.NotIn)):
                options = [e.value for e in comp.elts]  # type: ignore[attr-defined]
                res = np.isin(np.asarray(left, dtype=object), np.asarray(options, dtype=object))
                if isinstance(op, ast.NotIn):
                    res = np.logical_not(res)
                right = left
            else:
                right = self.visit(comp)
                res = _CMPOPS[type(op)](left, right)
            result = np.logical_and(result, res)
            left = right
        return result

    def visit_Call(self, node: ast.Call) -> Any:
        fname = node.func.id  # type: ignore[attr-defined]
        args = [self.visit(a) for a in node.args]
        if fname == "abs":
            return np.abs(args[0])
        fn = np.minimum if fname == "min" else np.maximum
        out = args[0]
        for a in args[1:]:
            out = fn(out, a)
        return out

    def visit_IfExp(self, node: ast.IfExp) -> Any:
        return np.where(self.visit(node.test), self.visit(node.body), self.visit(node.orelse))

    def visit_Name(self, node: ast.Name) -> Any:
        return self._lookup(node.id)

    def visit_Attribute(self, node: ast.Attribute) -> Any:
        return self._lookup(_dotted(node) or "")

    def _lookup(self, name: str) -> Any:
        if name not in self.env:
            raise ValueError(f"unknown name '{name}'")
        value = self.env[name]
        if value is None:
            raise ValueError(f"'{name}' is not set")
        return value

    def visit_Constant(self, node: ast.Constant) -> Any:
        return node.value

    def generic_visit(self, node: ast.AST) -> Any:  # pragma: no cover - whitelist forbids others
        raise ValueError(f"{type(node).__name__} not allowed")
