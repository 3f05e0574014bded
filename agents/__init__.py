"""dse's search agents, installed as `dse.agents`: grid, random and Optuna (TPE/GP/CMA-ES/NSGA-II...),
plus any registered by entry point (`dse.agents` group) or with `register_agent`.

The folder is `agents/` in the repository; setuptools installs it inside dse (`package-dir`), since the
top-level name `agents` is taken on PyPI.
"""

from dse.trial import TrialResult

from ._base import (
    Agent,
    AgentConfig,
    agent_classes,
    agent_names,
    create_agent,
    create_sweep_agent,
    get_agent_class,
    register_agent,
    unregister_agent,
)

__all__ = [
    "Agent",
    "AgentConfig",
    "TrialResult",
    "agent_classes",
    "agent_names",
    "create_agent",
    "create_sweep_agent",
    "get_agent_class",
    "register_agent",
    "unregister_agent",
]
