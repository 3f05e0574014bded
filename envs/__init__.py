"""dse's gymnasium environment, installed as `dse.envs`: `dse/Trial-v0` runs one trial per step.

`gymnasium.make("dse/Trial-v0", sweep=PATH, max_episode_steps=N)` truncates episodes after N steps (none is
registered: a sweep's `agent_steps` is the natural N); the passive env checker is on.

The folder is `envs/` in the repository; setuptools installs it inside dse (`package-dir`), since the
top-level name `envs` is taken on PyPI.
"""

from gymnasium.envs.registration import register, registry

from dse.space import draw_env_params

from ._trial_env import TrialEnv

if "dse/Trial-v0" not in registry:
    register(id="dse/Trial-v0", entry_point="dse.envs._trial_env:TrialEnv")  # the passive env checker stays on

__all__ = ["TrialEnv", "draw_env_params"]
