"""Jobs a launcher submits itself: Megatron-Bridge's setup_experiment.py runs here, on the submit host, and
submits the training job to Slurm. dse follows that job by the id the launcher prints.

A `LaunchedJob` joins the two: the local launcher process (a submitit local job, None after a driver
restart once it has ended) and the Slurm job it submitted (from `Submitted batch job N` / `Job id: N` in
its output). It is done when the launcher has ended and the Slurm job, once known, is in a final state;
its result takes the failure kind from sacct (OUT_OF_MEMORY, TIMEOUT, PREEMPTED, NODE_FAIL), and
cancelling it cancels the Slurm job too (`scancel`), never leaving an allocation behind.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import time
from pathlib import Path

from dse.workloads import STDERR, STDOUT, read_text

__all__ = ["LaunchedJob", "parse_submitted_job_id", "sacct_state", "scancel"]

_JOB_ID = re.compile(r"(?:Submitted batch job|Job id:)\s+(\d+)")
FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED",
                "BOOT_FAIL", "DEADLINE"}
_TO_RESULT = {"TIMEOUT": "timeout", "DEADLINE": "timeout", "PREEMPTED": "preempted", "CANCELLED": "preempted",
              "NODE_FAIL": "node-failure", "BOOT_FAIL": "node-failure", "OUT_OF_MEMORY": "out-of-memory"}


def parse_submitted_job_id(text: str) -> str | None:
    """The last Slurm job id a launcher printed (`Submitted batch job N`, nemo_run's `Job id: N`)."""
    ids = _JOB_ID.findall(text)
    return ids[-1] if ids else None


def sacct_state(job_id: str) -> str | None:
    """The job's state from accounting (`COMPLETED`, `RUNNING`, ...; `CANCELLED by 0` -> `CANCELLED`)."""
    if shutil.which("sacct") is None:
        return None
    try:
        out = subprocess.run(["sacct", "-n", "-X", "-P", "-j", str(job_id), "-o", "State"], capture_output=True,
                             text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = [ln.split()[0] for ln in out.splitlines() if ln.strip()]
    return lines[-1].upper() if lines else None


def scancel(job_id: str) -> None:
    if shutil.which("scancel") is not None:
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            subprocess.run(["scancel", str(job_id)], capture_output=True, timeout=30)


class LaunchedJob:
    """The launcher process (may be None) and the Slurm job it submitted (id known once printed)."""

    def __init__(self, launcher: object | None, trial_dir: Path, slurm_id: str | None = None,
                 sacct_every_s: float = 2.0) -> None:
        self.launcher = launcher  # a JobHandle (local)
        self.trial_dir = Path(trial_dir)
        self.slurm_id = slurm_id
        self.sacct_every_s = sacct_every_s
        self._state: str | None = None
        self._checked = 0.0

    @property
    def job_id(self) -> str:
        """The training job's Slurm id once printed, else '' (the table then shows no id yet)."""
        if self.slurm_id is None:
            text = "\n".join(read_text(self.trial_dir / name) for name in (STDOUT, STDERR))
            self.slurm_id = parse_submitted_job_id(text)
        return self.slurm_id or ""

    def slurm_state(self, fresh: bool = False) -> str | None:
        if not self.job_id:
            return None
        now = time.monotonic()
        if fresh or self._state not in FINAL_STATES and now - self._checked >= self.sacct_every_s:
            self._state, self._checked = sacct_state(self.job_id) or self._state, now
        return self._state

    def done(self) -> bool:
        if self.launcher is not None and not self.launcher.done():  # type: ignore[attr-defined]
            return False
        if not self.job_id:
            return True  # the launcher ended without submitting anything
        state = self.slurm_state(fresh=self.launcher is not None)
        return state is None or state in FINAL_STATES  # None: no accounting to follow it by

    def result(self) -> tuple[int | None, str, str]:
        """(launcher exit code or None, dse job state, message)."""
        rc: int | None = None
        state, message = "completed", ""
        if self.launcher is not None:
            res = self.launcher.result()  # type: ignore[attr-defined]
            rc, state, message = res.returncode, res.state, res.message
        slurm = self.slurm_state(fresh=True)
        if slurm in _TO_RESULT:
            return rc, _TO_RESULT[slurm], f"training job {self.job_id}: {slurm}"
        if self.launcher is None:  # the launcher died with an earlier driver: the job's own end decides
            return (0 if slurm == "COMPLETED" else 1), "completed", f"training job {self.job_id}: {slurm}"
        return rc, state, message

    def cancel(self) -> None:
        if self.job_id:
            scancel(self.job_id)
        if self.launcher is not None:
            self.launcher.cancel()  # type: ignore[attr-defined]

