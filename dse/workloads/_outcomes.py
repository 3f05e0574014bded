"""Shared collection logic: metrics from a JSON file, else from Megatron-style log lines."""

from __future__ import annotations

from pathlib import Path

from dse.metrics import MetricsError, classify_failure, parse_log, parse_metrics_json
from dse.workloads._base import STDERR, STDOUT, Outcome, last_line, read_text

# A metrics JSON is parsed whole up to this size (a golden-values file of a long run can pass 100 MB); a larger
# one is refused unread, with its size, rather than truncated into "corrupt" JSON.
MAX_METRICS_FILE_BYTES = 1 << 30


def read_metrics_file(path: Path) -> str:
    """The whole text of a metrics JSON file; MetricsError when it is over MAX_METRICS_FILE_BYTES."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise MetricsError(f"cannot read the metrics file: {exc.strerror or exc}") from None
    if size > MAX_METRICS_FILE_BYTES:
        raise MetricsError(f"the metrics file is {size:,} bytes, over the {MAX_METRICS_FILE_BYTES:,}-byte limit")
    return read_text(path, limit=MAX_METRICS_FILE_BYTES + 1)


def collect_metrics(trial_dir: Path, json_paths: list[Path], returncode: int | None,
                    tolerate_exit: bool = False) -> Outcome:
    """Success means metrics were found; a failed run gets a reason (out-of-memory, exit-code, no-metrics)."""
    out, err = read_text(trial_dir / STDOUT), read_text(trial_dir / STDERR)
    if returncode == 124:
        return Outcome(False, reason="timeout", error="timeout: the job exceeded its time limit")
    failure = classify_failure(err + "\n" + out)
    if failure and failure[0] == "out-of-memory":
        return Outcome(False, reason="out-of-memory", error=f"out-of-memory: {failure[1]}")
    json_error = None
    for path in json_paths:
        if path.is_file():
            try:
                return Outcome(True, metrics=parse_metrics_json(read_metrics_file(path)))
            except MetricsError as exc:
                json_error = f"{path.name}: {exc.reason}"
    try:
        metrics = parse_log(out)
        if not metrics.is_empty() and (returncode == 0 or tolerate_exit):
            return Outcome(True, metrics=metrics)
    except MetricsError:
        pass
    if failure:
        kind = {"rejected-config": "rejected-config", "transient": "node-failure"}.get(failure[0], failure[0])
        return Outcome(False, reason=kind, error=f"{kind}: {failure[1]}")
    if returncode not in (0, None) and not tolerate_exit:
        return Outcome(False, reason="exit-code", error=f"exit-code: exit code {returncode}: {last_line(err) or last_line(out)}")
    detail = json_error or "no metrics found (no metrics file, no log lines)"
    return Outcome(False, reason="no-metrics", error=f"no-metrics: {detail}")
