"""The simulated Megatron-Bridge run: a real subprocess that prints what a real run would print.

Why: sweeps, agents, Slurm plumbing and reports must be exercisable without a GPU. This program takes
one trial's resolved cmd_args, asks the analytic model (`dse.perfmodel`) for step time, TFLOP/s/GPU and
memory, and then behaves like the training job: the per-step log lines of reference §2c, the
golden-values JSON of §2b, a CUDA OOM on stderr (exit 1) when the model says it does not fit. Its first
line says plainly that it is a SIMULATION; `simulation.json` carries `"simulated": true`.

    python -m dse.workloads.simulated --config CONFIG.json --out DIR [--trial N] [--time-scale X]
                                      [--max-sleep S]

CONFIG.json is `{"cmd_args": {...}, "num_nodes": N}`. Output is deterministic for a (config, trial)
pair apart from the wall-clock timestamps in the log lines.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import random
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from dse.errors import DseError
from dse.perfmodel import GPUS, Prediction, predict
from dse.presets import resolve_defaults

BANNER = "[dse simulator] SIMULATED Megatron-Bridge run (analytic model, no GPU used)"
NOISE = 0.01  # relative step-time noise (real runs wander by about 1 %)
DEFAULT_STEPS = 10


def _seed(config: Mapping[str, Any], trial: int) -> int:
    """A stable seed from the config content and the trial number (not Python's salted hash)."""
    text = json.dumps({"config": config, "trial": trial}, sort_keys=True, default=str)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def _max_steps(cmd_args: Mapping[str, Any]) -> int:
    for key in ("max_steps", "train.train_iters"):
        value = cmd_args.get(key)
        if value not in (None, ""):
            return max(1, int(value))
    return DEFAULT_STEPS


def _loss(step: int, rng: random.Random) -> float:
    """A mock-data loss curve: starts near ln(vocab) ~ 11.9 and decays (values as Megatron prints them)."""
    value = 11.9 - 4.2 * (1.0 - math.exp(-step / 25.0)) + rng.gauss(0.0, 0.015)
    return float(f"{value:.6E}")


def _oom_text(pred: Prediction, gpu_name: str) -> str:
    """A CUDA OOM message in PyTorch's wording (the model's own when it wrote one), sized from the prediction."""
    head = "Traceback (most recent call last):\n" + \
        '  File "/opt/Megatron-Bridge/scripts/performance/run_script.py", line 1, in <module>\n'
    if pred.oom_message and "OutOfMemoryError" in pred.oom_message:
        return head + pred.oom_message.rstrip() + "\n"
    total_gib = GPUS[gpu_name].hbm_gb * 1e9 / 2**30 if gpu_name in GPUS else pred.mem_max_alloc_gb
    need_gib = pred.mem_max_alloc_gb * 1e9 / 2**30
    in_use = min(total_gib - 0.02, need_gib)
    tried = max(0.02, need_gib - in_use + 0.5)
    allocated = in_use * 0.97
    return head + (
        "torch.OutOfMemoryError: CUDA out of memory. "
        f"Tried to allocate {tried:.2f} GiB. GPU 0 has a total capacity of {total_gib:.2f} GiB of which "
        f"{max(1.0, (total_gib - in_use) * 1024):.2f} MiB is free. Including non-PyTorch memory, this process "
        f"has {in_use:.2f} GiB memory in use. Of the allocated memory {allocated:.2f} GiB is allocated by "
        f"PyTorch, and {(in_use - allocated) * 1024:.2f} MiB is reserved by PyTorch but unallocated. If "
        "reserved but unallocated memory is large try setting PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True "
        "to avoid fragmentation.  See documentation for Memory Management  "
        "(https://pytorch.org/docs/stable/notes/cuda.html#environment-variables)\n"
        f"[dse simulator] (model: {pred.oom_message or 'does not fit'})\n"
    )


def _write_json(path: Path, data: Any, indent: int | None = None) -> None:
    path.write_text(json.dumps(data, indent=indent, default=str))


def run_simulation(config: Mapping[str, Any], out_dir: Path, trial: int = 0, time_scale: float = 0.0,
                   max_sleep: float = 30.0, stream: TextIO | None = None, err_stream: TextIO | None = None) -> int:
    """Run one simulated training job; returns the exit code (0 ok, 1 OOM / rejected config)."""
    out = stream if stream is not None else sys.stdout
    err = err_stream if err_stream is not None else sys.stderr
    cmd_args = dict(config.get("cmd_args") or {})
    num_nodes = config.get("num_nodes")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"{BANNER}: recipe={cmd_args.get('model_recipe_name')} gpu={cmd_args.get('gpu_type')} "
          f"num_gpus={cmd_args.get('num_gpus')} trial={trial}", file=out, flush=True)

    resolved = resolve_defaults(cmd_args)
    try:
        pred = predict(cmd_args, num_nodes=int(num_nodes) if num_nodes else None)
    except (DseError, ValueError, TypeError) as exc:  # the launcher would stop before training
        message = getattr(exc, "message", str(exc))
        print(f"AssertionError: {message}", file=err, flush=True)
        _write_json(out_dir / "simulation.json", {"simulated": True, "rejected": message, "trial": trial}, 1)
        return 1

    summary: dict[str, Any] = {"simulated": True, "trial": trial, "num_nodes": num_nodes,
                               "prediction": dataclasses.asdict(pred),
                               "resolved": {k: v for k, v in resolved.items() if _plain(v)}}
    if not pred.fits:
        _write_json(out_dir / "simulation.json", summary, 1)
        print(_oom_text(pred, str(resolved.get("gpu_type"))), file=err, end="", flush=True)
        return 1

    rng = random.Random(_seed(config, trial))
    steps = _max_steps(cmd_args)
    world = int(resolved["num_gpus"])
    gbs = int(resolved["gb"])
    golden: dict[str, Any] = {}
    total_s = 0.0
    for i in range(steps):
        step_s = pred.step_time_s * (1.0 + rng.gauss(0.0, NOISE))
        if i == 0:  # warm-up: NCCL setup, allocator growth, CUDA-graph capture, JIT
            step_s = pred.step_time_s * 2.5 + 3.0
        step_s = max(step_s, 1e-3)
        total_s += step_s
        ms = round(step_s * 1e3, 1)
        util = round(pred.flops_per_step / step_s / world / 1e12, 1)
        loss = _loss(i, rng)
        grad_norm = 12.0 * math.exp(-i / 8.0) + 0.8 + abs(rng.gauss(0.0, 0.05))
        lr = 3e-4 * min(1.0, (i + 1) / 10)
        now = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        print(f"Step Time : {step_s:.2f}s GPU utilization: {util:.1f}MODEL_TFLOP/s/GPU", file=out)
        print(f" [{now}] iteration {i + 1:8d}/{steps:8d} | consumed samples: {(i + 1) * gbs:12d} | "
              f"elapsed time per iteration (ms): {ms:.1f} | learning rate: {lr:.6E} | "
              f"global batch size: {gbs:5d} | lm loss: {loss:.6E} | loss scale: 1.0 | grad norm: {grad_norm:.3f} | "
              "number of skipped iterations:   0 | number of nan iterations:   0 |", file=out)
        if i == 0:
            alloc, peak = pred.mem_alloc_gb, pred.mem_max_alloc_gb
            print(f"[Rank 0] (after 1 iterations) memory (GB) | mem-allocated-gigabytes: {_g5(alloc)} | "
                  f"mem-active-gigabytes: {_g5(alloc)} | mem-max-allocated-gigabytes: {_g5(peak)} | "
                  f"mem-max-reserved-gigabytes: {_g5(peak * 1.04)} | mem-alloc-retires: 0 | "
                  f"mem-allocated-count: {1000 + rng.randrange(9000)}", file=out)
        golden[str(i)] = {"lm loss": loss, "elapsed time per iteration (ms)": ms, "GPU utilization": util}
    golden["alloc"] = _g5(pred.mem_alloc_gb)
    golden["max_alloc"] = _g5(pred.mem_max_alloc_gb)
    print("after training is done", file=out, flush=True)
    _write_json(out_dir / "golden_values.json", golden)
    summary["simulated_total_s"] = total_s
    _write_json(out_dir / "simulation.json", summary, 1)
    if time_scale > 0:
        time.sleep(max(0.0, min(max_sleep, total_s * time_scale)))
    return 0


def _g5(value: float) -> float:
    """bytes/1e9 rounded to 5 significant digits, as Megatron prints memory."""
    return float(f"{value:.5g}")


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dse.workloads.simulated", description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, type=Path, help='JSON {"cmd_args": {...}, "num_nodes": N}')
    parser.add_argument("--out", required=True, type=Path, help="directory for golden_values.json")
    parser.add_argument("--trial", type=int, default=0, help="trial number (seeds the noise)")
    parser.add_argument("--time-scale", type=float, default=0.0, help="sleep this fraction of simulated time")
    parser.add_argument("--max-sleep", type=float, default=30.0, help="never sleep longer than this (s)")
    ns = parser.parse_args(argv)
    try:
        config = json.loads(ns.config.read_text())
        if not isinstance(config, dict) or not isinstance(config.get("cmd_args", {}), dict):
            raise ValueError('expected an object {"cmd_args": {...}, "num_nodes": N}')
    except (OSError, ValueError) as exc:
        print(f"error: {ns.config}: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    return run_simulation(config, ns.out, trial=ns.trial, time_scale=ns.time_scale, max_sleep=ns.max_sleep)


if __name__ == "__main__":
    sys.exit(main())
