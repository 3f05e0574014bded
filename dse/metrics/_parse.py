"""Metrics of one finished run, parsed from text: the golden-values JSON, a flat JSON, or log lines.

Megatron-Bridge writes per-step values (docs/reference/megatron-bridge.md §2b) only when its post-run
evaluation runs; the launcher log (§2c) is the fallback. Whatever the source, every problem (corrupt or
partial JSON, wrong types, NaN, a missing metric) surfaces as `MetricsError` with a one-line reason, so
the sweep can record "no-metrics" instead of crashing. The module does no I/O: callers pass text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from dse.errors import DseError

WINDOW = 10  # steps averaged for step-time / tflops-per-gpu (the last ones, warm-up step 0 excluded)

_STEP_TIME_KEY = "elapsed time per iteration (ms)"
_TFLOPS_KEY = "GPU utilization"
_LOSS_KEY = "lm loss"


class MetricsError(DseError):
    """Metrics missing or unusable; `.reason` is one short line fit for the trial table."""

    def __init__(self, reason: str) -> None:
        self.reason = " ".join(str(reason).split())[:300] or "metrics error"
        super().__init__(self.reason)


@dataclass
class RunMetrics:
    """What one run measured. Steps are 0-based (log `iteration N` is step N-1)."""

    step_times_s: dict[int, float] = field(default_factory=dict)
    tflops_per_gpu: dict[int, float] = field(default_factory=dict)
    lm_loss: dict[int, float] = field(default_factory=dict)
    alloc_gb: float | None = None
    max_alloc_gb: float | None = None
    extra: dict[str, float] = field(default_factory=dict)
    source: str = "log"
    skipped: dict[str, str] = field(default_factory=dict)  # flat key -> type name of a non-numeric value

    def is_empty(self) -> bool:
        return not (
            self.step_times_s
            or self.tflops_per_gpu
            or self.lm_loss
            or self.extra
            or self.alloc_gb is not None
            or self.max_alloc_gb is not None
        )


def normalize_name(name: str) -> str:
    """`"Step_Time"` -> `"step-time"`: metric names compare case-, underscore- and space-insensitively."""
    return re.sub(r"[\s_]+", "-", str(name).strip().lower())


# --------------------------------------------------------------------------------------------- JSON


def _number(value: Any, where: str) -> float | None:
    """A JSON number as float; None for null; MetricsError for anything else (bools included)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MetricsError(f"{where} is not a number ({type(value).__name__})")
    try:
        return float(value)
    except (OverflowError, ValueError):
        raise MetricsError(f"{where} is out of range") from None


def _load_json(text: str | bytes) -> Any:
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8", errors="replace")
    if not isinstance(text, str):
        raise MetricsError(f"metrics text is not a string ({type(text).__name__})")
    if not text.strip():
        raise MetricsError("metrics JSON is empty")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise MetricsError(
            f"corrupt or partial metrics JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except (ValueError, RecursionError, OverflowError) as exc:
        raise MetricsError(f"corrupt metrics JSON: {type(exc).__name__}") from None


def _load_object(text: str | bytes, what: str, empty_ok: bool = False) -> dict[str, Any]:
    """The JSON object every metrics file is; anything else is a MetricsError naming `what`."""
    data = _load_json(text)
    if not isinstance(data, dict):
        raise MetricsError(f"{what} is not an object ({type(data).__name__})")
    if not data and not empty_ok:
        raise MetricsError(f"{what} is an empty object")
    return data


def _is_step_key(key: str) -> bool:
    return key.isascii() and key.isdigit()


def _unwrap_wandb(data: dict[str, Any]) -> dict[str, Any]:
    """The W&B artifact wraps the same dict under one date key (`{"MM.DD.YY": {...}}`)."""
    if len(data) == 1:
        (only,) = data.values()
        if isinstance(only, dict) and any(_is_step_key(str(k)) for k in only):
            return only
    return data


def _golden_from(data: dict[str, Any]) -> RunMetrics:
    m = RunMetrics(source="golden-values-json")
    for key, value in data.items():
        if _is_step_key(key):
            try:
                step = int(key)
            except ValueError:  # pragma: no cover - isdigit() + isascii() guarantee an int
                raise MetricsError(f"bad step key {key!r}") from None
            if not isinstance(value, dict):
                raise MetricsError(f"step {key} is not an object ({type(value).__name__})")
            for name, target, scale in (
                (_STEP_TIME_KEY, m.step_times_s, 1e-3),
                (_TFLOPS_KEY, m.tflops_per_gpu, 1.0),
                (_LOSS_KEY, m.lm_loss, 1.0),
            ):
                if name in value:
                    number = _number(value[name], f"step {key} {name!r}")
                    if number is not None:
                        target[step] = number * scale
        elif key == "alloc":
            m.alloc_gb = _number(value, "alloc")
        elif key == "max_alloc":
            m.max_alloc_gb = _number(value, "max_alloc")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            number = _number(value, repr(key))
            if number is not None:
                m.extra[key] = number
        else:
            m.skipped[key] = type(value).__name__
    if not (m.step_times_s or m.tflops_per_gpu or m.lm_loss):
        raise MetricsError("golden-values JSON has no step values")
    return m


def parse_golden_values(text: str) -> RunMetrics:
    """Megatron-Bridge's golden-values JSON (§2b): digit keys are steps, times in ms become seconds."""
    data = _unwrap_wandb(_load_object(text, "golden-values JSON", empty_ok=True))
    if not any(_is_step_key(str(k)) for k in data):
        raise MetricsError("golden-values JSON has no step keys")
    return _golden_from(data)


_FLAT_ALLOC = {"alloc", "alloc-gb"}
_FLAT_MAX_ALLOC = {"max-alloc", "max-alloc-gb"}


def _flat_from(data: dict[str, Any]) -> RunMetrics:
    m = RunMetrics(source="flat-json")
    for key, value in data.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = _number(value, repr(key))
            assert number is not None
            name = normalize_name(key)
            if name in _FLAT_ALLOC:
                m.alloc_gb = number
            elif name in _FLAT_MAX_ALLOC:
                m.max_alloc_gb = number
            m.extra[key] = number
        else:
            m.skipped[key] = type(value).__name__
    if m.is_empty():
        raise MetricsError("metrics JSON has no numeric values")
    return m


def parse_flat_json(text: str) -> RunMetrics:
    """A flat `{"name": number, ...}` object (Command workloads). Non-numeric values are noted, not used."""
    return _flat_from(_load_object(text, "metrics JSON"))


def parse_metrics_json(text: str) -> RunMetrics:
    """Either shape: golden values when step keys are present, flat otherwise."""
    data = _load_object(text, "metrics JSON")
    unwrapped = _unwrap_wandb(data)
    if any(_is_step_key(str(k)) for k in unwrapped):
        return _golden_from(unwrapped)
    return _flat_from(data)


# ---------------------------------------------------------------------------------------------- log

_NUM = r"([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)"
_STEP_TIME_RE = re.compile(r"Step Time\s*:\s*" + _NUM + r"\s*s")
_GPU_UTIL_RE = re.compile(r"GPU utilization:\s*" + _NUM)
_ITERATION_RE = re.compile(r"\biteration\s+(\d+)\s*/")
_ELAPSED_RE = re.compile(r"elapsed time per iteration \(ms\):\s*" + _NUM)
_THROUGHPUT_RE = re.compile(r"throughput per GPU \(TFLOP/s/GPU\):\s*" + _NUM)
_LOSS_RE = re.compile(
    r"lm loss:\s*" + r"([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|nan|inf)", re.IGNORECASE
)
_MEM_ALLOC_RE = re.compile(r"mem-allocated-gigabytes:\s*" + _NUM)
_MEM_MAX_ALLOC_RE = re.compile(r"mem-max-allocated-gigabytes:\s*" + _NUM)
_MEM_MAX_RESERVED_RE = re.compile(r"mem-max-reserved-gigabytes:\s*" + _NUM)
# Generic metric lines for Command workloads: `DSE_METRIC name=value` (also `dse-metric: name = value`).
_DSE_METRIC_RE = re.compile(r"\bdse[-_]metric\b\s*:?\s*([A-Za-z][\w.\-/]*)\s*[=:]\s*" + _NUM, re.IGNORECASE)


def _float(text: str) -> float:
    try:
        return float(text)
    except (ValueError, OverflowError):
        raise MetricsError(f"unreadable number {text[:40]!r} in log") from None


def parse_log(text: str) -> RunMetrics:
    """Megatron-Bridge log lines (§2c); values pending from `Step Time` lines belong to the next iteration.

    Without any `iteration N/` line (e.g. only rank 0's output), `Step Time` lines are numbered 0, 1, ...
    The memory line's last occurrence wins. `DSE_METRIC name=value` lines land in `extra`.
    """
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8", errors="replace")
    if not isinstance(text, str):
        raise MetricsError(f"log text is not a string ({type(text).__name__})")
    m = RunMetrics(source="log")
    pending_time: float | None = None
    pending_tflops: float | None = None
    orphan_times: list[float] = []
    orphan_tflops: list[float | None] = []
    seen_iteration = False
    for line in text.splitlines():
        st = _STEP_TIME_RE.search(line)
        gu = _GPU_UTIL_RE.search(line)
        if st:
            if pending_time is not None:  # two Step Time lines in a row: the earlier had no iteration line
                orphan_times.append(pending_time)
                orphan_tflops.append(pending_tflops)
            pending_time = _float(st.group(1))
            pending_tflops = _float(gu.group(1)) if gu else None
        elif gu and "iteration" not in line:
            pending_tflops = _float(gu.group(1))
        it = _ITERATION_RE.search(line)
        if it:
            seen_iteration = True
            step = int(it.group(1)) - 1 if len(it.group(1)) < 12 else -1
            if step >= 0:
                elapsed = _ELAPSED_RE.search(line)
                throughput = _THROUGHPUT_RE.search(line)
                loss = _LOSS_RE.search(line)
                if elapsed:
                    m.step_times_s[step] = _float(elapsed.group(1)) / 1000.0
                elif pending_time is not None:
                    m.step_times_s[step] = pending_time
                if pending_tflops is not None:
                    m.tflops_per_gpu[step] = pending_tflops
                elif throughput:
                    m.tflops_per_gpu[step] = _float(throughput.group(1))
                if loss:
                    m.lm_loss[step] = _float(loss.group(1))
            pending_time = pending_tflops = None
            orphan_times.clear()
            orphan_tflops.clear()
        for regex, attr in ((_MEM_ALLOC_RE, "alloc_gb"), (_MEM_MAX_ALLOC_RE, "max_alloc_gb")):
            found = regex.search(line)
            if found:
                setattr(m, attr, _float(found.group(1)))
        reserved = _MEM_MAX_RESERVED_RE.search(line)
        if reserved:
            m.extra["max_reserved"] = _float(reserved.group(1))
        for found in _DSE_METRIC_RE.finditer(line):
            m.extra[found.group(1)] = _float(found.group(2))
    if not seen_iteration:
        if pending_time is not None:
            orphan_times.append(pending_time)
            orphan_tflops.append(pending_tflops)
        for step, (t, tf) in enumerate(zip(orphan_times, orphan_tflops, strict=True)):
            m.step_times_s[step] = t
            if tf is not None:
                m.tflops_per_gpu[step] = tf
    if m.is_empty():
        raise MetricsError("no metric lines found in log")
    return m
