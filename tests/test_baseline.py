"""The baseline trial (the preset's configuration, measured first) and `dse best` against it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO, write_toml

from dse.analysis import load_trials


def dse(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dse.cli", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=300, env=os.environ.copy())


SIM = """name = "base"
test_template_name = "MegatronBridgeSim"
agent = "random_search"
agent_steps = 6
num_nodes = 2
[cmd_args]
model_recipe_name = "qwen3_30b_a3b"
gpu_type = "h100"
compute_dtype = "fp8_cs"
num_gpus = 16
ep = 8
tp = [1, 2]
pp = [1, 2]
mb = [1, 2]
"""


def _run(tmp_path: Path, text: str, name: str = "s") -> Path:
    out = tmp_path / f"out-{name}"
    r = dse("run", str(write_toml(tmp_path / f"{name}.toml", text)), "--out", str(out), "--no-cache",
            "--executor", "debug")
    assert r.returncode in (0, 1), r.stdout + r.stderr
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    return run


def test_the_preset_configuration_is_the_first_trial_and_best_reports_the_speedup(tmp_path: Path) -> None:
    run = _run(tmp_path, SIM)
    df = load_trials(run)
    first = df.iloc[0]
    assert (first["param.tp"], first["param.pp"], first["param.mb"]) == (1, 2, 1)  # the h100 fp8_cs preset's
    assert str(first["note"]).startswith("baseline: the qwen3_30b_a3b/h100/fp8_cs")
    summary = json.loads(dse("best", str(run), "--json").stdout)
    assert summary["baseline"]["trial"] == 1 and summary["baseline"]["params"] == {"tp": 1, "pp": 2, "mb": 1}
    base_step, best_step = summary["baseline"]["metrics"]["default"], summary["metrics"]["default"]
    assert summary["speedup"] == base_step / best_step >= 1.0
    assert abs(summary["gpu_hours"] - df["gpu_hours"].sum()) < 1e-9 and summary["gpu_hours_simulated"] is True
    assert summary["trial"] == int(df.loc[df["metric.default"].idxmin(), "trial"])
    text = dse("best", str(run)).stdout.splitlines()[0]
    assert f"{summary['speedup']:.2f}x faster than the baseline (trial 1" in text and "GPU-hours (simulated)" in text
    assert dse("report", str(run)).returncode == 0
    assert "x faster than the baseline" in (run / "report.html").read_text()


def test_a_sweep_without_a_preset_names_its_baseline_or_has_none(tmp_path: Path) -> None:
    command = "echo '{{\\\"step-time\\\": {x}}}' > metrics.json"
    text = (f'name = "c"\ntest_template_name = "Command"\nagent_steps = 3\n[cmd_args]\ncommand = "{command}"\n'
            "x = [3, 1, 2]\n")
    run = _run(tmp_path, text, "none")
    summary = json.loads(dse("best", str(run), "--json").stdout)
    assert summary["baseline"] is None and summary["speedup"] is None
    assert "x = ..." in summary["baseline_note"] or "baseline" in summary["baseline_note"]
    run = _run(tmp_path, text.replace("agent_steps = 3\n", "agent_steps = 3\nbaseline = { x = 2 }\n"), "named")
    df = load_trials(run)
    assert df.iloc[0]["param.x"] == 2
    summary = json.loads(dse("best", str(run), "--json").stdout)
    assert summary["params"] == {"x": 1} and summary["speedup"] == 2.0


def test_a_bad_baseline_is_one_line_naming_the_field(tmp_path: Path) -> None:
    bad = write_toml(tmp_path / "b.toml", SIM + "\n").read_text().replace(
        "agent_steps = 6\n", "agent_steps = 6\nbaseline = { tp = 3 }\n")
    r = dse("run", str(write_toml(tmp_path / "b2.toml", bad)), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "baseline.tp" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_json_views_and_compare_of_runs(tmp_path: Path) -> None:
    """`dse status/space/agents --json`, and `dse compare RUN...` (one row per run)."""
    run = _run(tmp_path, SIM)
    space = json.loads(dse("space", str(tmp_path / "s.toml"), "--json").stdout)
    assert space["dimensions"] == {"tp": [1, 2], "pp": [1, 2], "mb": [1, 2]} and space["trials_to_run"] == 6
    assert space["simulated"] is True and space["total"] == 8 and 0 < space["valid"] <= 8
    status = json.loads(dse("status", str(run), "--json").stdout)
    ran = min(6, space["valid"])  # random search draws valid points without replacement
    assert status["trials"] == ran and sum(status["counts"].values()) == ran
    assert status["best"]["baseline"]["trial"] == 1 and status["in_flight"] == []
    assert status["gpu_hours"] > 0 and status["gpu_hours_simulated"] is True
    agents = json.loads(dse("agents", "--json").stdout)
    assert {"grid_search", "random_search", "optuna", "model_guided"} <= {a["name"] for a in agents["agents"]}
    other = _run(tmp_path, SIM.replace('agent = "random_search"', 'agent = "model_guided"'), "mg")
    rows = json.loads(dse("compare", str(run), str(other), "--json").stdout)
    assert [r["agent"] for r in rows] == ["random_search", "model_guided"]
    assert all(r["speedup"] is not None and r["gpu_hours"] > 0 for r in rows)
    text = dse("compare", str(run), str(other)).stdout.splitlines()
    assert len(text) == 3 and "speed-up" in text[0] and all(len(line) <= 110 for line in text)


def test_the_text_table_is_readable(tmp_path: Path) -> None:
    """`dse table`: no NaN, no nanosecond stamps, 4 significant digits, errors cut; csv keeps everything."""
    import re

    run = _run(tmp_path, SIM)
    text = dse("table", str(run)).stdout
    assert "NaN" not in text and "NaT" not in text and not re.search(r"\d{2}:\d{2}:\d{2}\.\d", text)
    decimals = [m for m in re.findall(r"(?<![\w.:])\d+\.\d+(?![\w.:])", text)]
    assert decimals and all(len(m.replace(".", "").lstrip("0")) <= 4 for m in decimals)  # 4 significant digits
    assert "config_hash" not in text.splitlines()[0]
    assert "config_hash" in dse("table", str(run), "--format", "csv").stdout.splitlines()[0]
