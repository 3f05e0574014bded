"""What the driver shows and hears on a terminal: the live status table, and Ctrl-C / SIGTERM handling."""

from __future__ import annotations

import math
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from dse.analysis import best_record, total_gpu_hours
from dse.trial import FAILURE_STATUSES, TrialRecord, TrialStatus


class Interrupts:
    """First Ctrl-C (or a SIGTERM): stop asking for trials. Second Ctrl-C: leave running jobs for `dse resume`.

    Local jobs ignore the terminal's SIGINT (dse.engine._executors), so only the driver hears it.
    """

    def __init__(self) -> None:
        self.count = 0
        self._old: dict[int, Any] = {}

    def __enter__(self) -> Interrupts:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.count = max(self.count, 1) if signum == signal.SIGTERM else self.count + 1
        msg = ("stopping: no new trials; waiting for running ones (Ctrl-C again to leave them for dse resume)"
               if self.count == 1 else "leaving running jobs; finish later with dse resume RUN_DIR")
        print(msg, file=sys.stderr, flush=True)

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


class Progress:
    """Live status (rich) on a terminal: done / running / failed / cached, best so far, elapsed, ETA.

    Off a terminal the runner prints one plain line per finished trial instead (logs, CI, nohup).
    """

    def __init__(self, total: int) -> None:
        self.total = total
        self.live: Any = None
        if sys.stdout.isatty():
            from rich.live import Live

            self.live = Live(self._render([], time.time()), refresh_per_second=4, transient=False)

    def __enter__(self) -> Progress:
        if self.live is not None:
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)

    def _render(self, recs: list[TrialRecord], started: float) -> Any:
        from rich.table import Table

        counts: dict[str, int] = {}
        for r in recs:
            counts[r.status] = counts.get(r.status, 0) + 1
        done = sum(v for k, v in counts.items() if TrialStatus(k).is_finished)
        elapsed = time.time() - started
        eta = elapsed / done * (self.total - done) if done else float("nan")
        best = best_record(recs)
        table = Table(show_header=True, header_style="bold")
        for col in ("done", "running", "completed", "cached", "failed", "infeasible", "pruned", "GPU-h", "elapsed",
                    "ETA", "best"):
            table.add_column(col)
        failed = sum(counts.get(k, 0) for k in FAILURE_STATUSES)
        table.add_row(f"{done}/{self.total}", str(counts.get("running", 0)), str(counts.get("completed", 0)),
                      str(counts.get("cached", 0)), str(failed), str(counts.get("infeasible", 0)),
                      str(counts.get("pruned", 0)), f"{total_gpu_hours(recs):.3g}",
                      f"{elapsed:.0f} s", "-" if math.isnan(eta) else f"{eta:.0f} s",
                      f"trial {best.trial}: {best.metrics}" if best else "-")
        return table

    def update(self, records: Callable[[], list[TrialRecord]], started: float) -> None:
        if self.live is not None:  # off a terminal nothing is shown, so the store is not read
            self.live.update(self._render(records(), started))
