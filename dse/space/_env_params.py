"""Domain randomization: per-trial draws of env_params fields, reproducible from (seed, field, trial)."""

from __future__ import annotations

import random
from typing import Any

from dse.space._space import SweepSpace


def draw_env_params(space: SweepSpace, seed: int, trial: int) -> dict[str, Any]:
    """The env_params values of one trial: uniform or by weights, independent per field."""
    out: dict[str, Any] = {}
    for dim in space.env.dimensions:
        rng = random.Random(f"{seed}:{dim.path}:{trial}")
        weights = space.env_weights.get(dim.path)
        out[dim.path] = rng.choices(list(dim.values), weights=weights, k=1)[0] if weights else rng.choice(dim.values)
    return out
