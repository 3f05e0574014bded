"""The simulated run as a real subprocess: banner, docs/reference/megatron-bridge.md §2c log lines, §2b golden JSON, OOM, determinism."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from dse.metrics import classify_failure, parse_log, parse_metrics_json
from dse.simulator import BANNER, run_simulation

# A small model (4 layers of Llama3 8B) on 8 GB200s: fits under any sane memory model.
SMALL: dict[str, Any] = {
    "cmd_args": {"model_recipe_name": "llama3_8b", "gpu_type": "gb200", "compute_dtype": "bf16", "num_gpus": 8,
                 "tp": 1, "pp": 1, "cp": 1, "mb": 1, "gb": 8, "model.num_layers": 4, "num_layers": 4,
                 "max_steps": 5},
    "num_nodes": 2,
}
# Llama3 70B unsharded on one H100 node with a huge micro-batch: cannot fit in 80 GB.
HUGE: dict[str, Any] = {
    "cmd_args": {"model_recipe_name": "llama3_70b", "gpu_type": "h100", "compute_dtype": "bf16", "num_gpus": 8,
                 "tp": 1, "pp": 1, "cp": 1, "vp": 1, "mb": 16, "gb": 128},
    "num_nodes": 1,
}


def _run(tmp: Path, config: dict[str, Any], *extra: str) -> subprocess.CompletedProcess[str]:
    cfg = tmp / "config.json"
    cfg.write_text(json.dumps(config))
    return subprocess.run([sys.executable, "-m", "dse.simulator", "--config", str(cfg),
                           "--out", str(tmp / "out"), *extra], capture_output=True, text=True, timeout=60)


def test_success_writes_log_lines_and_golden_values(tmp_path: Path) -> None:
    proc = _run(tmp_path, SMALL, "--trial", "3")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(BANNER) and "SIMULATED" in lines[0]
    assert sum(line.startswith("Step Time : ") for line in lines) == 5
    assert sum(" iteration " in line for line in lines) == 5
    assert sum(line.startswith("[Rank 0] (after 1 iterations) memory (GB)") for line in lines) == 1
    golden = json.loads((tmp_path / "out" / "golden_values.json").read_text())
    assert set(golden) == {"0", "1", "2", "3", "4", "alloc", "max_alloc"}
    for i in range(5):
        assert set(golden[str(i)]) == {"lm loss", "elapsed time per iteration (ms)", "GPU utilization"}
    assert golden["0"]["elapsed time per iteration (ms)"] > golden["4"]["elapsed time per iteration (ms)"]  # warm-up
    assert 0 < golden["alloc"] <= golden["max_alloc"]
    sim = json.loads((tmp_path / "out" / "simulation.json").read_text())
    assert sim["simulated"] is True and "breakdown" in sim["prediction"]
    # the log and the JSON tell the same story to the project's own parsers
    from_log, from_json = parse_log(proc.stdout), parse_metrics_json(json.dumps(golden))
    assert from_log.step_times_s.keys() == from_json.step_times_s.keys() == set(range(5))
    assert abs(from_log.step_times_s[4] - from_json.step_times_s[4]) < 0.01 * from_json.step_times_s[4] + 0.01
    assert from_log.lm_loss[2] == from_json.lm_loss[2]
    assert from_log.alloc_gb == golden["alloc"] and from_log.max_alloc_gb == golden["max_alloc"]


def test_noise_is_small_and_deterministic(tmp_path: Path) -> None:
    a, b, c = (tmp_path / n for n in "abc")
    for d, trial in ((a, 1), (b, 1), (c, 2)):
        d.mkdir()
        assert run_simulation(SMALL, d, trial=trial, stream=io.StringIO()) == 0
    ga, gb_, gc = (json.loads((d / "golden_values.json").read_text()) for d in (a, b, c))
    assert ga == gb_
    assert ga != gc
    times = [ga[str(i)]["elapsed time per iteration (ms)"] for i in range(1, 5)]
    mean = sum(times) / len(times)
    assert all(abs(t / mean - 1) < 0.05 for t in times)
    assert len(set(times)) > 1  # there is noise


def test_oom_exits_1_with_cuda_message(tmp_path: Path) -> None:
    proc = _run(tmp_path, HUGE)
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[0].startswith(BANNER)
    assert "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate" in proc.stderr
    assert "GPU 0 has a total capacity of" in proc.stderr
    assert not (tmp_path / "out" / "golden_values.json").exists()
    kind = classify_failure(proc.stderr)
    assert kind is not None and kind[0] == "out-of-memory"


def test_rejected_config_and_bad_file(tmp_path: Path) -> None:
    bad = {"cmd_args": {**SMALL["cmd_args"], "gb": 12, "mb": 1, "num_gpus": 8}, "num_nodes": 1}  # 12 % 8 != 0
    proc = _run(tmp_path, bad)
    assert proc.returncode == 1 and "divisible" in proc.stderr
    (tmp_path / "broken.json").write_text("{not json")
    proc2 = subprocess.run([sys.executable, "-m", "dse.simulator", "--config",
                            str(tmp_path / "broken.json"), "--out", str(tmp_path / "o2")],
                           capture_output=True, text=True, timeout=60)
    assert proc2.returncode == 2 and proc2.stderr.startswith("error: ")


def test_time_scale_sleeps_but_is_capped(tmp_path: Path) -> None:
    start = time.monotonic()
    assert run_simulation(SMALL, tmp_path, time_scale=1000.0, max_sleep=0.3, stream=io.StringIO()) == 0
    elapsed = time.monotonic() - start
    assert 0.3 <= elapsed < 5.0
