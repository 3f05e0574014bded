"""The gymnasium env on a simulator-free Command sweep and on the simulator: check_env, rewards, cache."""

from __future__ import annotations

import warnings
from pathlib import Path

import gymnasium
import pytest
from conftest import write_toml
from gymnasium.utils.env_checker import check_env
from gymnasium.wrappers import PassiveEnvChecker

import dse.envs  # noqa: F401  (registers dse/Trial-v0)
from dse.envs import _trial_env as trial_env
from dse.envs._trial_env import TrialEnv

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


def _points(tmp_path: Path, x: str, extra: str = "", env_params: str = "") -> Path:
    """A Command sweep over `x` (and whatever `extra` adds) whose step time is x."""
    text = (f'name = "p"\ntest_template_name = "Command"\nagent_metrics = ["step-time"]\n{extra}\n[cmd_args]\n'
            f'command = "echo \'{{{{\\"step-time\\": {{x}}}}}}\' > metrics.json"\nx = {x}\n{env_params}')
    return write_toml(tmp_path / "points.toml", text)


def _wrappers(env: gymnasium.Env) -> list[type]:
    chain = []
    while isinstance(env, gymnasium.Wrapper):
        chain.append(type(env))
        env = env.env
    return chain


def test_check_env_passes(tmp_path: Path) -> None:
    # without a cache ($DSE_CACHE is set for every test): check_env steps one point twice, and a cache hit's
    # info (status "cached") would differ from the first run's
    env = gymnasium.make("dse/Trial-v0", sweep=_sweep(tmp_path), executor="debug", run_dir=tmp_path / "run",
                         cache=False)
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
                         run_dir=tmp_path / "run", cache=False)
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


def test_make_keeps_the_passive_env_checker_on(tmp_path: Path) -> None:
    assert gymnasium.spec("dse/Trial-v0").disable_env_checker is False
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # the checker's first reset and step find nothing to warn about
        env = gymnasium.make("dse/Trial-v0", sweep=_sweep(tmp_path), executor="debug", run_dir=tmp_path / "run")
        assert PassiveEnvChecker in _wrappers(env)
        env.reset(seed=0)
        obs, reward, terminated, truncated, info = env.step({"x": 2})
    assert info["status"] == "completed" and obs in env.observation_space and reward == pytest.approx(2.0)
    assert not terminated and not truncated
    env.close()


def test_max_episode_steps_truncates_and_an_exhausted_space_terminates(tmp_path: Path) -> None:
    env = gymnasium.make("dse/Trial-v0", sweep=_sweep(tmp_path), executor="debug", run_dir=tmp_path / "run",
                         max_episode_steps=2)
    env.reset(seed=0)
    assert env.step({"x": 0})[2:4] == (False, False)
    assert env.step({"x": 1})[2:4] == (False, True)  # 2 of 3 points tried: the limit ends the episode
    env.reset()
    assert env.step({"x": 2})[2:4] == (False, False)  # a new episode counts from 0 again
    env.close()
    two = gymnasium.make("dse/Trial-v0", sweep=_points(tmp_path, "[1, 2]"), executor="debug",
                         run_dir=tmp_path / "two", max_episode_steps=5)
    two.reset(seed=0)
    assert two.step({"x": 0})[2:4] == (False, False)
    assert two.step({"x": 1})[2:4] == (True, False)  # the space is exhausted before the limit
    two.close()


def test_terminated_once_every_valid_point_was_tried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = TrialEnv(_points(tmp_path, "[1, 2]"), executor="debug", run_dir=tmp_path / "run",
                   cache=tmp_path / "cache.db")
    env.reset(seed=0)
    _, _, terminated, truncated, info = env.step({"x": 0})
    assert info["status"] == "completed" and not terminated and not truncated
    _, _, terminated, _, info = env.step({"x": 0})  # the same point again (a cache hit) adds no new point
    assert info["status"] == "cached" and not terminated
    _, _, terminated, truncated, info = env.step({"x": 1})
    assert info["status"] == "completed" and terminated and not truncated
    env.reset()  # a new episode: nothing tried yet, and cache hits count as tried
    _, _, terminated, _, info = env.step({"x": 1})
    assert info["status"] == "cached" and not terminated
    _, _, terminated, _, info = env.step({"x": 0})
    assert info["status"] == "cached" and terminated
    env.close()
    monkeypatch.setattr(trial_env, "HELD_POINTS", 0)  # the lazy scan that a space too large to hold takes
    ruled = TrialEnv(_points(tmp_path, "[1, 2, 3]", extra='constraints = ["x <= 2"]'), executor="debug",
                     run_dir=tmp_path / "ruled", cache=False)
    ruled.reset(seed=0)
    _, _, terminated, _, info = ruled.step({"x": 2})  # x = 3 breaks the rule: infeasible, not a valid point
    assert info["status"] == "infeasible" and not terminated
    assert not ruled.step({"x": 0})[2]
    assert ruled.step({"x": 1})[2]  # both valid points tried; the invalid one never has to be
    ruled.close()


def test_env_params_draws_come_from_np_random_seeded_by_reset(tmp_path: Path) -> None:
    sweep = _points(tmp_path, "[1, 2]", env_params="y = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]\n[env_params.y]\n")
    env = TrialEnv(sweep, executor="debug", run_dir=tmp_path / "run", cache=False)

    def episode(e: TrialEnv, seed: int | None = None) -> list[int]:
        e.reset(seed=seed)
        return [e.step({"x": t % 2})[4]["env_params"]["y"] for t in range(6)]

    first = episode(env, 3)
    assert episode(env) != first  # reset() without a seed goes on with the generator
    assert episode(env, 3) == first  # the same seed, the same draws
    other = TrialEnv(sweep, executor="debug", seed=3, run_dir=tmp_path / "other", cache=False)
    assert episode(other) == first  # the constructor's seed seeds the generator the first reset goes on with
    env.close()
    other.close()


def test_env_params_draws_from_np_random_follow_weights(tmp_path: Path) -> None:
    env = TrialEnv(write_toml(tmp_path / "sim.toml", SIM), executor="debug", run_dir=tmp_path / "run", cache=False)
    env.reset(seed=7)
    draws = [env.draw_env_params()["seq_length"] for _ in range(4000)]
    env.reset(seed=7)
    assert draws == [env.draw_env_params()["seq_length"] for _ in range(4000)]
    assert 0.72 < draws.count(4096) / len(draws) < 0.78
    env.close()


def test_dse_cache_is_the_default_cache_and_false_turns_it_off(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from dse.spec import load_sweep

    monkeypatch.setenv("DSE_CACHE", str(tmp_path / "shared" / "cache.db"))
    env = TrialEnv.from_sweep(load_sweep(_sweep(tmp_path)), executor="debug", run_dir=tmp_path / "run")
    env.reset(seed=0)
    assert env.step({"x": 0})[4]["status"] == "completed"
    assert env.step({"x": 0})[4]["status"] == "cached" and (tmp_path / "shared" / "cache.db").is_file()
    env.close()
    off = TrialEnv(_sweep(tmp_path), executor="debug", run_dir=tmp_path / "off", cache=False)
    off.reset(seed=0)
    assert [off.step({"x": 0})[4]["status"] for _ in range(2)] == ["completed", "completed"]
    assert (tmp_path / "runs.log").read_text().count("ran") == 3  # the cached step ran nothing
    off.close()
