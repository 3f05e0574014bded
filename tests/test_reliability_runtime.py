"""The machine fails, not the sweep (issue 13 #8, #11): a read-only run dir or cache, a full disk, a
refused submission. Each is one line and exit 2, nothing stored is lost, and `dse resume` finishes later.

Read-only is real: as root (CI) the commands run as the unprivileged user `nobody` (setpriv), for whom
root's folders are read-only; a full disk is the file-size limit (RLIMIT_FSIZE) of the process.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO, write_toml

from dse.analysis._table import load_trials

NOBODY = 65534


def _sweep(tmp_path: Path, values: str = "[1, 2, 3]") -> Path:
    cmd = json.dumps("echo '{{\"step-time\": {x}}}' > metrics.json")
    return write_toml(tmp_path / "s.toml", f'name = "s"\ntest_template_name = "Command"\nagent_metrics = ["step-time"]\n'
                      f"[cmd_args]\ncommand = {cmd}\nx = {values}\n")


def _dse(*args: str, as_nobody: bool = False, fsize: int | None = None, timeout: float = 180,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "dse.cli", *args]
    if as_nobody and os.geteuid() == 0:
        cmd = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *cmd]

    def limit() -> None:
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    full_env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **(env or {})}
    if as_nobody and os.geteuid() == 0:  # a home of its own, as a real user has (matplotlib writes its config)
        home = Path(tempfile.mkdtemp(prefix="dse-nobody-home-", dir="/tmp"))
        os.chown(home, NOBODY, NOBODY)
        full_env.setdefault("HOME", str(home))
        full_env["MPLCONFIGDIR"] = str(home / "mpl")
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=timeout, env=full_env,
                          preexec_fn=limit)


def _read_only(path: Path) -> None:
    """Read-only for the process that will use it: root's 0755 for `nobody`, or 0555 when not root."""
    for p in [path, *path.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
        if os.geteuid() != 0:
            p.chmod(0o555 if p.is_dir() else 0o444)


def _writable_by_nobody(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        for p in [path, *path.rglob("*")]:
            os.chown(p, NOBODY, NOBODY)


def _one_line(r: subprocess.CompletedProcess[str]) -> str:
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, (r.returncode, r.stderr)
    return lines[0]


@pytest.fixture
def tmp_path() -> Iterator[Path]:
    """A scratch folder `nobody` can reach (pytest's own are private to root)."""
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        pytest.fail("running as root needs setpriv (util-linux) to test read-only folders")
    path = Path(tempfile.mkdtemp(prefix="dse-ro-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_read_only_run_dir_is_read_and_not_written(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    assert _dse("run", str(_sweep(tmp_path)), "--out", str(out), "--no-cache", "--executor", "debug").returncode == 0
    (run,) = list(out.iterdir())
    _read_only(tmp_path)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    for args in (["status"], ["table"], ["table", "--format", "json"], ["best"], ["best", "--toml"]):
        r = _dse(*args, str(run), as_nobody=True)
        assert r.returncode == 0, (args, r.stderr)
    assert "completed: 3" in _dse("status", str(run), as_nobody=True).stdout
    for args in (["report"], ["resume"]):
        line = _one_line(_dse(*args, str(run), as_nobody=True))
        assert "Permission denied" in line or "read-only" in line, line
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before  # nothing changed or lost


def test_a_read_only_cache_costs_reuse_not_the_trials(tmp_path: Path) -> None:
    cache = tmp_path / "cache" / "cache.db"
    sweep = _sweep(tmp_path)
    assert _dse("run", str(sweep), "--out", str(tmp_path / "first"), "--cache", str(cache),
                "--executor", "debug").returncode == 0
    _read_only(tmp_path / "cache")
    out = tmp_path / "second"
    _writable_by_nobody(out)
    _writable_by_nobody(tmp_path / "home")
    sweep2 = _sweep(tmp_path, "[1, 2, 3, 4, 5]")  # 3 cached, 2 new results to write into a read-only cache
    r = _dse("run", str(sweep2), "--out", str(out), "--cache", str(cache), "--executor", "debug", as_nobody=True,
             env={"DSE_HOME": str(tmp_path / "home")})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "warning: the result cache could not be written" in r.stderr and "Traceback" not in r.stderr
    df = load_trials(next(out.iterdir()))
    assert sorted(df["status"]) == ["cached"] * 3 + ["completed"] * 2


def test_a_full_disk_stops_with_one_line_and_resume_finishes(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    sweep = _sweep(tmp_path, "[" + ", ".join(str(x) for x in range(1, 41)) + "]")
    r = _dse("run", str(sweep), "--out", str(out), "--no-cache", "--executor", "debug", fsize=256 * 1024)
    line = _one_line(r)
    assert "dse run" in line and "resume" in line
    (run,) = list(out.iterdir())
    stored = load_trials(run)
    done = set(stored.loc[stored["status"] == "completed", "param.x"])
    assert 0 < len(stored) < 40
    r = _dse("resume", str(run))
    assert r.returncode == 0, r.stdout + r.stderr
    df = load_trials(run)
    assert len(df) == 40 and set(df["status"]) == {"completed"} and df["param.x"].is_unique
    assert done <= set(df["param.x"])  # nothing stored before the disk filled was lost


def test_a_refused_submission_is_one_line(tmp_path: Path) -> None:
    if shutil.which("sbatch") is None:
        pytest.skip("needs sbatch (the local Slurm cluster)")
    system = write_toml(tmp_path / "sys.toml", 'scheduler = "slurm"\ndefault_partition = "no_such_partition"\n')
    r = _dse("run", str(_sweep(tmp_path)), "--system", str(system), "--out", str(tmp_path / "o"), "--no-cache")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    line = r.stderr.strip().splitlines()[-1]  # sbatch's own error lines come before dse's one line
    assert line.startswith("error: dse run: the scheduler refused the job") and "partition" in line, line


def test_run_files_follow_the_umask_and_debris_of_a_killed_writer_goes(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    assert _dse("run", str(_sweep(tmp_path)), "--out", str(out), "--no-cache", "--executor", "debug").returncode == 0
    (run,) = list(out.iterdir())
    assert _dse("report", str(run)).returncode == 0
    modes = {p.name: p.stat().st_mode & 0o777 for p in run.iterdir() if p.is_file() and not p.name.startswith(".")}
    assert modes["report.html"] == modes["trials.csv"] == modes["sweep.toml"], modes
    (run / ".trials-abc123.csv").write_text("partial")  # what a writer killed mid-write leaves
    (run / ".best.toml.123.deadbeef.tmp").write_text("partial")
    assert _dse("resume", str(run)).returncode == 0
    assert not list(run.glob(".trials-*.csv")) and not list(run.glob(".*.tmp"))


def test_a_garbage_cache_is_refused_before_a_run_dir_exists(tmp_path: Path) -> None:
    cache = tmp_path / "cache.db"
    cache.write_bytes(b"this is not sqlite" * 100)
    out = tmp_path / "runs"
    line = _one_line(_dse("run", str(_sweep(tmp_path)), "--out", str(out), "--cache", str(cache), "--executor", "debug"))
    assert "cache.db" in line
    assert not out.exists() or not any(out.iterdir())  # no empty run dir left behind


def test_resume_takes_redacted_secret_env_from_the_environment(tmp_path: Path) -> None:
    secret = "hf_RESUMEsecret0123456789abcdefXYZ"
    cmd = json.dumps("printf %s \"$MY_TOKEN\" | sha256sum | cut -c1-16 > seen.txt; "
                     "echo '{{\"step-time\": {x}}}' > metrics.json")
    sweep = write_toml(tmp_path / "s.toml", 'name = "s"\ntest_template_name = "Command"\nagent_metrics = ["step-time"]\n'
                       f'[extra_env_vars]\nMY_TOKEN = "{secret}"\n[cmd_args]\ncommand = {cmd}\nx = [1, 2, 3]\n')
    out = tmp_path / "runs"
    r = _dse("run", str(sweep), "--out", str(out), "--no-cache", "--executor", "debug", "--steps", "1")
    assert r.returncode == 0, r.stderr
    (run,) = list(out.iterdir())
    store_steps = run / "trials.db"
    assert store_steps.exists()
    import sqlite3

    with sqlite3.connect(store_steps) as conn:  # let resume run the two trials the first driver never asked for
        conn.execute("UPDATE meta SET value = '3' WHERE key = 'steps'")
    line = _one_line(_dse("resume", str(run), env={"MY_TOKEN": ""}))
    assert "extra_env_vars.MY_TOKEN" in line and secret not in line
    r = _dse("resume", str(run), env={"MY_TOKEN": secret})
    assert r.returncode == 0, r.stdout + r.stderr
    import hashlib

    want = hashlib.sha256(secret.encode()).hexdigest()[:16]
    seen = sorted(p.read_text().strip() for p in run.rglob("seen.txt"))
    assert seen == [want] * 3  # the resumed trials saw the real value, not "***"
    assert not [p for p in run.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
