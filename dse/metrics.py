"""Metrics of one finished run, parsed from text: the golden-values JSON, a flat JSON, or log lines.

Megatron-Bridge writes per-step values (reference/megatron-bridge.md §2b) only when its post-run
evaluation runs; the launcher log (§2c) is the fallback. Whatever the source, every problem (corrupt or
partial JSON, wrong types, NaN, a missing metric) surfaces as `MetricsError` with a one-line reason, so
the sweep can record "no-metrics" instead of crashing. The module does no I/O: callers pass text.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable
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


# ------------------------------------------------------------------------------------------ metrics

STEP_TIME_ALIASES = ("step-time", "step-time-s", "iteration-time", "iteration-time-s")
TFLOPS_ALIASES = ("tflops-per-gpu", "tflops", "gpu-utilization", "model-tflops-per-gpu")
TOKENS_ALIASES = ("tokens-per-second-per-gpu", "tokens-per-s-per-gpu", "tokens-per-sec-per-gpu")
BUILTIN_METRICS = ("default", "step-time", "tflops-per-gpu", "max-alloc-gb", "tokens-per-second-per-gpu")
# Which way is better, for multi-objective search (a Command metric has none: the sweep must say)
METRIC_DIRECTIONS = {"default": "minimize", "step-time": "minimize", "tflops-per-gpu": "maximize",
                     "max-alloc-gb": "minimize", "tokens-per-second-per-gpu": "maximize"}


# Failures that say something about the configuration itself: they recur on every run of it, so they are
# cached, never retried, expected findings of a sweep (not exit 1), and infeasible points to a model-based agent
DETERMINISTIC_FAILURES = ("out-of-memory", "rejected-config")


def metric_directions(names: Iterable[str]) -> list[str | None]:
    """Each agent metric's better way ("minimize"/"maximize"), None where only the sweep can say."""
    return [METRIC_DIRECTIONS.get(n) for n in names]


# A time below a nanosecond (in the metric's own unit: seconds for step-time) is no measurement: it would turn
# into an absurd (or infinite) reward under `inverse`. 0, negative and subnormal values are refused with it.
MIN_TIME = 1e-9
_RATE_NAME_RE = re.compile(r"tflop|flops|throughput|tokens|samples|per-s(?:ec(?:ond)?)?(?:$|-)|/s(?:$|-)|utili[sz]ation")
_TIME_NAME_RE = re.compile(r"time|latency|duration|(?:^|-)(?:s|ms|us|ns|sec|secs|seconds)$")
_MEMORY_NAME_RE = re.compile(r"alloc|(?:^|-)mem(?:ory)?(?:$|-)|reserved|(?:^|-)(?:gb|gib|mb|mib|bytes)$")


def metric_kind(name: str) -> str | None:
    """"time" (finite, >= MIN_TIME), "throughput" or "memory" (finite, >= 0), or None (any finite value), from
    the metric's name: the built-ins by definition, any other name by its words (`latency_ms`, `samples/s`)."""
    key = normalize_name(name)
    if key in ("default", "step-time", "step-time-ms", *STEP_TIME_ALIASES):
        return "time"
    if key in ("tflops-per-gpu", *TFLOPS_ALIASES, *TOKENS_ALIASES) or _RATE_NAME_RE.search(key):
        return "throughput"
    if key == "max-alloc-gb" or _MEMORY_NAME_RE.search(key):
        return "memory"
    if _TIME_NAME_RE.search(key):
        return "time"
    return None


def _checked(name: str, value: float, kind: str | None = None, where: str = "") -> float:
    """`value` if it is a possible value of a metric of this kind, else MetricsError naming it and the value."""
    what, at = f"metric {name}", f" ({where})" if where else ""
    if math.isnan(value):
        raise MetricsError(f"{what} is NaN{at}")
    if math.isinf(value):
        raise MetricsError(f"{what} is infinite ({value}){at}")
    if kind == "time" and not value >= MIN_TIME:
        raise MetricsError(f"{what} is {value!r}{at}: a time must be at least {MIN_TIME:g} (finite and positive)")
    if kind in ("throughput", "memory") and value < 0:
        raise MetricsError(f"{what} is {value!r}{at}: a {kind} cannot be negative")
    return value


def _extra(m: RunMetrics, names: Iterable[str]) -> float | None:
    wanted = {normalize_name(n) for n in names}
    for key, value in m.extra.items():
        if normalize_name(key) in wanted:
            return value
    return None


def _skipped_reason(m: RunMetrics, name: str) -> str | None:
    for key, type_name in m.skipped.items():
        if normalize_name(key) == normalize_name(name):
            return f"metric {name} is not a number ({type_name})"
    return None


def _window_mean(name: str, per_step: dict[int, float], m: RunMetrics, aliases: Iterable[str]) -> float:
    steps = sorted(s for s in per_step if s > 0)[-WINDOW:]
    if steps:
        kind = metric_kind(name)
        for s in steps:  # a mean would hide an impossible step (0 s among 1 s steps)
            _checked(name, per_step[s], kind, where=f"at step {s}")
        return sum(per_step[s] for s in steps) / len(steps)
    flat = _extra(m, aliases)
    if flat is not None:
        return flat
    if per_step:
        raise MetricsError(f"metric {name}: no steps after warm-up (only step 0)")
    raise MetricsError(_skipped_reason(m, name) or f"metric {name} is missing")


def _positive(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def _tokens(m: RunMetrics, gbs: Any, seq_length: Any, num_gpus: Any) -> float:
    name = "tokens-per-second-per-gpu"
    flat = _extra(m, TOKENS_ALIASES)
    if flat is not None:
        return flat
    known = {"gbs": _positive(gbs), "seq_length": _positive(seq_length), "num_gpus": _positive(num_gpus)}
    missing = [k for k, v in known.items() if v is None]
    if missing:
        raise MetricsError(f"metric {name} needs {', '.join(missing)} (not known)")
    step_time = _checked("step-time", _window_mean("step-time", m.step_times_s, m, STEP_TIME_ALIASES), "time")
    assert known["gbs"] and known["seq_length"] and known["num_gpus"]
    return known["gbs"] * known["seq_length"] / (step_time * known["num_gpus"])


def metric_value(
    name: str,
    m: RunMetrics,
    *,
    gbs: int | None = None,
    seq_length: int | None = None,
    num_gpus: int | None = None,
) -> float:
    """One named metric of a run, finite and possible, or MetricsError (never anything else).

    `default`/`step-time`: mean s/iteration over the last up to 10 steps after step 0; `tflops-per-gpu`:
    the same window of TFLOP/s/GPU; `max-alloc-gb`; `tokens-per-second-per-gpu` = gbs*seq/(t*gpus);
    any other name is a flat key of `m.extra` (compared with `normalize_name`).
    A time (step-time, and any name `metric_kind` calls time-like) must be >= MIN_TIME (1e-9), every step of
    the window included; a throughput or memory value must be >= 0: else the trial has no usable metrics.
    """
    if not isinstance(m, RunMetrics):
        raise MetricsError(f"no metrics to read {name!r} from")
    key = normalize_name(name) if isinstance(name, str) else ""
    if not key:
        raise MetricsError(f"bad metric name {name!r}")
    compute: Callable[[], float]
    if key in ("default", "step-time"):
        key = "step-time"

        def compute() -> float:
            millis = _extra(m, ("step-time-ms",))
            if not m.step_times_s and millis is not None and _extra(m, STEP_TIME_ALIASES) is None:
                return millis / 1000.0
            return _window_mean(key, m.step_times_s, m, STEP_TIME_ALIASES)

    elif key == "tflops-per-gpu":

        def compute() -> float:
            return _window_mean(key, m.tflops_per_gpu, m, TFLOPS_ALIASES)

    elif key == "max-alloc-gb":

        def compute() -> float:
            for value in (m.max_alloc_gb, m.alloc_gb):
                if value is not None:
                    return value
            raise MetricsError(f"metric {key} is missing (no memory values)")

    elif key in TOKENS_ALIASES:
        key = "tokens-per-second-per-gpu"

        def compute() -> float:
            return _tokens(m, gbs, seq_length, num_gpus)

    else:

        def compute() -> float:
            value = _extra(m, (name,))
            if value is None:
                raise MetricsError(_skipped_reason(m, name) or f"metric {name} is missing")
            return value

    try:
        value = compute()
    except MetricsError:
        raise
    except (TypeError, ValueError, OverflowError, ZeroDivisionError, AttributeError) as exc:
        raise MetricsError(f"metric {key}: {type(exc).__name__}") from None
    return _checked(key if key in BUILTIN_METRICS else str(name), float(value), metric_kind(key))


# ----------------------------------------------------------------------------------- classification

FLAKY_PATTERNS: tuple[str, ...] = (
    r"Some NCCL operations have failed or timed out",
    r"Watchdog caught collective operation timeout",
    r"NCCL.*\btimed out\b",  # not a bare "timeout": env dumps print NCCL_*_TIMEOUT settings
    r"ProcessGroupNCCL.*(?:Timeout\(ms\)|watchdog thread terminated)",
    r"unhandled system error",
    r"ncclRemoteError|ncclSystemError|ncclInternalError",
    r"uncorrectable ECC error",
    r"ECC error",
    r"illegal memory access",
    r"illegal instruction",
    r"unspecified launch failure",
    r"Segmentation fault|SIGSEGV|Segfault",
    r"double free or corruption",
    r"Call to CUDA function failed",
    r"Connection reset by peer",
    r"Connection refused",
    r"torch\.distributed\.DistNetworkError|DistNetworkError",
    r"torch\.distributed\.DistBackendError|DistBackendError",
    r"The server socket has failed to listen",
    r"\bXid\b",
    r"DUE TO NODE FAIL|NODE_FAIL|node failure",
    r"DUE TO PREEMPTION",
)
OOM_PATTERNS: tuple[str, ...] = (
    r"CUDA out of memory",
    r"torch\.OutOfMemoryError",
    r"torch\.cuda\.OutOfMemoryError",
    r"OutOfMemoryError",
    r"CUDA error: out of memory",
    r"cudaErrorMemoryAllocation",
    r"oom[-_]kill",
)
# Deterministic framework refusals (reference/megatron-bridge.md §3); retrying cannot help.
REJECT_PATTERNS: tuple[str, ...] = (
    r"is not divisible by",
    r"should be divisible by",
    r"must be divisible by",
    r"should be greater than 1 with interleaved schedule",
    r"must be a multiple of",
    r"must be a multiple or divisor of",
    r"number of microbatches should be at least 1",
    r"Make sure the number of model chunks is the same across all pipeline stages",
    r"contiguous micro-batches in a virtual pipeline stage should range in",
    r"should be 0, or larger than or equal to the pipeline-parallel size",
    r"Cannot use sequence parallelism without tensor parallelism",
    r"ensure sequence length configuration in model config and dataset config match",
    r"num_moe_experts must be non None to use expert-parallel",
    r"If enabling EP A2A overlap",
    r"CPU offloading can be done only for layers less than",
    r"no support for Pipeline parallelism with CPU offloading",
    r"CPU offloading does not work when activation recomputation is enabled",
    r"CUDA graphs not supported with CPU offloading",
    r"When using recompute_granularity",
    r"RNG tracker is required for cudagraphs",
    r"conflicts with pipeline_model_parallel_layout",
    r"ep_size must be less than or equal to",
    r"moe_expert_capacity_factor only works with alltoall token dispatcher",
    r"error: unrecognized arguments",
    r"error: argument \S+: invalid",
    # A bare AssertionError is a config refusal, except Megatron-Bridge's own post-run checks (which fire
    # after a successful run when no golden values exist) and the end-of-data marker.
    r"AssertionError(?!.*(?:Convergence check|Performance check|golden values|Grad norm check"
    r"|Memory metrics|no samples left to consume))",
)
_CATEGORIES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (category, re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE))
    for category, patterns in (
        ("out-of-memory", OOM_PATTERNS),
        ("rejected-config", REJECT_PATTERNS),
        ("transient", FLAKY_PATTERNS),
    )
)
_MAX_LINE = 240


def classify_failure(log_text: str) -> tuple[str, str] | None:
    """Why a run failed: ("out-of-memory" | "rejected-config" | "transient", the first matching line).

    Priority is in that order, so an OOM on one rank wins over the NCCL timeouts it causes on the others.
    """
    if isinstance(log_text, (bytes, bytearray)):
        log_text = bytes(log_text).decode("utf-8", errors="replace")
    if not isinstance(log_text, str) or not log_text:
        return None
    lines = log_text.splitlines()
    for category, regex in _CATEGORIES:
        for line in lines:
            if regex.search(line):
                trimmed = " ".join(line.split())
                if len(trimmed) > _MAX_LINE:
                    trimmed = trimmed[: _MAX_LINE - 3] + "..."
                return category, trimmed
    return None
