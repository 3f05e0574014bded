"""Two sweeps at once on one cache database (separate processes, overlapping spaces): no corruption, no
lost row, no "database is locked"; afterwards each sweep is served entirely from the other's results."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from conftest import REPO, write_toml

from dse.analysis._table import load_trials


def _sweep(tmp_path: Path, name: str, values: str) -> Path:
    cmd = "echo '{{\"step-time\": {x}}}' > metrics.json"
    return write_toml(tmp_path / f"{name}.toml", f'name = "{name}"\ntest_template_name = "Command"\n'
                      f'[cmd_args]\ncommand = {json.dumps(cmd)}\nx = {values}\n')


def test_two_sweeps_share_one_cache(tmp_path: Path) -> None:
    cache = tmp_path / "cache.db"
    a = _sweep(tmp_path, "a", str(list(range(1, 21))))
    b = _sweep(tmp_path, "b", str(list(range(11, 31))))
    procs = [subprocess.Popen([sys.executable, "-m", "dse.cli", "run", str(s), "--out", str(tmp_path / "runs"),
                               "--cache", str(cache), "--parallel", "3", "--executor", "debug"],
                              cwd=REPO, env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for s in (a, b)]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, out + err
        assert "locked" not in err
    with sqlite3.connect(cache) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT COUNT(*) FROM cache").fetchone()[0] == 30  # the union, no lost row
    for s in (a, b):  # each sweep again: everything from the shared cache, no program runs
        r = subprocess.run([sys.executable, "-m", "dse.cli", "run", str(s), "--out", str(tmp_path / "again"),
                            "--cache", str(cache), "--executor", "debug"], cwd=REPO, env=os.environ.copy(),
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0
    runs = sorted((tmp_path / "again").iterdir())
    assert all(set(load_trials(r)["status"]) == {"cached"} for r in runs) and len(runs) == 2
