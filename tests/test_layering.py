"""The house's shape, enforced: each layer imports only the layers below it, and no module grows past 500 lines.

The layers (bottom first) are listed in `dse/__init__.py`'s docstring; this test is their contract. Imports
under `if TYPE_CHECKING:` are for annotations only and are not counted (they never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

LAYERS: list[tuple[str, ...]] = [
    ("dse.errors", "dse.trial", "dse.hashing", "dse.expressions", "dse.cmd_args", "dse.timelimit",
     "dse.tomlwrite", "dse.agent_names"),
    ("dse.megatron",),
    ("dse.simulator",),
    ("dse.metrics",),
    ("dse.storage",),
    ("dse.workloads",),
    ("dse.spec",),
    ("dse.space",),
    ("dse.analysis",),
    ("dse.engine",),
    ("dse.agents",),
    ("dse.envs",),
    ("dse.export",),  # W&B / MLflow loggers: the engine's trial observers, above it so that it cannot import them
    ("dse.cli", "dse.api", "dse.completion", "dse"),  # the CLI composes the engine with the agents; `dse/__init__` re-exports lazily
]
MAX_LINES = 500


def _module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[0] in ("agents", "envs"):  # installed as dse.agents / dse.envs (setuptools package-dir)
        parts = ["dse", *parts]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _sources() -> list[Path]:
    return sorted([*REPO.glob("dse/**/*.py"), *REPO.glob("agents/**/*.py"), *REPO.glob("envs/**/*.py")])


def _layer_of(module: str) -> int:
    best, depth = -1, -1
    for i, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and name.count(".") > depth:
                best, depth = i, name.count(".")
    if best < 0:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS (and to dse/__init__'s docstring)")
    return best


def _runtime_imports(tree: ast.Module, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, imported module) for every import that runs (not under `if TYPE_CHECKING:`)."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for n in ast.walk(node))
    out = []
    package = module if is_package or "." not in module else module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the package
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            out.append((node.lineno, target))
            if target == "dse":  # `from dse import plots` imports dse.plots
                out += [(node.lineno, f"dse.{a.name}") for a in node.names]
    return [(line, name) for line, name in out if name == "dse" or name.startswith("dse.")]


def test_every_source_module_is_in_a_layer() -> None:
    for path in _sources():
        _layer_of(_module_name(path))


def test_each_layer_imports_only_the_layers_below_it() -> None:
    problems = []
    for path in _sources():
        module = _module_name(path)
        own = _layer_of(module)
        for line, target in _runtime_imports(ast.parse(path.read_text()), module, path.name == "__init__.py"):
            if target == "dse" and module != "dse":
                problems.append(f"{path.relative_to(REPO)}:{line}: imports the top-level `dse` facade")
                continue
            if target == "dse":
                continue
            if _layer_of(target) > own:
                problems.append(f"{path.relative_to(REPO)}:{line}: {module} ({LAYERS[own][0]}) imports {target} "
                                f"({LAYERS[_layer_of(target)][0]}), a layer above it")
    assert not problems, "\n".join(problems)


def test_no_module_outside_a_package_imports_its_private_modules() -> None:
    """Another package's `_private` modules are reached through its facade (`from dse.space import ...`)."""
    problems = []
    for path in _sources():
        module = _module_name(path)
        for line, target in _runtime_imports(ast.parse(path.read_text()), module, path.name == "__init__.py"):
            parts = target.split(".")
            private = next((i for i, p in enumerate(parts) if p.startswith("_")), None)
            if private is None:
                continue
            owner = ".".join(parts[:private])
            if not (module == owner or module.startswith(owner + ".")):
                problems.append(f"{path.relative_to(REPO)}:{line}: {module} imports {target}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(REPO)))
def test_no_module_is_over_500_lines(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(REPO)} has {lines} lines; split it by concept"


def test_the_layering_test_sees_a_violation() -> None:
    """The checker itself bites: an import of the engine from the spec layer is found."""
    tree = ast.parse("from dse.engine import TrialEngine\nif TYPE_CHECKING:\n    from dse.cli import main\n")
    found = _runtime_imports(tree, "dse.spec._load")
    assert found == [(1, "dse.engine")]
    assert _layer_of("dse.engine") > _layer_of("dse.spec._load")
    relative = ast.parse("from ._base import Agent\nfrom .. import cli\n")
    assert _runtime_imports(relative, "dse.agents", is_package=True) == [(1, "dse.agents._base"), (2, "dse"),
                                                                         (2, "dse.cli")]
    assert _runtime_imports(relative, "dse.agents._grid")[0] == (1, "dse.agents._base")
