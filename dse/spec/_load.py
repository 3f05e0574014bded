"""Reading a sweep: a test TOML, or a scenario naming a test, plus a system TOML -> one validated `Sweep`."""

from __future__ import annotations

import difflib
import tomllib
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from dse.cmd_args import CmdArgsModel, UnknownFieldWarning
from dse.errors import InputError
from dse.megatron import MegatronBridgeCmdArgs
from dse.spec._system import Scenario, SystemConfig
from dse.spec._test import TestDefinition, _FieldError, _PrefixedError
from dse.workloads import Workload, workload_class


@dataclass
class Sweep:
    """A validated sweep: one test definition plus where its TOML came from and the system to run on."""

    test: TestDefinition
    source: Path
    system: SystemConfig = field(default_factory=SystemConfig)
    system_source: Path | None = None
    scenario_name: str | None = None
    test_id: str | None = None

    @property
    def name(self) -> str:
        return self.scenario_name or self.test.name

    @property
    def workload(self) -> str:
        return self.test.test_template_name

    @property
    def kind(self) -> type[Workload]:
        """The workload's registry entry: its cmd_args model, rules, and whether it is simulated."""
        return workload_class(self.workload)

    def cmd_args_model(self) -> CmdArgsModel:
        """The cmd_args as their workload's pydantic model (defaults filled in)."""
        return self.kind.cmd_args_model.model_validate(self.test.cmd_args)


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file; a syntax error is one InputError line naming the line."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise InputError("file not found", file=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read: {exc}", file=str(path)) from None
    try:
        data = tomllib.loads(text)
    except RecursionError:
        raise InputError(f"nesting too deep (arrays or tables more than {MAX_TOML_DEPTH} levels deep)",
                         file=str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        where = "toml"
        if "(at line" in msg:
            msg, _, pos = msg.partition("(at ")
            where = pos.rstrip(")").split(",")[0]
        elif "(at end of document)" in msg:
            msg = msg.replace("(at end of document)", "at end of file")
            where = f"line {max(1, len(text.splitlines()))}"
        raise InputError(f"TOML syntax error: {msg.strip()}", file=str(path), field=where) from None
    too_deep = _too_deep(data)
    if too_deep is not None:
        raise InputError(f"nesting too deep (arrays or tables more than {MAX_TOML_DEPTH} levels deep)",
                         file=str(path), field=(too_deep if len(too_deep) <= 60 else too_deep[:57] + "...") or None)
    return data


MAX_TOML_DEPTH = 64  # what the validators, the space and the hashing walk recursively


def _too_deep(data: Any) -> str | None:
    """The path of the first value nested more than MAX_TOML_DEPTH levels deep, else None (no recursion)."""
    stack: list[tuple[Any, str, int]] = [(data, "", 0)]
    while stack:
        value, where, depth = stack.pop()
        if depth > MAX_TOML_DEPTH:
            return where
        if isinstance(value, dict):
            stack.extend((v, f"{where}.{k}" if where else str(k), depth + 1) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value))
    return None


def _validation_to_input_error(exc: Exception, file: Path, prefix: str = "") -> InputError:
    """Turn a pydantic or field error into one line naming the first bad field."""
    if isinstance(exc, ValidationError):
        errors = exc.errors()
        first = errors[0]
        inner = first.get("ctx", {}).get("error") if isinstance(first.get("ctx"), dict) else None
        if isinstance(inner, (_FieldError, _PrefixedError)):
            return _validation_to_input_error(inner, file, prefix)
        loc = [str(p) for p in first["loc"] if not _is_union_tag(p)]
        field_path = _join_loc([prefix, *loc] if prefix else loc)
        msg = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            msg = "unknown field"
            parent_model = _PARENT_FIELDS.get(".".join(loc[:-1]), [])
            close = difflib.get_close_matches(loc[-1], parent_model, n=1) if parent_model else []
            if close:
                msg += f" (did you mean '{close[0]}'?)"
        elif first["type"] == "missing":
            msg = "required field is missing"
        elif "input" in first and first["type"] not in ("value_error",):
            msg += f" (got {first['input']!r})"
        more = len(errors) - 1
        if more > 0:
            msg += f" (and {more} more problem{'s' if more > 1 else ''})"
        return InputError(msg, file=str(file), field=field_path or None)
    if isinstance(exc, _PrefixedError):
        return _validation_to_input_error(exc.exc, file, _join_loc([prefix, exc.prefix]))
    if isinstance(exc, _FieldError):
        return InputError(exc.message, file=str(file), field=_join_loc([prefix, exc.field_path]))
    return InputError(str(exc), file=str(file))


_PARENT_FIELDS: dict[str, list[str]] = {}


def _is_union_tag(part: Any) -> bool:
    return isinstance(part, str) and (part.startswith(("list[", "function-")) or part in ("int", "str", "bool", "float"))


def _join_loc(parts: list[str]) -> str:
    out = ""
    for p in parts:
        if not p:
            continue
        if p.isdigit():
            out += f"[{p}]"
        else:
            out += ("." if out else "") + p
    return out


def _build_test(data: dict[str, Any], file: Path, prefix: str = "") -> TestDefinition:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnknownFieldWarning)
        try:
            test = TestDefinition.model_validate(data)
        except (ValidationError, _FieldError, _PrefixedError) as exc:
            raise _validation_to_input_error(exc, file, prefix) from None
    for w in caught:
        if issubclass(w.category, UnknownFieldWarning):
            warnings.warn(f"{file}: {prefix + '.' if prefix else ''}{w.message}", UnknownFieldWarning, stacklevel=3)
    return test


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def _find_test_toml(name: str, tests_dir: Path | None, scenario_file: Path) -> tuple[dict[str, Any], Path]:
    if tests_dir is None:
        raise InputError(
            f"names test '{name}'; pass --tests-dir DIR holding its TOML",
            file=str(scenario_file),
            field="Tests.test_name",
        )
    if not tests_dir.is_dir():
        raise InputError("--tests-dir is not a directory", file=str(tests_dir))
    names = []
    for path in sorted(tests_dir.glob("*.toml")):  # the folder itself, as CloudAI reads it
        try:
            data = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError):
            continue
        if data.get("name") == name and "test_template_name" in data:
            return data, path
        if "test_template_name" in data and isinstance(data.get("name"), str):
            names.append(data["name"])
    close = difflib.get_close_matches(name, names, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise InputError(
        f"no test named '{name}' in {tests_dir}{hint}", file=str(scenario_file), field="Tests.test_name"
    )


def load_system(path: Path | str | None) -> SystemConfig:
    """The system TOML, or the embedded default (this machine, submitit's local executor)."""
    if path is None:
        return SystemConfig()
    path = Path(path)
    data = read_toml(path)
    try:
        return SystemConfig.model_validate(data)
    except ValidationError as exc:
        raise _validation_to_input_error(exc, path) from None


def load_sweep(
    path: Path | str,
    *,
    system: Path | str | None = None,
    tests_dir: Path | str | None = None,
    test_id: str | None = None,
) -> Sweep:
    """Load a test TOML or a scenario TOML (tests by `test_name` in `tests_dir`, or inline)."""
    path = Path(path)
    data = read_toml(path)
    sys_cfg = load_system(system)
    sys_path = Path(system) if system else None
    tdir = Path(tests_dir) if tests_dir else None
    if "Tests" in data:
        return _load_scenario(data, path, sys_cfg, sys_path, tdir, test_id)
    if "test_template_name" not in data:
        raise InputError(
            "neither a test (needs test_template_name) nor a scenario (needs [[Tests]])",
            file=str(path),
            field="test_template_name",
        )
    test = _build_test(data, path)
    return Sweep(test=test, source=path, system=sys_cfg, system_source=sys_path)


_SCENARIO_RUN_KEYS = ("id", "test_name", "num_nodes", "time_limit")


def _load_scenario(
    data: dict[str, Any],
    path: Path,
    sys_cfg: SystemConfig,
    sys_path: Path | None,
    tests_dir: Path | None,
    test_id: str | None,
) -> Sweep:
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        raise _validation_to_input_error(exc, path) from None
    entries = scenario.Tests
    if test_id is not None:
        entries = [t for t in entries if t.id == test_id]
        if not entries:
            ids = ", ".join(t.id for t in scenario.Tests)
            raise InputError(f"no test with id '{test_id}'; ids here: {ids}", file=str(path), field="Tests.id")
    if len(entries) > 1:
        ids = ", ".join(t.id for t in entries)
        raise InputError(
            f"dse sweeps one test per run and this scenario has {len(entries)} ({ids}); pick one with --test ID",
            file=str(path),
            field="Tests",
        )
    entry = entries[0]
    index = scenario.Tests.index(entry)
    inline = dict(entry.model_extra or {})
    if entry.test_name:
        base, _ = _find_test_toml(entry.test_name, tests_dir, path)
        merged = _deep_merge(base, inline)
    else:
        merged = inline
        if "test_template_name" not in merged:
            raise InputError(
                "needs test_name (a test in --tests-dir) or an inline test with test_template_name",
                file=str(path),
                field=f"Tests[{index}]",
            )
    if entry.num_nodes is not None:
        merged["num_nodes"] = entry.num_nodes
    if entry.time_limit is not None:
        merged["time_limit"] = entry.time_limit
    test = _build_test(merged, path, prefix=f"Tests[{index}]")
    return Sweep(
        test=test,
        source=path,
        system=sys_cfg,
        system_source=sys_path,
        scenario_name=scenario.name,
        test_id=entry.id,
    )


_PARENT_FIELDS[""] = list(TestDefinition.model_fields) + list(SystemConfig.model_fields)
_PARENT_FIELDS["cmd_args"] = list(MegatronBridgeCmdArgs.model_fields)  # the field names a typo is matched with
