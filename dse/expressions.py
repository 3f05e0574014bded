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
MAX_DEPTH = 200  # nesting of the parsed expression: the evaluator recurses once per level
MAX_SEQUENCE = 10_000  # characters of a string (items of a list) an operation may build, per value
MAX_TOTAL = 10_000_000  # ... and over a whole block of points
MAX_INT_BITS = 1024  # bits of an integer a product or power may build (past a float's range: no use to a rule)


class _TooLarge(ValueError):
    """An operation would build a value too large to evaluate (memory, time)."""


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
            except (MemoryError, RecursionError) as exc:
                raise InputError(f"cannot evaluate '{self.text}': {type(exc).__name__}",
                                 field="constraints") from None
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
    depth = _depth(tree.body)
    if depth > MAX_DEPTH:
        raise InputError(f"'{_short(text)}' nests too deeply ({depth} levels, at most {MAX_DEPTH})",
                         field="constraints")
    names: set[str] = set()
    try:
        _check(tree.body, names)
    except RecursionError:
        raise InputError(f"'{_short(text)}' nests too deeply", field="constraints") from None
    try:
        _fold_constants(tree.body)
    except _TooLarge as exc:
        raise InputError(f"'{_short(text)}': {exc}", field="constraints") from None
    return Expression(text=text, tree=tree, names=frozenset(names))


def _short(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _depth(root: ast.AST) -> int:
    """Nesting depth of a tree, without recursion (a chain of 500 `not` must not exhaust the stack here)."""
    deepest, stack = 0, [(root, 1)]
    while stack:
        node, d = stack.pop()
        deepest = max(deepest, d)
        stack.extend((child, d + 1) for child in ast.iter_child_nodes(node)
                     if not isinstance(child, (ast.expr_context, ast.operator, ast.unaryop, ast.boolop, ast.cmpop)))
    return deepest


def _fold_constants(node: ast.AST) -> None:
    """Evaluate every operation on constants alone once, so that one too large to build (`'ab' * 99999999`,
    `'a' * 10**10`) is refused when the constraint is read; other errors are left to the evaluation."""
    if isinstance(node, (ast.BinOp, ast.UnaryOp, ast.Call)) and not any(
            isinstance(n, (ast.Name, ast.Attribute)) for n in ast.walk(node)):
        try:
            with np.errstate(all="ignore"):
                _Evaluator({}, []).visit(node)
        except _TooLarge:
            raise
        except Exception:  # noqa: BLE001 - a type error and the like is the evaluation's to report
            pass
        return
    for child in ast.iter_child_nodes(node):
        _fold_constants(child)


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
        if isinstance(node.op, ast.Pow):
            _check_power(left, right)
        elif isinstance(node.op, ast.Mult):
            _check_int_bits(_int_bits(left) + _int_bits(right))
        if isinstance(node.op, (ast.Mult, ast.Add)):
            _check_sequence(node.op, left, right)
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


def _int_bits(value: Any) -> int:
    """Bits of the largest Python integer in `value` (a scalar or an object array); 0 for anything else
    (numpy's fixed-size integers wrap around instead of growing)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return abs(value).bit_length()
    if isinstance(value, np.ndarray) and value.dtype.kind == "O":
        return max((abs(v).bit_length() for v in value.flat if isinstance(v, int) and not isinstance(v, bool)),
                   default=0)
    return 0


def _check_int_bits(bits: int) -> None:
    if bits > MAX_INT_BITS:
        raise _TooLarge(f"a number of about {bits:,} bits is too large (more than {MAX_INT_BITS:,})")


def _check_power(base: Any, exponent: Any) -> None:
    exponents = np.abs(np.asarray(exponent, dtype=float))
    if np.any(exponents > 64):
        raise ValueError("exponent larger than 64")
    bits = _int_bits(base)
    if bits > 1 and exponents.size:
        _check_int_bits(bits * int(exponents.max()))


def _lengths(value: Any) -> Any:
    """Length of each string, list or tuple in `value` (a scalar or an array); None when there is none."""
    if isinstance(value, (str, bytes, list, tuple)):
        return len(value)
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "US":
            return np.char.str_len(value)
        if value.dtype.kind == "O":
            lens = np.frompyfunc(lambda v: len(v) if isinstance(v, (str, bytes, list, tuple)) else -1, 1, 1)(value)
            lens = np.asarray(lens, dtype=np.int64)
            return lens if np.any(lens >= 0) else None
    return None


def _check_sequence(op: ast.operator, left: Any, right: Any) -> None:
    """Refuse `s * n` and `s + t` on strings or lists whose result would pass MAX_SEQUENCE (per value) or
    MAX_TOTAL (over an array of points), before building it."""
    left_len, right_len = _lengths(left), _lengths(right)
    if left_len is None and right_len is None:
        return
    if isinstance(op, ast.Add):
        if left_len is None or right_len is None:
            return  # not a concatenation: the operation raises a type error of its own
        size = np.add(np.maximum(left_len, 0), np.maximum(right_len, 0), dtype=np.float64)
    else:
        seq, times = (left_len, right) if left_len is not None else (right_len, left)
        try:
            count = np.asarray(times, dtype=np.float64)
        except (TypeError, ValueError):
            return  # a list times a string: the operation raises a type error of its own
        size = np.multiply(np.maximum(seq, 0), np.maximum(count, 0))
    size = np.asarray(size, dtype=np.float64)
    largest = float(size.max()) if size.size else 0.0
    if largest > MAX_SEQUENCE:
        raise _TooLarge(f"a string or list of {largest:,.0f} characters or items is too large "
                        f"(more than {MAX_SEQUENCE:,})")
    if float(size.sum()) > MAX_TOTAL:
        raise _TooLarge(f"strings or lists of {float(size.sum()):,.0f} characters or items in all are too large "
                        f"(more than {MAX_TOTAL:,})")
