"""The driver's live view and the counts `dse status` and the run's last line show."""

from __future__ import annotations

import time

from rich.console import Console

from dse.analysis import counts_text, status_counts
from dse.engine._console import Progress
from dse.trial import TrialRecord

RECORDS = [
    TrialRecord(1, "completed", {"cmd_args.tp": 2, "mb": 1}, {}, metrics={"step-time": 2.3456}, reward=0.42),
    TrialRecord(2, "failed", {"mb": 8}, {}, reason="out-of-memory", gpu_hours=0.5),
    TrialRecord(3, "failed", {"mb": 2}, {}, reason="exit-code"),
    TrialRecord(4, "timeout", {"mb": 4}, {}, reason="timeout"),
    TrialRecord(5, "infeasible", {"mb": 3}, {}, reason="constraint:world"),
    TrialRecord(6, "pruned", {"mb": 6}, {}, reason="early-stopped", gpu_hours=0.25),
    TrialRecord(7, "running", {"mb": 7}, {}),
]


def test_out_of_memory_is_counted_apart_from_failures() -> None:
    counts = status_counts(RECORDS)
    assert counts == {"completed": 1, "cached": 0, "OOM": 1, "rejected": 0, "failed": 2, "infeasible": 1,
                      "pruned": 1, "running": 1}
    assert counts_text(RECORDS) == "1 completed, 1 OOM, 2 failed, 1 infeasible, 1 pruned, 1 running"


def test_the_live_view_fits_80_columns() -> None:
    console = Console(width=200, record=True)
    long = [*RECORDS, TrialRecord(8, "completed", {f"cmd_args.field_{i}": i for i in range(30)}, {},
                                  metrics={"step-time": 1.0}, reward=1.0)]
    console.print(Progress(24)._render(long, time.time() - 5000))
    lines = console.export_text().splitlines()
    assert len(lines) == 3 and all(len(line) <= 80 for line in lines)
    assert "0.75 GPU-h" in lines[0] and "ETA" in lines[0] and "1 OOM" in lines[1] and "2 failed" in lines[1]
    assert lines[2].startswith("best: trial 8")
