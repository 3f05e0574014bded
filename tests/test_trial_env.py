"""The gymnasium env on a simulator-free Command sweep and on the simulator: check_env, rewards, cache."""

from __future__ import annotations

from pathlib import Path

import dse.envs  # noqa: F401  (registers dse/Trial-v0)
import gymnasium
import pytest
from conftest import write_toml
from dse.envs._trial_env import TrialEnv
from gymnasium.utils.env_checker import check_env

CMD = """
name = "cmd"
test_template_name = "Command"
agent_metrics = ["step-time"]
[cmd_args]
command = "echo '{{\\"step-time\\": {x}}}' > metrics.json && echo ran >> {counter}"
x = [1.5, 2.5, 0.5]
counter = "COUNTER"
"""


def _sweep(tmp_path: Path) -> Path:
    return write_toml(tmp_path / "cmd.toml", CMD.replace("COUNTER", str(tmp_path / "runs.log")))


def test_check_env_passes(tmp_path: Path) -> None:
    env = gymnasium.make("dse/Trial-v0", sweep=_sweep(tmp_path), executor="debug", run_dir=tmp_path / "run")
    check_env(env.unwrapped, skip_render_check=True)


def test_reward_is_inverse_step_time_and_cache_runs_once(tmp_path: Path) -> None:
    cache = tmp_path / "cache.db"
    env = TrialEnv(_sweep(tmp_path), executor="local", run_dir=tmp_path / "run", cache=cache)
    env.reset(seed=1)
    obs, reward, terminated, truncated, info = env.step({"x": 2})
    assert info["status"] == "completed" and obs.tolist() == [0.5]
    assert reward == pytest.approx(1 / 0.5) and not terminated and not truncated
    obs2, reward2, _, _, info2 = env.step({"x": 2})
    assert info2["status"] == "cached" and info2["cache_hit"] and reward2 == reward
    assert info2["config_hash"] == info["config_hash"]
    assert (tmp_path / "runs.log").read_text().count("ran") == 1  # the program ran once
    env.close()


def test_failed_trial_scores_minus_infinity(tmp_path: Path) -> None:
    p = write_toml(tmp_path / "bad.toml", 'name="b"\ntest_template_name="Command"\n[cmd_args]\n'
                   'command="echo CUDA out of memory >&2; exit 1"\nx=[1,2]\n')
    env = TrialEnv(p, executor="debug", run_dir=tmp_path / "run")
    _, reward, _, _, info = env.step({"x": 0})
    assert info["status"] == "failed" and reward == float("-inf") and "out-of-memory" in info["error"]


SIM = """
name = "sim"
test_template_name = "MegatronBridgeSim"
agent = "random_search"
agent_metrics = ["step-time", "tflops-per-gpu"]
[cmd_args]
gpu_type = "h100"
num_gpus = 8
model_family_name = "llama"
model_recipe_name = "llama3_8b"
compute_dtype = "fp8_cs"
tp = [1, 2]
mb = [1, 2]
seq_length = [4096, 8192]
[env_params.seq_length]
weights = [0.75, 0.25]
"""


def test_check_env_on_a_simulator_sweep(tmp_path: Path) -> None:
    env = gymnasium.make("dse/Trial-v0", sweep=write_toml(tmp_path / "sim.toml", SIM), executor="debug",
                         run_dir=tmp_path / "run")
    check_env(env.unwrapped, skip_render_check=True)
    obs, reward, _, _, info = env.unwrapped.step({"tp": 0, "mb": 0})
    assert info["status"] == "completed" and reward == pytest.approx(1 / obs[0])
    assert info["env_params"]["seq_length"] in (4096, 8192)


def test_env_params_draws_follow_weights_and_are_reproducible(tmp_path: Path) -> None:
    from dse.space import SweepSpace, draw_env_params
    from dse.spec import load_sweep

    space = SweepSpace(load_sweep(write_toml(tmp_path / "sim.toml", SIM)))
    draws = [draw_env_params(space, 7, t)["seq_length"] for t in range(1, 4001)]
    assert draws == [draw_env_params(space, 7, t)["seq_length"] for t in range(1, 4001)]
    assert draws != [draw_env_params(space, 8, t)["seq_length"] for t in range(1, 4001)]
    share = draws.count(4096) / len(draws)
    assert 0.72 < share < 0.78
