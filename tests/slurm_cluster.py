"""Helpers for tests that need the local Slurm cluster started by `scripts/slurm-local.sh start`.

Why a helper instead of a bare skip: on a developer machine without the cluster the integration tests
skip with a reason that says how to start it, but CI sets `DSE_REQUIRE_SLURM=1` so that a cluster that
failed to come up turns into a test failure rather than a silently green run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence

import pytest

PARTITION = "debug"
"""The partition the script creates (Default=YES, MaxTime=INFINITE); also printed by `start`."""

GPUS_PER_NODE = 8
"""Fake GPUs the script declares on the node (`gres.conf` files that point at /dev/null)."""

START_HINT = "scripts/slurm-local.sh start"
USABLE_STATES = frozenset({"idle", "mixed", "allocated", "completing"})
"""sinfo %T states in which the node takes jobs; 'mixed'/'allocated' while earlier tests still run."""


def _run(cmd: Sequence[str], timeout_s: float = 15.0) -> subprocess.CompletedProcess[str] | None:
    """Run a Slurm client command; None when it is missing, hangs or fails (no cluster to talk to)."""
    try:
        proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc if proc.returncode == 0 else None


_unreachable = False  # sinfo takes ~9 s to give up on a stopped controller; ask once per process


def slurm_available() -> bool:
    """Whether sinfo answers and the node in `PARTITION` can take jobs (idle, or busy with jobs).

    A controller that did not answer is not asked again in this process (it will not come up by
    itself mid-run); a node in a bad state is re-checked every time.
    """
    global _unreachable
    if _unreachable:
        return False
    proc = _run(["sinfo", "-h", "-N", "-p", PARTITION, "-o", "%T"], timeout_s=15.0)
    if proc is None:
        _unreachable = shutil.which("sinfo") is not None
        return False
    states = [line.strip().lower() for line in proc.stdout.splitlines() if line.strip()]
    return bool(states) and all(state in USABLE_STATES for state in states)


def slurm_required() -> bool:
    """Whether the environment demands the cluster (CI): `DSE_REQUIRE_SLURM` set and not 0/empty."""
    return os.environ.get("DSE_REQUIRE_SLURM", "").strip().lower() not in ("", "0", "false", "no")


def require_slurm() -> None:
    """Skip the calling test when there is no cluster; fail instead when `DSE_REQUIRE_SLURM=1`."""
    if slurm_available():
        return
    reason = f"local Slurm cluster not running or its node is not idle (start it: {START_HINT})"
    if slurm_required():
        pytest.fail(f"{reason}; DSE_REQUIRE_SLURM is set, so this must not skip", pytrace=False)
    pytest.skip(reason)


def sbatch(*args: str) -> str:
    """Submit with sbatch and return the job id; raises on refusal so a test fails loudly."""
    proc = subprocess.run(
        ["sbatch", "--parsable", "-p", PARTITION, *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"sbatch {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout.strip().split(";")[0]


def scancel(*job_ids: str) -> None:
    """Cancel jobs, ignoring ones that already ended (test clean-up must not mask the real failure)."""
    if job_ids:
        _run(["scancel", *job_ids])


def squeue_state(job_id: str) -> str:
    """Live state from slurmctld (RUNNING as soon as it starts; sacct lags by seconds); '' once gone."""
    proc = _run(["squeue", "-h", "-j", job_id, "-o", "%T"])
    return proc.stdout.strip() if proc else ""


def sacct_fields(job_id: str, fields: Sequence[str]) -> dict[str, str]:
    """The allocation line (not the steps) of `job_id` in accounting; {} when not recorded yet."""
    proc = _run(["sacct", "-n", "-X", "-P", "-j", job_id, "-o", ",".join(fields)])
    if proc is None:
        return {}
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if not lines:
        return {}
    return dict(zip(fields, lines[0].split("|"), strict=False))


def wait_for(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.5) -> bool:
    """Poll `predicate` until true or `timeout_s` elapses; returns its last answer."""
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)
