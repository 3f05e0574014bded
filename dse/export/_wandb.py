"""Weights & Biases: one W&B run per dse run, one history row per finished trial, the trial table at close.

Trials finish out of order (`--parallel K`, jobs re-attached on resume), and W&B drops a row logged at a step
lower than its current one; so each row takes W&B's own next step and carries `trial`, which every chart uses
as its x axis (`define_metric(..., step_metric="trial")`). The run's id is kept in RUN_DIR/export/wandb.json:
`dse resume` and `dse export` continue the same W&B run (`resume="allow"`). Offline (`WANDB_MODE=offline`) its
files land in RUN_DIR/wandb/ unless WANDB_DIR says otherwise; `wandb sync` sends them later.
"""

from __future__ import annotations

import math
import os
import uuid
from pathlib import Path
from typing import Any

from dse.analysis import best_record, frame, total_gpu_hours
from dse.export._base import (
    Ledger,
    RunInfo,
    TrialLogger,
    trial_metrics,
    trial_params,
    trial_scores,
    trial_tags,
)
from dse.hashing import redact
from dse.trial import TrialRecord

DEFAULT_PROJECT = "dse"
# nothing of the machine (argv, host, git, console, code, system metrics) leaves with the run: the driver's
# own output and command line are not what the run is about, and they are the likeliest place for a secret
_SETTINGS: dict[str, Any] = {"console": "off", "disable_git": True, "disable_code": True, "save_code": False, "silent": True,
             "x_disable_meta": True, "x_disable_stats": True, "x_disable_machine_info": True,
             "x_save_requirements": False}


class WandbLogger(TrialLogger):
    """Sends each finished trial to one W&B run (project `--wandb-project`, `WANDB_PROJECT` or "dse")."""

    name = "wandb"

    def __init__(self, project: str | None = None) -> None:
        super().__init__()
        self.project = project
        self.run: Any = None

    def _open(self, info: RunInfo, ledger: Ledger) -> set[int]:
        import wandb

        state = ledger.state()
        project = state.get("project") or self.project or os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT
        fresh = not state.get("run_id")
        if fresh:
            state = {"run_id": uuid.uuid4().hex[:12], "project": project}
            ledger.begin(state, fresh=True)
        known = getattr(wandb.Settings, "model_fields", None) or {}
        settings = wandb.Settings(**{k: v for k, v in _SETTINGS.items() if not known or k in known})
        self.run = wandb.init(project=state["project"], id=state["run_id"], resume="allow", name=info.run_dir.name,
                              group=info.sweep, job_type="dse-sweep", config=info.config,
                              dir=None if os.environ.get("WANDB_DIR") else str(info.run_dir), settings=settings)
        self.run.define_metric("trial")
        for pattern in ("params/*", "metrics/*", "reward", "gpu_hours", "status", "cache_hit", "config_hash"):
            self.run.define_metric(pattern, step_metric="trial")
        offline = (getattr(self.run.settings, "mode", "") or os.environ.get("WANDB_MODE", "")) in ("offline",
                                                                                                    "dryrun")
        where = (f"offline: wandb sync {Path(self.run.dir).parent}" if offline
                 else getattr(self.run, "url", None) or "online")
        print(f"wandb: logging each trial to project {state['project']}, run {info.run_dir.name} "
              f"(id {state['run_id']}; {where})", flush=True)
        return ledger.logged()

    def _log(self, rec: TrialRecord) -> None:
        row: dict[str, Any] = dict(trial_tags(rec))
        row.update({f"params/{k}": v for k, v in trial_params(rec).items()})
        row.update({f"metrics/{k}": v for k, v in trial_metrics(rec).items()})
        row.update(trial_scores(rec))
        self.run.log(row)

    def _close(self, records: list[TrialRecord]) -> None:
        import wandb

        run, self.run = self.run, None
        try:
            if records and self.info is not None:
                columns, rows = _table(records, self.info)
                run.log({"trials": wandb.Table(columns=columns, data=rows)})
                best = best_record(records)
                run.summary.update({"trials": len(records),
                                    "gpu_hours": total_gpu_hours(records),
                                    **({"best_trial": best.trial, "best_reward": best.reward} if best else {})})
        finally:
            run.finish()


def _table(records: list[TrialRecord], info: RunInfo) -> tuple[list[Any], list[list[Any]]]:
    """The trial table (`dse table`'s columns), JSON-ready: no NaN, times as ISO text, secrets redacted."""
    df = frame(records, info.params, info.envs, info.metrics)
    columns: list[Any] = [str(c) for c in df.columns]
    rows = []
    for values in df.itertuples(index=False):
        row = []
        for v in values:
            if hasattr(v, "isoformat"):
                v = None if str(v) == "NaT" else v.isoformat()
            elif isinstance(v, float) and not math.isfinite(v):
                v = None
            elif hasattr(v, "item"):  # numpy scalars
                v = v.item()
            row.append(v)
        rows.append(row)
    return columns, redact(rows)
