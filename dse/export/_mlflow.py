"""MLflow: one parent run per dse run (in the experiment named after the sweep), one nested child run per trial.

Where: `MLFLOW_TRACKING_URI` when set; otherwise a SQLite store in the run dir, `sqlite:///RUN_DIR/mlflow.db`
(MLflow 3 refuses new runs in its old `./mlruns` file store, and a store beside the trials keeps a run's
records together; `mlflow ui --backend-store-uri sqlite:///RUN_DIR/mlflow.db` shows it, with the full `mlflow`
package). A child run has the trial's params (redacted), its metrics with the reward and GPU-hours, and the tags
`status`, `config_hash`, `cache_hit` and `dse.trial`. The client API is used, not the fluent one: no global
active run, and none of the fluent API's automatic tags (the command line, the user, git).
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

from dse.analysis import best_record, total_gpu_hours
from dse.export._base import (
    Ledger,
    RunInfo,
    TrialLogger,
    safe_key,
    trial_metrics,
    trial_params,
    trial_scores,
    trial_tags,
)
from dse.hashing import redact
from dse.trial import TrialRecord, flatten

MAX_PARAM_VALUE = 6000  # MLflow's limit on a parameter's value (characters)
BATCH = 100  # MLflow takes at most 100 params and 100 tags in one log_batch


def default_tracking_uri(info: RunInfo) -> str:
    return f"sqlite:///{info.run_dir.resolve() / 'mlflow.db'}"


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:MAX_PARAM_VALUE]


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else int(seconds * 1000)


class MlflowLogger(TrialLogger):
    """Sends each finished trial to MLflow as a child run of the dse run's parent run."""

    name = "mlflow"

    def __init__(self, tracking_uri: str | None = None) -> None:
        super().__init__()
        self.tracking_uri = tracking_uri
        self.client: Any = None
        self.parent: str | None = None
        self.experiment: str | None = None

    def _open(self, info: RunInfo, ledger: Ledger) -> set[int]:
        from mlflow.tracking import MlflowClient

        for noisy in ("mlflow", "alembic"):  # a new store's schema migrations log at INFO (set after the import:
            logging.getLogger(noisy).setLevel(logging.WARNING)  # importing mlflow sets its own levels)

        state = ledger.state()
        uri = self.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or state.get("tracking_uri") \
            or default_tracking_uri(info)
        self.client = client = MlflowClient(tracking_uri=uri)
        parent = state.get("parent_run_id") if state.get("tracking_uri") == uri else None
        if parent is not None:
            self.experiment = client.get_run(parent).info.experiment_id
            client.update_run(parent, status="RUNNING")
        else:
            self.experiment = self._experiment(info, uri)
            run = client.create_run(self.experiment, run_name=info.run_dir.name,
                                    tags={"dse.run_dir": str(info.run_dir), "dse.sweep": info.sweep,
                                          "dse.workload": info.workload})
            parent = run.info.run_id
            ledger.begin({"tracking_uri": uri, "experiment_id": self.experiment, "parent_run_id": parent},
                         fresh=True)
            self._params(parent, {k: v for k, v in flatten(info.config).items()})
        self.parent = parent
        print(f"mlflow: logging each trial as a child of run {parent} in experiment {info.sweep!r} at {uri}",
              flush=True)
        return ledger.logged() | self._logged_children()

    def _experiment(self, info: RunInfo, uri: str) -> str:
        exp = self.client.get_experiment_by_name(info.sweep)
        if exp is None:
            # with the default store, artifacts (none are logged) would go beside it, never into the cwd
            location = (info.run_dir.resolve() / "mlartifacts").as_uri() if uri == default_tracking_uri(info) \
                else None
            return str(self.client.create_experiment(info.sweep, artifact_location=location))
        if exp.lifecycle_stage == "deleted":
            self.client.restore_experiment(exp.experiment_id)
        return str(exp.experiment_id)

    def _logged_children(self) -> set[int]:
        """The trials the parent run already has a child for (the store's word, should the ledger lag)."""
        found: set[int] = set()
        token = None
        while True:
            page = self.client.search_runs([self.experiment], f"tags.mlflow.parentRunId = '{self.parent}'",
                                           max_results=1000, page_token=token)
            found |= {int(t) for r in page if (t := r.data.tags.get("dse.trial", "")).isdigit()}
            token = page.token
            if not token:
                return found

    def _params(self, run_id: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(safe_key(k), _text(v)) for k, v in redact(params).items()]
        for i in range(0, len(items), BATCH):
            self.client.log_batch(run_id, params=items[i:i + BATCH])

    def _log(self, rec: TrialRecord) -> None:
        from mlflow.entities import Metric

        tags = {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in trial_tags(rec).items()
                if k != "trial"}
        tags.update({"dse.trial": str(rec.trial), "mlflow.parentRunId": str(self.parent)})
        child = self.client.create_run(self.experiment, start_time=_ms(rec.started_at or rec.finished_at),
                                       tags=tags, run_name=f"trial-{rec.trial}").info.run_id
        self._params(child, trial_params(rec))
        at = _ms(rec.finished_at) or int(time.time() * 1000)
        values = {**trial_metrics(rec), **trial_scores(rec), "trial": float(rec.trial)}
        self.client.log_batch(child, metrics=[Metric(k, v, at, rec.trial) for k, v in values.items()])
        status = "FAILED" if rec.status.is_failure else "KILLED" if rec.status.value == "pruned" else "FINISHED"
        self.client.set_terminated(child, status=status, end_time=_ms(rec.finished_at))

    def _close(self, records: list[TrialRecord]) -> None:
        from mlflow.entities import Metric

        parent, self.parent = self.parent, None
        if parent is None:
            return
        at, best = int(time.time() * 1000), best_record(records)
        summary = {"trials": float(len(records)), "gpu_hours": total_gpu_hours(records)}
        if best is not None:
            summary.update({"best_trial": float(best.trial), **{f"best.{k}": v for k, v in trial_metrics(best).items()},
                            **{f"best.{k}": v for k, v in trial_scores(best).items() if k == "reward"}})
        self.client.log_batch(parent, metrics=[Metric(k, v, at, len(records)) for k, v in summary.items()])
        self.client.set_terminated(parent, status="FINISHED")
