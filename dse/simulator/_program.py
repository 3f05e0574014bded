"""A SIMULATED Megatron-Bridge training run: a real subprocess that prints what the launcher would print.

`python -m dse.simulator --config CONFIG.json --out DIR [--trial N] [--time-scale X]
[--max-sleep S]` reads `{"cmd_args": {...}, "num_nodes": N}`, predicts the run with `dse.simulator._model` and
emits Megatron-Bridge's per-step log lines (docs/reference/megatron-bridge.md §2c) and golden-values JSON (§2b)
so that the metric collection, caching and sweep logic can be exercised end to end without a GPU. The
first line always says SIMULATED; the second says how far the model's calibration reaches for this
configuration ("published 26.02 row", "interpolated" or "extrapolated: <why>"); `DIR/simulation.json`
carries `"simulated": true` and the same as `"extrapolated"` and `"calibration"`.

Exit codes: 0 success; 1 the configuration would fail (CUDA OOM, or a launcher assertion); 2 bad usage.
Noise (about 1 %) is deterministic: seeded by a hash of the config and the trial number.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from dse.errors import InputError
from dse.megatron import architecture_for, resolve_defaults
from dse.simulator._model import Prediction, predict

BANNER = "[dse simulator] SIMULATED Megatron-Bridge run (analytic model, no GPU used)"
DEFAULT_MAX_STEPS = 10
NOISE = 0.01  # relative step-to-step jitter
WARMUP_FACTOR = 2.5  # step 0 also builds CUDA graphs, allocator pools, NCCL communicators ...
WARMUP_FIXED_S = 20.0
STARTUP_S = 120.0  # simulated cost before the first iteration: container start, NCCL init, model build


def config_seed(config: Mapping[str, Any], trial: int) -> int:
    """A stable seed from the canonical JSON of the config and the trial number."""
    text = json.dumps(config, sort_keys=True, default=str) + f"#trial={trial}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def _g5(x: float) -> float:
    """Megatron rounds the memory report to 5 significant digits."""
    return float(f"{x:.5g}")


def _loss_curve(steps: int, vocab: int, rnd: random.Random) -> list[float]:
    """Mock-data loss: starts near ln(vocab) and falls quickly, with a little jitter."""
    start = math.log(max(vocab, 2)) + 0.02 * rnd.random()
    floor = start * 0.62
    return [floor + (start - floor) * math.exp(-i / 12.0) + rnd.gauss(0.0, 0.01) for i in range(steps)]


def _step_times(pred: Prediction, steps: int, rnd: random.Random) -> list[float]:
    offset = 1.0 + rnd.gauss(0.0, NOISE / 2)  # node-to-node variation of the whole run
    times = [pred.step_time_s * offset * (1.0 + max(-3 * NOISE, min(3 * NOISE, rnd.gauss(0.0, NOISE))))
             for _ in range(steps)]
    if times:
        times[0] = pred.step_time_s * WARMUP_FACTOR + WARMUP_FIXED_S
    return times


def _write_json(path: Path, data: Any, indent: int | None = None) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=indent, default=str))
    tmp.replace(path)


def run_simulation(config: Mapping[str, Any], out_dir: Path, trial: int = 0, time_scale: float = 0.0,
                   max_sleep: float = 30.0, stream: TextIO = sys.stdout, err_stream: TextIO | None = None) -> int:
    """Simulate one run into `out_dir`; returns the exit code a real launcher run would have (0 or 1)."""
    err = err_stream if err_stream is not None else sys.stderr
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd_args = dict(config.get("cmd_args") or {})
    cmd_args.pop("hf_token", None)
    num_nodes = config.get("num_nodes")
    num_nodes = int(num_nodes) if num_nodes not in (None, "") else None
    print(f"{BANNER}: {cmd_args.get('model_recipe_name')} on {cmd_args.get('num_gpus')} x "
          f"{cmd_args.get('gpu_type')} ({cmd_args.get('compute_dtype', 'bf16')}), trial {trial}", file=stream,
          flush=True)
    record: dict[str, Any] = {"simulated": True, "trial": trial, "cmd_args": cmd_args, "num_nodes": num_nodes}
    try:
        resolved = resolve_defaults(cmd_args)
        pred = predict(cmd_args, num_nodes=num_nodes)
    except (InputError, ValueError, TypeError) as exc:
        message = exc.message if isinstance(exc, InputError) else str(exc)
        print(f"AssertionError: {message}", file=err, flush=True)
        record.update(status="failed", error=message)
        _write_json(out_dir / "simulation.json", record, indent=1)
        return 1
    record.update(resolved={k: v for k, v in resolved.items() if k != "hf_token"}, prediction=asdict(pred),
                  extrapolated=pred.extrapolated, calibration=pred.calibration)
    # how far the model's calibration (the 26.02 published table) reaches for this configuration
    print(f"{BANNER}: calibration: {pred.calibration}", file=stream, flush=True)
    if not pred.fits:
        print(pred.oom_message, file=err, flush=True)
        gpus = int(resolved.get("num_gpus") or 0)  # it starts, then dies in its first iteration
        record.update(status="oom", error=pred.oom_message,
                      gpu_hours=(STARTUP_S + WARMUP_FIXED_S) * gpus / 3600, gpu_hours_simulated=True)
        _write_json(out_dir / "simulation.json", record, indent=1)
        return 1

    rnd = random.Random(config_seed(config, trial))
    steps = int(resolved.get("max_steps") or DEFAULT_MAX_STEPS)
    gbs, n = int(resolved["gb"]), int(resolved["num_gpus"])
    arch = architecture_for(resolved.get("model_recipe_name"))
    times = _step_times(pred, steps, rnd)
    losses = _loss_curve(steps, arch.vocab_size if arch else 32000, rnd)
    total = sum(times)
    sleep_total = min(max_sleep, total * time_scale) if time_scale > 0 else 0.0
    clock = datetime.now().replace(microsecond=0)
    golden: dict[str, Any] = {}
    for i, (t, loss) in enumerate(zip(times, losses, strict=True)):
        if sleep_total:
            time.sleep(sleep_total * t / total)
        clock += timedelta(seconds=t)
        tflops = pred.flops_per_step / t / n / 1e12
        grad_norm = 8.0 * math.exp(-i / 6.0) + 0.6 + rnd.random() * 0.05
        print(f"Step Time : {t:.2f}s GPU utilization: {tflops:.1f}MODEL_TFLOP/s/GPU", file=stream)
        print(f" [{clock:%Y-%m-%d %H:%M:%S}] iteration {i + 1:8d}/{steps:8d} | consumed samples: "
              f"{(i + 1) * gbs:12d} | elapsed time per iteration (ms): {t * 1000:.1f} | learning rate: "
              f"{3e-4 * min(1.0, (i + 1) / 10):.6E} | global batch size: {gbs:5d} | lm loss: {loss:.6E} | "
              f"loss scale: 1.0 | grad norm: {grad_norm:.3f} | number of skipped iterations:   0 | "
              f"number of nan iterations:   0 |", file=stream)
        if i == 0:
            alloc, peak = pred.mem_alloc_gb, pred.mem_max_alloc_gb
            print(f"[Rank 0] (after 1 iterations) memory (GB) | mem-allocated-gigabytes: {_g5(alloc)} | "
                  f"mem-active-gigabytes: {_g5(alloc)} | mem-max-allocated-gigabytes: {_g5(peak)} | "
                  f"mem-max-reserved-gigabytes: {_g5(peak * 1.03)} | mem-alloc-retires: 0 | "
                  f"mem-allocated-count: {1800 + rnd.randrange(400)}", file=stream)
        stream.flush()
        # the real JSON is parsed back from these log lines, so it carries their rounding
        golden[str(i)] = {"lm loss": float(f"{loss:.6E}"), "elapsed time per iteration (ms)": float(f"{t * 1000:.1f}"),
                          "GPU utilization": float(f"{tflops:.1f}")}
    golden["alloc"] = _g5(pred.mem_alloc_gb)
    golden["max_alloc"] = _g5(pred.mem_max_alloc_gb)
    _write_json(out_dir / "golden_values.json", golden)
    record.update(status="completed", steps=steps, step_times_s=times, slept_s=sleep_total,
                  gpu_hours=(STARTUP_S + total) * n / 3600, gpu_hours_simulated=True)
    _write_json(out_dir / "simulation.json", record, indent=1)
    print(f"{BANNER}: done, {steps} steps, simulated time {total:.1f}s", file=stream, flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dse.simulator",
                                     description="Simulate a Megatron-Bridge training run (no GPU).")
    parser.add_argument("--config", type=Path, required=True, help='JSON {"cmd_args": {...}, "num_nodes": N}')
    parser.add_argument("--out", type=Path, required=True, help="directory for golden_values.json")
    parser.add_argument("--trial", type=int, default=0, help="trial number (seeds the noise)")
    parser.add_argument("--time-scale", type=float, default=0.0, help="sleep this fraction of the simulated time")
    parser.add_argument("--max-sleep", type=float, default=30.0, help="sleep at most this many seconds")
    args = parser.parse_args(argv)
    try:
        config = json.loads(args.config.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        print(f"error: {args.config}: {exc}", file=sys.stderr)
        return 2
    if not isinstance(config, dict) or not isinstance(config.get("cmd_args", {}), dict):
        print(f'error: {args.config}: expected {{"cmd_args": {{...}}, "num_nodes": N}}', file=sys.stderr)
        return 2
    return run_simulation(config, args.out, trial=args.trial, time_scale=args.time_scale, max_sleep=args.max_sleep)


if __name__ == "__main__":
    sys.exit(main())
