"""Analysis of finished (or running) sweeps: the trial table, the best trial, figures and the HTML report.

Everything here reads run directories (never writes to their stores) and returns values, text or figures;
nothing prints: the CLI does.
"""

from dse.analysis import plots
from dse.analysis._best import best_summary, best_text, write_report
from dse.analysis._report import STATUSES, build_html, render_report
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
    "frame",
    "gpu_hours_text",
    "load_trials",
    "plots",
    "render_report",
    "status_counts",
    "status_text",
    "total_gpu_hours",
    "write_csv_atomic",
    "write_report",
    "write_table",
]
