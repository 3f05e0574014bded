"""Numbers as an engineer reads them: rounded, with their unit ("25.2 s", "239.7 TFLOP/s/GPU", "12 %").

The report shows no raw float (25.16098888888889); every figure of a trial passes through one of these.
"""

from __future__ import annotations

import math

__all__ = ["gb", "gpu_hours", "percent", "seconds", "tflops"]


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


def gpu_hours(value: float | None) -> str:
    """GPU-hours: 3 significant digits ("139 GPU-hours", "0.622 GPU-hours")."""
    if (v := _num(value)) is None:
        return "-"
    return f"{v:.0f} GPU-hours" if abs(v) >= 100 else f"{v:.3g} GPU-hours"


def percent(fraction: float | None, *, digits: int = 1) -> str:
    """A fraction as a percentage ("12.1 %"; `digits=0`: "12 %")."""
    if (v := _num(fraction)) is None:
        return "-"
    return f"{100.0 * v:.{digits}f} %"
