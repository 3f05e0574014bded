"""A local git repo holding the Megatron-Bridge stand-in (tests/standin_mbridge), cloned by tests through a
file:// URL exactly as dse clones the real Megatron-Bridge at its pinned tag.

After the tag comes one more commit whose setup_experiment.py only prints a marker and exits 9, so that a
test can tell the pinned tag was run and not the branch head.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

STANDIN_DIR = Path(__file__).resolve().parent / "standin_mbridge"
SETUP_SCRIPT = "scripts/performance/setup_experiment.py"
WRONG_VERSION = "STANDIN: WRONG VERSION (not the pinned tag)"
WRONG_VERSION_RC = 9
_WRONG_SCRIPT = f'''#!/usr/bin/env python3
"""Committed after the pinned tag on purpose: running this file means HEAD was run, not the tag."""
import sys

print({WRONG_VERSION!r}, flush=True)
sys.exit({WRONG_VERSION_RC})
'''


def _git(repo: Path, *args: str) -> str:
    cmd = ["git", "-c", "user.name=dse tests", "-c", "user.email=dse-tests@localhost", "-c", "init.defaultBranch=main",
           "-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false", *args]
    proc = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {repo}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def make_standin_repo(root: Path, tag: str = "v0.3.0-standin") -> tuple[str, str]:
    """Copy the stand-in into root/Megatron-Bridge, commit and tag it, then commit the wrong version on top.

    Returns (file:// URL of the repo, tag).
    """
    repo = (Path(root) / "Megatron-Bridge").resolve()
    shutil.copytree(STANDIN_DIR, repo, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    _git(repo, "init", "--quiet")
    _git(repo, "add", "-A")
    _git(repo, "commit", "--quiet", "-m", "Megatron-Bridge stand-in (dse tests)")
    _git(repo, "tag", "-a", tag, "-m", f"stand-in for Megatron-Bridge {tag}")
    (repo / SETUP_SCRIPT).write_text(_WRONG_SCRIPT)
    _git(repo, "commit", "--quiet", "-am", "after the tag: wrong version (must never be run)")
    return f"file://{repo}", tag
