"""The search space of a sweep: dimensions from list-valued fields, lazy index <-> config, vectorised
validity under the workload's rules and the user's constraints, env_params draws, and its plain-text summary.
"""

from dse.space._baseline import Baseline, baseline_action
from dse.space._env_params import draw_env_params
from dse.space._space import (
    DEFAULT_BLOCK,
    ENV_VAR_PREFIX,
    MAX_POINTS,
    NUM_NODES,
    Dimension,
    SearchSpace,
    SpaceCount,
    SweepSpace,
)
from dse.space._summary import space_summary, trials_to_run

__all__ = [
    "DEFAULT_BLOCK",
    "Baseline",
    "ENV_VAR_PREFIX",
    "MAX_POINTS",
    "NUM_NODES",
    "Dimension",
    "SearchSpace",
    "SpaceCount",
    "SweepSpace",
    "baseline_action",
    "draw_env_params",
    "space_summary",
    "trials_to_run",
]
