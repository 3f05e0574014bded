"""A stand-in for Megatron-Bridge's setup_experiment.py (the real one needs GPUs and containers).

It takes the same argv, checks the HF token reached it through the environment (never argv), prints the
training log lines Megatron-Bridge prints, writes the golden-values JSON where `--golden_values_path`
says, and then fails like v0.3.0 does when no golden values exist yet (exit 1, an expected outcome).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main() -> int:
    args = sys.argv[1:]
    if not os.environ.get("HF_TOKEN"):
        print("AssertionError: HF token missing", file=sys.stderr)
        return 3
    if any(a.startswith("hf_") for a in args) or "-hf" in args:
        print("token on the command line", file=sys.stderr)
        return 4
    path = Path(args[args.index("--golden_values_path") + 1])
    mb = int(args[args.index("-mb") + 1]) if "-mb" in args else 1
    step_s = 2.0 / mb + 0.1
    values: dict[str, object] = {}
    for step in range(10):
        t = step_s * (5 if step == 0 else 1)
        print(f"Step Time : {t:.2f}s GPU utilization: {100 * mb:.1f}MODEL_TFLOP/s/GPU")
        print(f" [2026-11-24 10:00:00] iteration {step + 1:>8}/      10 | elapsed time per iteration (ms): "
              f"{t * 1000:.1f} | lm loss: 1.000000E+01 |")
        values[str(step)] = {"lm loss": 10.0, "elapsed time per iteration (ms)": t * 1000, "GPU utilization": 100.0 * mb}
    values["alloc"], values["max_alloc"] = 10.0, 20.0
    out = path.parent / "experiments" / "golden_values" / path.name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(values))
    print("Convergence check failed due to missing golden values.")
    print("This is expected if it is the first time running this model.")
    return 1


if __name__ == "__main__":
    sys.exit(main())
