"""Shared fixtures: a dummy HF token so MegatronBridge sweeps validate, and sweep builders; the Slurm
time-limit job submitted as soon as the tests are collected."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

# Slurm's shortest limit (one minute, checked every 30 s) takes 60-90 s to fire. The job is submitted once the
# tests are collected, and test_slurm_cluster.py runs last, so by the time `test_time_limit_fires_as_timeout`
# runs, minutes later, it has timed out instead of being waited for (it had cost 60-70 s of wall time).
# (job id, submitted at).
TIMEOUT_JOB = pytest.StashKey[tuple[str, float]]()


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    from slurm_cluster import sbatch, slurm_available

    if not any(item.name == "test_time_limit_fires_as_timeout" for item in items) or not slurm_available():
        return
    folder = tempfile.mkdtemp(prefix="dse-test-timeout-")
    job_id = sbatch("--time=1", "--job-name=dse-test-timeout", f"--output={folder}/timeout-%j.out",
                    "--wrap=sleep 300")
    config.stash[TIMEOUT_JOB] = (job_id, time.monotonic())
    # test_slurm_cluster.py last (in its own order), so the other tests run while the limit runs out
    items.sort(key=lambda item: item.path.name == "test_slurm_cluster.py")

REPO = Path(__file__).resolve().parents[1]
DUMMY_TOKEN = "hf_DUMMYtestTOKEN0123456789"
MB_REPO = {"url": "https://github.com/NVIDIA-NeMo/Megatron-Bridge.git", "commit": "v0.3.0",
           "mount_as": "/opt/Megatron-Bridge"}


@pytest.fixture(autouse=True)
def _hf_token(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_TOKEN", DUMMY_TOKEN)
    monkeypatch.delenv("HF_TOKEN_PATH", raising=False)
    monkeypatch.setenv("DSE_CACHE", str(tmp_path / "dse-cache" / "cache.db"))
    monkeypatch.setenv("DSE_HOME", str(tmp_path / "dse-home"))  # pinned checkouts, launcher venv, images


def make_test(cmd_args: dict[str, Any], workload: str = "MegatronBridgeSim", **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"name": "t", "test_template_name": workload, "cmd_args": cmd_args}
    if workload == "MegatronBridge":
        data["git_repos"] = [MB_REPO]
    data.update(fields)
    return data


def sweep_from(data: dict[str, Any], source: str = "t.toml"):  # type: ignore[no-untyped-def]
    from dse.spec import Sweep, TestDefinition

    return Sweep(test=TestDefinition.model_validate(data), source=Path(source))


def wait_for_submission(out: Path, trial: int = 2, timeout_s: float = 60.0) -> None:
    """Block until the sweep writing under `out` has submitted `trial` (its submitit folder exists)."""
    import time

    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if out.exists() and any(out.glob(f"*/trials/{trial}/submitit")):
            return
        time.sleep(0.1)
    raise AssertionError(f"trial {trial} was not submitted under {out} within {timeout_s:.0f} s")


def write_toml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
