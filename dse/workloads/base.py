"""What a workload is: it turns a trial's config into a job, and a finished job into metrics.

A workload never submits anything itself (executors do) and never writes secrets: values that must
reach the job but not the disk (the HF token) travel in the job's inherited environment.
"""

from __future__ import annotations

import shlex
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from dse.metrics import RunMetrics
from dse.space import TrialConfig
from dse.spec import Sweep

STDOUT, STDERR = "stdout.log", "stderr.log"


@dataclass
class JobSpec:
    """One job: the program to run, where, and the resources it asks for."""

    argv: list[str]
    cwd: str
    env: dict[str, str] = field(default_factory=dict)  # never secrets: those are inherited at run time
    num_nodes: int = 1
    gpus_per_node: int = 0
    time_limit_s: float | None = None
    shell: bool = False  # argv[0] is a /bin/sh command line
    submit_host: bool = False  # a launcher that submits its own Slurm job: run it here, hold no allocation

    def script(self) -> str:
        """The job as a shell script, for dry-run and the trial folder."""
        lines = ["#!/bin/bash", f"cd {shlex.quote(self.cwd)}"]
        lines += [f"export {k}={shlex.quote(v)}" for k, v in sorted(self.env.items())]
        lines.append(self.argv[0] if self.shell else " ".join(shlex.quote(a) for a in self.argv))
        return "\n".join(lines) + "\n"


@dataclass
class Outcome:
    """What a finished job measured, or why it failed (`reason` is machine-readable)."""

    ok: bool
    metrics: RunMetrics | None = None
    reason: str | None = None
    error: str | None = None


class Workload(ABC):
    """Base of MegatronBridge, MegatronBridgeSim and Command."""

    name: ClassVar[str]
    simulated: ClassVar[bool] = False
    submits_own_job: ClassVar[bool] = False  # its program submits the real (Slurm) job and prints its id

    def __init__(self, sweep: Sweep) -> None:
        self.sweep = sweep

    @abstractmethod
    def build(self, cfg: TrialConfig, trial_dir: Path) -> JobSpec:
        """The job of one trial; `trial_dir` is its folder (created by the caller)."""

    @abstractmethod
    def collect(self, cfg: TrialConfig, trial_dir: Path, returncode: int | None) -> Outcome:
        """Read the trial folder after the job ended."""

    def identity(self) -> dict[str, Any]:
        """What besides the config changes the result (hashed into the cache key)."""
        return {"workload": self.name}


def read_text(path: Path, limit: int = 20_000_000) -> str:
    try:
        with open(path, errors="replace") as fh:
            return fh.read(limit)
    except OSError:
        return ""


def last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""
