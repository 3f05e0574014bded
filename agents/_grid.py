"""Grid search: every valid point exactly once, in the space's stable order.

The walk is lazy (`iter_valid`), so a huge space costs nothing up front; points already told or
reserved (a resumed run) are skipped, and asked points count as taken at once so several asks
before any tell never hand out the same point twice. `tell` is the base class's: it only records.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ._base import Agent, register_agent


@register_agent("grid_search")
class GridSearchAgent(Agent):
    """Walks `space.iter_valid()`; None once the grid is exhausted (the runner enforces `steps`)."""

    accepts_env_params = False

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._walk: Iterator[int] = self.space.iter_valid()
        self._done = False

    def ask(self) -> dict[str, Any] | None:
        if self._done:
            return None
        for index in self._walk:
            if index in self.told or index in self.in_flight:
                continue
            return self.propose(index)
        self._done = True
        return None
