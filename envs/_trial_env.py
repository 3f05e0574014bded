"""`dse/Trial-v0`: one trial per `step`, as a gymnasium environment.

`action_space` is a `Dict` of `Discrete` per dimension (decoded to the dimension's values),
`observation_space` a `Box` with one slot per `agent_metrics` entry (zeros when the trial failed; the
reward then is -inf). `step` blocks until its trial has finished; a runner that keeps several trials in
flight drives `dse.engine.TrialEngine` (`submit`/`poll`) instead.

Episodes follow gymnasium: `reset(seed=)` seeds `np_random`, from which every env_params draw comes
(the same seed gives the same draws; `reset()` without a seed goes on with the generator), and, once
trials have run, starts a new episode (a fresh trial table in `RUN_DIR/episode-N/`; the result cache is
shared). `terminated` is True once every valid point of the agent space was tried in the episode (cached
and infeasible trials count); `truncated` comes from `TimeLimit`:
`gymnasium.make("dse/Trial-v0", sweep=PATH, max_episode_steps=sweep.test.agent_steps)`.

The result cache is `cache`, else `$DSE_CACHE` when that is set, else none; `cache=False` turns it off
even where `$DSE_CACHE` is set. A cache hit changes a step's `info` (`status="cached"`), so
`gymnasium.utils.env_checker.check_env`, which steps one point twice, needs an env without one.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding

from dse.engine import Executor, Finished, TrialEngine, default_cache_path
from dse.metrics import FAILED_REWARD, metric_kind
from dse.space import SweepSpace
from dse.spec import Sweep, load_sweep
from dse.storage import ResultCache, TrialStore

HELD_POINTS = 1 << 22
"""Agent spaces up to this size check exhaustion against the held valid set; larger ones scan lazily."""
POLL_S = 0.05
_NON_NEGATIVE = ("time", "throughput", "memory")


class TrialEnv(gym.Env[np.ndarray, dict[str, Any]]):
    metadata = {"render_modes": []}

    def __init__(self, sweep: str | Path, system: str | Path | None = None, executor: str | None = None,
                 seed: int | None = None, run_dir: str | Path | None = None,
                 cache: str | Path | Literal[False] | None = None, tests_dir: str | Path | None = None) -> None:
        self._setup(load_sweep(sweep, system=system, tests_dir=tests_dir), executor, seed, run_dir, cache)

    @classmethod
    def from_sweep(cls, sweep: Sweep, *, executor: str | None = None, seed: int | None = None,
                   run_dir: str | Path | None = None, cache: str | Path | Literal[False] | None = None) -> TrialEnv:
        """Build the env from Python objects (a `Sweep` made or loaded in a tuning script)."""
        env = cls.__new__(cls)
        env._setup(sweep, executor, seed, run_dir, cache)
        return env

    def _setup(self, sweep: Sweep, executor: str | None, seed: int | None, run_dir: str | Path | None,
               cache: str | Path | Literal[False] | None) -> None:
        super().__init__()
        if seed is not None:  # the generator a first `reset()` without a seed goes on with
            self._np_random, self._np_random_seed = seeding.np_random(seed)
        self.sweep = sweep
        self.space = SweepSpace(sweep)
        self.base_dir = Path(run_dir) if run_dir else Path(tempfile.mkdtemp(prefix=f"dse-{sweep.name}-"))
        self._executor = Executor(executor or sweep.system.scheduler, sweep.system)
        if cache is None and os.environ.get("DSE_CACHE"):
            cache = default_cache_path()
        self._cache = ResultCache(cache) if cache else None
        self.metrics = list(sweep.test.agent_metrics)
        self.action_space = spaces.Dict({d.path: spaces.Discrete(len(d.values)) for d in self.space.agent.dimensions})
        low = [0.0 if metric_kind(m) in _NON_NEGATIVE else -np.inf for m in self.metrics]
        self.observation_space = spaces.Box(np.array(low, dtype=np.float64), np.inf, shape=(len(self.metrics),),
                                            dtype=np.float64)
        self.episode = 0
        self._open_episode()

    def _open_episode(self) -> None:
        """Episode 1 writes to the run dir; each later reset after trials ran starts `episode-N/` beside it."""
        self.episode += 1
        self.run_dir = self.base_dir if self.episode == 1 else self.base_dir / f"episode-{self.episode}"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.store = TrialStore(self.run_dir / "trials.db")
        self.store.set_meta("params", self.space.agent.names)
        self.store.set_meta("env_params", self.space.env.names)
        self.store.set_meta("metrics", list(self.sweep.test.agent_metrics))
        self.engine = TrialEngine(self.space, self.store, self.run_dir, self._executor, cache=self._cache,
                                  max_retries=self.sweep.test.max_retries)
        self._tried: set[int] = set()
        self._cursor = 0

    # ---- gymnasium API -----------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        if len(self.store):
            self.engine.cancel_all()
            self.store.close()
            self._open_episode()
        else:
            self._tried, self._cursor = set(), 0
        return np.zeros(len(self.metrics), dtype=np.float64), {}

    def decode(self, action: dict[str, Any]) -> dict[str, Any]:
        """Discrete indices -> dimension values (an index outside its dimension is a ValueError)."""
        out: dict[str, Any] = {}
        for d in self.space.agent.dimensions:
            i = int(action[d.path])
            if not 0 <= i < len(d.values):
                raise ValueError(f"action[{d.path!r}] = {i} is not an index of its {len(d.values)} values")
            out[d.path] = d.values[i]
        return out

    def step(self, action: dict[str, Any]) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        values = self.decode(action)
        index = sum(int(action[d.path]) * s for d, s in zip(self.space.agent.dimensions, self.space.agent.strides,
                                                            strict=True))
        trial = self.store.next_trial_number()  # this env is the store's only writer
        fin = self.engine.submit(values, env=self.draw_env_params())  # the draw from np_random is the one run
        while fin is None:
            fin = next((f for f in self.engine.poll() if f.record.trial == trial), None)
            if fin is None:
                time.sleep(POLL_S)
        self._tried.add(index)
        obs, info = self._outcome(fin)
        reward = FAILED_REWARD if fin.record.reward is None else float(fin.record.reward)  # None: never, once finished
        return obs, reward, self._exhausted(), False, info

    def draw_env_params(self) -> dict[str, Any]:
        """One draw of every env_params field from `np_random`: uniform, or by the field's weights."""
        out: dict[str, Any] = {}
        for dim in self.space.env.dimensions:
            weights = self.space.env_weights.get(dim.path)
            p = np.asarray(weights, dtype=np.float64) / sum(weights) if weights else None
            out[dim.path] = dim.values[int(self.np_random.choice(len(dim.values), p=p))]
        return out

    def _exhausted(self) -> bool:
        """Whether every valid agent point was tried in this episode. `_cursor` only moves past tried points:
        a position in the held valid set, or (a larger space) the agent index the scan goes on from."""
        if self.space.agent.size <= HELD_POINTS:
            pool = self.space.valid_indices()
            while self._cursor < pool.size and int(pool[self._cursor]) in self._tried:
                self._cursor += 1
            return self._cursor >= pool.size
        for i in self.space.iter_valid(self._cursor):
            if i not in self._tried:
                self._cursor = i
                return False
        self._cursor = self.space.agent.size
        return True

    def _outcome(self, fin: Finished) -> tuple[np.ndarray, dict[str, Any]]:
        rec = fin.record
        obs = np.asarray(fin.observation if fin.ok else [0.0] * len(self.metrics), dtype=np.float64)
        info = {"trial": rec.trial, "status": rec.status, "reason": rec.reason, "config_hash": rec.config_hash,
                "env_params": rec.env, "cache_hit": rec.cache_hit, "error": rec.error, "action": rec.action}
        return obs, info

    def close(self) -> None:
        self.engine.cancel_all()
        self.store.close()
