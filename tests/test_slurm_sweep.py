"""The Slurm path end to end on the local single-node cluster (scripts/slurm-local.sh): real sbatch
through submitit, trials as jobs seen by sacct, parallel trials, timeouts, resume after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, wait_for_submission, write_toml
from slurm_cluster import PARTITION, require_slurm, wait_for

from dse.analysis._table import load_trials

pytestmark = pytest.mark.slurm


@pytest.fixture(autouse=True)
def _cluster() -> None:
    require_slurm()


def _system(tmp_path: Path) -> Path:
    return write_toml(tmp_path / "system.toml", f'scheduler = "slurm"\ndefault_partition = "{PARTITION}"\n'
                      'gpus_per_node = 8\npoll_interval_s = 0.5\n')


def _dse(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dse.cli", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=timeout, env=os.environ.copy())


def _sweep(tmp_path: Path, command: str, values: str = "[1, 2, 3, 4]", extra: str = "") -> Path:
    counter = tmp_path / "counter.log"
    full = f"echo ran {{x}} >> {counter}; " + command
    return write_toml(tmp_path / "s.toml", f'name = "s"\ntest_template_name = "Command"\n{extra}\n[cmd_args]\n'
                      f"command = {json.dumps(full)}\nx = {values}\n")


OK = "echo '{{\"step-time\": {x}}}' > metrics.json; echo GPUS=$CUDA_VISIBLE_DEVICES"


def _sacct(job_id: str) -> tuple[str, ...]:
    """(JobName, State, AllocTRES) of the newest job with this id, as accounting has it now."""
    out = subprocess.run(["sacct", "-X", "-n", "-P", "-j", job_id, "--format=JobName,State,AllocTRES"],
                         capture_output=True, text=True, timeout=30).stdout.strip().splitlines()
    return tuple(out[-1].split("|")) if out else ("", "", "")


def _run_dir(out: Path) -> Path:
    (run,) = sorted(p for p in out.iterdir() if p.is_dir())
    return run


def test_command_sweep_runs_as_slurm_jobs_in_parallel(tmp_path: Path) -> None:
    r = _dse("run", str(_sweep(tmp_path, OK)), "--system", str(_system(tmp_path)), "--out", str(tmp_path / "o"),
             "--parallel", "2", "--no-cache")
    assert r.returncode == 0, r.stdout + r.stderr
    run = _run_dir(tmp_path / "o")
    df = load_trials(run)
    assert set(df["status"]) == {"completed"} and len(df) == 4
    for job_id in df["job_id"]:
        assert str(job_id).isdigit()
        assert wait_for(lambda j=str(job_id): _sacct(j)[:2] == ("dse-trial", "COMPLETED"), timeout_s=30), \
            _sacct(str(job_id))  # accounting lags the job by a few seconds
        assert "gres/gpu=8" in _sacct(str(job_id))[2]
    assert "GPUS=0,1,2,3,4,5,6,7" in (run / "trials" / "1" / "stdout.log").read_text()


def test_simulator_sweep_on_slurm(tmp_path: Path) -> None:
    r = _dse("run", "sweeps/demo_sim_qwen30b_h100.toml", "--system", str(_system(tmp_path)), "--out",
             str(tmp_path / "o"), "--parallel", "3", "--steps", "6", "--no-cache")
    assert r.returncode in (0, 1), r.stdout + r.stderr  # simulated OOMs are expected failures
    df = load_trials(_run_dir(tmp_path / "o"))
    assert len(df) == 6 and df["job_id"].astype(str).str.isdigit().all()
    assert (df["status"] == "completed").any()


def test_timeout_in_slurm_ends_as_timeout_and_is_retried(tmp_path: Path) -> None:
    sweep = _sweep(tmp_path, f"if [ {{x}} = 1 ]; then sleep 30; else {OK}; fi", values="[1, 2]",
                   extra='time_limit = "00:00:02"\nmax_retries = 1')
    r = _dse("run", str(sweep), "--system", str(_system(tmp_path)), "--out", str(tmp_path / "o"), "--no-cache")
    assert r.returncode == 1
    df = load_trials(_run_dir(tmp_path / "o")).set_index("param.x")
    assert df.loc[1, "status"] == "timeout" and df.loc[2, "status"] == "completed"
    assert (tmp_path / "counter.log").read_text().count("ran 1") == 2


def test_kill_driver_then_resume_reattaches_slurm_jobs(tmp_path: Path) -> None:
    sweep = _sweep(tmp_path, "sleep 3; " + OK, values="[1, 2, 3, 4]")
    out = tmp_path / "o"
    proc = subprocess.Popen([sys.executable, "-m", "dse.cli", "run", str(sweep), "--system", str(_system(tmp_path)),
                             "--out", str(out), "--parallel", "2", "--no-cache"], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_submission(out)
    time.sleep(1.0)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    run = _run_dir(out)
    running = load_trials(run)
    assert (running["status"] == "running").sum() == 2
    r = _dse("resume", str(run))
    assert r.returncode == 0, r.stdout + r.stderr
    df = load_trials(run)
    assert set(df["status"]) == {"completed"} and sorted(df["param.x"]) == [1, 2, 3, 4]
    counts = [(tmp_path / "counter.log").read_text().count(f"ran {x}") for x in (1, 2, 3, 4)]
    assert counts == [1, 1, 1, 1]  # the two jobs alive at the kill were re-attached, not resubmitted


def test_scancel_counts_as_preemption_and_is_retried(tmp_path: Path) -> None:
    marker = tmp_path / "first-attempt"
    cmd = f"if [ ! -e {marker} ]; then touch {marker}; sleep 60; fi; {OK}"
    sweep = _sweep(tmp_path, cmd, values="[1]", extra="max_retries = 1")
    out = tmp_path / "o"
    proc = subprocess.Popen([sys.executable, "-m", "dse.cli", "run", str(sweep), "--system", str(_system(tmp_path)),
                             "--out", str(out), "--no-cache"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not marker.exists():
        time.sleep(0.2)
    assert marker.exists()
    job_id = load_trials(_run_dir(out))["job_id"].iloc[0]
    subprocess.run(["scancel", str(job_id)], check=True, timeout=30)
    stdout, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 0, stdout + stderr
    df = load_trials(_run_dir(out))
    assert df["status"].tolist() == ["completed"] and df["attempts"].tolist() == [2]
    assert str(df["job_id"].iloc[0]) != str(job_id)


def test_scancel_of_a_program_that_survives_sigterm_is_still_a_preemption(tmp_path: Path) -> None:
    """A program that traps SIGTERM and finishes anyway must not turn a scancel into a completed trial."""
    marker = tmp_path / "first-attempt"
    cmd = (f"if [ ! -e {marker} ]; then touch {marker}; trap 'echo got TERM' TERM; sleep 20 & wait; fi; {OK}")
    sweep = _sweep(tmp_path, cmd, values="[1]", extra="max_retries = 1")
    out = tmp_path / "o"
    proc = subprocess.Popen([sys.executable, "-m", "dse.cli", "run", str(sweep), "--system", str(_system(tmp_path)),
                             "--out", str(out), "--no-cache"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert wait_for(marker.exists, timeout_s=60)
    time.sleep(1.0)
    job_id = load_trials(_run_dir(out))["job_id"].iloc[0]
    subprocess.run(["scancel", str(job_id)], check=True, timeout=30)
    stdout, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 0, stdout + stderr
    df = load_trials(_run_dir(out))
    assert df["status"].tolist() == ["completed"] and df["attempts"].tolist() == [2], df[["status", "attempts", "error"]]
