"""Agent benchmarks: engine overhead per trial and sample efficiency on simulator spaces.

Run: `python benchmarks/bench_agents.py [--quick] [--seeds N]`. Prints two tables:
1. engine overhead per ask+tell with a trivial in-process reward (grid, random: target <= 1 ms; optuna vs a
   plain Optuna ask/tell loop with the same TPE sampler and settings: target <= 1.1x);
2. sample efficiency: trials until a point within 2% of the exhaustive optimum step time is found (median of
   5 seeds, or --seeds N) for optuna, random and grid, on SIMULATED spaces (dse.simulator._model; the optimum is computed by
   evaluating every valid point), as a share of the valid points (optuna target <= 5%).
"""

from __future__ import annotations

import argparse
import gc
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import optuna  # noqa: E402
from optuna.distributions import CategoricalDistribution  # noqa: E402

from dse.agents._base import create_agent  # noqa: E402
from dse.agents._optuna import TPE_DEFAULTS  # noqa: E402
from dse.errors import InputError  # noqa: E402
from dse.simulator import predict  # noqa: E402
from dse.space import SweepSpace  # noqa: E402
from dse.spec import load_sweep  # noqa: E402
from dse.trial import TrialResult  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)

OVERHEAD_TOML = """
name = "overhead"
test_template_name = "Command"
[cmd_args]
command = "true"
a = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
b = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
c = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
d = [1, 2, 3, 4, 5]
"""

SIM_SPACES = {
    "qwen3_30b_a3b 16xh100": ("h100", 16, "qwen", "qwen3_30b_a3b", "fp8_cs", 1024,
                              "tp = [1, 2, 4]\npp = [1, 2, 4]\nvp = [1, 2, 3, 6, 12]\nep = [2, 4, 8, 16]\n"
                              "mb = [1, 2, 4]\ncuda_graph_impl = [\"none\", \"transformer_engine\"]\n"),
    "qwen3_30b_a3b 64xh100": ("h100", 64, "qwen", "qwen3_30b_a3b", "fp8_cs", 4096,
                              "tp = [1, 2, 4]\npp = [1, 2, 4]\nvp = [1, 2, 3, 6, 12]\nep = [4, 8, 16, 32]\n"
                              "mb = [1, 2, 4]\ncp = [1, 2]\n"),
    "llama3_70b 64xgb200": ("gb200", 64, "llama", "llama3_70b", "fp8_mx", 256,
                            "tp = [1, 2, 4, 8]\npp = [1, 2, 4, 8]\nvp = [1, 2, 5, 10]\ncp = [1, 2]\n"
                            "mb = [1, 2, 4]\nrecompute_num_layers = [0, 1, 4]\n"),
}
# Further spaces, not named in the issue: smaller, with only 1 to 6 points within 2% of the optimum, so every
# agent needs a larger share of them. Shown so the table above is not read as the agent's whole story.
FURTHER_SPACES = {
    "llama3_8b 8xh100": ("h100", 8, "llama", "llama3_8b", "bf16", 128,
                         "tp = [1, 2, 4, 8]\npp = [1, 2, 4]\ncp = [1, 2]\nmb = [1, 2, 4]\n"
                         "recompute_num_layers = [0, 1, 4]\ncuda_graph_impl = [\"none\", \"local\"]\n"),
    "qwen3_30b_a3b 32xb200": ("b200", 32, "qwen", "qwen3_30b_a3b", "fp8_mx", 512,
                              "tp = [1, 2, 4]\npp = [1, 2, 4]\nep = [4, 8, 16, 32]\nmb = [1, 2, 4, 8]\ncp = [1, 2]\n"
                              "vp = [1, 2, 3]\n"),
    "llama3_70b 128xb300": ("b300", 128, "llama", "llama3_70b", "bf16", 512,
                            "tp = [1, 2, 4, 8]\npp = [1, 2, 4, 8]\nvp = [1, 2, 5]\ncp = [1, 2]\nmb = [1, 2]\n"
                            "use_megatron_fsdp = [true, false]\nactivation_offload_layers = [0, 20]\n"),
}


def _space(text: str) -> SweepSpace:
    path = Path(tempfile.mkdtemp()) / "s.toml"
    path.write_text(text)
    return SweepSpace(load_sweep(path))


def _reward(action: dict[str, Any]) -> float:
    """The trivial in-process workload: a reward computed from the action alone."""
    return -float(sum(action.values()))


def _ours(space: SweepSpace, trials: int) -> tuple[float, int]:
    """Seconds for `trials` ask+tell rounds of our optuna agent, and how many proposals it moved."""
    agent = create_agent("optuna", space, steps=trials, seed=0)  # storage_dir=None: in-memory study
    gc.collect()
    t0 = time.perf_counter()
    for _ in range(trials):
        action = agent.ask()
        agent.tell(action, TrialResult(reward=_reward(action), status="completed", values=[1.0]))
    return time.perf_counter() - t0, agent.moved


def _plain(space: SweepSpace, trials: int) -> tuple[float, int]:
    """Seconds for a plain Optuna ask/tell loop (same sampler settings, same distributions, in memory),
    and how many distinct points it evaluated (it re-runs whatever TPE proposes again)."""
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0, **TPE_DEFAULTS))
    dists = {d.path: CategoricalDistribution(list(d.values)) for d in space.agent.dimensions}
    gc.collect()
    t0 = time.perf_counter()
    for _ in range(trials):
        trial = study.ask(dists)
        study.tell(trial, _reward(trial.params))
    elapsed = time.perf_counter() - t0
    return elapsed, len({tuple(sorted(t.params.items())) for t in study.trials})


def overhead(trials: int, optuna_trials: int, reps: int) -> list[tuple[str, float, str]]:
    """ms per ask+tell; optuna is the median of `reps` interleaved runs against the plain loop."""
    space = _space(OVERHEAD_TOML)
    rows = []
    for name in ("grid_search", "random_search"):
        agent = create_agent(name, space, steps=trials, seed=0)
        t0 = time.perf_counter()
        for _ in range(trials):
            action = agent.ask()
            agent.tell(action, TrialResult(reward=_reward(action), status="completed", values=[1.0]))
        rows.append((name, (time.perf_counter() - t0) / trials * 1e3,
                     f"{space.agent.size:,}-point space, {trials} trials (target <= 1 ms)"))
    _plain(space, 10)  # warm imports and caches outside the timed loops
    ours, plain, moved, distinct = [], [], 0, 0
    for _ in range(reps):
        sec, moved = _ours(space, optuna_trials)
        ours.append(sec)
        sec, distinct = _plain(space, optuna_trials)
        plain.append(sec)
    t_ours, t_plain = statistics.median(ours), statistics.median(plain)
    rows.append(("optuna (TPE)", t_ours / optuna_trials * 1e3,
                 f"baseline plain Optuna loop, {optuna_trials} trials: {t_plain / optuna_trials * 1e3:.2f} ms "
                 f"-> ratio {t_ours / t_plain:.2f}x (target <= 1.1x; median of {reps})"))
    rows.append(("", float("nan"),
                 f"  ours evaluated {optuna_trials} distinct points ({moved} proposals of seen points moved to "
                 f"a neighbour); the plain loop only {distinct}"))
    return rows


def _sim_toml(gpu: str, n: int, family: str, recipe: str, dtype: str, gb: int, dims: str) -> str:
    return (f'name = "eff"\ntest_template_name = "MegatronBridgeSim"\n[cmd_args]\ngpu_type = "{gpu}"\n'
            f'gpus_per_node = {4 if gpu.startswith("gb") else 8}\nnum_gpus = {n}\nmodel_family_name = "{family}"\n'
            f'model_recipe_name = "{recipe}"\ncompute_dtype = "{dtype}"\ngb = {gb}\n{dims}')


def _step_time(space: SweepSpace, index: int, memo: dict[int, float]) -> float:
    if index not in memo:
        cfg = space.resolve(space.agent.decode(index))
        try:
            p = predict(cfg.flat_cmd_args(), num_nodes=cfg.num_nodes)
            memo[index] = p.step_time_s if p.fits else math.inf
        except InputError:
            memo[index] = math.inf
    return memo[index]


def efficiency(seeds: int, spaces: dict[str, tuple[Any, ...]]) -> list[tuple[str, int, float, dict[str, float]]]:
    out = []
    for label, spec in spaces.items():
        space = _space(_sim_toml(*spec))
        valid = [int(i) for i in space.valid_indices()]
        memo: dict[int, float] = {}
        optimum = min(_step_time(space, i, memo) for i in valid)
        medians = {}
        for name in ("optuna", "random_search", "grid_search"):
            counts = []
            for seed in range(seeds if name != "grid_search" else 1):
                agent = create_agent(name, space, steps=len(valid), seed=seed)
                used = 0
                while used < len(valid):
                    action = agent.ask()
                    if action is None:
                        break
                    used += 1
                    t = _step_time(space, space.agent.encode(action), memo)
                    ok = math.isfinite(t)
                    agent.tell(action, TrialResult(reward=1 / t if ok else -math.inf,
                                                   status="completed" if ok else "failed", values=[t] if ok else [],
                                                   reason=None if ok else "out-of-memory"))
                    if t <= optimum * 1.02:
                        break
                counts.append(used)
            medians[name] = statistics.median(counts)
        out.append((label, len(valid), optimum, medians))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer trials and seeds (< 1 minute)")
    parser.add_argument("--seeds", type=int, help="seeds per agent for the sample-efficiency table (default 5)")
    args = parser.parse_args()
    print("1. engine overhead per trial (ask + tell, trivial in-process reward; baseline: plain Optuna loop)")
    seeds = args.seeds or (2 if args.quick else 5)
    for name, ms, note in overhead(500 if args.quick else 2000, 60 if args.quick else 200, 3 if args.quick else 5):
        cost = f"{ms:8.3f} ms/trial" if math.isfinite(ms) else " " * 17
        print(f"   {name:<14} {cost}   {note}")
    print("\n2. sample efficiency on SIMULATED spaces: trials to reach 2% of the exhaustive optimum "
          f"(median of {seeds} seeds; grid: its fixed order)")
    print(f"   {'space':<24} {'valid':>6} {'opt s':>7} {'optuna':>14} {'random':>14} {'grid':>14} "
          f"{'random/optuna':>14} {'grid/optuna':>12}")
    for spaces, note in ((SIM_SPACES, "the issue's spaces (target: optuna <= 5%)"),
                         (FURTHER_SPACES, "further spaces, no target")):
        print(f"   {note}")
        for label, valid, opt, med in efficiency(seeds, spaces):
            cells = [f"{med[k]:>5.0f} ({100 * med[k] / valid:4.1f}%)"
                     for k in ("optuna", "random_search", "grid_search")]
            print(f"   {label:<24} {valid:>6} {opt:>7.2f} {cells[0]:>14} {cells[1]:>14} {cells[2]:>14} "
                  f"{med['random_search'] / med['optuna']:>14.1f} {med['grid_search'] / med['optuna']:>12.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
