"""What a workload is: it turns a trial's config into a job, and a finished job into metrics.

A workload never submits anything itself (executors do) and never writes secrets: values that must
reach the job but not the disk (the HF token, a secret in `extra_env_vars`) travel in the job's inherited
environment.
"""

from __future__ import annotations

import os
import secrets as _random
import shlex
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import InitVar, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from dse.cmd_args import CmdArgsModel
from dse.hashing import is_secret_env, known_secrets
from dse.megatron import rules_for
from dse.metrics import RunMetrics
from dse.trial import TrialConfig

if TYPE_CHECKING:
    from dse.megatron import Rule
    from dse.spec import Sweep, TestDefinition

STDOUT, STDERR = "stdout.log", "stderr.log"
SECRET_CARRIER_PREFIX = "DSE_SECRET_"  # the driver's variables that hold secret values for its jobs


def carry_secret(value: str) -> str:
    """Put a secret value into this process's environment, which every job it submits inherits, and return the
    variable's name (`DSE_SECRET_<random>`; one per distinct value, nothing derived from the value)."""
    for name, held in os.environ.items():
        if name.startswith(SECRET_CARRIER_PREFIX) and held == value:
            return name
    name = f"{SECRET_CARRIER_PREFIX}{_random.token_hex(8).upper()}"
    os.environ[name] = value
    return name


@dataclass
class JobSpec:
    """One job: the program to run, where, and the resources it asks for.

    A JobSpec is pickled into the trial folder (submitit), so it never holds a secret: at construction every
    `env` entry that is a secret (a secret name such as `MY_TOKEN`, or a value with a token in it, see
    `dse.hashing.is_secret_env`; `secret_values` names more literal secrets) leaves `env`; its value goes
    into the driver's environment under a carrier variable (`carry_secret`) and `secret_env` keeps only
    NAME -> carrier. The job inherits the driver's environment, and `dse.engine._executors.run_job` sets NAME from
    the carrier when it starts the program.
    """

    argv: list[str]
    cwd: str
    env: dict[str, str] = field(default_factory=dict)  # never secrets: see secret_env
    num_nodes: int = 1
    gpus_per_node: int = 0
    time_limit_s: float | None = None
    shell: bool = False  # argv[0] is a /bin/sh command line
    submit_host: bool = False  # a launcher that submits its own Slurm job: run it here, hold no allocation
    secret_env: dict[str, str] = field(default_factory=dict)  # NAME -> the inherited variable holding its value
    secret_values: InitVar[Iterable[str]] = ()  # literal secrets besides the resolved HF token

    def __post_init__(self, secret_values: Iterable[str]) -> None:
        self.env = {str(k): str(v) for k, v in self.env.items()}
        self.secret_env = dict(self.secret_env)
        known = (*known_secrets(), *(s for s in secret_values if s))
        for name, value in list(self.env.items()):
            if is_secret_env(name, value, known):
                self.secret_env[name] = carry_secret(self.env.pop(name))

    def script(self) -> str:
        """The job as a shell script, for dry-run and the trial folder (a secret is taken from the environment
        of whoever runs it, never written)."""
        lines = ["#!/bin/bash", f"cd {shlex.quote(self.cwd)}"]
        exports = {k: shlex.quote(v) for k, v in self.env.items()}
        exports.update({k: f'"${{{k}:?is a secret: export it before running this script}}"'
                        for k in self.secret_env})
        lines += [f"export {k}={v}" for k, v in sorted(exports.items())]
        lines.append(self.argv[0] if self.shell else " ".join(shlex.quote(a) for a in self.argv))
        return "\n".join(lines) + "\n"


@dataclass
class Outcome:
    """What a finished job measured, or why it failed (`reason` is machine-readable)."""

    ok: bool
    metrics: RunMetrics | None = None
    reason: str | None = None
    error: str | None = None
    gpu_hours: float | None = None  # what the run cost, when the workload knows (a simulation's simulated cost)


class Workload(ABC):
    """Base of MegatronBridge, MegatronBridgeSim and Command.

    A workload class is also its own registry entry (`dse.workloads.WORKLOADS`): the data below is all the
    spec, the space and the engine ask of it, so adding a workload is one class and one line there.
    """

    name: ClassVar[str]  # its `test_template_name`
    cmd_args_model: ClassVar[type[CmdArgsModel]]  # validates the test's cmd_args
    simulated: ClassVar[bool] = False  # labelled SIMULATED wherever it appears
    submits_own_job: ClassVar[bool] = False  # its program submits the real (Slurm) job and prints its id
    megatron: ClassVar[bool] = False  # its cmd_args are Megatron-Bridge's: the rules and presets apply
    default_gpus_per_node: ClassVar[int | None] = 8  # None: cmd_args.num_gpus on one node

    @classmethod
    def rules(cls) -> tuple[Rule, ...]:
        """The parallelism rules its points must satisfy (`dse.megatron.rules_for`)."""
        return rules_for(megatron=cls.megatron)

    @classmethod
    def check_test(cls, test: TestDefinition) -> None:
        """Checks of a test definition beyond its cmd_args model; raise `dse.errors.FieldProblem`."""
        return None

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

    def progress_logs(self, trial_dir: Path) -> list[Path]:
        """The logs a running job writes its iteration lines to (tailed for `--early-stopping`)."""
        return [trial_dir / STDOUT]

    def stopped_cost(self, step_times: list[float], gpus: int) -> float | None:
        """What a run stopped after `step_times` cost, when the workload knows better than the wall clock (a
        simulation: its simulated time); None: the wall time x GPUs is the cost."""
        return None

    def gpus(self, cfg: TrialConfig, spec: JobSpec | None = None) -> int:
        """The GPUs a trial's run holds (for GPU-hours): `num_gpus` when the cmd_args say, else the job's."""
        n = cfg.flat_cmd_args().get("num_gpus")
        if isinstance(n, int) and not isinstance(n, bool) and n > 0:
            return n
        return spec.num_nodes * spec.gpus_per_node if spec is not None else 0


def read_text(path: Path, limit: int = 20_000_000) -> str:
    """The first `limit` characters of a UTF-8 text file (undecodable bytes replaced); "" when unreadable.

    The default bounds what is read of a log; a metrics JSON is read whole (up to 1 GB, see
    `dse.workloads._outcomes.read_metrics_file`), since a truncated one would be corrupt."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read(limit)
    except OSError:
        return ""


def last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""
