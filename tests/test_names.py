"""A sweep's `name` names its run directory: whatever it holds, the directory is one safe name directly under
`--out` (never `..`, an absolute path or a hidden name); a blank, NUL-holding or overlong name is refused."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, write_toml
from hypothesis import given
from hypothesis import strategies as st

RUN_DIR = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*-\d{8}-\d{6}(-\d+)?$")


def dse(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dse.cli", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=180, env=os.environ.copy())


def _sweep(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    text = (f"name = {json.dumps(name, ensure_ascii=False)}\ntest_template_name = \"Command\"\n[cmd_args]\n"
            "command = \"echo '{{\\\"step-time\\\": {x}}}' > metrics.json\"\nx = [1]\n")
    return write_toml(folder / "sweep.toml", text)


def _tree(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


@pytest.mark.parametrize("name, prefix", [
    ("../../escape", "escape-"),
    ("a/../../b", "a_._._b-"),
    ("..", "sweep-"),
    (".hidden", "hidden-"),
    ("-dash", "dash-"),
    ("my sweep", "my_sweep-"),
    ("qwen30b_h100", "qwen30b_h100-"),
    ("emoji 🚀 run", "emoji_run-"),
    ("ABSOLUTE", "abs_target-"),
])
def test_run_dir_is_one_safe_name_under_out(tmp_path: Path, name: str, prefix: str) -> None:
    work = tmp_path / "a" / "b"
    out = work / "runs"
    if name == "ABSOLUTE":
        from dse.engine._sweep import safe_dir_name

        name = str(tmp_path / "abs_target")
        prefix = safe_dir_name(name) + "-"
    sweep = _sweep(work / "in", name)
    before = _tree(tmp_path)
    space = dse("space", str(sweep))
    assert space.returncode == 0, space.stderr
    r = dse("run", str(sweep), "--out", str(out), "--no-cache")
    assert r.returncode == 0, r.stdout + r.stderr
    (run,) = list(out.iterdir())
    assert run.parent == out and run.is_dir() and (run / "sweep.toml").is_file()
    assert RUN_DIR.match(run.name) and ".." not in run.name and run.name.startswith(prefix), run.name
    new = _tree(tmp_path) - before
    assert all(p == out or out in p.parents for p in new), sorted(map(str, new - _tree(out)))
    assert f"run dir: {run}" in r.stdout


@pytest.mark.parametrize("name, problem", [
    ("", "is empty"),
    ("   ", "is empty"),
    ("a\u0000b", "control character"),
    ("two\nlines", "control character"),
    ("x" * 101, "101 characters"),
])
@pytest.mark.parametrize("command", ["space", "run"])
def test_bad_name_is_refused(tmp_path: Path, name: str, problem: str, command: str) -> None:
    sweep = _sweep(tmp_path / "in", name)
    out = tmp_path / "runs"
    r = dse(command, str(sweep), *(["--out", str(out), "--no-cache"] if command == "run" else []))
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {sweep}: name: ") and problem in lines[0], r.stderr
    assert "\x00" not in r.stderr and not out.exists()


def test_long_but_allowed_name(tmp_path: Path) -> None:
    sweep = _sweep(tmp_path / "in", "n" * 100)
    assert dse("space", str(sweep)).returncode == 0


@given(st.text(max_size=300))
def test_safe_dir_name_is_always_one_plain_component(name: str) -> None:
    from dse.engine._sweep import safe_dir_name

    safe = safe_dir_name(name)
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", safe) and ".." not in safe and len(safe) <= 100
    assert Path(safe).name == safe and safe not in (".", "..")


def test_safe_dir_name_keeps_plain_names_and_drops_tokens() -> None:
    from dse.engine._sweep import safe_dir_name

    assert safe_dir_name("qwen30b_h100") == "qwen30b_h100"
    assert safe_dir_name("llama3-8b.v2") == "llama3-8b.v2"
    assert "hf_" not in safe_dir_name("run_hf_SECRETsecretSECRET0123456789abcdef")
