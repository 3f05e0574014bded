"""Numbers a person reads are rounded and carry their unit (#16): the run's trial lines and last line,
`dse status`, `dse best` and `dse compare`; JSON keeps the full value."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, write_toml

from dse.metrics import format_metric, format_metrics, metric_unit

LONG_FLOAT = re.compile(r"\d\.\d{5,}")  # 25.16098888888889, 0.0397441: unrounded


@pytest.mark.parametrize(("name", "value", "text"), [
    ("step-time", 25.16098888888889, "25.16 s"),
    ("default", 1.0, "1 s"),
    ("tflops-per-gpu", 239.71111111111108, "239.7 TFLOP/s/GPU"),
    ("max-alloc-gb", 69.98, "69.98 GB"),
    ("tokens-per-second-per-gpu", 12345.678, "12,346 tokens/s/GPU"),
    ("latency_ms", 3.14159, "3.142 ms"),
    ("accuracy", 0.912345, "0.9123"),
])
def test_a_metric_reads_rounded_with_its_unit(name: str, value: float, text: str) -> None:
    assert format_metric(name, value) == text


def test_unknown_units_stay_unsaid_and_default_is_named_step_time() -> None:
    assert metric_unit("accuracy") is None and metric_unit("step_time") == "s"
    assert format_metrics({"default": 2.5, "tflops-per-gpu": 100.04}) == "step-time 2.5 s, tflops-per-gpu 100 TFLOP/s/GPU"


def dse(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dse.cli", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=300, env=os.environ.copy())


def test_what_a_run_prints_is_rounded_with_units_and_json_keeps_the_value(tmp_path: Path) -> None:
    command = "echo '{{\\\"step-time\\\": {x}.16098888888889, \\\"tflops-per-gpu\\\": 239.71111111111108}}' > metrics.json"
    sweep = write_toml(tmp_path / "u.toml", f'name = "u"\ntest_template_name = "Command"\nagent = "grid_search"\n'
                                            f'agent_metrics = ["step-time", "tflops-per-gpu"]\n'
                                            f'baseline = {{ x = 50 }}\n[cmd_args]\ncommand = "{command}"\n'
                                            f'x = [25, 50]\n')
    run = dse("run", str(sweep), "--out", str(tmp_path / "o"), "--no-cache", "--executor", "debug")
    assert run.returncode == 0, run.stderr
    (run_dir,) = (tmp_path / "o").iterdir()
    status, best, compare = (dse(cmd, str(run_dir)).stdout for cmd in ("status", "best", "compare"))
    assert "step-time 25.16 s, tflops-per-gpu 239.7 TFLOP/s/GPU" in run.stdout.splitlines()[-2]  # the last line
    assert "best: trial 2: step-time 25.16 s, tflops-per-gpu 239.7 TFLOP/s/GPU" in status
    assert "step-time: 50.16 s (baseline) -> 25.16 s" in best and " 25.16 s " in compare
    for text in (run.stdout, status, best, compare):
        assert not LONG_FLOAT.search(text.replace(str(run_dir), "")), text
    assert json.loads(dse("best", str(run_dir), "--json").stdout)["metrics"]["step-time"] == 25.16098888888889
