"""The Megatron-Bridge v0.3.0 stand-in (tests/standin_mbridge) itself, cloned at its tag from a local git
repo and run as the real launcher is run, against the local Slurm cluster (scripts/slurm-local.sh)."""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import DUMMY_TOKEN
from slurm_cluster import require_slurm, sacct_fields, scancel, slurm_required, squeue_state, wait_for
from standin_repo import SETUP_SCRIPT, WRONG_VERSION, WRONG_VERSION_RC, make_standin_repo

PYTHON3 = shutil.which("python3") or "python3"  # a plain interpreter: the launcher must be stdlib only
EXP_A = "pretrain_llama3_8b_bf16_gpus8_tp1_pp1_cp1_vpNone_ep1_etpNone_mbs2_gbs1"
MISSING_GOLDEN = ("Convergence check failed due to missing golden values.",
                  "This is expected if it is the first time running this model.")
ALIVE = {"PENDING", "CONFIGURING", "RUNNING"}
SUBMITTED = re.compile(r"^Submitted batch job (\d+)$", re.M)


def _require_cluster() -> None:
    """Skip without `sbatch` on PATH or a usable cluster; fail instead under DSE_REQUIRE_SLURM=1."""
    if shutil.which("sbatch") is None and not slurm_required():
        pytest.skip("sbatch is not on PATH (start the local cluster: scripts/slurm-local.sh start)")
    require_slurm()


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stand-in repo cloned and checked out at its tag, the way dse installs a pinned repo."""
    root = tmp_path_factory.mktemp("standin")
    url, tag = make_standin_repo(root)
    dst = root / "checkout"
    subprocess.run(["git", "clone", "--quiet", "--no-checkout", url, str(dst)], check=True, timeout=60)
    subprocess.run(["git", "-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach", tag], cwd=dst,
                   check=True, timeout=60)
    return dst


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NEMORUN_HOME", "STANDIN_OOM", "STANDIN_STEP_S")}
    return {**env, "STANDIN_IO_SETTLE_S": "0.2", **extra}


def _argv(checkout: Path, tmp_path: Path, *extra: str) -> list[str]:
    return [PYTHON3, str(checkout / SETUP_SCRIPT), "-m", "llama", "-mr", "llama3_8b", "-g", "h100", "-ng", "8",
            "-gn", "8", "-l", str(tmp_path / "nemo_run"), *extra]


def _launch(checkout: Path, tmp_path: Path, *extra: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_argv(checkout, tmp_path, *extra), capture_output=True, text=True, cwd=tmp_path,
                          env=_env(**env), timeout=300)


def _job_id(stdout: str) -> str:
    ids = SUBMITTED.findall(stdout)
    assert len(ids) == 1, stdout
    return ids[0]


def _job_dir(tmp_path: Path, exp: str) -> Path:
    (job_dir,) = (tmp_path / "nemo_run" / "experiments" / exp).glob(f"{exp}_*/{exp}")
    return job_dir


def _jobs_from(tmp_path: Path, since: str) -> list[str]:
    """Ids of the jobs submitted from `tmp_path` (sbatch's cwd) since `since`, as accounting has them."""
    out = subprocess.run(["sacct", "-X", "-n", "-P", "-S", since, "-o", "JobID,WorkDir"], capture_output=True,
                         text=True, timeout=30).stdout
    rows = [line.split("|") for line in out.splitlines() if line.strip()]
    return [r[0] for r in rows if len(r) == 2 and Path(r[1]).resolve() == tmp_path.resolve()]


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 2))


def _lines(proc: subprocess.Popen[str]) -> Iterator[str]:
    """stdout lines of a running process without blocking the test forever (a reader thread)."""
    q: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            q.put(line)
        q.put(None)

    threading.Thread(target=pump, daemon=True).start()
    while True:
        line = q.get(timeout=120)
        if line is None:
            return
        yield line


@pytest.mark.slurm
def test_detach_false_runs_the_job_and_writes_golden_values(checkout: Path, tmp_path: Path) -> None:
    _require_cluster()
    since = _now()
    golden = tmp_path / "golden_values.json"
    r = _launch(checkout, tmp_path, "--detach", "false", "--golden_values_path", str(golden), "-mb", "2", "-ms", "5",
                "model.seq_length=4096", "--save_config_filepath", "/nemo_run/configs/ConfigContainer.yaml",
                "-cb", "export FOO=bar:${HOME}", "--additional_slurm_params", "gpus-per-node=4;gres=gpu:4")
    job_id = _job_id(r.stdout)
    # v0.3.0 on a first run: the current values are written, then exit 1 for the missing golden values
    assert r.returncode == 1, r.stdout + r.stderr
    for line in MISSING_GOLDEN:
        assert line in r.stderr
    assert f"You will need to add the golden values ({golden}) into the repository before the next run." in r.stderr
    assert "Ignoring unrecognized arguments: model.seq_length=4096" in r.stderr
    assert not golden.exists()

    job_dir = _job_dir(tmp_path, EXP_A)
    values = json.loads((job_dir / EXP_A / "golden_values" / golden.name).read_text())
    assert sorted(k for k in values if k.isdigit()) == ["0", "1", "2", "3", "4"]
    assert {"lm loss", "elapsed time per iteration (ms)", "GPU utilization"} == set(values["4"])
    assert isinstance(values["alloc"], float) and values["max_alloc"] > values["alloc"]
    assert values["0"]["elapsed time per iteration (ms)"] > values["4"]["elapsed time per iteration (ms)"]

    log = (job_dir / f"log-{EXP_A}_{job_id}_0.out").read_text()
    assert len(re.findall(r"\] iteration +\d+/ +5 \|", log)) == 5 and log.count("Step Time :") == 5
    script = (job_dir / f"sbatch_{EXP_A}.sh").read_text()
    assert "#SBATCH --gpus-per-node=4" in script and "#SBATCH --gres=gpu:4" in script
    assert "\nexport FOO=bar:${HOME}\n" in script
    assert (job_dir / "hydra_overrides.txt").read_text() == "model.seq_length=4096\n"
    assert "micro_batch_size: 2" in (job_dir / "configs" / "ConfigContainer.yaml").read_text()

    env = json.loads((job_dir / "env.json").read_text())
    assert env["FOO"] == f"bar:{env['HOME']}" and "${" not in env["FOO"]  # -cb expanded in the job's shell
    assert env["HF_TOKEN"] == f"<redacted:{len(DUMMY_TOKEN)} chars>"  # reached the job, by environment
    assert env["NEMORUN_HOME"] == str(tmp_path / "nemo_run") and env["SLURM_JOB_ID"] == job_id
    assert env["CUDA_VISIBLE_DEVICES"] == "0,1,2,3"
    assert [p for p in tmp_path.rglob("*") if p.is_file() and DUMMY_TOKEN.encode() in p.read_bytes()] == []

    fields = ("State", "AllocTRES", "ReqTRES")
    assert wait_for(lambda: sacct_fields(job_id, fields).get("State") == "COMPLETED", timeout_s=60), \
        sacct_fields(job_id, fields)
    tres = sacct_fields(job_id, fields)
    assert "gres/gpu=4" in tres["AllocTRES"] or "gres/gpu=4" in tres["ReqTRES"], tres
    # exactly one job submitted (a time-window query can lag behind `sacct -j` by seconds)
    assert wait_for(lambda: job_id in _jobs_from(tmp_path, since), timeout_s=60), _jobs_from(tmp_path, since)
    assert _jobs_from(tmp_path, since) == [job_id]


@pytest.mark.slurm
def test_detach_default_returns_right_after_submission(checkout: Path, tmp_path: Path) -> None:
    _require_cluster()
    r = _launch(checkout, tmp_path, "-mb", "1", "-ms", "5", STANDIN_STEP_S="4")
    job_id = _job_id(r.stdout)
    try:
        assert r.returncode == 0, r.stdout + r.stderr
        assert squeue_state(job_id) in ALIVE  # the launcher did not wait (the job needs ~30 s)
        exp = EXP_A.replace("mbs2", "mbs1")
        assert not (_job_dir(tmp_path, exp) / exp / "golden_values").exists()
    finally:
        scancel(job_id)


@pytest.mark.slurm
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_killed_launcher_leaves_its_job_alone(checkout: Path, tmp_path: Path, sig: signal.Signals) -> None:
    _require_cluster()
    proc = subprocess.Popen(_argv(checkout, tmp_path, "--detach", "false", "--golden_values_path",
                                  str(tmp_path / "g.json"), "-ms", "60"), cwd=tmp_path, env=_env(STANDIN_STEP_S="4"),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    job_id = ""
    try:
        for line in _lines(proc):
            if m := SUBMITTED.match(line.strip()):
                job_id = m.group(1)
                break
        assert job_id, "the launcher printed no job id"
        proc.send_signal(sig)
        proc.wait(timeout=60)
        assert proc.returncode != 0
        assert squeue_state(job_id) in ALIVE  # the caller, not the launcher, cancels the job
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if job_id:
            scancel(job_id)


@pytest.mark.slurm
def test_failed_job_raises_experiment_failed(checkout: Path, tmp_path: Path) -> None:
    _require_cluster()
    r = _launch(checkout, tmp_path, "--detach", "false", "--golden_values_path", str(tmp_path / "g.json"), "-mb", "4",
                STANDIN_OOM="1")
    job_id = _job_id(r.stdout)
    exp = EXP_A.replace("mbs2", "mbs4")
    assert r.returncode == 1
    assert f"Exception: Experiment failed for {exp} with status: FAILED." in r.stderr
    job_dir = _job_dir(tmp_path, exp)
    assert "torch.OutOfMemoryError: CUDA out of memory" in (job_dir / f"log-{exp}_{job_id}_0.out").read_text()
    assert not (job_dir / exp).exists()  # no golden values for a failed job
    assert wait_for(lambda: sacct_fields(job_id, ["State"]).get("State") == "FAILED", timeout_s=60)


@pytest.mark.slurm
def test_detach_false_without_golden_values_path_is_a_type_error(checkout: Path, tmp_path: Path) -> None:
    _require_cluster()
    r = _launch(checkout, tmp_path, "--detach", "false", "-ms", "2", "-mb", "8")
    _job_id(r.stdout)
    assert r.returncode == 1
    assert "TypeError" in r.stderr and "NoneType" in r.stderr
    exp = EXP_A.replace("mbs2", "mbs8")
    assert not (_job_dir(tmp_path, exp) / exp).exists()  # v0.3.0 fails before writing anything


def test_dryrun_prints_the_script_and_submits_nothing(checkout: Path, tmp_path: Path) -> None:
    r = _launch(checkout, tmp_path, "-d", "-ng", "16", "-p", "debug", "-a", "acct", "-t", "01:00:00", "--gres",
                "gpu:8", "-ce", "A=1,B=2", "-cm", "/data:/data", "-vp", "None", "-tp", "2", "-ms", "3")
    assert r.returncode == 0, r.stderr
    assert "Submitted batch job" not in r.stdout
    exp = "pretrain_llama3_8b_bf16_gpus16_tp2_pp1_cp1_vpNone_ep1_etpNone_mbs1_gbs1"
    for line in (f"#SBATCH --job-name={exp}", "#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=1",
                 "#SBATCH --time=01:00:00", "#SBATCH --partition=debug", "#SBATCH --account=acct",
                 "#SBATCH --gres=gpu:8", "export A=1", "export B=2"):
        assert line + "\n" in r.stdout
    assert re.search(rf"--output=\S+/experiments/{exp}/{exp}_\d+/{exp}/log-{exp}_%j_0\.out\n", r.stdout)
    assert not (tmp_path / "nemo_run").exists()


def test_commit_after_the_tag_is_the_wrong_version(tmp_path: Path) -> None:
    url, tag = make_standin_repo(tmp_path)
    head = tmp_path / "head"
    subprocess.run(["git", "clone", "--quiet", url, str(head)], check=True, timeout=60)
    r = subprocess.run([PYTHON3, str(head / SETUP_SCRIPT), "-m", "llama", "-mr", "llama3_8b", "-ng", "8"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == WRONG_VERSION_RC and WRONG_VERSION in r.stdout

    def rev(ref: str) -> str:
        return subprocess.run(["git", "rev-parse", ref], cwd=head, capture_output=True, text=True,
                              check=True).stdout.strip()

    assert rev(f"{tag}^{{commit}}") == rev("HEAD~1")
    shown = subprocess.run(["git", "show", f"{tag}:{SETUP_SCRIPT}"], cwd=head, capture_output=True, text=True,
                           check=True).stdout
    assert WRONG_VERSION not in shown and "def build_parser" in shown
