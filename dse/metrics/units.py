"""How numbers read for a person: rounded, with their unit ("25.16 s", "239.7 TFLOP/s/GPU", "69.98 GB").

Every line dse prints (the live view, the run's last line, `dse status`, `dse best`) passes a metric through
`format_metric`; the report's cells and sentences go through the quantity formatters below (`seconds`,
`tflops`, `gb`, `gpu_hours`, `percent`). JSON, CSV and the table keep the full value. No I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from dse.metrics._catalogue import STEP_TIME_ALIASES, TFLOPS_ALIASES, TOKENS_ALIASES
from dse.metrics._parse import normalize_name

__all__ = ["format_metric", "format_metrics", "format_number", "gb", "gpu_hours", "metric_unit", "percent",
           "seconds", "tflops"]

_SUFFIX_UNITS = {"ms": "ms", "us": "us", "ns": "ns", "gb": "GB", "gib": "GiB", "mb": "MB", "mib": "MiB"}


def metric_unit(name: str) -> str | None:
    """The unit of a metric, from the catalogue (step time in s, TFLOP/s per GPU, tokens/s per GPU, GB) or from
    a unit its name ends in (`latency-ms`); None where the name does not say."""
    key = normalize_name(name)
    if key == "default" or key in STEP_TIME_ALIASES:
        return "s"
    if key in ("tflops-per-gpu", *TFLOPS_ALIASES):
        return "TFLOP/s/GPU"
    if key in TOKENS_ALIASES:
        return "tokens/s/GPU"
    if key == "max-alloc-gb":
        return "GB"
    return _SUFFIX_UNITS.get(key.rsplit("-", 1)[-1]) if "-" in key else None


def format_number(value: float) -> str:
    """4 significant digits; whole numbers with thousands separators from 10,000 up ("25.16", "12,345")."""
    v = float(value)
    if not math.isfinite(v):
        return str(v)
    return f"{v:,.0f}" if abs(v) >= 10_000 else f"{v:.4g}"


def format_metric(name: str, value: float) -> str:
    """`value` of metric `name` rounded, with its unit where known ("25.16 s")."""
    unit = metric_unit(name)
    return format_number(value) + (f" {unit}" if unit else "")


def format_metrics(metrics: Mapping[str, float]) -> str:
    """"step-time 25.16 s, tflops-per-gpu 239.7 TFLOP/s/GPU" ("default" is the step time and says so)."""
    return ", ".join(f"{'step-time' if name == 'default' else name} {format_metric(name, value)}"
                     for name, value in metrics.items())


# ---- quantities of the report ------------------------------------------------------------------
def _num(value: float | None) -> float | None:
    """The value as a float, or None where it is missing or not finite (shown as "-")."""
    if value is None:
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def seconds(value: float | None) -> str:
    """A duration: 3 significant digits below 100 s ("2.51 s", "25.2 s"), whole seconds above ("137 s")."""
    if (v := _num(value)) is None:
        return "-"
    return f"{v:.0f} s" if abs(v) >= 100 else f"{v:.3g} s"


def tflops(value: float | None, *, unit: bool = True) -> str:
    """A throughput per GPU, to 0.1 TFLOP/s ("239.7 TFLOP/s/GPU")."""
    if (v := _num(value)) is None:
        return "-"
    return f"{v:.1f}" + (" TFLOP/s/GPU" if unit else "")


def gb(value: float | None, *, unit: bool = True) -> str:
    """A memory size, to 0.1 GB ("70.0 GB")."""
    if (v := _num(value)) is None:
        return "-"
    return f"{v:.1f}" + (" GB" if unit else "")


def gpu_hours(value: float | None, *, unit: bool = True) -> str:
    """GPU-hours: 3 significant digits ("139 GPU-hours", "0.622 GPU-hours")."""
    if (v := _num(value)) is None:
        return "-"
    return (f"{v:.0f}" if abs(v) >= 100 else f"{v:.3g}") + (" GPU-hours" if unit else "")


def percent(fraction: float | None, *, digits: int = 1) -> str:
    """A fraction as a percentage ("12.1 %"; `digits=0`: "12 %")."""
    if (v := _num(fraction)) is None:
        return "-"
    return f"{100.0 * v:.{digits}f} %"
