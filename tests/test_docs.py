"""Every document the code cites lives in the repository, under docs/, and is cited by that path.

Scans the Python files of dse/, agents/, envs/, tests/ and benchmarks/ (plus scripts/ and README.md) for
citations: a `docs/...` path must exist from the repository root and a `§N` right after a document must
name one of its top-level sections; a `.md` that is not under docs/ (`reference/x.md`, `DESIGN.md`), the
shorthands `DESIGN §6` and `reference §4`, and paths into the shared folder beside the repository fail.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCANNED_DIRS = ("dse", "agents", "envs", "tests", "benchmarks")

# Paths inside other projects' repositories, cited as such: not documents of this one.
EXTERNAL = {"docs/performance-summary.md"}  # Megatron-Bridge's published performance table

_MD = re.compile(r"(?<![\w./-])[\w./-]*\.md\b")  # any markdown file name or path
_DOCS = re.compile(r"(?<![\w./-])docs/[\w./-]*[\w-]")  # any path under docs/
_SECTION = re.compile(r"(?<![\w./-])(docs/[\w./-]*\.md) §(\d+)")  # a document path, then its section
_DESIGN = re.compile(r"(?<!docs/)\bDESIGN\b")  # DESIGN.md or "DESIGN §6" without docs/
_SHORTHAND = re.compile(r"\breference\s+(?:[\w-]+\s+){0,2}§|\breference\s+[\w.-]+\.md")  # "reference §4"
_SHARED = re.compile(r"(?:\.\./|/work/)shared/|/work/main/")  # the folder beside the repo, or this machine


def _files() -> list[Path]:
    files = [p for d in SCANNED_DIRS for p in sorted((REPO / d).rglob("*.py")) if "__pycache__" not in p.parts]
    files += sorted((REPO / "scripts").glob("*.sh")) + [REPO / "README.md"]
    return [p for p in files if p.is_file() and p.resolve() != Path(__file__).resolve()]


def _top_sections(doc: Path) -> set[str]:
    return set(re.findall(r"^##\s+(\d+)\.", doc.read_text(encoding="utf-8"), flags=re.M))


def _problems(text: str) -> list[str]:
    found: list[str] = []
    for m in _MD.finditer(text):
        path = m.group()
        if path in EXTERNAL or (path.startswith("docs/") and (REPO / path).is_file()):
            continue
        if "/" not in path and (REPO / path).is_file():  # e.g. README.md at the root
            continue
        found.append(f"{path!r} is not a document under docs/")
    for m in _DOCS.finditer(text):
        path = m.group().rstrip(".")
        if path not in EXTERNAL and not (REPO / path).exists():
            found.append(f"{path!r} does not exist")
    for m in _SECTION.finditer(text):
        doc, section = REPO / m.group(1), m.group(2)
        if doc.is_file() and section not in _top_sections(doc):
            found.append(f"{m.group(1)} has no section {section}")
    found += [f"{m.group()!r}: cite docs/DESIGN.md" for m in _DESIGN.finditer(text)]
    found += [f"{m.group()!r}: name the document's docs/ path" for m in _SHORTHAND.finditer(text)]
    found += [f"{m.group()!r}: a path outside the repository" for m in _SHARED.finditer(text)]
    return found


def test_docs_folder_holds_the_cited_documents() -> None:
    for name in ("README.md", "DESIGN.md", "reference/megatron-bridge.md", "reference/cloudai-dse.md"):
        assert (REPO / "docs" / name).is_file(), name


def test_every_citation_names_an_existing_document_under_docs() -> None:
    bad = []
    for path in _files():
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            bad += [f"{path.relative_to(REPO)}:{lineno}: {p}" for p in _problems(line)]
    assert not bad, "citations of documents not in the repository:\n" + "\n".join(bad)


@pytest.mark.parametrize("text", [
    "(reference/megatron-bridge.md §3)", "(DESIGN.md §6)", "(DESIGN §6)", "docs/DESIGN §6",
    "(reference §4)", "(reference megatron-bridge.md §2c)", "(reference cloudai launch §3)",
    "docs/reference/nonexistent.md", "docs/reference/megatron-bridge.md §42", "../shared/DESIGN.md",
    "/work/shared/reference/local-slurm.md",
])
def test_bad_citations_are_caught(text: str) -> None:
    assert _problems(text)


@pytest.mark.parametrize("text", [
    "(docs/reference/megatron-bridge.md §3)", "(docs/DESIGN.md §6)", "docs/reference/cloudai-dse.md §3.1",
    "Megatron-Bridge `docs/performance-summary.md` at v0.3.0", "see README.md", "the reference x86 host",
])
def test_good_citations_pass(text: str) -> None:
    assert not _problems(text)
