"""`dse run` / `resume` / `best` / `table` end to end on Command sweeps with the local executor."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO, make_test, sweep_from, wait_for_submission, write_toml

from dse.agents import create_sweep_agent
from dse.analysis._table import load_trials


def dse(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dse.cli", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=timeout, env=os.environ.copy())


def cmd_sweep(tmp_path: Path, command: str, values: str = "[1, 2, 3]", extra: str = "", name: str = "s") -> Path:
    counter = tmp_path / "counter.log"
    text = (f'name = "{name}"\ntest_template_name = "Command"\n{extra}\n[cmd_args]\n'
            f"command = {json.dumps(f'echo ran {{x}} >> {counter}; ' + command)}\nx = {values}\n")
    return write_toml(tmp_path / f"{name}.toml", text)


OK_CMD = "echo '{{\"step-time\": {x}}}' > metrics.json"


def run_dirs(out: Path) -> list[Path]:
    return sorted(p for p in out.iterdir() if p.is_dir())


def test_run_grid_writes_run_dir_and_repeat_is_all_cache(tmp_path: Path) -> None:
    sweep = cmd_sweep(tmp_path, OK_CMD)
    r = dse("run", str(sweep), "--out", str(tmp_path / "runs"), "--parallel", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    (run,) = run_dirs(tmp_path / "runs")
    for name in ("sweep.toml", "trials.db", "trials.csv", "best.toml", "trials/1/command.sh", "trials/1/stdout.log"):
        assert (run / name).exists(), name
    df = load_trials(run)
    assert list(df.columns) == ["trial", "status", "reward", "cache_hit", "config_hash", "param.x",
                                "metric.default", "job_id", "attempts", "started_at", "finished_at",
                                "duration_s", "gpu_hours", "error", "note"]
    assert sorted(df["param.x"]) == [1, 2, 3] and set(df["status"]) == {"completed"}
    assert df.set_index("param.x")["reward"].to_dict() == pytest.approx({1: 1.0, 2: 0.5, 3: 1 / 3})
    csv = pd.read_csv(run / "trials.csv")
    assert len(csv) == 3
    runs_before = (tmp_path / "counter.log").read_text().count("ran")
    r2 = dse("run", str(sweep), "--out", str(tmp_path / "runs"))
    assert r2.returncode == 0
    second = run_dirs(tmp_path / "runs")[-1]
    assert set(load_trials(second)["status"]) == {"cached"}
    assert (tmp_path / "counter.log").read_text().count("ran") == runs_before == 3  # zero program runs


def test_best_toml_runs_as_a_sweep_of_one(tmp_path: Path) -> None:
    sweep = cmd_sweep(tmp_path, OK_CMD)
    assert dse("run", str(sweep), "--out", str(tmp_path / "runs"), "--no-cache").returncode == 0
    (run,) = run_dirs(tmp_path / "runs")
    r = dse("best", str(run), "--toml")
    assert r.returncode == 0 and "x = 1" in r.stdout
    best = write_toml(tmp_path / "best.toml", r.stdout)
    space = dse("space", str(best))
    assert "total points: 1" in space.stdout
    r2 = dse("run", str(best), "--out", str(tmp_path / "runs2"), "--no-cache")
    assert r2.returncode == 0 and "1 trials" in r2.stdout


@pytest.mark.parametrize("command, status, reason", [
    ("exit 3", "failed", "exit-code"),
    ("echo 'torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB' >&2; exit 1", "failed",
     "out-of-memory"),
    ("echo '{{\"step-time\": 1.5' > metrics.json", "failed", "no-metrics"),
    ("true", "failed", "no-metrics"),
    ("echo '{{\"step-time\": NaN}}' > metrics.json", "failed", "no-metrics"),
    ("sleep 30", "timeout", "timeout"),
])
def test_job_faults_end_in_the_right_status(tmp_path: Path, command: str, status: str, reason: str) -> None:
    # x=1 fails as described; x=2 succeeds, so the sweep goes on after the fault
    cmd = f'if [ {{x}} = 1 ]; then {command}; else {OK_CMD}; fi'
    extra = 'time_limit = "00:00:02"\nmax_retries = 1'
    sweep = cmd_sweep(tmp_path, cmd, values="[1, 2]", extra=extra)
    r = dse("run", str(sweep), "--out", str(tmp_path / "runs"))
    # a sweep with failures the user must see exits 1; an out-of-memory point is an expected outcome
    assert r.returncode == (0 if reason == "out-of-memory" else 1), r.stdout + r.stderr
    df = load_trials(run_dirs(tmp_path / "runs")[0]).set_index("param.x")
    assert df.loc[1, "status"] == status and reason in df.loc[1, "error"] + status
    assert df.loc[2, "status"] == "completed"
    assert df.loc[1, "reward"] == float("-inf")
    runs = (tmp_path / "counter.log").read_text().count("ran 1")
    assert runs == (2 if status == "timeout" else 1)  # retried once (max_retries) only for transient faults


@pytest.mark.parametrize("agent", ["grid_search", "random_search", "optuna"])
def test_kill_driver_then_resume_runs_every_trial_once(tmp_path: Path, agent: str) -> None:
    sweep = cmd_sweep(tmp_path, "sleep 1.5; " + OK_CMD, values="[1, 2, 3, 4, 5, 6, 7]",
                      extra=f'agent = "{agent}"\nagent_steps = 5')
    out = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-m", "dse.cli", "run", str(sweep), "--out", str(out), "--parallel",
                             "2", "--no-cache"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_submission(out)
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    (run,) = run_dirs(out)
    r = dse("resume", str(run))
    assert r.returncode == 0, r.stdout + r.stderr
    df = load_trials(run)
    assert len(df) == 5 and df["param.x"].is_unique and set(df["status"]) == {"completed"}
    log = (tmp_path / "counter.log").read_text()
    assert [log.count(f"ran {x}") for x in sorted(df["param.x"])] == [1] * 5  # each ran once
    assert log.count("ran") == 5  # and nothing else ran


@pytest.mark.parametrize("agent", ["random_search", "optuna"])
def test_other_agents_run(tmp_path: Path, agent: str) -> None:
    sweep = cmd_sweep(tmp_path, OK_CMD, values="[1, 2, 3, 4, 5, 6]", extra=f'agent = "{agent}"\nagent_steps = 4')
    r = dse("run", str(sweep), "--out", str(tmp_path / "runs"), "--executor", "debug", "--seed", "3")
    assert r.returncode == 0, r.stdout + r.stderr
    df = load_trials(run_dirs(tmp_path / "runs")[0])
    assert len(df) == 4 and df["param.x"].is_unique


def test_table_formats(tmp_path: Path) -> None:
    sweep = cmd_sweep(tmp_path, OK_CMD)
    assert dse("run", str(sweep), "--out", str(tmp_path / "runs"), "--executor", "debug").returncode == 0
    (run,) = run_dirs(tmp_path / "runs")
    csv = dse("table", str(run), "--format", "csv")
    assert csv.returncode == 0 and csv.stdout.startswith("trial,status,reward")
    js = json.loads(dse("table", str(run), "--format", "json").stdout)
    assert len(js) == 3
    assert dse("table", str(run), "--format", "parquet", "-o", str(tmp_path / "t.parquet")).returncode == 0
    assert len(pd.read_parquet(tmp_path / "t.parquet")) == 3
    assert "completed: 3" in dse("status", str(run)).stdout
    rep = dse("report", str(run))
    assert rep.returncode == 0 and Path(rep.stdout.strip()).is_file()


def test_library_use_env_and_agent_loop(tmp_path: Path) -> None:
    """A tuning script builds the env and an agent and runs the loop itself (README example)."""
    from dse.agents._base import create_agent
    from dse.envs._trial_env import TrialEnv
    from dse.trial import TrialResult

    env = TrialEnv(cmd_sweep(tmp_path, OK_CMD, values="[4, 2, 8]"), executor="debug", run_dir=tmp_path / "lib")
    agent = create_agent("grid_search", env.space, steps=3, seed=0)
    env.reset(seed=0)
    best = None
    while (action := agent.ask()) is not None:
        index = {d.path: d.values.index(action[d.path]) for d in env.space.agent.dimensions}
        obs, reward, _, _, info = env.step(index)
        agent.tell(action, TrialResult(reward=reward, status=info["status"], values=list(obs),
                                       reason=info["reason"]))
        best = max(best or (reward, action), (reward, action), key=lambda t: t[0])
    assert best is not None and best[1] == {"x": 2} and best[0] == pytest.approx(0.5)


def test_ctrl_c_stops_asking_then_resume_finishes(tmp_path: Path) -> None:
    sweep = cmd_sweep(tmp_path, "sleep 1.5; " + OK_CMD, values="[1, 2, 3, 4, 5, 6]")
    out = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-m", "dse.cli", "run", str(sweep), "--out", str(out), "--parallel",
                             "2", "--no-cache"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_submission(out)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert "stopping: no new trials" in stderr
    (run,) = run_dirs(out)
    df = load_trials(run)
    assert len(df) == 2 and set(df["status"]) == {"completed"}  # the running ones finished, nothing new
    r = dse("resume", str(run))
    assert r.returncode == 0, r.stdout + r.stderr
    df = load_trials(run)
    assert sorted(df["param.x"]) == [1, 2, 3, 4, 5, 6] and set(df["status"]) == {"completed"}


def test_optuna_warm_start_from_cache_never_repays(tmp_path: Path) -> None:
    sweep = cmd_sweep(tmp_path, OK_CMD, values="[1, 2, 3, 4, 5, 6, 7, 8]",
                      extra='agent = "optuna"\nagent_steps = 4')
    cache = tmp_path / "cache.db"
    args = ["run", str(sweep), "--out", str(tmp_path / "runs"), "--cache", str(cache), "--executor", "debug"]
    assert dse(*args, "--seed", "1").returncode == 0
    r = dse(*args, "--seed", "2")
    assert r.returncode == 0 and "warm start: told the optuna study 4 cached results" in r.stdout
    first, second = (load_trials(d) for d in run_dirs(tmp_path / "runs"))
    paid = second[second["status"] == "completed"]  # the cache's best comes back as a free cached trial (#16)
    assert set(first["param.x"]).isdisjoint(paid["param.x"])  # the study knew the cached points
    assert (second["status"] == "cached").sum() == 1 and second.iloc[0]["param.x"] == min(first["param.x"])
    assert (tmp_path / "counter.log").read_text().count("ran") == 8


def test_nsga2_sweep_is_multi_objective_over_agent_metrics(tmp_path: Path) -> None:
    import optuna

    text = ('name = "mo"\ntest_template_name = "Command"\nagent = "optuna"\nagent_steps = 5\n'
            'agent_metrics = ["step-time", "tflops-per-gpu"]\n[agent_config]\nsampler = "nsga2"\n[cmd_args]\n'
            "command = " + json.dumps("echo '{{\"step-time\": {x}, \"tflops-per-gpu\": {y}}}' > metrics.json")
            + "\nx = [1, 2, 3]\ny = [4, 5, 6]\n")
    sweep = write_toml(tmp_path / "mo.toml", text)
    r = dse("run", str(sweep), "--out", str(tmp_path / "runs"), "--executor", "debug", "--no-cache")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "warning" not in r.stderr, r.stderr
    (run,) = run_dirs(tmp_path / "runs")
    study = optuna.load_study(study_name="mo", storage=f"sqlite:///{run / 'optuna.db'}")
    # built-in directions: step time is better low, TFLOPS high
    assert study.directions == [optuna.study.StudyDirection.MINIMIZE, optuna.study.StudyDirection.MAXIMIZE]
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert sorted(tuple(t.values) for t in done) == sorted(
        (float(t.params["x"]), float(t.params["y"])) for t in done)
    assert len(done) == 5 and len({(t.params["x"], t.params["y"]) for t in done}) == 5


def test_agent_hears_values_in_agent_metrics_order(tmp_path: Path) -> None:
    # a cached record keeps the cache entry's metric order, which another sweep may have written reversed
    from dse.engine._sweep import RunOptions, SweepRunner
    from dse.spec import load_sweep
    from dse.trial import TrialRecord

    sweep = cmd_sweep(tmp_path, OK_CMD, extra='agent_metrics = ["step-time", "tflops-per-gpu"]')
    runner = SweepRunner(load_sweep(sweep), tmp_path / "run", RunOptions(executor="debug", no_cache=True),
                         create_sweep_agent)
    rec = TrialRecord(1, "cached", {}, {}, metrics={"tflops-per-gpu": 5.0, "step-time": 2.0}, reward=0.5)
    assert runner._result(rec).values == [2.0, 5.0]
    oom = TrialRecord(2, "failed", {}, {}, reward=None, reason="out-of-memory")
    result = runner._result(oom)
    assert result.values == [] and not result.ok and result.infeasible


def test_system_max_jobs_in_flight_caps_parallel(tmp_path: Path) -> None:
    from dse.engine._sweep import RunOptions, SweepRunner
    from dse.spec import SystemConfig

    sweep = sweep_from(make_test({"command": "true", "x": [1, 2, 3]}, workload="Command"))
    sweep.system = SystemConfig.model_validate({"max_jobs_in_flight": 2})
    runner = SweepRunner(sweep, tmp_path / "run", RunOptions(parallel=5, out=tmp_path, no_cache=True),
                         create_sweep_agent)
    assert runner.parallel == 2


def test_driver_exports_the_table_at_most_every_few_seconds_not_per_trial(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Rebuilding trials.csv after every trial made the driver's cost per trial grow with the sweep
    (issue 13 #10); the store is written per trial, the exports are debounced (benchmarks/bench_driver.py)."""
    import dse.engine._sweep as sweep_mod
    from dse.engine._sweep import RunOptions, SweepRunner

    writes: list[int] = []
    real = sweep_mod.write_csv_atomic
    monkeypatch.setattr(sweep_mod, "write_csv_atomic", lambda df, path: (writes.append(len(df)), real(df, path)))
    monkeypatch.setattr(sweep_mod, "EXPORT_EVERY_S", 1e9)
    cmd = {"command": "echo '{{\"step-time\": {x}}}' > metrics.json", "x": list(range(1, 61))}
    sweep = sweep_from(make_test(cmd, workload="Command", agent_steps=60, agent_metrics=["step-time"]))
    runner = SweepRunner(sweep, tmp_path / "run", RunOptions(parallel=4, out=tmp_path, no_cache=True,
                                                             executor="debug"), create_sweep_agent)
    assert runner.run() == 0
    assert writes == [60]  # one export at the end, with every row
    assert len(pd.read_csv(tmp_path / "run" / "trials.csv")) == 60
