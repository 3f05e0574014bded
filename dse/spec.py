"""The sweep spec: pydantic models for the test, scenario and system TOML, and their loading.

A sweep is one CloudAI-style test definition (a test TOML, a scenario naming a test by `test_name`, or a
test written inline in a scenario). Any list-valued `cmd_args` field is a search dimension (see
`dse.space`). Everything a user can get wrong is refused here with one `InputError` line naming the file
and the field, so the rest of the engine only sees valid specs.
"""

from __future__ import annotations

import difflib
import math
import os
import tomllib
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dse.errors import InputError

WORKLOADS = ("MegatronBridge", "MegatronBridgeSim", "Command")
SECRET_FIELDS = ("hf_token", "wandb_key")
AGENT_ENTRY_POINT_GROUP = "dse.agents"
BUILTIN_AGENTS = ("grid_search", "random_search", "optuna")


class UnknownFieldWarning(UserWarning):
    """An undotted cmd_args key that is not a known field (it is still forwarded as a Hydra override)."""


# --------------------------------------------------------------------------------------------------
# cmd_args models
# --------------------------------------------------------------------------------------------------
class _CmdArgsBase(BaseModel):
    """Common behaviour: extra keys allowed (Hydra overrides), unknown undotted keys warned about."""

    model_config = ConfigDict(extra="allow", validate_assignment=False)

    @model_validator(mode="after")
    def _warn_unknown_keys(self) -> _CmdArgsBase:
        known = list(type(self).model_fields)
        for key, value in (self.model_extra or {}).items():
            if "." in key or isinstance(value, dict) or key in self._placeholder_keys():
                continue  # dotted keys and nested tables are Hydra overrides (`model.seq_length=...`)
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            warnings.warn(
                f"cmd_args.{key}: unknown field, forwarded as a Hydra override '{key}=...'{hint}",
                UnknownFieldWarning,
                stacklevel=2,
            )
        return self

    def _placeholder_keys(self) -> set[str]:
        return set()


_POSITIVE_INT_FIELDS = (
    "num_gpus", "gpus_per_node", "tp", "pp", "cp", "vp", "ep", "et", "mb", "gb", "seq_length", "max_steps",
)


class MegatronBridgeCmdArgs(_CmdArgsBase):
    """Megatron-Bridge launcher arguments (CloudAI's `MegatronBridgeCmdArgs`, same fields and defaults).

    `X | list[X]` fields are sweepable; a list-typed knob (cuda_graph_scope, recompute_modules) names
    several items in one comma string, so a TOML list of such strings is always a sweep.
    """

    gpu_type: str = "gb200"
    log_dir: str = ""
    container_image: str = ""
    num_gpus: int = 8
    gpus_per_node: int | None = None
    enable_vboost: bool | None = False
    dryrun: bool | None = False
    enable_nsys: bool | None = False
    domain: str | None = None
    hidden_size: int | None = None
    num_layers: int | None = None
    pipeline_model_parallel_layout: str | None = None
    first_k_dense_replace: int | None = None
    model_family_name: str = ""
    model_recipe_name: str = ""
    use_recipes: bool | None = None
    task: str = "pretrain"
    compute_dtype: str = "bf16"
    fp8_recipe: str | None = None
    hf_token: str = ""
    nemo_home: str | None = None
    wandb_key: str | None = None
    wandb_project_name: str | None = None
    wandb_entity_name: str | None = None
    wandb_experiment_name: str | None = None
    wandb_save_dir: str | None = None
    max_retries: int | None = 1
    use_tokendrop: bool | list[bool] | None = None
    use_megatron_fsdp: bool | list[bool] | None = None
    cuda_graph_impl: str | list[str] | None = None
    cuda_graph_scope: str | list[str] | None = None
    tp: int | list[int] | None = None
    pp: int | list[int] | None = None
    cp: int | list[int] | None = None
    vp: int | list[int] | None = None
    ep: int | list[int] | None = None
    et: int | list[int] | None = None
    mb: int | list[int] | None = None
    gb: int | list[int] | None = None
    seq_length: int | list[int] | None = None
    lr: float | list[float] | None = None
    min_lr: float | list[float] | None = None
    warmup_iters: int | list[int] | None = None
    pretrained_checkpoint: str | None = None
    save_dir: str | None = None
    load_dir: str | None = None
    save_interval: int | None = None
    most_recent_k: int | None = None
    save_config_filepath: str | None = "/nemo_run/configs/ConfigContainer.yaml"
    data: str | None = None
    dataset_paths: str | list[str] | None = None
    dataset_root: str | None = None
    index_mapping_dir: str | None = None
    dataset_name: str | None = None
    packed_sequence: bool | None = None
    head_only: bool | None = None
    tokenizer_type: str | None = None
    tokenizer_model: str | None = None
    vocab_size: int | None = None
    pytorch_profiler: bool | None = None
    profiling_start_step: int | None = None
    profiling_stop_step: int | None = None
    record_memory_history: bool | None = None
    profiling_gpu_metrics: bool | None = None
    profiling_ranks: int | str | list[int] | None = None
    nsys_trace: str | list[str] | None = None
    nsys_extra_args: str | list[str] | None = None
    nccl_ub: bool | list[bool] | None = None
    moe_a2a_overlap: bool | list[bool] | None = None
    max_steps: int | None = 10
    recompute_num_layers: int | list[int] | None = None
    activation_offload_layers: int | list[int] | None = None
    recompute_modules: str | list[str] | None = None
    num_distributed_optimizer_instances: int | None = None
    config_variant: str | None = None
    list_config_variants: bool | None = None

    @field_validator(*_POSITIVE_INT_FIELDS)
    @classmethod
    def _positive(cls, v: Any) -> Any:
        for item in v if isinstance(v, list) else [v]:
            if item is not None and item < 1:
                raise ValueError(f"must be a positive integer, got {item}")
        if isinstance(v, list) and not v:
            raise ValueError("an empty list sweeps nothing")
        return v

    @field_validator("recompute_num_layers", "activation_offload_layers")
    @classmethod
    def _non_negative(cls, v: Any) -> Any:
        for item in v if isinstance(v, list) else [v]:
            if item is not None and item < 0:
                raise ValueError(f"must be >= 0, got {item}")
        return v


class CommandCmdArgs(_CmdArgsBase):
    """Any program: `command` is a `/bin/sh` template whose `{field}` placeholders take cmd_args values."""

    command: str
    metrics_file: str = "metrics.json"
    num_gpus: int = 1
    gpus_per_node: int | None = None

    @field_validator("command")
    @classmethod
    def _non_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must be a non-empty command template")
        return v

    def _placeholder_keys(self) -> set[str]:
        return set(self.model_extra or {})  # every extra key is a placeholder value, not a typo


CMD_ARGS_MODELS: dict[str, type[_CmdArgsBase]] = {
    "MegatronBridge": MegatronBridgeCmdArgs,
    "MegatronBridgeSim": MegatronBridgeCmdArgs,
    "Command": CommandCmdArgs,
}


# --------------------------------------------------------------------------------------------------
# test definition
# --------------------------------------------------------------------------------------------------
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
    secret. It names the run directory (made safe by `dse.sweep.safe_dir_name`) and the optuna study."""
    from dse.hashing import scrub_secrets

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


def known_agent_names() -> list[str]:
    """Built-in agents, agents registered by entry point, and agents registered in code this session."""
    names = set(BUILTIN_AGENTS)
    names.update(ep.name for ep in metadata.entry_points(group=AGENT_ENTRY_POINT_GROUP))
    import sys

    base = sys.modules.get("agents.base")
    if base is not None:
        names.update(getattr(base, "agent_names", lambda: [])())
    return sorted(names)


def known_reward_names() -> list[str]:
    from dse.rewards import reward_names

    return reward_names()


class TestDefinition(BaseModel):
    """One test: a workload, its cmd_args (list-valued fields are the space) and the agent settings."""

    model_config = ConfigDict(extra="forbid")
    __test__ = False  # not a pytest class

    name: str
    description: str = ""
    test_template_name: Literal["MegatronBridge", "MegatronBridgeSim", "Command"]
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

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_sweep_name(v)

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
        known = known_reward_names()
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
        model_cls = CMD_ARGS_MODELS[self.test_template_name]
        try:
            model_cls.model_validate(self.cmd_args)
        except ValidationError as exc:
            raise _PrefixedError(exc, "cmd_args") from None
        self._check_env_params()
        if self.test_template_name == "Command":
            self._check_command_template()
        if self.test_template_name == "MegatronBridge":
            self._check_git_repos()
            self._check_hf_token()
        self._check_constraints()
        return self

    def _check_no_nul(self) -> None:
        """A NUL cannot be passed in argv or the environment: refused in cmd_args, extra_env_vars and
        extra_cmd_args (names and values) when the sweep is read, not found missing after the run."""
        from collections import deque

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

    def _check_command_template(self) -> None:
        import string

        template = str(self.cmd_args.get("command", ""))
        known = set(_flat_keys(self.cmd_args)) | set(CommandCmdArgs.model_fields)
        try:
            names = [f for _, f, _, _ in string.Formatter().parse(template) if f]
        except ValueError as exc:
            raise _FieldError("cmd_args.command", f"bad template ({exc}); write literal braces as {{{{ }}}}") from None
        for name in names:
            if name not in known:
                raise _FieldError("cmd_args.command", f"placeholder {{{name}}} names no cmd_args field "
                                  "(write literal braces as {{ and }})")

    def _check_git_repos(self) -> None:
        if not any(
            "megatron-bridge" in r.url.lower() or (r.mount_as or "").rstrip("/") == "/opt/Megatron-Bridge"
            for r in self.git_repos
        ):
            raise _FieldError(
                "git_repos",
                "MegatronBridge needs the Megatron-Bridge repo pinned in [[git_repos]] "
                "(url = 'https://github.com/NVIDIA-NeMo/Megatron-Bridge.git', commit = 'v0.3.0')",
            )

    def _check_hf_token(self) -> None:
        if not resolve_hf_token(self.cmd_args):
            raise _FieldError(
                "cmd_args.hf_token",
                "MegatronBridge needs a HuggingFace token: set HF_TOKEN (recommended), "
                "HF_TOKEN_PATH to a file holding it, or cmd_args.hf_token",
            )

    def _check_constraints(self) -> None:
        from dse.expressions import parse_expression

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


def resolve_hf_token(cmd_args: Mapping[str, Any] | None = None) -> str:
    """The HF token from cmd_args.hf_token, HF_TOKEN, or the file named by HF_TOKEN_PATH (in that order)."""
    token = str((cmd_args or {}).get("hf_token") or "").strip()
    if token:
        return token
    token = os.environ.get("HF_TOKEN", "").strip()
    if token:
        return token
    path = os.environ.get("HF_TOKEN_PATH", "").strip()
    if path:
        try:
            return Path(path).expanduser().read_text().strip()
        except OSError:
            return ""
    return ""


class _FieldError(ValueError):
    """Raised inside model validators to name a precise field path (pydantic would say the model)."""

    def __init__(self, field_path: str, message: str) -> None:
        self.field_path = field_path
        self.message = message
        super().__init__(message)


class _PrefixedError(ValueError):
    def __init__(self, exc: ValidationError, prefix: str) -> None:
        self.exc = exc
        self.prefix = prefix
        super().__init__(str(exc))


# --------------------------------------------------------------------------------------------------
# scenario and system
# --------------------------------------------------------------------------------------------------
class ScenarioTest(BaseModel):
    """One `[[Tests]]` entry: a test by `test_name`, or written inline; plus run and agent overrides."""

    model_config = ConfigDict(extra="allow")

    id: str
    test_name: str | None = None
    num_nodes: int | list[int] | None = None
    time_limit: str | None = None

    @field_validator("num_nodes", mode="before")
    @classmethod
    def _nodes(cls, v: Any) -> Any:
        return _coerce_nodes(v)


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    Tests: list[ScenarioTest] = Field(min_length=1)
    job_status_check: bool | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_sweep_name(v)


class SystemConfig(BaseModel):
    """Where trials run (DESIGN.md §4). The default is this machine, through submitit's local executor."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = "local"
    scheduler: Literal["local", "slurm", "debug"] = "local"
    partition: str | None = Field(default=None, alias="default_partition")
    account: str | None = None
    gpus_per_node: int | None = None
    cpus_per_task: int | None = None
    mem_gb: int | None = None
    time_limit: str | None = None
    container_runtime: Literal["pyxis", "none"] = "pyxis"  # accepted for older system TOMLs; the launcher's job
    # gets its container from -i (MegatronBridge trials no longer run under dse's own srun)
    container_mounts: list[str] = Field(default_factory=list)
    extra_sbatch_args: list[str] = Field(default_factory=list)
    extra_srun_args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    max_jobs_in_flight: int | None = None
    use_job_arrays: bool = True
    launcher: str | None = None  # command that runs setup_experiment.py (default: python3); tests swap it
    megatron_bridge_path: str | None = None  # checkout of the pinned repo on the submit host
    poll_interval_s: float = 1.0

    @field_validator("gpus_per_node", "cpus_per_task", "mem_gb", "max_jobs_in_flight")
    @classmethod
    def _positive(cls, v: int | None) -> int | None:
        if v is not None and v < 1:
            raise ValueError(f"must be a positive integer, got {v}")
        return v

    @field_validator("time_limit")
    @classmethod
    def _time(cls, v: str | None) -> str | None:
        if v is not None:
            parse_time_limit(v)
        return v


def time_limit_seconds(text: str) -> int:
    """Slurm-style `[D-]HH:MM:SS`, `MM:SS` or minutes -> seconds."""
    s = str(text).strip()
    days = 0
    if "-" in s:
        d, s = s.split("-", 1)
        days = int(d) if d.isdigit() else -1
    parts = s.split(":")
    if days < 0 or not 1 <= len(parts) <= 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"'{text}' is not a time limit like '00:30:00'")
    nums = [int(p) for p in parts]
    seconds = {1: lambda: nums[0] * 60, 2: lambda: nums[0] * 60 + nums[1],
               3: lambda: nums[0] * 3600 + nums[1] * 60 + nums[2]}[len(nums)]() + days * 86400
    if seconds <= 0:
        raise ValueError(f"'{text}' is not a positive time limit")
    return seconds


def parse_time_limit(text: str) -> int:
    """Slurm-style time limit -> whole minutes (rounded up, at least 1), as sbatch takes it."""
    return max(1, math.ceil(time_limit_seconds(text) / 60))


# --------------------------------------------------------------------------------------------------
# the resolved sweep
# --------------------------------------------------------------------------------------------------
@dataclass
class Sweep:
    """A validated sweep: one test definition plus where its TOML came from and the system to run on."""

    test: TestDefinition
    source: Path
    system: SystemConfig = field(default_factory=SystemConfig)
    system_source: Path | None = None
    scenario_name: str | None = None
    test_id: str | None = None

    @property
    def name(self) -> str:
        return self.scenario_name or self.test.name

    @property
    def workload(self) -> str:
        return self.test.test_template_name

    def cmd_args_model(self) -> _CmdArgsBase:
        """The cmd_args as their workload's pydantic model (defaults filled in)."""
        return CMD_ARGS_MODELS[self.workload].model_validate(self.test.cmd_args)


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file; a syntax error is one InputError line naming the line."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise InputError("file not found", file=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read: {exc}", file=str(path)) from None
    try:
        data = tomllib.loads(text)
    except RecursionError:
        raise InputError(f"nesting too deep (arrays or tables more than {MAX_TOML_DEPTH} levels deep)",
                         file=str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        where = "toml"
        if "(at line" in msg:
            msg, _, pos = msg.partition("(at ")
            where = pos.rstrip(")").split(",")[0]
        elif "(at end of document)" in msg:
            msg = msg.replace("(at end of document)", "at end of file")
            where = f"line {max(1, len(text.splitlines()))}"
        raise InputError(f"TOML syntax error: {msg.strip()}", file=str(path), field=where) from None
    too_deep = _too_deep(data)
    if too_deep is not None:
        raise InputError(f"nesting too deep (arrays or tables more than {MAX_TOML_DEPTH} levels deep)",
                         file=str(path), field=(too_deep if len(too_deep) <= 60 else too_deep[:57] + "...") or None)
    return data


MAX_TOML_DEPTH = 64  # what the validators, the space and the hashing walk recursively


def _too_deep(data: Any) -> str | None:
    """The path of the first value nested more than MAX_TOML_DEPTH levels deep, else None (no recursion)."""
    stack: list[tuple[Any, str, int]] = [(data, "", 0)]
    while stack:
        value, where, depth = stack.pop()
        if depth > MAX_TOML_DEPTH:
            return where
        if isinstance(value, dict):
            stack.extend((v, f"{where}.{k}" if where else str(k), depth + 1) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value))
    return None


def _validation_to_input_error(exc: Exception, file: Path, prefix: str = "") -> InputError:
    """Turn a pydantic or field error into one line naming the first bad field."""
    if isinstance(exc, ValidationError):
        errors = exc.errors()
        first = errors[0]
        inner = first.get("ctx", {}).get("error") if isinstance(first.get("ctx"), dict) else None
        if isinstance(inner, (_FieldError, _PrefixedError)):
            return _validation_to_input_error(inner, file, prefix)
        loc = [str(p) for p in first["loc"] if not _is_union_tag(p)]
        field_path = _join_loc([prefix, *loc] if prefix else loc)
        msg = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            msg = "unknown field"
            parent_model = _PARENT_FIELDS.get(".".join(loc[:-1]), [])
            close = difflib.get_close_matches(loc[-1], parent_model, n=1) if parent_model else []
            if close:
                msg += f" (did you mean '{close[0]}'?)"
        elif first["type"] == "missing":
            msg = "required field is missing"
        elif "input" in first and first["type"] not in ("value_error",):
            msg += f" (got {first['input']!r})"
        more = len(errors) - 1
        if more > 0:
            msg += f" (and {more} more problem{'s' if more > 1 else ''})"
        return InputError(msg, file=str(file), field=field_path or None)
    if isinstance(exc, _PrefixedError):
        return _validation_to_input_error(exc.exc, file, _join_loc([prefix, exc.prefix]))
    if isinstance(exc, _FieldError):
        return InputError(exc.message, file=str(file), field=_join_loc([prefix, exc.field_path]))
    return InputError(str(exc), file=str(file))


_PARENT_FIELDS: dict[str, list[str]] = {}


def _is_union_tag(part: Any) -> bool:
    return isinstance(part, str) and (part.startswith(("list[", "function-")) or part in ("int", "str", "bool", "float"))


def _join_loc(parts: list[str]) -> str:
    out = ""
    for p in parts:
        if not p:
            continue
        if p.isdigit():
            out += f"[{p}]"
        else:
            out += ("." if out else "") + p
    return out


def _build_test(data: dict[str, Any], file: Path, prefix: str = "") -> TestDefinition:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnknownFieldWarning)
        try:
            test = TestDefinition.model_validate(data)
        except (ValidationError, _FieldError, _PrefixedError) as exc:
            raise _validation_to_input_error(exc, file, prefix) from None
    for w in caught:
        if issubclass(w.category, UnknownFieldWarning):
            warnings.warn(f"{file}: {prefix + '.' if prefix else ''}{w.message}", UnknownFieldWarning, stacklevel=3)
    return test


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def _find_test_toml(name: str, tests_dir: Path | None, scenario_file: Path) -> tuple[dict[str, Any], Path]:
    if tests_dir is None:
        raise InputError(
            f"names test '{name}'; pass --tests-dir DIR holding its TOML",
            file=str(scenario_file),
            field="Tests.test_name",
        )
    if not tests_dir.is_dir():
        raise InputError("--tests-dir is not a directory", file=str(tests_dir))
    names = []
    for path in sorted(tests_dir.glob("*.toml")):  # the folder itself, as CloudAI reads it
        try:
            data = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError):
            continue
        if data.get("name") == name and "test_template_name" in data:
            return data, path
        if "test_template_name" in data and isinstance(data.get("name"), str):
            names.append(data["name"])
    close = difflib.get_close_matches(name, names, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise InputError(
        f"no test named '{name}' in {tests_dir}{hint}", file=str(scenario_file), field="Tests.test_name"
    )


def load_system(path: Path | str | None) -> SystemConfig:
    """The system TOML, or the embedded default (this machine, submitit's local executor)."""
    if path is None:
        return SystemConfig()
    path = Path(path)
    data = read_toml(path)
    try:
        return SystemConfig.model_validate(data)
    except ValidationError as exc:
        raise _validation_to_input_error(exc, path) from None


def load_sweep(
    path: Path | str,
    *,
    system: Path | str | None = None,
    tests_dir: Path | str | None = None,
    test_id: str | None = None,
) -> Sweep:
    """Load a test TOML or a scenario TOML (tests by `test_name` in `tests_dir`, or inline)."""
    path = Path(path)
    data = read_toml(path)
    sys_cfg = load_system(system)
    sys_path = Path(system) if system else None
    tdir = Path(tests_dir) if tests_dir else None
    if "Tests" in data:
        return _load_scenario(data, path, sys_cfg, sys_path, tdir, test_id)
    if "test_template_name" not in data:
        raise InputError(
            "neither a test (needs test_template_name) nor a scenario (needs [[Tests]])",
            file=str(path),
            field="test_template_name",
        )
    test = _build_test(data, path)
    return Sweep(test=test, source=path, system=sys_cfg, system_source=sys_path)


_SCENARIO_RUN_KEYS = ("id", "test_name", "num_nodes", "time_limit")


def _load_scenario(
    data: dict[str, Any],
    path: Path,
    sys_cfg: SystemConfig,
    sys_path: Path | None,
    tests_dir: Path | None,
    test_id: str | None,
) -> Sweep:
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        raise _validation_to_input_error(exc, path) from None
    entries = scenario.Tests
    if test_id is not None:
        entries = [t for t in entries if t.id == test_id]
        if not entries:
            ids = ", ".join(t.id for t in scenario.Tests)
            raise InputError(f"no test with id '{test_id}'; ids here: {ids}", file=str(path), field="Tests.id")
    if len(entries) > 1:
        ids = ", ".join(t.id for t in entries)
        raise InputError(
            f"dse sweeps one test per run and this scenario has {len(entries)} ({ids}); pick one with --test ID",
            file=str(path),
            field="Tests",
        )
    entry = entries[0]
    index = scenario.Tests.index(entry)
    inline = dict(entry.model_extra or {})
    if entry.test_name:
        base, _ = _find_test_toml(entry.test_name, tests_dir, path)
        merged = _deep_merge(base, inline)
    else:
        merged = inline
        if "test_template_name" not in merged:
            raise InputError(
                "needs test_name (a test in --tests-dir) or an inline test with test_template_name",
                file=str(path),
                field=f"Tests[{index}]",
            )
    if entry.num_nodes is not None:
        merged["num_nodes"] = entry.num_nodes
    if entry.time_limit is not None:
        merged["time_limit"] = entry.time_limit
    test = _build_test(merged, path, prefix=f"Tests[{index}]")
    return Sweep(
        test=test,
        source=path,
        system=sys_cfg,
        system_source=sys_path,
        scenario_name=scenario.name,
        test_id=entry.id,
    )


_PARENT_FIELDS[""] = list(TestDefinition.model_fields) + list(SystemConfig.model_fields)
_PARENT_FIELDS["cmd_args"] = list(MegatronBridgeCmdArgs.model_fields)
