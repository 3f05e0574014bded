"""The local Slurm cluster behaves like the real ones dse submits to, as submitit sees it.

Job callables are stdlib functions (os.getenv, pow, time.sleep): submitit pickles functions by
reference, and a test module is not importable inside the job. Not `os.environ.get`: a bound method
pickles its `os.environ` by value, so the job would answer from the submitter's environment.

Time limits: Slurm's smallest limit is one minute and slurmctld tests limits only every 30 s, so a
real TIMEOUT takes 60-90 s. conftest.py submits that job as soon as the tests are collected; the suite
runs while it waits, and `test_time_limit_fires_as_timeout` collects it.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import submitit
from conftest import TIMEOUT_JOB
from slurm_cluster import (
    GPUS_PER_NODE,
    PARTITION,
    require_slurm,
    sacct_fields,
    sbatch,
    scancel,
    slurm_available,
    slurm_required,
    squeue_state,
    wait_for,
)
from submitit.slurm.slurm import SlurmInfoWatcher


@dataclass
class Cluster:
    """What the integration tests share: a job folder and the early-submitted time-limit job."""

    folder: Path
    timeout_job_id: str
    timeout_submitted_at: float
    submitted: list[str] = field(default_factory=list)

    def executor(self, **params: object) -> submitit.AutoExecutor:
        executor = submitit.AutoExecutor(folder=self.folder, cluster="slurm")
        executor.update_parameters(slurm_partition=PARTITION, timeout_min=10, **params)
        return executor


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    require_slurm()
    folder = tmp_path_factory.mktemp("slurm-jobs")
    # Submitted at collection (conftest.py), so its one-minute limit runs out while the suite runs; here only
    # when it was not (the cluster came up after collection).
    job_id, submitted_at = request.config.stash.get(TIMEOUT_JOB, (None, 0.0))
    if job_id is None:
        job_id = sbatch("--time=1", "--job-name=dse-test-timeout", f"--output={folder}/timeout-%j.out",
                        "--wrap=sleep 300")
        submitted_at = time.monotonic()
    state = Cluster(folder=folder, timeout_job_id=job_id, timeout_submitted_at=submitted_at)
    state.submitted.append(job_id)
    yield state
    scancel(*state.submitted)  # leave no sleeper behind when a test failed half-way


# --- the helper's skip/fail contract (no cluster needed) ---------------------------------------------


def test_require_slurm_skips_without_cluster_unless_required(monkeypatch: pytest.MonkeyPatch) -> None:
    import slurm_cluster

    monkeypatch.setattr(slurm_cluster, "slurm_available", lambda: False)
    monkeypatch.delenv("DSE_REQUIRE_SLURM", raising=False)
    with pytest.raises(pytest.skip.Exception, match="scripts/slurm-local.sh start"):
        slurm_cluster.require_slurm()
    monkeypatch.setenv("DSE_REQUIRE_SLURM", "1")
    assert slurm_required()
    with pytest.raises(pytest.fail.Exception, match="DSE_REQUIRE_SLURM"):
        slurm_cluster.require_slurm()


def test_slurm_unavailable_without_client_tools(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no sinfo on PATH: must answer False, not raise
    assert slurm_available() is False


# --- the real cluster ----------------------------------------------------------------------------------


@pytest.mark.slurm
def test_gpu_job_returns_value_and_sees_eight_gpus(cluster: Cluster) -> None:
    executor = cluster.executor(gpus_per_node=GPUS_PER_NODE)
    job = executor.submit(os.getenv, "CUDA_VISIBLE_DEVICES", "unset")
    cluster.submitted.append(job.job_id)
    visible = job.result()
    assert visible.split(",") == [str(i) for i in range(GPUS_PER_NODE)]
    assert wait_for(lambda: sacct_fields(job.job_id, ["State"]).get("State") == "COMPLETED", 15)
    assert "gres/gpu=8" in sacct_fields(job.job_id, ["AllocTRES"])["AllocTRES"]


@pytest.mark.slurm
def test_job_array_of_four(cluster: Cluster) -> None:
    executor = cluster.executor(slurm_array_parallelism=4)
    jobs = executor.map_array(pow, [1, 2, 3, 4], [2, 2, 2, 2])
    cluster.submitted.extend(job.job_id for job in jobs)
    assert [job.result() for job in jobs] == [1, 4, 9, 16]
    array_id = jobs[0].job_id.split("_")[0]
    assert [job.job_id for job in jobs] == [f"{array_id}_{i}" for i in range(4)]


@pytest.mark.slurm
def test_scancel_of_running_job_reads_cancelled(cluster: Cluster) -> None:
    job = cluster.executor().submit(time.sleep, 300)
    cluster.submitted.append(job.job_id)
    assert wait_for(lambda: squeue_state(job.job_id) == "RUNNING", 30), "job never started"
    job.cancel()
    # force: submitit caches states; a fresh sacct call is what a scheduler loop would see.
    assert wait_for(lambda: job.watcher.get_state(job.job_id, mode="force").startswith("CANCELLED"), 20)
    assert job.done(force_check=True)


@pytest.mark.slurm
def test_time_limit_fires_as_timeout(cluster: Cluster) -> None:
    """A real one-minute limit, not a cancel: Slurm records TIMEOUT and submitit reads it back."""
    job_id = cluster.timeout_job_id
    # 60 s limit + up to 30 s until slurmctld's next limit check + KillWait 5 s + accounting lag.
    remaining = 120 - (time.monotonic() - cluster.timeout_submitted_at)
    assert wait_for(lambda: sacct_fields(job_id, ["State"]).get("State") == "TIMEOUT", remaining, 1.0), (
        f"job {job_id} did not time out: {sacct_fields(job_id, ['State', 'Elapsed', 'Timelimit'])}"
    )
    info = sacct_fields(job_id, ["Timelimit", "ElapsedRaw"])
    assert info["Timelimit"] == "00:01:00"
    assert int(info["ElapsedRaw"]) >= 60
    assert SlurmInfoWatcher(delay_s=1).get_state(job_id, mode="force") == "TIMEOUT"


@pytest.mark.skipif(os.geteuid() != 0, reason="slurm-local.sh start/stop need root")
def test_stop_leaves_etc_slurm_as_it_found_it(tmp_path: Path) -> None:
    """`stop` removes the /etc/slurm links `start` made (and the folder it created), not foreign files.

    Run against a scratch state folder and a scratch /etc/slurm (no daemons there to stop), so the
    cluster the other tests use keeps running.
    """
    state, etc = tmp_path / "state", tmp_path / "etc-slurm"
    conf = state / "conf"
    conf.mkdir(parents=True)
    etc.mkdir()
    (state / ".created-etc").touch()
    for name in ("slurm.conf", "gres.conf", "cgroup.conf"):
        (conf / name).write_text("# Written by scripts/slurm-local.sh\n")
        (etc / name).symlink_to(conf / name)
    env = {**os.environ, "DSE_SLURM_DIR": str(state), "DSE_SLURM_ETC": str(etc)}
    script = Path(__file__).resolve().parents[1] / "scripts" / "slurm-local.sh"
    r = subprocess.run([str(script), "stop"], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert not etc.exists()  # our links gone, and the folder start created
    etc.mkdir()
    (etc / "slurm.conf").write_text("ClusterName=theirs\n")  # somebody else's cluster: left alone
    (etc / "gres.conf").symlink_to(conf / "gres.conf")
    r = subprocess.run([str(script), "stop"], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in etc.iterdir()) == ["slurm.conf"]
