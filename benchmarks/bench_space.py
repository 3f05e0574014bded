"""Counting a 10^7-point space: dse's vectorised block evaluation vs a plain itertools loop.

Run: `python benchmarks/bench_space.py` (about a minute). Prints points/second and peak memory for dse
(all 31 Megatron-Bridge rules + the two expression constraints) and for the baseline: a plain
`itertools.product` loop evaluating only the two expression constraints in Python (so the baseline does
less work per point than dse; the ratio is a lower bound of the speed-up).
"""

from __future__ import annotations

import argparse
import itertools
import os
import resource
import sys
import time
import tracemalloc
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
os.environ.setdefault("HF_TOKEN", "benchmark-dummy")

from dse.space import SweepSpace  # noqa: E402
from dse.spec import load_sweep  # noqa: E402


def bench_dse(space: SweepSpace) -> tuple[float, int, int]:
    tracemalloc.start()
    t0 = time.perf_counter()
    count = space.count()
    elapsed = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return elapsed, count.valid, peak


def bench_itertools(space: SweepSpace, limit: int) -> tuple[float, int, int, int]:
    names = space.agent.names
    values = [d.values for d in space.agent.dimensions]
    gpus = int(space.fixed["num_gpus"])
    tracemalloc.start()
    t0 = time.perf_counter()
    valid = n = 0
    for combo in itertools.islice(itertools.product(*values), limit):
        p = dict(zip(names, combo, strict=True))
        n += 1
        tp, pp, mb, gb, cp = p["tp"], p["pp"], p["mb"], p["gb"], p["cp"]
        dp = gpus // (tp * pp)
        if dp and gb % (mb * dp) == 0 and tp * cp <= 8:
            valid += 1
    elapsed = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return elapsed, n, valid, peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", type=Path, default=HERE / "space_1e7.toml")
    parser.add_argument("--baseline-points", type=int, default=None, help="cap the baseline loop (default: all)")
    args = parser.parse_args()
    space = SweepSpace(load_sweep(args.sweep))
    size = space.agent.size
    print(f"space: {args.sweep.name}, {size:,} points, {len(space.rules)} rules")
    t_dse, valid, peak_dse = bench_dse(space)
    print(f"dse (numpy blocks)      : {t_dse:8.2f} s  {size / t_dse:14,.0f} points/s  peak {peak_dse / 2**20:8.1f} MiB"
          f"  valid {valid:,}")
    limit = args.baseline_points or size
    t_it, n, _, peak_it = bench_itertools(space, limit)
    print(f"baseline (itertools)    : {t_it:8.2f} s  {n / t_it:14,.0f} points/s  peak {peak_it / 2**20:8.1f} MiB"
          f"  ({n:,} points, 2 expression rules only)")
    print(f"ratio dse/baseline      : {(size / t_dse) / (n / t_it):.1f}x points/s")
    print(f"max RSS                 : {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
