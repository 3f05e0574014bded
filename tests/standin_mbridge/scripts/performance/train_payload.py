#!/usr/bin/env python3
"""The "training" the stand-in launcher's Slurm job runs (in place of run_script.py + Megatron-Bridge).

Prints Megatron-Bridge's per-iteration log lines over time (docs/reference/megatron-bridge.md §2c), really
sleeping each step: base step time 0.3/mbs + 0.05 s (env STANDIN_STEP_S overrides it), the first
iteration slower. Writes env.json (the environment it saw; values of variables whose name contains
TOKEN, KEY or SECRET redacted), payload_args.json and, when asked, the config YAML. STANDIN_OOM=1 makes it
fail like a CUDA out-of-memory (exit 1). Stdlib only.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from datetime import datetime
from pathlib import Path

SECRET_MARKERS = ("TOKEN", "KEY", "SECRET")


def redacted_env() -> dict[str, str]:
    out = {}
    for name, value in sorted(os.environ.items()):
        if any(m in name.upper() for m in SECRET_MARKERS):
            value = f"<redacted:{len(value)} chars>"
        out[name] = value
    return out


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description="dse stand-in training payload")
    p.add_argument("--job_dir", type=Path, required=True)
    p.add_argument("--exp_name", required=True)
    p.add_argument("--model_recipe_name", default="")
    p.add_argument("--compute_dtype", default="bf16")
    p.add_argument("--num_gpus", type=int, default=8)
    for flag in ("--tp", "--pp", "--cp", "--vp", "--ep", "--etp", "--gbs", "--seq_length"):
        p.add_argument(flag, type=int)
    p.add_argument("--mbs", type=int, default=1)
    p.add_argument("--max_steps", type=int, default=10)
    p.add_argument("--save_config", type=Path)
    return p.parse_args()


def _g5(x: float) -> float:
    return float(f"{x:.5g}")


def main() -> int:
    args = parse()
    args.job_dir.mkdir(parents=True, exist_ok=True)
    (args.job_dir / "env.json").write_text(json.dumps(redacted_env(), indent=1) + "\n")
    (args.job_dir / "payload_args.json").write_text(
        json.dumps({k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}, indent=1) + "\n")
    mbs = max(1, args.mbs)
    dp = max(1, args.num_gpus // ((args.tp or 1) * (args.pp or 1) * (args.cp or 1)))
    gbs = args.gbs or mbs * dp
    if args.save_config:
        args.save_config.parent.mkdir(parents=True, exist_ok=True)
        values = {"tensor_model_parallel_size": args.tp or 1, "pipeline_model_parallel_size": args.pp or 1,
                  "context_parallel_size": args.cp or 1, "virtual_pipeline_model_parallel_size": args.vp,
                  "expert_model_parallel_size": args.ep or 1, "expert_tensor_parallel_size": args.etp,
                  "micro_batch_size": mbs, "global_batch_size": gbs, "seq_length": args.seq_length,
                  "train_iters": args.max_steps, "precision": args.compute_dtype, "recipe": args.model_recipe_name}
        args.save_config.write_text("# dse stand-in ConfigContainer (parsed values only)\n" + "".join(
            f"{k}: {'null' if v is None else v}\n" for k, v in values.items()))

    print(f"> standin training {args.exp_name} on {args.num_gpus} GPUs (job {os.environ.get('SLURM_JOB_ID', '-')})",
          flush=True)
    if os.environ.get("STANDIN_OOM") == "1":
        time.sleep(0.2)
        print("Traceback (most recent call last):\n  File \"run_script.py\", line 1, in <module>", file=sys.stderr)
        print("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", file=sys.stderr, flush=True)
        return 1

    base = float(os.environ["STANDIN_STEP_S"]) if os.environ.get("STANDIN_STEP_S") else 0.3 / mbs + 0.05
    steps = args.max_steps if args.max_steps and args.max_steps > 0 else 10
    alloc = 10.0 + 4.0 * mbs
    for i in range(1, steps + 1):
        t = 3.0 * base + 0.2 if i == 1 else base  # warm-up / compile on the first iteration
        time.sleep(t)
        util = 50.0 / t
        loss = 11.0 - 3.0 * (1.0 - math.exp(-(i - 1) / 10.0)) + 0.02 * math.sin(1.7 * i)
        now = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        print(f"Step Time : {t:.3f}s GPU utilization: {util:.1f}MODEL_TFLOP/s/GPU", flush=True)
        print(f" [{now}] iteration {i:>8}/{steps:>8} | consumed samples: {i * gbs:>12} | elapsed time per iteration "
              f"(ms): {t * 1000:.1f} | learning rate: 3.000000E-04 | global batch size: {gbs:>5} | lm loss: "
              f"{loss:.6E} | loss scale: 1.0 | grad norm: 1.234 | number of skipped iterations:   0 | "
              "number of nan iterations:   0 |", flush=True)
        if i == 1:
            print(f"[Rank 0] (after 1 iterations) memory (GB) | mem-allocated-gigabytes: {_g5(alloc)} | "
                  f"mem-active-gigabytes: {_g5(alloc)} | mem-max-allocated-gigabytes: {_g5(alloc * 1.3)} | "
                  f"mem-max-reserved-gigabytes: {_g5(alloc * 1.4)} | mem-alloc-retires: 0 | mem-allocated-count: 1234",
                  flush=True)
    print(f"[after training is done] datetime: {datetime.now().strftime('%Y-%m-%d %H:%M:%S')}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
