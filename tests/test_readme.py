"""The README's commands work as written after its set-up (#16): every `dse` command and flag it shows exists,
the set-up's main job and its Python snippets run, and the commands of "Using it" run against that run."""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from dse.cli import build_parser

README = (REPO / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"^```(\w*)\n(.*?)^```", README, flags=re.S | re.M)
DEMO = "sweeps/demo_sim_qwen30b_h100.toml"


def _uncommented(line: str) -> str:
    return re.sub(r"(^|\s)#.*", "", line).strip()


def _dse_commands() -> list[str]:
    """Each `dse ...` command in the README's shell blocks (a `# comment` and a `$ ` prompt removed)."""
    out = []
    for lang, body in BLOCKS:
        if lang not in ("bash", ""):
            continue
        lines: list[str] = []
        for raw in body.splitlines():
            line = re.sub(r"^\$ ", "", _uncommented(raw))
            if raw.startswith(" ") and line.startswith("[") and lines:
                lines[-1] += " " + line  # a command's options continued on the next line
            else:
                lines.append(line)
        for line in lines:
            for part in line.split(";"):
                part = re.sub(r"^\S*/?\.venv/bin/", "", part.strip().split("&& ")[-1])
                if part.startswith("dse "):
                    out.append(part)
    return out


def _flags() -> dict[str, set[str]]:
    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return {name: {o for a in p._actions for o in a.option_strings} for name, p in sub.choices.items()}


def test_every_dse_command_and_flag_in_the_readme_exists() -> None:
    commands = _dse_commands()
    assert len(commands) >= 15, commands
    flags = _flags()
    wrong = []
    for line in commands:
        name = line.split()[1]
        if name not in flags:
            wrong.append(f"{line}: no command {name}")
            continue
        wrong += [f"{line}: {name} has no {f}" for f in re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", line)
                  if f not in flags[name]]
    assert wrong == []


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], Path]:
    """A fresh directory with the repository's sweeps, where the README's main job was run as written."""
    root = tmp_path_factory.mktemp("readme")
    (root / "sweeps").symlink_to(REPO / "sweeps")
    env = {**os.environ, "DSE_CACHE": str(root / "cache.db"), "PYTHONPATH": str(REPO)}
    setup = next(body for lang, body in BLOCKS if lang == "bash" and "dse run" in body).strip()
    main_job = setup.split("&& ")[-1]  # the install itself is what CI's own set-up just did
    assert main_job == f".venv/bin/dse run {DEMO} --parallel 4"
    r = _run(main_job.removeprefix(".venv/bin/"), root, env)
    assert r.returncode == 0, r.stdout + r.stderr
    (run_dir,) = (root / "runs").iterdir()
    return root, env, run_dir


def _run(command: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    argv = shlex.split(command)
    assert argv[0] == "dse"
    return subprocess.run([sys.executable, "-m", "dse.cli", *argv[1:]], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_the_using_it_commands_run_on_the_main_jobs_run(workspace: tuple[Path, dict[str, str], Path]) -> None:
    root, env, run_dir = workspace
    usage = next(body for lang, body in BLOCKS if lang == "bash" and "dse space   SWEEP.toml" in body)
    ran = []
    for line in usage.splitlines():
        line = _uncommented(line)
        for part in (p.strip() for p in line.split(";")):
            if not part.startswith("dse ") or part.split()[1] in ("run", "resume", "install", "export"):
                continue  # run: the fixture ran it; resume, install, export: the tests of the sweep, install, export
            words = [w.removesuffix("...") for w in re.sub(r"\[[^]]*\]", "", part).split()]
            command = " ".join(words).replace("SWEEP.toml", DEMO).replace("RUN_DIR", str(run_dir))
            r = _run(command, root, env)
            assert r.returncode == 0, f"{command}: {r.stderr}"
            ran.append(words[1])
    assert sorted(set(ran)) == ["agents", "best", "compare", "completion", "dry-run", "report", "space", "status",
                                "table"]


def test_the_readme_python_snippets_run(workspace: tuple[Path, dict[str, str], Path]) -> None:
    root, env, _ = workspace
    snippets = [body for lang, body in BLOCKS if lang == "python"]
    assert len(snippets) == 2
    for i, code in enumerate(snippets):
        r = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, f"snippet {i + 1}: {r.stderr[-2000:]}"
