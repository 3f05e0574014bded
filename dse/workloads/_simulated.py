"""`MegatronBridgeSim`: the MegatronBridge cmd_args, run as a real subprocess on the analytic model.

SIMULATED: `python -m dse.simulator._program` writes the same golden-values JSON and log lines a real
run would, from `dse.simulator._model`; no GPU and no Megatron-Bridge are involved.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import dse.megatron
import dse.simulator
from dse.hashing import redact, resolve_hf_token
from dse.megatron import MegatronBridgeCmdArgs
from dse.simulator import STARTUP_S
from dse.timelimit import time_limit_seconds
from dse.trial import TrialConfig
from dse.workloads._base import JobSpec, Outcome, Workload
from dse.workloads._outcomes import collect_metrics


class SimulatedMegatronBridge(Workload):
    name = "MegatronBridgeSim"
    cmd_args_model = MegatronBridgeCmdArgs
    simulated = True
    megatron = True
    time_scale: float = 0.0

    def build(self, cfg: TrialConfig, trial_dir: Path) -> JobSpec:
        cmd_args = cfg.flat_cmd_args()
        cmd_args.pop("hf_token", None)
        # the model needs no secret: a secret-named field (wandb_key) or a token in a value never reaches the file
        config: dict[str, Any] = {"cmd_args": redact(cmd_args), "num_nodes": cfg.num_nodes, "simulated": True}
        (trial_dir / "simulation_input.json").write_text(json.dumps(config, indent=1, default=str))
        scale = float(os.environ.get("DSE_SIM_TIME_SCALE", self.time_scale))
        argv = [sys.executable, "-m", "dse.simulator", "--config", "simulation_input.json",
                "--out", ".", "--time-scale", str(scale)]
        if "trial" in cfg.env:
            argv += ["--trial", str(cfg.env["trial"])]
        limit = time_limit_seconds(cfg.time_limit) if cfg.time_limit else None
        # a simulation needs one CPU, not the nodes and GPUs it models: never hold a cluster's GPUs for it
        # secrets in extra_env_vars reach the job through its inherited environment (JobSpec.secret_env)
        return JobSpec(argv=argv, cwd=str(trial_dir), env=dict(cfg.extra_env_vars), num_nodes=1,
                       gpus_per_node=0, time_limit_s=limit, secret_values=[resolve_hf_token(cfg.cmd_args)])

    def collect(self, cfg: TrialConfig, trial_dir: Path, returncode: int | None) -> Outcome:
        outcome = collect_metrics(trial_dir, [trial_dir / "golden_values.json"], returncode)
        outcome.gpu_hours = simulated_gpu_hours(trial_dir)
        return outcome

    def identity(self) -> dict[str, Any]:
        return {"workload": self.name, "simulator": _model_fingerprint()}

    def stopped_cost(self, step_times: list[float], gpus: int) -> float | None:
        """The simulated cost up to where it was stopped: start-up plus the simulated iterations seen."""
        return (STARTUP_S + sum(step_times)) * gpus / 3600.0


@functools.cache
def _model_fingerprint() -> str:
    """A digest of the model's source: a changed model never reuses cached simulated results."""
    digest = hashlib.sha256()
    for package in (dse.megatron, dse.simulator):  # the model, and the Megatron knowledge it reads
        for source in sorted(Path(package.__file__ or "").parent.glob("*.py")):
            digest.update(source.read_bytes())
    return digest.hexdigest()[:16]


def simulated_gpu_hours(trial_dir: Path) -> float | None:
    """The GPU-hours the simulated run would have cost (`simulation.json`), or None when it left no record."""
    try:
        value = json.loads((trial_dir / "simulation.json").read_text()).get("gpu_hours")
    except (OSError, ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
