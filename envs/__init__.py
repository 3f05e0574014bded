"""dse's gymnasium environment, installed as `dse.envs`: `dse/Trial-v0` runs one trial per step.

The folder is `envs/` in the repository; setuptools installs it inside dse (`package-dir`), since the
top-level name `envs` is taken on PyPI.
"""

from dse.envs._trial_env import TrialEnv
from gymnasium.envs.registration import register, registry

from dse.space import draw_env_params

if "dse/Trial-v0" not in registry:
    register(id="dse/Trial-v0", entry_point="dse.envs._trial_env:TrialEnv", disable_env_checker=True)

__all__ = ["TrialEnv", "draw_env_params"]
