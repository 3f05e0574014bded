"""A training-like payload for tests: prints Megatron-style iteration lines over real time, then metrics.json.

`python iteration_payload.py STEP_S ITERS` sleeps STEP_S per iteration (the first one three times longer, as a
real run's warm-up is) and prints `iteration i/N | ... elapsed time per iteration (ms): X |` after each.
"""

import json
import sys
import time

step, iters = float(sys.argv[1]), int(sys.argv[2])
times = []
for i in range(1, iters + 1):
    t = 3 * step if i == 1 else step
    time.sleep(t)
    times.append(t)
    print(f" iteration {i:8d}/{iters:8d} | consumed samples: {i * 8:8d} | elapsed time per iteration (ms): "
          f"{t * 1000:.1f} | lm loss: 1.0E+01 |", flush=True)
with open("metrics.json", "w") as fh:
    json.dump({"step-time": sum(times[1:]) / max(1, len(times) - 1)}, fh)
