"""`Command`: any program. `cmd_args.command` is a /bin/sh template whose `{field}` placeholders take the
trial's resolved cmd_args; it runs in the trial folder with `DSE_TRIAL_DIR` set. Metrics come from
`cmd_args.metrics_file` (golden-values shape or flat `{"name": number}`), else from Megatron-style log
lines on stdout."""

from __future__ import annotations

import shlex
import string
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import field_validator

from dse.cmd_args import CmdArgsModel
from dse.errors import FieldProblem, InputError
from dse.hashing import resolve_hf_token
from dse.timelimit import time_limit_seconds
from dse.trial import TrialConfig, flatten
from dse.workloads._base import JobSpec, Outcome, Workload
from dse.workloads._outcomes import collect_metrics

if TYPE_CHECKING:
    from dse.spec import TestDefinition


class CommandCmdArgs(CmdArgsModel):
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



def render_command(template: str, values: dict[str, Any]) -> str:
    """Fill `{field}` placeholders with shell-quoted values (dotted fields as `{model.seq_length}`); `{{` and
    `}}` are literal braces, with or without placeholders. `{field!r}` quotes the value's repr and a format
    spec (`{field:>8}`) pads the quoted text."""
    out: list[str] = []
    try:
        for literal, name, spec, conversion in string.Formatter().parse(template):
            out.append(literal)
            if name is None:
                continue
            if name not in values:
                raise InputError(f"placeholder {{{name}}} names no cmd_args field", field="cmd_args.command")
            value = values[name]
            text = repr(value) if conversion == "r" else ascii(value) if conversion == "a" else str(value)
            out.append(format(shlex.quote(text), spec or ""))
    except ValueError as exc:
        raise InputError(f"bad template: {exc}", field="cmd_args.command") from None
    return "".join(out)


class CommandWorkload(Workload):
    name = "Command"
    cmd_args_model = CommandCmdArgs
    default_gpus_per_node = None

    @classmethod
    def check_test(cls, test: TestDefinition) -> None:
        """Every `{placeholder}` of the command template names a cmd_args field."""
        template = str(test.cmd_args.get("command", ""))
        known = set(flatten(test.cmd_args)) | _parents(test.cmd_args) | set(CommandCmdArgs.model_fields)
        try:
            names = [f for _, f, _, _ in string.Formatter().parse(template) if f]
        except ValueError as exc:
            raise FieldProblem("cmd_args.command", f"bad template ({exc}); write literal braces as {{{{ }}}}") from None
        for name in names:
            if name not in known:
                raise FieldProblem("cmd_args.command", f"placeholder {{{name}}} names no cmd_args field "
                                   "(write literal braces as {{ and }})")

    def build(self, cfg: TrialConfig, trial_dir: Path) -> JobSpec:
        flat = cfg.flat_cmd_args()
        command = render_command(str(flat["command"]), flat)
        env = dict(cfg.extra_env_vars)
        env["DSE_TRIAL_DIR"] = str(trial_dir)
        limit = time_limit_seconds(cfg.time_limit) if cfg.time_limit else None
        gpn = int(flat.get("gpus_per_node") or self.sweep.system.gpus_per_node or 0)
        # secrets in extra_env_vars reach the job through its inherited environment (JobSpec.secret_env)
        return JobSpec(argv=[command], cwd=str(trial_dir), env=env, num_nodes=cfg.num_nodes,
                       gpus_per_node=gpn, time_limit_s=limit, shell=True,
                       secret_values=[resolve_hf_token(cfg.cmd_args)])

    def collect(self, cfg: TrialConfig, trial_dir: Path, returncode: int | None) -> Outcome:
        name = str(cfg.flat_cmd_args().get("metrics_file") or "metrics.json")
        return collect_metrics(trial_dir, [trial_dir / name], returncode)


def _parents(d: dict[str, Any], prefix: str = "") -> set[str]:
    """The dotted names of the tables in `d` (a placeholder may name a table, as before)."""
    out: set[str] = set()
    for k, v in d.items():
        if isinstance(v, dict):
            out.add(prefix + k)
            out |= _parents(v, prefix + k + ".")
    return out
