"""The test definition: one CloudAI-style test TOML (its workload, cmd_args, agent and env_params).

Everything a user can get wrong is refused here with one field-naming error; the workload's own checks
(its cmd_args model, a pinned Megatron-Bridge repo, a token) come from its entry in `dse.workloads`.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dse.agent_names import known_agent_names
from dse.errors import FieldProblem, InputError
from dse.expressions import parse_expression
from dse.hashing import scrub_secrets
from dse.metrics import EarlyStopping, reward_names
from dse.workloads import workload_class, workload_names


class GitRepo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str
    commit: str
    mount_as: str | None = None
    init_submodules: bool = False

    @field_validator("commit")
    @classmethod
    def _pinned(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must pin a commit or tag")
        return v.strip()


class EnvParamSpec(BaseModel):
    """How the environment draws one cmd_args field per trial (the candidates stay in cmd_args)."""

    model_config = ConfigDict(extra="forbid")

    weights: list[float] | None = None
    encoding: dict[str, Any] = Field(default_factory=lambda: {"type": "categorical"})

    @field_validator("weights")
    @classmethod
    def _weights(cls, v: list[float] | None) -> list[float] | None:
        if v is None:
            return v
        for w in v:
            if not math.isfinite(w) or w < 0:
                raise ValueError(f"weights must be finite and non-negative, got {w}")
        if abs(sum(v) - 1.0) > 1e-6:
            raise ValueError(f"weights must sum to 1, they sum to {sum(v):g}")
        return v


MAX_NAME_LENGTH = 100


def check_sweep_name(name: str) -> str:
    """A test's or scenario's `name`: 1 to 100 characters, not blank, no control character (NUL, newline), no
    secret. It names the run directory (made safe by `dse.engine._sweep.safe_dir_name`) and the optuna study."""
    problem = ""
    if not name.strip():
        problem = "is empty"
    elif any(ord(c) < 32 or ord(c) == 127 for c in name):
        problem = "holds a control character (NUL, newline, tab...)"
    elif len(name) > MAX_NAME_LENGTH:
        problem = f"is {len(name)} characters long"
    elif scrub_secrets(name) != name:
        problem = "holds a secret (a token)"
    if problem:
        raise ValueError(f"{problem}; a name is 1 to {MAX_NAME_LENGTH} characters, not blank, without control "
                         "characters or secrets, e.g. 'qwen30b_h100'")
    return name


class TestDefinition(BaseModel):
    """One test: a workload, its cmd_args (list-valued fields are the space) and the agent settings."""

    model_config = ConfigDict(extra="forbid")
    __test__ = False  # not a pytest class

    name: str
    description: str = ""
    test_template_name: str
    cmd_args: dict[str, Any] = Field(default_factory=dict)
    dse_excluded_args: list[str] = Field(default_factory=list)
    extra_env_vars: dict[str, str | list[str]] = Field(default_factory=dict)
    extra_cmd_args: dict[str, str] = Field(default_factory=dict)
    extra_container_mounts: list[str] = Field(default_factory=list)
    extra_srun_args: str | list[str] = Field(default_factory=list)  # a scenario's per-test srun arguments
    git_repos: list[GitRepo] = Field(default_factory=list)
    nsys: dict[str, Any] | None = None
    predictor: dict[str, Any] | None = None
    nemo_run_repo: GitRepo | None = None
    agent: str = "grid_search"
    agent_steps: int = 1
    agent_metrics: list[str] = Field(default_factory=lambda: ["default"])
    agent_reward_function: str = "inverse"
    agent_config: dict[str, Any] | None = None
    env_params: dict[str, EnvParamSpec] = Field(default_factory=dict)
    constraints: list[str] = Field(default_factory=list)
    # dse extensions for a test run on its own (a scenario sets these per [[Tests]] entry)
    num_nodes: int | list[int] | None = None
    time_limit: str | None = None
    max_retries: int = 2
    # `early_stopping = true`, or an `[early_stopping]` table of its settings (`dse.metrics.EarlyStopping`)
    early_stopping: EarlyStopping | None = None
    # the configuration to compare with (measured first): the preset's values of the swept fields by default
    baseline: dict[str, Any] | None = None

    @field_validator("extra_env_vars", mode="before")
    @classmethod
    def _env_values_as_strings(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v
        out: dict[str, Any] = {}
        for key, val in v.items():
            if isinstance(val, list):
                out[key] = [_env_str(x) for x in val]
            else:
                out[key] = _env_str(val)
        return out

    @field_validator("dse_excluded_args", mode="before")
    @classmethod
    def _excluded_as_list(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("dse_excluded_args")
    @classmethod
    def _excluded_paths(cls, v: list[str]) -> list[str]:
        out = []
        for path in v:
            p = path.strip()
            if not p or p.endswith(".") or ".." in p or p in ("cmd_args", "cmd_args."):
                raise ValueError(f"'{path}' is not a field path such as 'cmd_args.tp'")
            out.append(p.removeprefix("cmd_args."))
        return out

    @field_validator("early_stopping", mode="before")
    @classmethod
    def _early_stopping(cls, v: Any) -> Any:
        return {"enabled": v} if isinstance(v, bool) else v  # `early_stopping = true` is the table's defaults

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_sweep_name(v)

    @field_validator("test_template_name")
    @classmethod
    def _known_workload(cls, v: str) -> str:
        known = workload_names()
        if v not in known:
            raise ValueError("Input should be " + ", ".join(f"'{n}'" for n in known[:-1]) + f" or '{known[-1]}'")
        return v

    @field_validator("agent")
    @classmethod
    def _known_agent(cls, v: str) -> str:
        known = known_agent_names()
        if v not in known:
            raise ValueError(f"unknown agent '{v}'; known agents: {', '.join(known)}")
        return v

    @field_validator("agent_reward_function")
    @classmethod
    def _known_reward(cls, v: str) -> str:
        known = reward_names()
        if v not in known:
            raise ValueError(f"unknown reward function '{v}'; known: {', '.join(known)}")
        return v

    @field_validator("agent_steps", "max_retries")
    @classmethod
    def _count(cls, v: int, info: Any) -> int:
        minimum = 0 if info.field_name == "max_retries" else 1
        if v < minimum:
            raise ValueError(f"must be >= {minimum}, got {v}")
        return v

    @field_validator("agent_metrics")
    @classmethod
    def _metrics(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("needs at least one metric, e.g. ['default']")
        if len(set(v)) != len(v):
            raise ValueError("lists a metric twice")
        return v

    @field_validator("num_nodes", mode="before")
    @classmethod
    def _nodes(cls, v: Any) -> Any:
        return _coerce_nodes(v)

    @model_validator(mode="after")
    def _cross_checks(self) -> TestDefinition:
        self._check_no_nul()
        kind = workload_class(self.test_template_name)
        try:
            kind.cmd_args_model.model_validate(self.cmd_args)
        except ValidationError as exc:
            raise _PrefixedError(exc, "cmd_args") from None
        self._check_env_params()
        kind.check_test(self)
        self._check_constraints()
        return self

    def _check_no_nul(self) -> None:
        """A NUL cannot be passed in argv or the environment: refused in cmd_args, extra_env_vars and
        extra_cmd_args (names and values) when the sweep is read, not found missing after the run."""
        # breadth first, in the file's order: the first bad value is the one named
        queue = deque((f, getattr(self, f)) for f in ("cmd_args", "extra_env_vars", "extra_cmd_args"))
        while queue:
            where, value = queue.popleft()
            if isinstance(value, dict):
                for k, v in value.items():
                    if "\0" in str(k):
                        raise _FieldError(where, f"a name holds a NUL character ({str(k)!r})")
                    queue.append((f"{where}.{k}", v))
            elif isinstance(value, list):
                queue.extend((f"{where}[{i}]", v) for i, v in enumerate(value))
            elif isinstance(value, str) and "\0" in value:
                raise _FieldError(where, "holds a NUL character, which no program can receive in its arguments "
                                  "or environment")

    def _check_env_params(self) -> None:
        for name, spec in self.env_params.items():
            if name not in self.cmd_args:
                known = [k for k, v in self.cmd_args.items() if isinstance(v, list)]
                raise _FieldError(
                    f"env_params.{name}",
                    f"names no cmd_args field; list-valued fields here: {', '.join(known) or 'none'}",
                )
            values = self.cmd_args[name]
            if not isinstance(values, list):
                raise _FieldError(
                    f"env_params.{name}",
                    f"cmd_args.{name} is a scalar ({values!r}); env_params needs a list of candidates",
                )
            if len(values) < 2:
                raise _FieldError(f"env_params.{name}", f"cmd_args.{name} needs at least 2 candidates")
            if spec.weights is not None and len(spec.weights) != len(values):
                raise _FieldError(
                    f"env_params.{name}.weights",
                    f"{len(spec.weights)} weights for {len(values)} candidates of cmd_args.{name}",
                )

    def _check_constraints(self) -> None:
        for i, text in enumerate(self.constraints):
            try:
                parse_expression(text)
            except InputError as exc:
                raise _FieldError(f"constraints[{i}]", exc.message) from None

    @property
    def megatron_bridge_repo(self) -> GitRepo | None:
        for r in self.git_repos:
            if "megatron-bridge" in r.url.lower() or (r.mount_as or "").rstrip("/") == "/opt/Megatron-Bridge":
                return r
        return None



def _flat_keys(d: Mapping[str, Any], prefix: str = "") -> list[str]:
    out = []
    for k, v in d.items():
        out.append(prefix + k)
        if isinstance(v, Mapping):
            out.extend(_flat_keys(v, prefix + k + "."))
    return out


def _env_str(v: Any) -> Any:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, (int, float)):
        return str(v)
    return v


def _coerce_nodes(v: Any) -> Any:
    """`num_nodes = "2"` (as the seed writes it) is 2; a list of node counts is a dimension."""
    if isinstance(v, str):
        try:
            return int(v.strip())
        except ValueError:
            raise ValueError(f"'{v}' is not a node count") from None
    if isinstance(v, int) and not isinstance(v, bool) and v < 1:
        raise ValueError(f"must be a positive integer, got {v}")
    if isinstance(v, list):
        out = [_coerce_nodes(x) for x in v]
        if not out:
            raise ValueError("an empty list sweeps nothing")
        return out
    return v



_FieldError = FieldProblem


class _PrefixedError(ValueError):
    def __init__(self, exc: ValidationError, prefix: str) -> None:
        self.exc = exc
        self.prefix = prefix
        super().__init__(str(exc))

