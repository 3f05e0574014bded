"""Early stopping (`--early-stopping`) and GPU-hours: the rule, and whole sweeps through the `dse` command."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, write_toml

from dse.analysis import load_trials
from dse.metrics import EarlyStopping, StepTimes, verdict
from dse.storage import ResultCache, TrialStore

PAYLOAD = REPO / "tests" / "iteration_payload.py"
FAST, SLOW = 0.02, 0.25  # s per iteration; the slow trial would run SLOW * ITERS = 30 s unless stopped
ITERS = 120
FAST_ITERS = 6


def dse(*args: str, timeout: float = 240, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dse.cli", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=timeout, env={**os.environ, **(env or {})})


def _sweep_two(tmp_path: Path, extra: str = "", name: str = "es") -> Path:
    command = (f"if [ {{step}} = {FAST} ]; then n={FAST_ITERS}; else n={ITERS}; fi; "
               f"{sys.executable} {PAYLOAD} {{step}} $n")
    text = (f'name = "{name}"\ntest_template_name = "Command"\nagent_metrics = ["step-time"]\n{extra}\n'
            f"[cmd_args]\ncommand = {json.dumps(command)}\nstep = [{FAST}, {SLOW}]\nnum_gpus = 4\n")
    return write_toml(tmp_path / f"{name}.toml", text)


def _run_dir(out: Path) -> Path:
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    return run


# ---- the rule ------------------------------------------------------------------------------------
def test_the_rule_ignores_warm_up_and_waits_for_enough_iterations() -> None:
    rule = EarlyStopping()
    slow = [3.0, 2.5, 1.5, 1.5, 1.5]
    assert verdict(slow[:4], 1.0, rule) is None  # 2 warm-up + 2 measured: too few
    stop = verdict(slow, 1.0, rule)
    assert stop is not None and stop.step_time_s == 1.5 and stop.iterations == 3
    assert verdict([9.0, 9.0, 1.05, 1.08, 1.02], 1.0, rule) is None  # slow warm-up only; within the margin
    assert verdict(slow, None, rule) is None  # no completed trial yet: nothing to compare with
    assert verdict(slow, 1.0, EarlyStopping(enabled=False)) is None


def test_the_rule_is_robust_to_noise() -> None:
    rule = EarlyStopping(margin=0.1, z=2.0)
    noisy = [5.0, 5.0, 1.0, 1.6, 1.0, 1.7, 1.0, 1.6]  # median 1.3 but spread wide: not confidently > 1.1
    assert verdict(noisy, 1.0, rule) is None
    steady = [5.0, 5.0, 1.3, 1.31, 1.29, 1.3, 1.3]
    assert verdict(steady, 1.0, rule) is not None


def test_step_times_are_read_incrementally_from_log_text() -> None:
    st = StepTimes()
    st.feed(" iteration        1/      10 | elapsed time per iteration (ms): 250.0 | lm loss: 1\n iteration  ")
    assert st.series() == [0.25]
    st.feed("      2/      10 | consumed samples: 16 | elapsed time per iteration (ms): 100.5 |\n")
    assert st.series() == [0.25, 0.1005]
    plain = StepTimes()
    plain.feed("Step Time : 1.50s GPU utilization: 300.0MODEL_TFLOP/s/GPU\nStep Time : 1.25s\n")
    assert plain.series() == [1.5, 1.25]


# ---- whole sweeps -------------------------------------------------------------------------------
def test_a_slow_trial_is_stopped_early_kept_as_pruned_and_cached_under_its_rule(tmp_path: Path) -> None:
    path = _sweep_two(tmp_path)
    cache = tmp_path / "cache.db"
    out = tmp_path / "runs"
    started = time.monotonic()
    r = dse("run", str(path), "--out", str(out), "--cache", str(cache), "--early-stopping", "--executor", "local")
    assert r.returncode == 0, r.stdout + r.stderr
    assert time.monotonic() - started < SLOW * ITERS  # the slow run never ran to its end
    df = load_trials(_run_dir(out)).set_index("param.step")
    assert df.loc[FAST, "status"] == "completed" and df.loc[SLOW, "status"] == "pruned"
    pruned = df.loc[SLOW]
    assert SLOW * 0.9 < pruned["metric.step-time"] < SLOW * 1.2  # its partial step time is kept
    assert "early-stopped" in pruned["error"] and pruned["gpu_hours"] > 0
    assert df.loc[FAST, "gpu_hours"] > 0 and pruned["gpu_hours"] < SLOW * ITERS * 4 / 3600
    assert "1 pruned" in r.stdout and "GPU-hours" in r.stdout
    best = dse("best", str(_run_dir(out)))
    assert best.returncode == 0 and f"'step': {FAST}" in best.stdout  # a pruned trial is never the best
    status = dse("status", str(_run_dir(out)))
    assert "pruned: 1" in status.stdout and "spent:" in status.stdout
    entries = {e.status: e for e in (ResultCache(cache).get(h) for h in df["config_hash"]) if e}
    assert entries["pruned"].reason == f"early-stopped:{EarlyStopping().signature}"

    # the same rule: the pruned result is reused, nothing runs
    out2 = tmp_path / "runs2"
    r2 = dse("run", str(path), "--out", str(out2), "--cache", str(cache), "--early-stopping", "--executor", "local")
    assert r2.returncode == 0, r2.stdout + r2.stderr
    df2 = load_trials(_run_dir(out2)).set_index("param.step")
    assert df2.loc[SLOW, "status"] == "pruned" and bool(df2.loc[SLOW, "cache_hit"])
    assert df2["gpu_hours"].fillna(0).sum() == 0


def test_without_early_stopping_a_pruned_cache_entry_is_not_a_result(tmp_path: Path) -> None:
    cache = tmp_path / "cache.db"
    fast_only = _sweep_two(tmp_path, extra="[early_stopping]\nmargin = 0.05\n", name="a")
    r = dse("run", str(fast_only), "--out", str(tmp_path / "r1"), "--cache", str(cache), "--executor", "local")
    assert r.returncode == 0, r.stdout + r.stderr
    assert set(load_trials(_run_dir(tmp_path / "r1"))["status"]) == {"completed", "pruned"}  # the table turned it on
    # another rule (the default margin) does not reuse the entry: the slow point runs again, and is stopped again
    r2 = dse("run", str(_sweep_two(tmp_path, name="a")), "--out", str(tmp_path / "r2"), "--cache", str(cache),
             "--early-stopping", "--executor", "local")
    assert r2.returncode == 0, r2.stdout + r2.stderr
    df = load_trials(_run_dir(tmp_path / "r2")).set_index("param.step")
    assert df.loc[SLOW, "status"] == "pruned" and not bool(df.loc[SLOW, "cache_hit"])


def test_early_stopping_needs_a_step_time_metric_and_valid_settings(tmp_path: Path) -> None:
    bad_metric = _sweep_two(tmp_path, name="m").read_text().replace('["step-time"]', '["tflops-per-gpu"]')
    r = dse("run", str(write_toml(tmp_path / "m2.toml", bad_metric)), "--early-stopping", "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "early_stopping" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    bad_table = _sweep_two(tmp_path, extra="[early_stopping]\nmargin = -1\n", name="t")
    r = dse("space", str(bad_table))
    assert r.returncode == 2 and "early_stopping.margin" in r.stderr


def test_early_stopping_survives_resume(tmp_path: Path) -> None:
    """The driver dies while the slow trial runs; `dse resume` restores --early-stopping and stops it."""
    path = _sweep_two(tmp_path)
    out = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-m", "dse.cli", "run", str(path), "--out", str(out), "--no-cache",
                             "--early-stopping", "--executor", "local"], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        runs = [p for p in out.iterdir() if p.is_dir()] if out.exists() else []
        if runs and (runs[0] / "trials.db").exists():
            try:
                if [r.status.value for r in TrialStore(runs[0] / "trials.db", readonly=True).all()] == [
                        "completed", "running"]:
                    break
            except (sqlite3.Error, Exception):
                pass
        time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("the sweep never reached its second trial")
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its jobs
    proc.wait()
    run = _run_dir(out)
    r = dse("resume", str(run))
    assert r.returncode == 0, r.stdout + r.stderr
    df = load_trials(run).set_index("param.step")
    assert df.loc[SLOW, "status"] == "pruned"


def test_simulated_trials_cost_simulated_gpu_hours_and_are_stopped_over_simulated_time(tmp_path: Path) -> None:
    """The simulator prints its iterations over simulated time (scaled by --time-scale): early stopping works on
    it as on a real run, and its GPU-hours are what the simulated run would have cost, labelled simulated."""
    from dse.simulator import STARTUP_S, predict

    base = {"model_recipe_name": "qwen3_30b_a3b", "gpu_type": "h100", "compute_dtype": "fp8_cs", "num_gpus": 16,
            "ep": 8, "gb": 256, "mb": 2, "max_steps": 12}
    fast, slow = predict({**base, "tp": 1}, 2), predict({**base, "tp": 4}, 2)
    assert fast.fits and slow.fits and slow.step_time_s > 1.4 * fast.step_time_s  # the test's premise
    text = ('name = "sim"\ntest_template_name = "MegatronBridgeSim"\nnum_nodes = 2\n[cmd_args]\n'
            + "".join(f"{k} = {json.dumps(v)}\n" for k, v in base.items()) + "tp = [1, 4]\n")
    path = write_toml(tmp_path / "sim.toml", text)
    out = tmp_path / "runs"
    # the slow run would take ~10 s of wall time; the fast one runs first
    scale = 10.0 / (12 * slow.step_time_s + 30)
    r = dse("run", str(path), "--out", str(out), "--no-cache", "--early-stopping", "--executor", "local",
            "--time-scale", f"{scale:.4f}", "--agent", "grid_search", "--steps", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    df = load_trials(_run_dir(out))
    first, second = df.iloc[0], df.iloc[1]
    assert first["param.tp"] == 1 and first["status"] == "completed"
    assert second["status"] == "pruned", second.to_dict()
    sim = json.loads((_run_dir(out) / "trials" / "1" / "simulation.json").read_text())
    assert first["gpu_hours"] == pytest.approx((STARTUP_S + sum(sim["step_times_s"])) * 16 / 3600)
    assert 0 < second["gpu_hours"] < (STARTUP_S + 12 * slow.step_time_s * 1.1) * 16 / 3600
    assert "GPU-hours (simulated)" in r.stdout
