"""The agent contract (ask/tell) and the registry that finds agents by name.

Ask/tell instead of CloudAI's agent-owned `run()` loop: the runner owns scheduling, so it can keep several
trials in flight, replay a journal on resume and warm-start from the cache. Agents therefore must accept
`tell` for actions they never asked and `reserve` for points already in flight.

The contract an agent keeps (tests/agent_contract.py checks every built-in and plugin against it):

- `Agent(space, *, seed=0, config=None, ...)`: `config` is the sweep's `agent_config`, validated against the
  agent's `config_model` (a pydantic model; unknown or bad keys are one `InputError` naming
  `agent_config.<key>`); the engine also passes `steps`, `storage_dir`, `study_name` and `directions`.
- `ask()` is the one method a plugin must write: a valid point of `space.agent` not yet told, asked or
  reserved (`propose(index)` marks one in flight and decodes it), or None when nothing is left.
- `tell(action, result)` records the result (the default here); `action` may be one the agent never asked.
- `reserve(action)` marks a point in flight (a resumed run re-attached to it).
- The same seed gives the same sequence; a failed or infeasible result (non-finite reward) is an answer.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from dse.agent_names import ENTRY_POINT_GROUP, forget_agent_name, note_agent_name
from dse.errors import InputError
from dse.metrics import metric_directions
from dse.trial import TrialResult

if TYPE_CHECKING:
    from dse.space import SweepSpace

BUILTIN_MODULES = {"grid_search": "dse.agents._grid", "random_search": "dse.agents._random",
                   "optuna": "dse.agents._optuna", "model_guided": "dse.agents._model_guided"}


class AgentConfig(BaseModel):
    """The `agent_config` keys every agent accepts. An agent with keys of its own subclasses this and names the
    subclass in `config_model`; a key no field declares is refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    random_seed: int | None = None  # CloudAI's key: the engine's seed when `--seed` is not given


def _config_field(loc: Sequence[int | str]) -> str:
    """`agent_config.<key>` for a pydantic error location (`agent_config.directions[1]` for list items)."""
    field = "agent_config"
    for part in loc:
        field += f"[{part}]" if isinstance(part, int) else f".{part}"
    return field


class Agent(ABC):
    """A search strategy over `space.agent`; actions are `{dimension path: value}` dicts."""

    name: ClassVar[str] = ""
    accepts_env_params: ClassVar[bool] = False
    warm_start: ClassVar[bool] = False  # True: the engine tells it the cache's results of the space before it asks
    config_model: ClassVar[type[AgentConfig]] = AgentConfig  # the agent_config keys this agent accepts

    def __init__(
        self,
        space: SweepSpace,
        *,
        seed: int = 0,
        config: Mapping[str, Any] | AgentConfig | None = None,
        steps: int | None = None,
        storage_dir: Path | None = None,
        study_name: str = "dse",
        directions: Sequence[str | None] | None = None,
    ) -> None:
        self.space = space
        self.seed = seed
        self.config = self.parse_config(config, file=str(space.sweep.source))
        self.steps = steps  # the engine's budget (it, not the agent, enforces it); None: not given
        self.storage_dir = Path(storage_dir) if storage_dir is not None else None
        self.study_name = study_name
        self.directions = list(directions) if directions else None  # per agent_metrics entry; None: unknown
        self.told: dict[int, TrialResult] = {}  # agent index -> latest result
        self.in_flight: set[int] = set()  # asked or reserved, not told yet

    @classmethod
    def parse_config(cls, config: Mapping[str, Any] | AgentConfig | None, *, file: str | None = None) -> AgentConfig:
        """`agent_config` as this agent's `config_model`; the first problem is one InputError naming its key."""
        if isinstance(config, cls.config_model):
            return config
        if isinstance(config, AgentConfig):
            config = config.model_dump(exclude_unset=True)
        if config is not None and not isinstance(config, Mapping):
            raise InputError(f"must be a table of keys, got {type(config).__name__}", file=file, field="agent_config")
        try:
            return cls.config_model.model_validate(dict(config or {}))
        except ValidationError as exc:
            raise cls._config_error(exc, file) from None

    @classmethod
    def _config_error(cls, exc: ValidationError, file: str | None) -> InputError:
        """The first problem pydantic found, as one line naming `agent_config.<key>`."""
        err = exc.errors()[0]
        loc = list(err["loc"])
        field = _config_field(loc)
        if err["type"] == "extra_forbidden":
            known = ", ".join(sorted(cls.config_model.model_fields)) or "none"
            who = cls.name or cls.__name__
            return InputError(f"unknown key '{loc[-1]}' for the {who} agent; known: {known}", file=file, field=field)
        message = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] != "value_error":
            message += f" (got {repr(err.get('input'))[:80]})"
        return InputError(message, file=file, field=field)

    @abstractmethod
    def ask(self) -> dict[str, Any] | None:
        """The next action to evaluate, or None when the agent has nothing left to propose."""

    def tell(self, action: Mapping[str, Any], result: TrialResult) -> None:
        """Report a result; `action` may be one this agent never asked (resume replay, cache warm start).
        The default records it (`told`, no longer in flight); an agent that learns overrides this."""
        self._record(self.index_of(action), result)

    def reserve(self, action: Mapping[str, Any]) -> None:
        """Mark a point as in flight (a resumed run re-attached to it): it must never be asked again."""
        self.in_flight.add(self.index_of(action))

    # ---- helpers shared by the built-ins ---------------------------------------------------------
    def propose(self, index: int) -> dict[str, Any]:
        """Mark the agent index `index` in flight and return its action: what `ask` hands out."""
        self.in_flight.add(index)
        return self.space.agent.decode(index)

    def index_of(self, action: Mapping[str, Any]) -> int:
        """Agent index of an action; keys outside the agent's space (env draws) are ignored."""
        names = self.space.agent.names
        return self.space.agent.encode({k: action[k] for k in names if k in action})

    def seen(self) -> set[int]:
        """Indices that must not be proposed again: told or in flight."""
        return set(self.told) | self.in_flight

    def _record(self, index: int, result: TrialResult) -> None:
        self.in_flight.discard(index)
        self.told[index] = result


_REGISTRY: dict[str, type[Agent]] = {}
_LOADED_BUILTINS = False


def register_agent(name: str) -> Callable[[type[Agent]], type[Agent]]:
    """Class decorator: make an Agent subclass available under `name` (a name is registered once)."""

    def deco(cls: type[Agent]) -> type[Agent]:
        if not (isinstance(cls, type) and issubclass(cls, Agent)):
            raise TypeError(f"agent '{name}' must be a subclass of dse.agents._base.Agent, got {cls!r}")
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"an agent named '{name}' is already registered ({_REGISTRY[name].__qualname__})")
        cls.name = name
        _REGISTRY[name] = cls
        note_agent_name(name)
        return cls

    return deco


def unregister_agent(name: str) -> None:
    """Forget a registered agent (tests and notebooks that register throw-away agents)."""
    _REGISTRY.pop(name, None)
    forget_agent_name(name)


def _load_builtins() -> None:
    global _LOADED_BUILTINS
    if not _LOADED_BUILTINS:
        for module in BUILTIN_MODULES.values():
            importlib.import_module(module)
        _LOADED_BUILTINS = True


def _entry_points() -> dict[str, metadata.EntryPoint]:
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def _load_entry_point(ep: metadata.EntryPoint) -> type[Agent]:
    """Import a plugin agent on first use; a plugin that is not an Agent class is a TypeError."""
    if ep.name in _REGISTRY:
        return _REGISTRY[ep.name]
    cls = ep.load()
    if not (isinstance(cls, type) and issubclass(cls, Agent)):
        raise TypeError(
            f"entry point '{ep.name}' ({ep.value}) in group {ENTRY_POINT_GROUP} is not an dse.agents._base.Agent "
            f"subclass: {cls!r}"
        )
    return register_agent(ep.name)(cls)


def agent_classes() -> dict[str, type[Agent]]:
    """Every agent by name: built-ins, classes registered in code, and `dse.agents` entry points."""
    _load_builtins()
    for ep in _entry_points().values():
        _load_entry_point(ep)
    return dict(sorted(_REGISTRY.items()))


def agent_names() -> list[str]:
    """Names only: entry points are listed without importing them."""
    _load_builtins()
    return sorted(set(_REGISTRY) | set(_entry_points()))


def get_agent_class(name: str) -> type[Agent]:
    """One agent class by name, importing only that plugin; unknown names are a KeyError naming the known."""
    _load_builtins()
    if name in _REGISTRY:
        return _REGISTRY[name]
    eps = _entry_points()
    if name in eps:
        return _load_entry_point(eps[name])
    raise KeyError(f"unknown agent '{name}'; known agents: {', '.join(agent_names())}")


def create_sweep_agent(name: str, space: SweepSpace, *, steps: int, seed: int, storage_dir: Path | None) -> Agent:
    """The agent a sweep asks for, configured from it (agent_config, one objective direction per agent metric):
    one place, so `dse dry-run` builds, and refuses, exactly what `dse run` would. An unknown `name` (from
    `--agent`; the sweep's own `agent` was checked when it was read) is an InputError listing the known agents."""
    test = space.sweep.test
    if name not in agent_names():
        own = name == test.agent
        raise InputError(f"unknown agent '{name}'; known agents: {', '.join(agent_names())}",
                         file=str(space.sweep.source) if own else None, field="agent" if own else "--agent")
    return create_agent(name, space, steps=steps, seed=seed, config=dict(test.agent_config or {}),
                        storage_dir=storage_dir, study_name=space.sweep.name,
                        directions=metric_directions(test.agent_metrics))


def create_agent(name: str, space: SweepSpace, **kw: Any) -> Agent:
    """Build the named agent; a sweep with env_params needs an agent that accepts a varying environment."""
    cls = get_agent_class(name)
    if space.env.dimensions and not cls.accepts_env_params:
        able = [n for n in agent_names() if n in _REGISTRY and _REGISTRY[n].accepts_env_params]
        params = ", ".join(d.path for d in space.env.dimensions)
        raise InputError(
            f"agent '{name}' cannot handle env_params ({params}): the environment varies between trials; "
            f"use one of: {', '.join(able) or 'none'}",
            file=str(space.sweep.source),
            field="agent",
        )
    return cls(space, **kw)
