"""`dse dry-run`: the exact command and job script of the first N trials; submits nothing."""

from __future__ import annotations

import tempfile
from pathlib import Path

from dse.engine._sweep import AgentFactory
from dse.hashing import scrub_text
from dse.space import SweepSpace, draw_env_params
from dse.spec import Sweep
from dse.workloads import workload_for


def dry_run(sweep: Sweep, make_agent: AgentFactory, n: int = 3, out: Path | None = None, agent: str | None = None,
            seed: int = 0) -> int:
    space = SweepSpace(sweep)
    count = space.require_valid()
    name = agent or sweep.test.agent
    picker = make_agent(name, space, steps=n, seed=seed, storage_dir=None)
    workload = workload_for(sweep)
    root = Path(out) if out else Path(tempfile.mkdtemp(prefix=f"dse-dry-run-{sweep.name}-"))
    if workload.simulated:
        print(f"note: {sweep.workload} is a SIMULATION (analytic performance model, no GPU)")
    print(f"dry run of {sweep.name}: {count.valid:,} valid points of {count.total:,}; showing {n} "
          f"in the order of agent {name}; files under {root}")
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
        print(f"\n# trial {trial}: {action}" + (f" env {env}" if env else ""))
        if spec.submit_host:
            print(f"# runs on the submit host (no allocation of its own); it submits the training job: "
                  f"{cfg.num_nodes} node(s), time limit {cfg.time_limit or 'the system default'}")
        else:
            print(f"# nodes {spec.num_nodes}, gpus/node {spec.gpus_per_node}, time limit "
                  f"{spec.time_limit_s or 'none'} s, scheduler {sweep.system.scheduler}")
        print(script, end="")
    return 0
