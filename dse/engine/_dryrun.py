"""`dse dry-run`: the exact command and job script of the first N trials; submits nothing.

`plan_dry_run` writes each trial's script and returns what it did as data (`dse dry-run --json`);
`dry_run_text` is the same plan as the command prints it.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dse.engine._sweep import AgentFactory
from dse.hashing import scrub_text
from dse.space import SweepSpace, draw_env_params
from dse.spec import Sweep
from dse.workloads import workload_for


@dataclass(frozen=True)
class DryRunTrial:
    """One trial as `dse run` would launch it: the point, the env draw and its script."""

    trial: int
    params: dict[str, Any]
    env: dict[str, Any]
    script_path: Path
    script: str  # secrets scrubbed
    submit_host: bool  # a launcher on the submit host that submits the training job itself
    num_nodes: int
    gpus_per_node: int | None
    time_limit: str | None  # as the sweep or the system gives it (a launcher's job), or seconds


@dataclass(frozen=True)
class DryRun:
    sweep: str
    workload: str
    simulated: bool
    agent: str
    valid: int
    total: int
    scheduler: str
    out: Path
    trials: list[DryRunTrial] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """`dse dry-run --json`."""
        return {"sweep": self.sweep, "workload": self.workload, "simulated": self.simulated, "agent": self.agent,
                "valid": self.valid, "total": self.total, "scheduler": self.scheduler, "out": str(self.out),
                "trials": [{"trial": t.trial, "params": t.params, "env": t.env, "script_path": str(t.script_path),
                            "script": t.script, "submit_host": t.submit_host, "num_nodes": t.num_nodes,
                            "gpus_per_node": t.gpus_per_node, "time_limit": t.time_limit} for t in self.trials]}


def plan_dry_run(sweep: Sweep, make_agent: AgentFactory, n: int = 3, out: Path | None = None,
                 agent: str | None = None, seed: int = 0) -> DryRun:
    """Write the first `n` trials' scripts under `out` (default: a new temp dir), in the agent's order."""
    space = SweepSpace(sweep)
    count = space.require_valid()
    name = agent or sweep.test.agent
    picker = make_agent(name, space, steps=n, seed=seed, storage_dir=None)
    workload = workload_for(sweep)
    root = Path(out) if out else Path(tempfile.mkdtemp(prefix=f"dse-dry-run-{sweep.name}-"))
    trials = []
    for trial in range(1, n + 1):
        action = picker.ask()
        if action is None:
            break
        env = draw_env_params(space, seed, trial)
        cfg = space.resolve(action, env)
        trial_dir = root / "trials" / str(trial)
        trial_dir.mkdir(parents=True, exist_ok=True)
        spec = workload.build(cfg, trial_dir)
        script = scrub_text(spec.script())
        (trial_dir / "command.sh").write_text(script)
        if spec.submit_host:
            nodes, per_node, limit = cfg.num_nodes, None, cfg.time_limit
        else:
            nodes, per_node = spec.num_nodes, spec.gpus_per_node
            limit = None if spec.time_limit_s is None else f"{spec.time_limit_s} s"
        trials.append(DryRunTrial(trial, dict(action), dict(env), trial_dir / "command.sh", script,
                                  bool(spec.submit_host), nodes, per_node, limit))
    return DryRun(sweep.name, sweep.workload, workload.simulated, name, count.valid, count.total,
                  sweep.system.scheduler, root, trials)


def dry_run_text(plan: DryRun) -> str:
    """The plan as `dse dry-run` prints it: a header, then each trial's comment lines and script."""
    lines = []
    if plan.simulated:
        lines.append(f"note: {plan.workload} is a SIMULATION (analytic performance model, no GPU)")
    lines.append(f"dry run of {plan.sweep}: {plan.valid:,} valid points of {plan.total:,}; showing "
                 f"{len(plan.trials)} in the order of agent {plan.agent}; files under {plan.out}")
    for t in plan.trials:
        lines.append(f"\n# trial {t.trial}: {t.params}" + (f" env {t.env}" if t.env else ""))
        if t.submit_host:
            lines.append(f"# runs on the submit host (no allocation of its own); it submits the training job: "
                         f"{t.num_nodes} node(s), time limit {t.time_limit or 'the system default'}")
        else:
            lines.append(f"# nodes {t.num_nodes}, gpus/node {t.gpus_per_node}, time limit "
                         f"{t.time_limit or 'none'}, scheduler {plan.scheduler}")
        lines.append(t.script.rstrip("\n"))
    return "\n".join(lines)
