"""The driver under signals and races (issue 13 #1-#3): one driver per run dir, jobs that never started
are run on resume, Ctrl-C from a terminal reaches only the driver, SIGTERM stops like the first Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from conftest import REPO, wait_for_submission, write_toml
from slurm_cluster import wait_for

from dse.analysis._table import load_trials

OK_CMD = "echo '{{\"step-time\": {x}}}' > metrics.json"


def _sweep(tmp_path: Path, command: str, values: str) -> Path:
    counter = tmp_path / "counter.log"
    full = json.dumps(f"echo ran {{x}} >> {counter}; {command}")
    return write_toml(tmp_path / "s.toml", 'name = "s"\ntest_template_name = "Command"\nagent_metrics = ["step-time"]\n'
                      f'[cmd_args]\ncommand = {full}\nx = {values}\n')


def _dse(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dse.cli", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=timeout)


def _start(sweep: Path, out: Path) -> subprocess.Popen[str]:
    """`dse run` in its own process group, as a shell in a terminal starts it."""
    return subprocess.Popen([sys.executable, "-m", "dse.cli", "run", str(sweep), "--out", str(out), "--parallel",
                             "2", "--no-cache"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _run_dir(out: Path) -> Path:
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    return run


def _ran(tmp_path: Path) -> list[str]:
    path = tmp_path / "counter.log"
    return path.read_text().split("\n")[:-1] if path.exists() else []


def test_two_resumes_at_once_cannot_both_drive_the_run(tmp_path: Path) -> None:
    sweep = _sweep(tmp_path, "sleep 2; " + OK_CMD, "[1, 2, 3, 4, 5, 6]")
    out = tmp_path / "runs"
    proc = _start(sweep, out)
    wait_for_submission(out)
    run = _run_dir(out)
    busy = _dse("resume", str(run))  # the first driver is alive: refused, nothing touched
    assert busy.returncode == 2 and f"PID {proc.pid}" in busy.stderr and len(busy.stderr.strip().splitlines()) == 1
    os.kill(proc.pid, signal.SIGKILL)  # only the driver: its jobs go on
    proc.communicate()
    resumes = [subprocess.Popen([sys.executable, "-m", "dse.cli", "resume", str(run)], cwd=REPO, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    codes = sorted(p.wait(timeout=180) for p in resumes)
    assert codes == [0, 2], [p.communicate() for p in resumes]  # one drove it, the other was refused
    df = load_trials(run)
    assert len(df) == 6 and df["param.x"].is_unique and set(df["status"]) == {"completed"}
    assert sorted(_ran(tmp_path)) == sorted(f"ran {x}" for x in range(1, 7))  # every program ran once


def test_jobs_killed_before_they_started_are_run_on_resume(tmp_path: Path) -> None:
    """The whole process group dies right after submission (a reboot, an OOM kill of the cgroup)."""
    out = tmp_path / "runs"
    df = _kill_group_then_resume(_sweep(tmp_path, "sleep 1; " + OK_CMD, "[1, 2, 3, 4]"), out,
                                 lambda: wait_for_submission(out, trial=2))
    assert len(df) == 4 and set(df["status"]) == {"completed"}, df[["param.x", "status", "error"]]


def _kill_group_then_resume(sweep: Path, out: Path, when: Callable[[], object]) -> pd.DataFrame:
    """`dse run` in its own process group, SIGKILL to all of it once `when()` returns, then `dse resume`."""
    proc = _start(sweep, out)
    when()
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    run = _run_dir(out)
    r = _dse("resume", str(run))
    assert r.returncode == 0, r.stdout + r.stderr
    return load_trials(run)


def test_programs_that_outlive_their_killed_process_group_are_followed_on_resume(tmp_path: Path) -> None:
    """The process group dies while the programs run: each program has a session of its own and runs on, its job
    wrapper does not. A resume waits for each to end and reads its metrics; none is failed while it runs, none
    runs twice."""
    def started() -> None:
        assert wait_for(lambda: len(_ran(tmp_path)) == 2, timeout_s=60)  # both programs are running

    df = _kill_group_then_resume(_sweep(tmp_path, "sleep 4; " + OK_CMD, "[1, 2, 3]"), tmp_path / "runs", started)
    assert len(df) == 3 and set(df["status"]) == {"completed"}, df[["param.x", "status", "error"]]
    assert sorted(_ran(tmp_path)) == ["ran 1", "ran 2", "ran 3"]  # each program ran once


def test_ctrl_c_in_a_terminal_lets_running_trials_finish(tmp_path: Path) -> None:
    """A terminal sends SIGINT to the whole foreground process group, local jobs included."""
    sweep = _sweep(tmp_path, "sleep 2; " + OK_CMD, "[1, 2, 3, 4, 5, 6]")
    out = tmp_path / "runs"
    proc = _start(sweep, out)
    wait_for_submission(out, trial=2)
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stdout + stderr
    assert "Traceback" not in stderr and "stopping: no new trials" in stderr
    df = load_trials(_run_dir(out))
    assert len(df) == 2 and set(df["status"]) == {"completed"}, df[["param.x", "status", "error"]]


def test_sigterm_stops_like_the_first_ctrl_c_and_says_how_to_resume(tmp_path: Path) -> None:
    sweep = _sweep(tmp_path, "sleep 2; " + OK_CMD, "[1, 2, 3, 4, 5, 6]")
    out = tmp_path / "runs"
    proc = _start(sweep, out)
    wait_for_submission(out, trial=2)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stdout + stderr
    assert "stopping: no new trials" in stderr and f"dse resume {_run_dir(out)}" in stdout + stderr
    df = load_trials(_run_dir(out))
    assert len(df) == 2 and set(df["status"]) == {"completed"}
