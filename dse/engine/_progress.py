"""Watching a running trial's log for `--early-stopping`: read what its job appended since the last poll.

Only new bytes are read (an offset per file), so a poll costs what the job wrote, not the log's size; the
parsing (`dse.metrics.StepTimes`) and the decision (`dse.metrics.verdict`) are pure and live in the metrics
layer. Logs that do not exist yet (a job still queued) are simply skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dse.metrics import StepTimes

MAX_READ = 4 << 20  # at most this much of a log per poll: a flood of output cannot stall the driver


@dataclass
class LogTail:
    """The step times seen so far in one trial's logs."""

    times: dict[Path, StepTimes] = field(default_factory=dict)
    offsets: dict[Path, int] = field(default_factory=dict)

    def read(self, paths: list[Path]) -> list[float]:
        """Feed what each log gained, and return the longest step-time series among them."""
        for path in paths:
            try:
                with open(path, "rb") as fh:
                    fh.seek(self.offsets.get(path, 0))
                    chunk = fh.read(MAX_READ)
            except OSError:
                continue
            self.offsets[path] = self.offsets.get(path, 0) + len(chunk)
            self.times.setdefault(path, StepTimes()).feed(chunk.decode("utf-8", errors="replace"))
        series = [t.series() for t in self.times.values()]
        return max(series, key=len, default=[])
