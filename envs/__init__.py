"""Gymnasium environments of dse: `dse/Trial-v0` runs one trial per step."""

from gymnasium.envs.registration import register, registry

if "dse/Trial-v0" not in registry:
    register(id="dse/Trial-v0", entry_point="envs.trial_env:TrialEnv", disable_env_checker=True)
