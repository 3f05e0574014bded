"""Export where teams already look: each finished trial to Weights & Biases and/or MLflow (`--log-to`), live
during `dse run` / `dse resume` or afterwards (`dse export RUN_DIR --to ...`).

The loggers are the engine's trial observers (`dse.engine.TrialObserver`); the engine never imports this
package, the CLI hands them in. Each tracker is an extra (`pip install 'megatron-dse[wandb]'`, `[mlflow]`),
imported only when a run logs to it. Values are read from the run's records and metadata, redacted: no secret
reaches a tracker. A ledger in RUN_DIR/export/ keeps a trial from being sent twice.
"""

from __future__ import annotations

from dse.export._base import Ledger, RunInfo, TrialLogger, safe_key
from dse.export._mlflow import MlflowLogger, default_tracking_uri
from dse.export._run import (
    TRACKERS,
    ExportError,
    export_run,
    export_text,
    make_loggers,
    parse_log_to,
    run_log_to,
)
from dse.export._wandb import WandbLogger

__all__ = [
    "TRACKERS",
    "ExportError",
    "Ledger",
    "MlflowLogger",
    "RunInfo",
    "TrialLogger",
    "WandbLogger",
    "default_tracking_uri",
    "export_run",
    "export_text",
    "make_loggers",
    "parse_log_to",
    "run_log_to",
    "safe_key",
]
