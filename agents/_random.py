"""Random search: seeded uniform draws over the valid points, without replacement.

Seeded with `numpy.random.default_rng(seed)` so a run is reproducible; it never looks at rewards,
so a varying environment (env_params) does not bother it. `tell` is the base class's: it only records.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._base import Agent, register_agent


@register_agent("random_search")
class RandomSearchAgent(Agent):
    """Uniform over valid points not yet told, asked or reserved; None when none is left."""

    accepts_env_params = True

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._rng = np.random.default_rng(self.seed)
        self._done = False

    def ask(self) -> dict[str, Any] | None:
        if self._done:
            return None
        index = self.space.sample_valid(self._rng, exclude=self.seen())
        if index is None:
            self._done = True
            return None
        return self.propose(index)
