"""Analysis of finished (or running) sweeps: the trial table, the best trial, figures and the HTML report.

Everything here reads run directories (never writes to their stores) and returns values, text or figures;
nothing prints: the CLI does.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from dse.analysis._best import best_summary, best_text, compare_runs, status_summary, write_report
from dse.analysis._table import (
    FIXED_BACK,
    FIXED_FRONT,
    best_record,
    best_toml,
    counts_text,
    frame,
    gpu_hours_text,
    load_trials,
    status_counts,
    status_text,
    total_gpu_hours,
    write_csv_atomic,
    write_table,
)

if TYPE_CHECKING:
    from dse.analysis import plots
    from dse.analysis._report import STATUSES, build_html, render_report

# the figures and the report load matplotlib: only when asked for (the driver and `dse status` never are)
_LAZY = {"plots": "dse.analysis.plots", "STATUSES": "dse.analysis._report", "build_html": "dse.analysis._report",
         "render_report": "dse.analysis._report"}


def __getattr__(name: str) -> Any:
    if name == "plots":
        return importlib.import_module("dse.analysis.plots")
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dse.analysis' has no attribute {name!r}")


__all__ = [
    "FIXED_BACK",
    "FIXED_FRONT",
    "STATUSES",
    "best_record",
    "best_summary",
    "best_text",
    "best_toml",
    "counts_text",
    "build_html",
    "compare_runs",
    "frame",
    "gpu_hours_text",
    "load_trials",
    "plots",
    "render_report",
    "status_counts",
    "status_summary",
    "status_text",
    "total_gpu_hours",
    "write_csv_atomic",
    "write_report",
    "write_table",
]
