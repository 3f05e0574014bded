"""What the driver shows and hears on a terminal: the live status table, and Ctrl-C / SIGTERM handling."""

from __future__ import annotations

import math
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from dse.analysis import best_record, status_counts, total_gpu_hours
from dse.metrics import format_metrics, units
from dse.trial import TrialRecord


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
        """Three lines that fit 80 columns: progress, GPU-hours and time; the trials by kind; the best so far."""
        from rich.text import Text

        done = sum(r.status.is_finished for r in recs)
        elapsed = time.time() - started
        eta = elapsed / done * (self.total - done) if done else float("nan")
        counts = status_counts(recs)
        kinds = " ".join(f"{n} {k}" for k, n in counts.items() if n and k != "running") or "-"
        line1 = (f"{done}/{self.total} done, {counts['running']} running | {units.gpu_hours(total_gpu_hours(recs))} | "
                 f"{_duration(elapsed)}" + ("" if math.isnan(eta) else f", ETA {_duration(eta)}"))
        best = best_record(recs)
        shown = format_metrics(best.metrics) if best else ""
        line3 = f"best: trial {best.trial}: {shown} {_params(best.action)}" if best else "best: none yet"
        return Text("\n".join(_fit(line) for line in (line1, kinds, line3)))

    def update(self, records: Callable[[], list[TrialRecord]], started: float) -> None:
        if self.live is not None:  # off a terminal nothing is shown, so the store is not read
            self.live.update(self._render(records(), started))


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _params(action: dict[str, Any]) -> str:
    return " ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in action.items())


def _fit(line: str, width: int = 80) -> str:
    return line if len(line) <= width else line[: width - 1] + "…"
