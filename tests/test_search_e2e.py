"""The search features through the `dse` command, as a user runs them: model_guided with early stopping on the
simulator, its refusal on a Command sweep, and an optuna re-run of a fully cached space."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO, write_toml

from dse.analysis import load_trials

DEMO = REPO / "sweeps" / "demo_sim_qwen30b_h100.toml"


def dse(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dse.cli", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=600, env=os.environ.copy())


def _run_dir(out: Path) -> Path:
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    return run


def test_model_guided_with_early_stopping_on_the_simulator(tmp_path: Path) -> None:
    out = tmp_path / "o"
    r = dse("run", str(DEMO), "--agent", "model_guided", "--steps", "6", "--parallel", "2", "--early-stopping",
            "--time-scale", "0.004", "--out", str(out), "--cache", str(tmp_path / "c.db"), "--executor", "local")
    assert r.returncode == 0, r.stdout + r.stderr
    df = load_trials(_run_dir(out))
    assert len(df) == 6 and str(df.iloc[0]["note"]).startswith("baseline")
    proposed = df.iloc[1:]
    assert proposed["note"].str.startswith("model:").all()  # each proposal says what the model predicted
    assert df.iloc[0]["status"] == "completed"  # the baseline is never stopped early: the speed-up needs it whole
    assert df["error"].str.contains("out-of-memory", na=False).sum() <= 2  # the model keeps it off most OOM points
    summary = json.loads(dse("best", str(_run_dir(out)), "--json").stdout)
    assert summary["speedup"] is not None and summary["speedup"] >= 1.0


def test_model_guided_refuses_a_sweep_without_a_model(tmp_path: Path) -> None:
    r = dse("run", str(REPO / "sweeps" / "command_example.toml"), "--agent", "model_guided", "--out",
            str(tmp_path / "o"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "grid_search" in r.stderr and "optuna" in r.stderr and not (tmp_path / "o").exists()


def test_an_optuna_rerun_of_a_fully_cached_space_exits_0_with_the_first_runs_best(tmp_path: Path) -> None:
    command = "echo '{{\\\"step-time\\\": {x}}}' > metrics.json"
    path = write_toml(tmp_path / "s.toml", f'name = "c"\ntest_template_name = "Command"\nagent = "grid_search"\n'
                                          f'[cmd_args]\ncommand = "{command}"\nx = [5, 3, 1, 4, 2]\n')
    cache = tmp_path / "c.db"
    first = dse("run", str(path), "--out", str(tmp_path / "a"), "--cache", str(cache), "--executor", "debug")
    assert first.returncode == 0, first.stderr
    again = dse("run", str(path), "--agent", "optuna", "--steps", "2", "--out", str(tmp_path / "b"),
                "--cache", str(cache), "--executor", "debug")
    assert again.returncode == 0, again.stdout + again.stderr
    df = load_trials(_run_dir(tmp_path / "b"))
    assert set(df["status"]) == {"cached"} and df["gpu_hours"].fillna(0).sum() == 0
    assert json.loads(dse("best", str(_run_dir(tmp_path / "b")), "--json").stdout)["params"] == {"x": 1}


def test_the_optuna_study_minimises_step_time_by_name_and_links_each_trial(tmp_path: Path) -> None:
    import optuna

    command = "echo '{{\\\"step-time\\\": {x}, \\\"tflops-per-gpu\\\": 7}}' > metrics.json"
    path = write_toml(tmp_path / "s.toml", f'name = "named"\ntest_template_name = "Command"\nagent = "optuna"\n'
                                          f'agent_steps = 4\nagent_metrics = ["default", "tflops-per-gpu"]\n'
                                          f'[cmd_args]\ncommand = "{command}"\nx = [5, 3, 1, 4, 2]\n')
    r = dse("run", str(path), "--out", str(tmp_path / "a"), "--no-cache", "--executor", "debug")
    assert r.returncode == 0, r.stdout + r.stderr
    run = _run_dir(tmp_path / "a")
    study = optuna.load_study(study_name="named", storage=f"sqlite:///{run / 'optuna.db'}")
    assert study.metric_names == ["step-time"]
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    df = load_trials(run).set_index("trial")
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 4  # every trial (none FAIL for its second metric); the objective is the step time
    column = "metric.default"  # the step time; the other metrics are recorded, not optimised
    assert all(t.value == df.loc[t.user_attrs["dse_trial"], column] for t in done)
    assert study.best_value == df[column].min() == 1


def test_an_optuna_study_on_a_throughput_is_maximised_and_a_disagreeing_reward_stays_the_objective(
        tmp_path: Path) -> None:
    import optuna

    command = "echo '{{\\\"tflops-per-gpu\\\": {x}}}' > metrics.json"
    for name, reward, metric_name, direction in (("up", "identity", "tflops-per-gpu", "MAXIMIZE"),
                                                  ("inv", "inverse", "reward (inverse of tflops-per-gpu)",
                                                   "MAXIMIZE")):
        path = write_toml(tmp_path / f"{name}.toml",
                          f'name = "{name}"\ntest_template_name = "Command"\nagent = "optuna"\nagent_steps = 2\n'
                          f'agent_metrics = ["tflops-per-gpu"]\nagent_reward_function = "{reward}"\n'
                          f'[cmd_args]\ncommand = "{command}"\nx = [5, 3, 1]\n')
        r = dse("run", str(path), "--out", str(tmp_path / name), "--no-cache", "--executor", "debug")
        assert r.returncode == 0, r.stdout + r.stderr
        study = optuna.load_study(study_name=name, storage=f"sqlite:///{_run_dir(tmp_path / name) / 'optuna.db'}")
        assert study.metric_names == [metric_name] and study.direction.name == direction
