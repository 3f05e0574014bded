"""The names agents are known by, kept below every layer that checks a sweep's `agent` field.

The agents themselves live in `dse.agents`, above the spec; the spec only needs their names: the built-in
ones, those registered under the `dse.agents` entry-point group, and those registered in code this session
(`dse.agents.register_agent` records the name here).
"""

from __future__ import annotations

from importlib import metadata

__all__ = ["BUILTIN_AGENTS", "ENTRY_POINT_GROUP", "known_agent_names", "note_agent_name", "forget_agent_name"]

ENTRY_POINT_GROUP = "dse.agents"
BUILTIN_AGENTS = ("grid_search", "random_search", "optuna", "model_guided")
_REGISTERED: set[str] = set()


def note_agent_name(name: str) -> None:
    _REGISTERED.add(name)


def forget_agent_name(name: str) -> None:
    _REGISTERED.discard(name)


def known_agent_names() -> list[str]:
    """Built-in agents, agents registered by entry point, and agents registered in code this session."""
    names = set(BUILTIN_AGENTS) | _REGISTERED
    names.update(ep.name for ep in metadata.entry_points(group=ENTRY_POINT_GROUP))
    return sorted(names)
