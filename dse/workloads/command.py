"""`Command`: any program. `cmd_args.command` is a /bin/sh template whose `{field}` placeholders take the
trial's resolved cmd_args; it runs in the trial folder with `DSE_TRIAL_DIR` set. Metrics come from
`cmd_args.metrics_file` (golden-values shape or flat `{"name": number}`), else from Megatron-style log
lines on stdout."""

from __future__ import annotations

import shlex
import string
from pathlib import Path
from typing import Any

from dse.errors import InputError
from dse.space import TrialConfig
from dse.spec import time_limit_seconds
from dse.workloads.base import JobSpec, Outcome, Workload
from dse.workloads.outcomes import collect_metrics


class _Placeholders(dict[str, Any]):
    def __missing__(self, key: str) -> Any:
        raise InputError(f"placeholder {{{key}}} names no cmd_args field", field="cmd_args.command")


def render_command(template: str, values: dict[str, Any]) -> str:
    """Fill `{field}` placeholders with shell-quoted values (dotted fields as `{model.seq_length}`)."""
    quoted = _Placeholders({k: shlex.quote(str(v)) for k, v in values.items()})
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f]
        for f in fields:
            quoted[f]  # noqa: B018 - raises InputError for an unknown placeholder
        return template.format_map(quoted) if fields else template
    except (ValueError, IndexError) as exc:
        raise InputError(f"bad template: {exc}", field="cmd_args.command") from None


class CommandWorkload(Workload):
    name = "Command"

    def build(self, cfg: TrialConfig, trial_dir: Path) -> JobSpec:
        flat = cfg.flat_cmd_args()
        command = render_command(str(flat["command"]), flat)
        env = dict(cfg.extra_env_vars)
        env["DSE_TRIAL_DIR"] = str(trial_dir)
        limit = time_limit_seconds(cfg.time_limit) if cfg.time_limit else None
        gpn = int(flat.get("gpus_per_node") or self.sweep.system.gpus_per_node or 0)
        return JobSpec(argv=[command], cwd=str(trial_dir), env=env, num_nodes=cfg.num_nodes,
                       gpus_per_node=gpn, time_limit_s=limit, shell=True)

    def collect(self, cfg: TrialConfig, trial_dir: Path, returncode: int | None) -> Outcome:
        name = str(cfg.flat_cmd_args().get("metrics_file") or "metrics.json")
        return collect_metrics(trial_dir, [trial_dir / name], returncode)
