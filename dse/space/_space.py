"""The search space: dimensions from list-valued fields, lazy index <-> config, vectorised validity.

Every list-valued `cmd_args` field is a dimension (dotted path for nested tables), and so is a list in
`extra_env_vars` (`extra_env_vars.NAME`) and a list-valued scenario `num_nodes`. `dse_excluded_args`
removes fields by prefix (the list stays a literal value); `env_params` fields leave the agent's space
and are drawn by the environment. Nothing here materialises the product: an index is decoded by mixed
radix arithmetic, and rules are evaluated over numpy blocks of indices.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dse.errors import InputError
from dse.expressions import parse_expression
from dse.megatron import Columns, Rule, explain_pruning, expression_names, expression_rule
from dse.spec import Sweep
from dse.trial import TrialConfig, flatten

NUM_NODES = "num_nodes"
ENV_VAR_PREFIX = "extra_env_vars."
DEFAULT_BLOCK = 1 << 18
MAX_POINTS = 1 << 62  # indices are numpy int64: a larger product of dimensions cannot be indexed


@dataclass(frozen=True)
class Dimension:
    """One search dimension: a field path and its candidate values (in the TOML's order)."""

    path: str
    values: tuple[Any, ...]

    @property
    def kind(self) -> str:
        if self.path == NUM_NODES:
            return "num_nodes"
        return "env_var" if self.path.startswith(ENV_VAR_PREFIX) else "cmd_args"

    def index_of(self, value: Any) -> int:
        for i, v in enumerate(self.values):
            if v == value and type(v) is type(value):
                return i
        for i, v in enumerate(self.values):  # 2 == 2.0, "1" for an env var given as 1
            if v == value or str(v) == str(value):
                return i
        raise ValueError(f"{value!r} is not a value of {self.path} ({list(self.values)})")


class SearchSpace:
    """The cartesian product of dimensions, indexed lazily (first dimension varies slowest).

    At most MAX_POINTS (2**62) points: a larger product is refused with an InputError naming the dimension
    count and the size (its indices would not fit the int64 arrays the space is counted with)."""

    def __init__(self, dimensions: Sequence[Dimension]) -> None:
        self.dimensions = tuple(dimensions)
        self.radices = tuple(len(d.values) for d in self.dimensions)
        self.size = math.prod(self.radices)  # 1 for a space without dimensions: one point
        if self.size > MAX_POINTS:
            raise InputError(
                f"{len(self.dimensions)} dimensions make a space of {self.size:.3g} points, more than the 2**62 "
                f"({MAX_POINTS:.3g}) dse can index; sweep fewer dimensions or fewer values "
                "(dse_excluded_args keeps a list as a literal)",
                field="cmd_args",
            )
        strides = []
        acc = 1
        for r in reversed(self.radices):
            strides.append(acc)
            acc *= r
        self.strides = tuple(reversed(strides))

    @property
    def names(self) -> list[str]:
        return [d.path for d in self.dimensions]

    def __len__(self) -> int:
        return self.size

    def _check_index(self, index: int) -> int:
        if not 0 <= int(index) < self.size:
            raise IndexError(f"index {index} outside a space of {self.size} points")
        return int(index)

    def digits(self, indices: np.ndarray) -> np.ndarray:
        """Per-dimension value positions of each index: shape (len(dimensions), len(indices))."""
        idx = np.asarray(indices, dtype=np.int64)
        out = np.empty((len(self.dimensions), idx.size), dtype=np.int64)
        for i, (radix, stride) in enumerate(zip(self.radices, self.strides, strict=True)):
            out[i] = (idx // stride) % radix
        return out

    def neighbours(self, indices: np.ndarray) -> np.ndarray:
        """Sorted distinct points that differ from one of `indices` in exactly one dimension (Hamming distance 1),
        the originals excluded: where a search looks next to a point it cannot use."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size == 1:  # the common case, in plain Python: numpy's per-call cost dominates at this size
            index = int(idx[0])
            one: list[int] = []
            for radix, stride in zip(self.radices, self.strides, strict=True):
                base = index - (index // stride) % radix * stride
                one.extend(base + k * stride for k in range(radix) if base + k * stride != index)
            return np.sort(np.array(one, dtype=np.int64))
        idx = np.unique(idx)
        digits = self.digits(idx)
        shifts = np.concatenate(
            [(np.arange(radix, dtype=np.int64)[None, :] - digits[i][:, None]) * stride
             for i, (radix, stride) in enumerate(zip(self.radices, self.strides, strict=True))]
            or [np.zeros((idx.size, 0), dtype=np.int64)],
            axis=1,
        )
        out = np.unique((idx[:, None] + shifts)[shifts != 0])
        return out[~np.isin(out, idx)]

    def decode(self, index: int) -> dict[str, Any]:
        """Index -> action `{path: value}`."""
        index = self._check_index(index)
        return {
            d.path: d.values[(index // stride) % radix]
            for d, radix, stride in zip(self.dimensions, self.radices, self.strides, strict=True)
        }

    def encode(self, action: Mapping[str, Any]) -> int:
        """Action `{path: value}` -> index; unknown or missing dimensions raise KeyError."""
        missing = [d.path for d in self.dimensions if d.path not in action]
        extra = [k for k in action if k not in {d.path for d in self.dimensions}]
        if missing or extra:
            raise KeyError(f"action does not match the space (missing {missing}, unknown {extra})")
        index = 0
        for d, radix in zip(self.dimensions, self.radices, strict=True):
            index = index * radix + d.index_of(action[d.path])
        return index

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for i in range(self.size):
            yield self.decode(i)


@dataclass
class SpaceCount:
    """How big the space is and what the rules pruned (a point may break several rules)."""

    total: int
    valid: int
    pruned: dict[str, int] = field(default_factory=dict)
    example: dict[str, int] = field(default_factory=dict)  # rule -> the first agent index it prunes


def _set_path(d: dict[str, Any], path: str, value: Any) -> None:
    if path in d or "." not in path:
        d[path] = value  # a literal dotted key ("model.seq_length" = ...) stays literal
        return
    head, rest = path.split(".", 1)
    if not isinstance(d.get(head), dict):
        d[head] = {}
    _set_path(d[head], rest, value)


def _excluded(path: str, excluded: Sequence[str]) -> bool:
    return any(path == e or path.startswith(e + ".") for e in excluded)


class SweepSpace:
    """The sweep's space: the agent's dimensions, the env_params draws, and the rules over both."""

    def __init__(self, sweep: Sweep) -> None:
        self.sweep = sweep
        test = sweep.test
        file = str(sweep.source)
        flat = flatten(test.cmd_args)
        self.sweep_fields = frozenset(flat)  # the cmd_args fields the sweep itself writes
        excluded = list(test.dse_excluded_args)
        agent_dims: list[Dimension] = []
        env_dims: list[Dimension] = []
        for path, value in flat.items():
            if not isinstance(value, list) or _excluded(path, excluded):
                continue
            _check_distinct(path, value, file)
            dim = Dimension(path, tuple(value))
            (env_dims if path in test.env_params else agent_dims).append(dim)
        for name, value in test.extra_env_vars.items():
            path = ENV_VAR_PREFIX + name
            if isinstance(value, list) and not _excluded(path, excluded):
                _check_distinct(path, value, file)
                agent_dims.append(Dimension(path, tuple(value)))
        if isinstance(test.num_nodes, list):
            _check_distinct(NUM_NODES, test.num_nodes, file)
            agent_dims.append(Dimension(NUM_NODES, tuple(test.num_nodes)))
        try:  # a space too large to index is refused here, naming the sweep file
            self.agent = SearchSpace(agent_dims)
            self.env = SearchSpace(env_dims)
            SearchSpace(agent_dims + env_dims)
        except InputError as exc:
            raise exc.with_file(file) from None
        self.env_weights: dict[str, list[float] | None] = {
            d.path: test.env_params[d.path].weights for d in env_dims
        }
        self._full_dims = agent_dims + env_dims
        self.fixed = self._fixed_values(flat)
        self.derived = self._derived()
        self.rules: list[Rule] = list(sweep.kind.rules())
        known = expression_names(self.fixed, [d.path for d in self._full_dims])
        for i, text in enumerate(test.constraints):
            expr = parse_expression(text)
            unknown = sorted(n for n in expr.names if n not in known)
            if unknown:
                raise InputError(
                    f"unknown name '{unknown[0]}' in '{text}'; names include tp, pp, cp, vp, ep, et, mb, gb, "
                    "gpus, nodes, dp and any cmd_args field",
                    file=file,
                    field=f"constraints[{i}]",
                )
            self.rules.append(expression_rule(i, expr))
        self._cache: dict[Any, Any] = {}
        self._valid_cache: np.ndarray | None = None
        self._probe_rules(file)

    # ---- values --------------------------------------------------------------------------------
    def _fixed_values(self, flat: Mapping[str, Any]) -> dict[str, Any]:
        """Scalar values of every field that is not a dimension (model defaults for unset fields)."""
        model_cls = self.sweep.kind.cmd_args_model
        fixed: dict[str, Any] = {k: v.default for k, v in model_cls.model_fields.items()}
        fixed.update(flat)
        gpn = fixed.get("gpus_per_node") or self.sweep.system.gpus_per_node
        if gpn is None:
            gpn = self.sweep.kind.default_gpus_per_node or max(1, int(fixed.get("num_gpus") or 1))
        fixed["gpus_per_node"] = gpn
        nodes = self.sweep.test.num_nodes
        fixed[NUM_NODES] = nodes if isinstance(nodes, int) else None
        for name, value in self.sweep.test.extra_env_vars.items():
            fixed[ENV_VAR_PREFIX + name] = value
        return fixed

    def _derived(self) -> dict[str, Any]:
        """A swept num_nodes sets the world size: num_gpus = num_nodes * gpus_per_node."""
        if NUM_NODES in self.agent.names and self.sweep.kind.megatron:
            return {"num_gpus": ((NUM_NODES, "gpus_per_node"), lambda n, g: int(n) * int(g))}
        return {}

    def _columns(self, full_indices: np.ndarray) -> Columns:
        full = SearchSpace(self._full_dims)
        return Columns(
            [d.path for d in self._full_dims],
            [d.values for d in self._full_dims],
            full.digits(full_indices),
            self.fixed,
            cache=self._cache,
            derived=self.derived,
        )

    def _probe_rules(self, file: str) -> None:
        """Evaluate every rule on one point so a broken expression fails at load time, not mid-count."""
        for rule in self.rules:
            try:
                rule.check(self._columns(np.zeros(1, dtype=np.int64)))
            except InputError as exc:
                raise InputError(exc.message, file=file, field=rule.name) from None

    # ---- validity ------------------------------------------------------------------------------
    def rule_masks(self, agent_indices: np.ndarray) -> dict[str, np.ndarray]:
        """Per rule, True where the agent point satisfies it under every env_params draw."""
        idx = np.asarray(agent_indices, dtype=np.int64)
        n_env = self.env.size
        full = (idx[:, None] * n_env + np.arange(n_env, dtype=np.int64)[None, :]).ravel()
        cols = self._columns(full)
        out: dict[str, np.ndarray] = {}
        for rule in self.rules:
            try:
                mask = np.broadcast_to(np.asarray(rule.check(cols), dtype=bool), full.shape)
            except InputError as exc:
                raise InputError(exc.message, file=str(self.sweep.source), field=rule.name) from None
            out[rule.name] = np.asarray(mask.reshape(idx.size, n_env).all(axis=1))
        return out

    def valid_mask(self, agent_indices: np.ndarray) -> np.ndarray:
        masks = self.rule_masks(agent_indices)
        result = np.ones(np.asarray(agent_indices).size, dtype=bool)
        for m in masks.values():
            result &= m
        return result

    def is_valid(self, index: int) -> bool:
        return bool(self.valid_among(np.array([index], dtype=np.int64))[0])

    def valid_among(self, agent_indices: np.ndarray) -> np.ndarray:
        """`valid_mask`, but a binary search in the held valid set where the space is small enough for one."""
        idx = np.asarray(agent_indices, dtype=np.int64)
        if self.agent.size > 1 << 20:
            return self.valid_mask(idx)
        pool = self.valid_indices()
        pos = np.minimum(np.searchsorted(pool, idx), max(pool.size - 1, 0))
        return (pool[pos] == idx) if pool.size else np.zeros(idx.size, dtype=bool)

    def violations(self, action: Mapping[str, Any], env: Mapping[str, Any] | None = None) -> list[Rule]:
        """The rules a concrete (action, env draw) point breaks; empty when it may be submitted."""
        a = self.agent.encode(action)
        e = self.env.encode(env or {}) if self.env.dimensions else 0
        cols = self._columns(np.array([a * self.env.size + e], dtype=np.int64))
        return [r for r in self.rules if not bool(np.asarray(r.check(cols), dtype=bool).reshape(-1)[0])]

    def count(self, block: int = DEFAULT_BLOCK) -> SpaceCount:
        """Total and valid points and per-rule pruning, in blocks (memory independent of the size)."""
        pruned = {r.name: 0 for r in self.rules}
        example: dict[str, int] = {}
        valid = 0
        step = max(1, block // max(1, self.env.size))
        for start in range(0, self.agent.size, step):
            idx = np.arange(start, min(start + step, self.agent.size), dtype=np.int64)
            masks = self.rule_masks(idx)
            ok = np.ones(idx.size, dtype=bool)
            for name, m in masks.items():
                broken = idx.size - int(m.sum())
                if broken and name not in example:
                    example[name] = int(idx[np.argmin(m)])
                pruned[name] += broken
                ok &= m
            valid += int(ok.sum())
        return SpaceCount(total=self.agent.size, valid=valid, pruned=pruned, example=example)

    def require_valid(self, count: SpaceCount | None = None) -> SpaceCount:
        """The count, or an InputError naming the rules that pruned every point."""
        count = count or self.count()
        if count.valid == 0:
            worst = sorted(((n, p) for n, p in count.pruned.items() if p), key=lambda x: -x[1])
            names = ", ".join(f"{n} ({p})" for n, p in worst[:5])
            rules = {r.name: r for r in self.rules}
            why = explain_pruning(self, rules[worst[0][0]], count.example.get(worst[0][0])) if worst else None
            raise InputError(f"no valid point in {count.total}: pruned by {names}" + (f"; {why}" if why else ""),
                             file=str(self.sweep.source), field="cmd_args")
        return count

    def iter_valid(self, start: int = 0, block: int = 4096) -> Iterator[int]:
        """Valid agent indices in stable order, lazily."""
        for s in range(start, self.agent.size, block):
            idx = np.arange(s, min(s + block, self.agent.size), dtype=np.int64)
            yield from (int(i) for i in idx[self.valid_mask(idx)])

    def valid_indices(self) -> np.ndarray:
        """All valid agent indices (materialised: for spaces small enough to hold, up to ~4M points)."""
        if self._valid_cache is None:
            parts = []
            for s in range(0, self.agent.size, DEFAULT_BLOCK):
                idx = np.arange(s, min(s + DEFAULT_BLOCK, self.agent.size), dtype=np.int64)
                parts.append(idx[self.valid_mask(idx)])
            self._valid_cache = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        return self._valid_cache

    def sample_valid(self, rng: np.random.Generator, exclude: set[int] | frozenset[int] = frozenset()) -> int | None:
        """A uniformly random valid index not in `exclude`, or None when none is left."""
        if self.agent.size <= 1 << 22:
            pool = self.valid_indices()
            if len(exclude) * 2 < pool.size:
                for _ in range(64):
                    i = int(pool[rng.integers(pool.size)])
                    if i not in exclude:
                        return i
            left = pool[~np.isin(pool, np.fromiter(exclude, dtype=np.int64, count=len(exclude)))]
            return int(left[rng.integers(left.size)]) if left.size else None
        for _ in range(256):
            cand = rng.integers(0, self.agent.size, size=1024)
            ok = cand[self.valid_mask(cand)]
            for i in ok:
                if int(i) not in exclude:
                    return int(i)
        for i in self.iter_valid():
            if i not in exclude:
                return i
        return None

    # ---- concrete configs ----------------------------------------------------------------------
    def resolve(self, action: Mapping[str, Any], env: Mapping[str, Any] | None = None) -> TrialConfig:
        """The concrete test config of one point: action and env draws laid over the base cmd_args."""
        test = self.sweep.test
        cmd_args = copy.deepcopy(test.cmd_args)
        env_vars: dict[str, str] = {
            k: v for k, v in test.extra_env_vars.items() if not isinstance(v, list)
        }
        for k, v in test.extra_env_vars.items():
            if isinstance(v, list) and _excluded(ENV_VAR_PREFIX + k, test.dse_excluded_args):
                env_vars[k] = ",".join(v)
        nodes = test.num_nodes if isinstance(test.num_nodes, int) else None
        for path, value in {**action, **(env or {})}.items():
            if path == NUM_NODES:
                nodes = int(value)
            elif path.startswith(ENV_VAR_PREFIX):
                env_vars[path[len(ENV_VAR_PREFIX):]] = str(value)
            else:
                _set_path(cmd_args, path, value)
        gpn = int(self.fixed["gpus_per_node"])
        if NUM_NODES in action and self.derived:
            cmd_args["num_gpus"] = int(action[NUM_NODES]) * gpn
        num_gpus = int(cmd_args.get("num_gpus") or self.fixed.get("num_gpus") or 1)
        if nodes is None:
            nodes = max(1, math.ceil(num_gpus / gpn))
        return TrialConfig(
            action=dict(action),
            env=dict(env or {}),
            cmd_args=cmd_args,
            extra_env_vars=env_vars,
            num_nodes=nodes,
            time_limit=test.time_limit or self.sweep.system.time_limit,
        )


def _check_distinct(path: str, values: list[Any], file: str) -> None:
    if not values:
        raise InputError("an empty list sweeps nothing", file=file, field=path)
    seen: list[Any] = []
    for v in values:
        if any(v == s and type(v) is type(s) for s in seen):
            raise InputError(f"lists {v!r} twice", file=file, field=_field_name(path))
        if isinstance(v, (dict, list)):
            raise InputError(f"a candidate must be a scalar, got {v!r}", file=file, field=_field_name(path))
        seen.append(v)


def _field_name(path: str) -> str:
    if path == NUM_NODES or path.startswith(ENV_VAR_PREFIX):
        return path
    return f"cmd_args.{path}"
