"""`dse/Trial-v0`: one trial per `step`, as a gymnasium environment.

`action_space` is a `Dict` of `Discrete` per dimension (decoded to the dimension's values),
`observation_space` a `Box` with one slot per `agent_metrics` entry (zeros when the trial failed; the
reward then is -inf). `reset(seed=)` seeds the env_params draws and, once trials have run, starts a new
episode (a fresh trial table in `RUN_DIR/episode-N/`; the result cache, if given, is shared). Beside the blocking `step`, the
non-blocking `submit`/`collect` pair lets a runner keep several trials in flight.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from dse.engine import Executor, Finished, TrialEngine
from dse.space import SweepSpace
from dse.spec import Sweep, load_sweep
from dse.storage import ResultCache, TrialStore


class TrialEnv(gym.Env[np.ndarray, dict[str, int]]):
    metadata = {"render_modes": []}

    def __init__(self, sweep: str | Path, system: str | Path | None = None, executor: str | None = None,
                 seed: int | None = None, run_dir: str | Path | None = None, cache: str | Path | None = None,
                 tests_dir: str | Path | None = None) -> None:
        self._setup(load_sweep(sweep, system=system, tests_dir=tests_dir), executor, seed, run_dir, cache)

    @classmethod
    def from_sweep(cls, sweep: Sweep, *, executor: str | None = None, seed: int | None = None,
                   run_dir: str | Path | None = None, cache: str | Path | None = None) -> TrialEnv:
        """Build the env from Python objects (a `Sweep` made or loaded in a tuning script)."""
        env = cls.__new__(cls)
        env._setup(sweep, executor, seed, run_dir, cache)
        return env

    def _setup(self, sweep: Sweep, executor: str | None, seed: int | None, run_dir: str | Path | None,
               cache: str | Path | None) -> None:
        super().__init__()
        self.sweep = sweep
        self.space = SweepSpace(sweep)
        self.base_dir = Path(run_dir) if run_dir else Path(tempfile.mkdtemp(prefix=f"dse-{sweep.name}-"))
        self._executor = Executor(executor or sweep.system.scheduler, sweep.system)
        self._cache = ResultCache(cache) if cache else None
        self.episode = 0
        self._open_episode(seed or 0)
        self.metrics = list(sweep.test.agent_metrics)
        self.action_space = spaces.Dict({d.path: spaces.Discrete(len(d.values)) for d in self.space.agent.dimensions})
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(len(self.metrics),), dtype=np.float64)

    def _open_episode(self, seed: int) -> None:
        """Episode 1 writes to the run dir; each later reset after trials ran starts `episode-N/` beside it."""
        self.episode += 1
        self.run_dir = self.base_dir if self.episode == 1 else self.base_dir / f"episode-{self.episode}"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.store = TrialStore(self.run_dir / "trials.db")
        self.store.set_meta("params", self.space.agent.names)
        self.store.set_meta("env_params", self.space.env.names)
        self.store.set_meta("metrics", list(self.sweep.test.agent_metrics))
        self.engine = TrialEngine(self.space, self.store, self.run_dir, self._executor, cache=self._cache,
                                  seed=seed, max_retries=self.sweep.test.max_retries)
        self._ready: list[Finished] = []

    # ---- gymnasium API -----------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        if len(self.store):
            self.engine.cancel_all()
            self._open_episode(self.engine.seed if seed is None else seed)
        elif seed is not None:
            self.engine.seed = seed
        return np.zeros(len(self.metrics), dtype=np.float64), {}

    def decode(self, action: dict[str, Any]) -> dict[str, Any]:
        """Discrete indices -> dimension values."""
        return {d.path: d.values[int(action[d.path])] for d in self.space.agent.dimensions}

    def step(self, action: dict[str, Any]) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        trial = self.submit(action)
        while True:
            for fin in self.collect():
                if fin["trial"] == trial:
                    return fin["observation"], fin["reward"], False, False, fin["info"]
            time.sleep(0.05)

    # ---- non-blocking pair -------------------------------------------------------------------------
    def submit(self, action: dict[str, Any], decoded: bool = False) -> int:
        """Start a trial (indices, or values with decoded=True); returns its trial number."""
        values = dict(action) if decoded else self.decode(action)
        fin = self.engine.submit(values)
        if fin is not None:
            self._ready.append(fin)
            return fin.record.trial
        return max(self.engine.in_flight)

    def collect(self) -> list[dict[str, Any]]:
        """Trials that finished since the last call, as dicts with observation, reward and info."""
        ready: list[Finished] = [*self._ready, *self.engine.poll()]
        self._ready = []
        return [self._as_dict(f) for f in ready]

    def _as_dict(self, fin: Finished) -> dict[str, Any]:
        rec = fin.record
        obs = np.asarray(fin.observation if fin.ok else [0.0] * len(self.metrics), dtype=np.float64)
        info = {"trial": rec.trial, "status": rec.status, "reason": rec.reason, "config_hash": rec.config_hash,
                "env_params": rec.env, "cache_hit": rec.cache_hit, "error": rec.error, "action": rec.action}
        return {"trial": rec.trial, "observation": obs, "reward": float(rec.reward), "info": info}

    def close(self) -> None:
        self.engine.cancel_all()
        self.store.close()
