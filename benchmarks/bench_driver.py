"""Driver scaling: does the per-trial cost of the sweep loop stay constant as the sweep grows?

Runs N trivial Command trials (`true`-like, in-process debug executor so only the driver is measured)
through the real SweepRunner, and prints the throughput over the first and the last hundred trials.
Targets (issue 13): last/first >= 0.9 and >= 20 trials/s of driver throughput. Baseline: the same
runner's first hundred trials in the same run (a driver whose cost grows with the table falls behind it).

    python benchmarks/bench_driver.py [--trials 500 5000] [--executor debug]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from dse.agents import create_sweep_agent
from dse.engine import RunOptions, SweepRunner
from dse.spec import Sweep, TestDefinition


def run(n: int, executor: str, parallel: int) -> tuple[float, float, float]:
    test = TestDefinition.model_validate({
        "name": f"bench_driver_{n}", "test_template_name": "Command", "agent": "grid_search",
        "agent_steps": n, "agent_metrics": ["step-time"],
        "cmd_args": {"command": "echo '{{\"step-time\": {x}}}' > metrics.json", "x": list(range(1, n + 1))},
    })
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["DSE_HOME"] = str(Path(tmp) / "home")
        sweep = Sweep(test=test, source=Path("bench_driver.toml"))
        runner = SweepRunner(sweep, Path(tmp) / "run", RunOptions(parallel=parallel, out=Path(tmp), no_cache=True,
                                                                     executor=executor), create_sweep_agent)
        stamps: list[float] = []
        original = runner._on_finished

        def timed(fin):  # type: ignore[no-untyped-def]
            original(fin)
            stamps.append(time.perf_counter())

        runner._on_finished = timed  # type: ignore[method-assign]
        start = time.perf_counter()
        sys_stdout = sys.stdout
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - the runner prints a line per trial
        try:
            runner.run()
        finally:
            sys.stdout.close()
            sys.stdout = sys_stdout
        total = time.perf_counter() - start
    first = 100 / (stamps[99] - start)
    last = 100 / (stamps[-1] - stamps[-101])
    return first, last, n / total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, nargs="+", default=[500, 5000])
    parser.add_argument("--executor", default="debug", choices=["debug", "local"])
    parser.add_argument("--parallel", type=int, default=8)
    args = parser.parse_args()
    print(f"driver scaling, Command trials, executor {args.executor}, --parallel {args.parallel}")
    print(f"{'trials':>7} {'first 100 /s':>13} {'last 100 /s':>12} {'ratio last/first':>17} {'overall /s':>11}")
    for n in args.trials:
        first, last, overall = run(n, args.executor, args.parallel)
        print(f"{n:>7} {first:>13.1f} {last:>12.1f} {last / first:>17.2f} {overall:>11.1f}")
    print("targets: ratio >= 0.9, throughput >= 20 trials/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
