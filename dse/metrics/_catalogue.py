"""The metric catalogue: which metrics dse knows, which way is better, and one metric's value from a run.

`metric_value` turns the parsed `RunMetrics` of a run into the number an agent optimises, checking that it is
physically possible (a positive time, a finite rate). The module does no I/O.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from typing import Any

from dse.metrics._parse import WINDOW, MetricsError, RunMetrics, normalize_name

STEP_TIME_ALIASES = ("step-time", "step-time-s", "iteration-time", "iteration-time-s")
TFLOPS_ALIASES = ("tflops-per-gpu", "tflops", "gpu-utilization", "model-tflops-per-gpu")
TOKENS_ALIASES = ("tokens-per-second-per-gpu", "tokens-per-s-per-gpu", "tokens-per-sec-per-gpu")
BUILTIN_METRICS = ("default", "step-time", "tflops-per-gpu", "max-alloc-gb", "tokens-per-second-per-gpu")
# Which way is better, for multi-objective search (a Command metric has none: the sweep must say)
METRIC_DIRECTIONS = {"default": "minimize", "step-time": "minimize", "tflops-per-gpu": "maximize",
                     "max-alloc-gb": "minimize", "tokens-per-second-per-gpu": "maximize"}


# DETERMINISTIC_FAILURES (dse.trial): failures that say something about the configuration itself. They recur
# on every run of it, so they are cached, never retried, expected findings of a sweep (not exit 1), and
# infeasible points to a model-based agent.


def is_step_time(name: str) -> bool:
    """`default` and the step-time aliases: what a log's iteration lines measure while a job runs."""
    key = normalize_name(name)
    return key == "default" or key in STEP_TIME_ALIASES


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
