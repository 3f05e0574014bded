"""Real Megatron-Bridge launching on the local Slurm cluster, with our faithful stand-in launcher.

The stand-in (tests/standin_mbridge) is a git repo cloned through a file:// URL at a pinned tag; its
setup_experiment.py submits one training job with sbatch and waits for it, as v0.3.0's does. These tests
prove what the issue asks: `dse run` installs the pinned commit, the launcher runs on the submit host
(one Slurm job per trial, no allocation of dse's own, no deadlock at full capacity), the job sees the
sweep's environment with `${VAR}` expanded and the checkout mount, `dse resume` after kill -9 follows
the training jobs, and the HF token is in no file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, write_toml
from slurm_cluster import PARTITION, require_slurm, wait_for
from standin_repo import make_standin_repo

from dse.analysis._table import load_trials
from dse.workloads import STDERR, STDOUT

pytestmark = pytest.mark.slurm
TOKEN = "hf_STANDINsecretTOKEN0123456789abcdef"


@pytest.fixture(autouse=True)
def _cluster() -> None:
    require_slurm()


def _sweep(tmp_path: Path, url: str, tag: str, mbs: str = "[1, 2, 4]", gpus: int = 4, env: str = "") -> Path:
    return write_toml(tmp_path / "mb.toml", f"""
name = "mb_standin"
test_template_name = "MegatronBridge"
time_limit = "00:10:00"
[[git_repos]]
url = "{url}"
commit = "{tag}"
mount_as = "/opt/Megatron-Bridge"
[extra_env_vars]
DSE_PROBE = "probe:${{SLURM_JOB_ID}}"
{env}
[cmd_args]
gpu_type = "h100"
num_gpus = {gpus}
model_family_name = "llama"
model_recipe_name = "llama3_8b"
compute_dtype = "bf16"
max_steps = 4
mb = {mbs}
gb = 128
""")


def _system(tmp_path: Path, gpus_per_node: int = 4) -> Path:
    return write_toml(tmp_path / "system.toml", f'scheduler = "slurm"\ndefault_partition = "{PARTITION}"\n'
                      f'gpus_per_node = {gpus_per_node}\nlauncher = "{sys.executable}"\npoll_interval_s = 0.5\n'
                      '[env]\nSYSTEM_VAR = "from-system"\n')


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN_PATH",)}
    env.update(HF_TOKEN=TOKEN, DSE_HOME=str(tmp_path / "dse-home"), DSE_CACHE=str(tmp_path / "cache" / "c.db"),
               **extra)
    return env


def _dse(tmp_path: Path, *args: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dse.cli", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=timeout, env=_env(tmp_path, **env))


def _sacct_jobs(since: str, under: Path) -> list[tuple[str, str, str, str]]:
    """(JobID, JobName, State, AllocTRES) of every job submitted since `since` from a folder under `under`."""
    out = subprocess.run(["sacct", "-X", "-n", "-P", "-a", "-S", since,
                          "--format=JobID,JobName,State,AllocTRES,WorkDir"],
                         capture_output=True, text=True, timeout=30).stdout
    rows = [line.split("|") for line in out.splitlines() if line.strip()]
    return [tuple(r[:4]) for r in rows if len(r) >= 5 and r[4].startswith(str(under))]  # type: ignore[misc]


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 1))


def _run_dir(out: Path) -> Path:
    (run,) = sorted(p for p in out.iterdir() if p.is_dir())
    return run


def _job_dirs(trial_dir: Path) -> list[Path]:
    return [p.parent for p in trial_dir.rglob("env.json")]


def _grep(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and TOKEN.encode() in p.read_bytes()]


def test_sweep_installs_the_pin_and_runs_one_slurm_job_per_trial(tmp_path: Path) -> None:
    url, tag = make_standin_repo(tmp_path / "src")
    since = _now()
    out = tmp_path / "o"
    r = _dse(tmp_path, "run", str(_sweep(tmp_path, url, tag)), "--system", str(_system(tmp_path)), "--out", str(out),
             "--parallel", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"install: repo: {url} @ {tag}" in r.stdout
    run = _run_dir(out)
    df = load_trials(run)
    assert set(df["status"]) == {"completed"} and len(df) == 3
    ids = [str(j) for j in df["job_id"]]
    assert all(j.isdigit() for j in ids) and len(set(ids)) == 3  # the training jobs' own Slurm ids
    assert wait_for(lambda: {j for j, *_ in _sacct_jobs(since, tmp_path) if j in ids} == set(ids), timeout_s=30)
    jobs = _sacct_jobs(since, tmp_path)
    assert sorted(j for j, *_ in jobs) == sorted(ids), jobs  # exactly one job per trial, none of dse's own
    assert all("gres/gpu=4" in tres for j, _, _, tres in jobs), jobs
    checkout = next((tmp_path / "dse-home" / "repos").iterdir())
    for trial in df["trial"]:
        tdir = run / "trials" / str(trial)
        assert str(checkout) in (tdir / "command.sh").read_text()  # the launcher ran from the pinned clone
        (job_dir,) = _job_dirs(tdir)
        env = json.loads((job_dir / "env.json").read_text())
        assert env["DSE_PROBE"].startswith("probe:") and env["DSE_PROBE"][6:].isdigit()  # ${VAR} expanded there
        assert env["SYSTEM_VAR"] == "from-system"
        assert env["HF_TOKEN"].startswith("<redacted")  # the job had the token, through its environment
        assert f"{checkout}:/opt/Megatron-Bridge" in (job_dir / "mounts.txt").read_text()
    assert _grep(run) == [] and _grep(tmp_path / "dse-home") == [] and TOKEN not in r.stdout + r.stderr
    # a second sweep on the same pin reuses the checkout
    r2 = _dse(tmp_path, "install", str(_sweep(tmp_path, url, tag)), "--system", str(_system(tmp_path)))
    assert r2.returncode == 0 and str(checkout) in r2.stdout


def test_full_node_trials_at_full_parallelism_do_not_deadlock(tmp_path: Path) -> None:
    """Two trials each wanting all 8 GPUs, --parallel 2: the launchers hold nothing, the jobs queue."""
    url, tag = make_standin_repo(tmp_path / "src")
    out = tmp_path / "o"
    r = _dse(tmp_path, "run", str(_sweep(tmp_path, url, tag, mbs="[1, 2]", gpus=8)), "--system",
             str(_system(tmp_path, gpus_per_node=8)), "--out", str(out), "--parallel", "2", timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert set(load_trials(_run_dir(out))["status"]) == {"completed"}


def test_kill_driver_and_launchers_then_resume_follows_the_training_jobs(tmp_path: Path) -> None:
    url, tag = make_standin_repo(tmp_path / "src")
    since = _now()
    out = tmp_path / "o"
    args = ["run", str(_sweep(tmp_path, url, tag)), "--system", str(_system(tmp_path)), "--out", str(out),
            "--parallel", "2"]
    proc = subprocess.Popen([sys.executable, "-m", "dse.cli", *args], cwd=REPO, env=_env(tmp_path, STANDIN_STEP_S="2"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def two_job_ids() -> bool:
        runs = [p for p in out.iterdir() if p.is_dir()] if out.exists() else []
        if not runs or not (runs[0] / "trials.db").exists():
            return False
        df = load_trials(runs[0])
        return int(df["job_id"].astype(str).str.isdigit().sum()) >= 2

    assert wait_for(two_job_ids, timeout_s=120)
    os.killpg(proc.pid, signal.SIGKILL)  # a lost login shell: the driver and the job wrappers (launchers live on)
    proc.wait()
    run = _run_dir(out)
    r = _dse(tmp_path, "resume", str(run))
    assert r.returncode == 0, r.stdout + r.stderr
    df = load_trials(run)
    assert set(df["status"]) == {"completed"} and len(df) == 3
    ids = sorted(str(j) for j in df["job_id"])
    assert wait_for(lambda: sorted(j for j, *_ in _sacct_jobs(since, tmp_path)) == ids, timeout_s=30), _sacct_jobs(since, tmp_path)


def test_launchers_that_outlive_their_driver_before_submitting_are_followed_not_started_twice(
        tmp_path: Path) -> None:
    """The driver's process group killed while every launcher is still packaging (before its sbatch): the
    launchers have sessions of their own and live on. `dse resume` must follow them to the job each submits, not
    start a second launcher (and a second training job) for the same trial."""
    url, tag = make_standin_repo(tmp_path / "src")
    since = _now()
    out = tmp_path / "o"
    args = ["run", str(_sweep(tmp_path, url, tag)), "--system", str(_system(tmp_path)), "--out", str(out),
            "--parallel", "3"]
    proc = subprocess.Popen([sys.executable, "-m", "dse.cli", *args], cwd=REPO,
                            env=_env(tmp_path, STANDIN_SUBMIT_DELAY_S="20", STANDIN_STEP_S="0.5"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def three_launchers_started() -> bool:  # each has written its sbatch script and waits before submitting it
        logs = [p for p in out.glob("*/trials/*/*") if p.is_file() and p.name in (STDOUT, STDERR)]
        return sum("Will launch the following command" in p.read_text(errors="replace") for p in logs) == 3

    assert wait_for(three_launchers_started, timeout_s=120)
    run = _run_dir(out)
    assert not [j for j in load_trials(run)["job_id"] if str(j).isdigit()]  # none has submitted yet
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the launchers' job wrappers, not the launchers
    proc.wait()
    r = _dse(tmp_path, "resume", str(run))
    assert r.returncode == 0, r.stdout + r.stderr
    df = load_trials(run)
    assert set(df["status"]) == {"completed"} and len(df) == 3, df[["status", "error"]]
    ids = sorted(str(j) for j in df["job_id"])
    assert all(j.isdigit() for j in ids)
    # exactly the three jobs the first launchers submitted: no trial was launched twice
    assert wait_for(lambda: sorted(j for j, *_ in _sacct_jobs(since, tmp_path)) == ids, timeout_s=30), (
        ids, _sacct_jobs(since, tmp_path))
    for trial in df["trial"]:  # one launcher run per trial: one nemo_run experiment folder each
        assert len(list((run / "trials" / str(trial)).glob("experiments/*/*_*"))) == 1, trial


def test_out_of_memory_in_the_training_job_is_an_expected_finding(tmp_path: Path) -> None:
    url, tag = make_standin_repo(tmp_path / "src")
    out = tmp_path / "o"
    r = _dse(tmp_path, "run", str(_sweep(tmp_path, url, tag, mbs="2", env='STANDIN_OOM = ["0", "1"]')), "--system",
             str(_system(tmp_path)), "--out", str(out), "--parallel", "2")
    assert r.returncode == 0, r.stdout + r.stderr  # out-of-memory is a finding, not a failure of the sweep
    df = load_trials(_run_dir(out)).set_index("param.extra_env_vars.STANDIN_OOM")
    assert df.loc["0", "status"] == "completed"
    assert df.loc["1", "status"] == "failed" and str(df.loc["1", "error"]).startswith("out-of-memory")
    assert str(df.loc["1", "job_id"]).isdigit()


def test_early_stopping_cancels_the_slow_training_job(tmp_path: Path) -> None:
    """`--early-stopping` on the real launcher path: the slow trial's training job is scancelled mid-run, the
    trial is `pruned` with its partial step time, and its GPU-hours are what it burned."""
    url, tag = make_standin_repo(tmp_path / "src")
    since = _now()
    out = tmp_path / "o"
    sweep = _sweep(tmp_path, url, tag, mbs="[4, 1]").read_text().replace("max_steps = 4", "max_steps = 80")
    sweep = sweep.replace('time_limit = "00:10:00"', 'time_limit = "00:10:00"\nbaseline = { mb = 4 }')  # fast first
    path = write_toml(tmp_path / "es.toml", sweep)
    r = _dse(tmp_path, "run", str(path), "--system", str(_system(tmp_path)), "--out", str(out), "--early-stopping",
             timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    df = load_trials(_run_dir(out)).set_index("param.mb")
    assert df.loc[4, "status"] == "completed" and df.loc[1, "status"] == "pruned", df[["status", "error"]]
    assert 0.3 < df.loc[1, "metric.default"] < 0.45  # the stand-in's 0.35 s per iteration at mbs 1
    assert df.loc[1, "gpu_hours"] > 0 and df.loc[4, "gpu_hours"] > 0
    pruned_job = str(df.loc[1, "job_id"])
    assert wait_for(lambda: any(j == pruned_job and s.startswith("CANCELLED") for j, _, s, _ in
                                _sacct_jobs(since, tmp_path)), timeout_s=60), _sacct_jobs(since, tmp_path)


def test_model_guided_with_early_stopping_on_the_real_launcher_path(tmp_path: Path) -> None:
    """`dse run --agent model_guided --early-stopping` through the stand-in launcher on the local Slurm."""
    url, tag = make_standin_repo(tmp_path / "src")
    out = tmp_path / "o"
    sweep = _sweep(tmp_path, url, tag, mbs="[1, 2, 4]").read_text().replace("max_steps = 4", "max_steps = 30")
    path = write_toml(tmp_path / "mg.toml", sweep)
    r = _dse(tmp_path, "run", str(path), "--system", str(_system(tmp_path)), "--out", str(out), "--agent",
             "model_guided", "--steps", "3", "--early-stopping", timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    df = load_trials(_run_dir(out))
    assert len(df) == 3 and set(df["status"]) <= {"completed", "pruned"}, df[["status", "error"]]
    assert str(df.iloc[0]["note"]).startswith("baseline") and df.iloc[0]["status"] == "completed"
    assert df.iloc[1:]["note"].str.startswith("model:").all()
    assert sorted(df["param.mb"]) == [1, 2, 4]
