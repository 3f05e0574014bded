"""What every figure of `dse.analysis.plots` shares: labels, the status groups, styles, and small helpers."""

from __future__ import annotations

import io
import math
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from dse.trial import FAILURE_STATUSES, SUCCESS_STATUSES, TrialStatus

METRIC_LABELS: dict[str, str] = {
    "step-time": "step time (s)",
    "tflops-per-gpu": "TFLOP/s/GPU",
    "max-alloc-gb": "peak memory (GB)",
    "tokens-per-second-per-gpu": "tokens/s/GPU",
    "reward": "reward",
}

SUCCESS = frozenset(s.value for s in SUCCESS_STATUSES)
FAILED = frozenset(s.value for s in FAILURE_STATUSES)
INFEASIBLE = frozenset({TrialStatus.INFEASIBLE.value})

_LOWER_BETTER = frozenset({"step-time", "max-alloc-gb"})
_LOWER_HINTS = ("time", "latency", "alloc", "mem", "loss", "seconds", "-gb", "duration")
_FAIL_STYLE: dict[str, Any] = {"marker": "x", "color": "#d62728", "s": 36, "linewidths": 1.6, "zorder": 4}
_INFEAS_STYLE: dict[str, Any] = {"marker": "^", "facecolors": "none", "edgecolors": "#7f7f7f", "s": 30, "zorder": 4}
_OK_COLOR = "#1f77b4"
_BAND_COLOR = "#fbe3e3"
_FIGSIZE = (8.0, 5.0)


# --------------------------------------------------------------------------------------------- helpers
class _Figure(Figure):
    """A plain Figure that Jupyter renders as an image even when no pyplot backend was activated.

    Figures made without pyplot have no display hook, so a notebook cell ending in
    `plots.convergence(df)` would print `<Figure size ...>`; `_repr_png_` makes it show the plot.
    """

    def _repr_png_(self) -> bytes:
        buf = io.BytesIO()
        self.savefig(buf, format="png", dpi=100)
        return buf.getvalue()


def _short(metric: str) -> str:
    return metric.removeprefix("metric.")


def metric_label(metric: str) -> str:
    """Axis label with units for a metric name (`step-time` or `metric.step-time`)."""
    name = _short(metric)
    return METRIC_LABELS.get(name, name)


def lower_is_better(metric: str) -> bool:
    """Whether smaller values of `metric` are better (step time, memory) or larger (throughput, reward)."""
    name = _short(metric)
    if name == "reward":
        return False
    if name in _LOWER_BETTER:
        return True
    if "per-second" in name or "flops" in name or "throughput" in name:
        return False
    return any(h in name for h in _LOWER_HINTS)


def _metric_column(metric: str) -> str:
    if metric == "reward" or metric.startswith("metric."):
        return metric
    return f"metric.{metric}"


def _status(df: pd.DataFrame) -> pd.Series:
    if "status" not in df.columns:
        return pd.Series(["completed"] * len(df), index=df.index, dtype=object)
    return df["status"].astype(str).str.lower()


def _numeric(df: pd.DataFrame, column: str) -> pd.Series:
    """A column as floats (NaN where absent or not a number); +-inf kept so callers can filter."""
    if column not in df.columns:
        return pd.Series(np.nan, index=df.index, dtype=float)
    return pd.to_numeric(df[column], errors="coerce").astype(float)


def _param_columns(df: pd.DataFrame, prefix: str = "param.") -> list[str]:
    return [c for c in df.columns if isinstance(c, str) and c.startswith(prefix)]


def _note(ax: Axes, text: str, *, blank: bool = False) -> None:
    """Say in the figure why there is nothing (or little) to draw; `blank` drops the meaningless ticks."""
    if blank:
        ax.set_xticks([])
        ax.set_yticks([])
    ax.text(
        0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=11, color="#444444",
        wrap=True, bbox={"boxstyle": "round,pad=0.6", "facecolor": "#f4f4f4", "edgecolor": "#cccccc"},
    )


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _sort_key(value: Any) -> tuple[int, float, str]:
    """Numbers in numeric order, then bools, then strings; missing last."""
    if _is_missing(value):
        return (3, 0.0, "")
    if isinstance(value, bool | np.bool_):
        return (1, float(bool(value)), "")
    if isinstance(value, int | float | np.integer | np.floating):
        return (0, float(value), "")
    return (2, 0.0, str(value))


def _fmt_value(value: Any) -> str:
    if _is_missing(value):
        return "(unset)"
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, float | np.floating):
        f = float(value)
        if math.isfinite(f) and f.is_integer():
            return str(int(f))
        return f"{f:g}"
    return str(value)


def _categories(values: Iterable[Any]) -> list[Any]:
    """Distinct values in display order; equal-looking values (1 and 1.0) collapse to one."""
    seen: dict[str, Any] = {}
    for v in values:
        seen.setdefault(_fmt_value(v), v)
    return sorted(seen.values(), key=_sort_key)


def _positions(series: pd.Series, cats: Sequence[Any]) -> np.ndarray:
    index = {_fmt_value(c): i for i, c in enumerate(cats)}
    return np.array([index[_fmt_value(v)] for v in series], dtype=float)


def _category_axis(ax: Any, param: str, cats: Sequence[Any], ylabel: str) -> None:
    """One value per tick along x (labels rotated when many and long), the parameter's name under them."""
    ax.set_xticks(range(len(cats)), [_fmt_value(c) for c in cats])
    ax.set_xlim(-0.6, len(cats) - 0.4)
    ax.set_xlabel(param.removeprefix("param."))
    ax.set_ylabel(ylabel)
    ax.grid(True, axis="y", alpha=0.3)
    if len(cats) > 4 and max(len(_fmt_value(c)) for c in cats) > 6:
        ax.tick_params(axis="x", labelrotation=30)


def _jitter(n: int, width: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-width, width, size=n)


def _group_column(df: pd.DataFrame, by: str | None) -> str | None:
    if by is not None:
        return by if by in df.columns else None
    if "run" in df.columns and df["run"].nunique(dropna=True) > 1:
        return "run"
    return None


def _group_label(df: pd.DataFrame, column: str, key: Hashable) -> str:
    label = str(key)
    if column == "run" and "agent" in df.columns:
        agents = df.loc[df["run"] == key, "agent"].dropna().astype(str).unique()
        if len(agents) == 1 and agents[0] not in label:
            label = f"{label} ({agents[0]})"
    return label


def _failure_band(ax: Axes, lo: float, hi: float, *, top: bool) -> tuple[float, float]:
    """Reserve a shaded band beyond the data (on the worse side) and return its (centre, half height)."""
    span = hi - lo if hi > lo else (abs(hi) if hi else 1.0)
    gap, height = 0.08 * span, 0.12 * span
    if top:
        b0, b1 = hi + gap, hi + gap + height
        ax.set_ylim(lo - 0.05 * span, b1 + 0.02 * span)
    else:
        b0, b1 = lo - gap - height, lo - gap
        ax.set_ylim(b0 - 0.02 * span, hi + 0.05 * span)
    ax.axhspan(b0, b1, color=_BAND_COLOR, zorder=0, lw=0)
    return (b0 + b1) / 2.0, height * 0.35


def _data_range(values: np.ndarray) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = float(finite.min()), float(finite.max())
    if lo == hi:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    return lo, hi


# ----------------------------------------------------------------------------------------- convergence


def _empty_facets(xlabel: str, ylabel: str, title: str, note: str) -> Figure:
    """The one-panel figure a faceted plot shows when it has nothing to facet, saying why."""
    fig = _Figure(figsize=_FIGSIZE, layout="constrained")
    ax = fig.add_subplot()
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    _note(ax, note, blank=True)
    return fig


def _facet_grid(n: int, width: float, height: float, min_width: float = 0.0,
                title_space: float = 0.9) -> tuple[Figure, Any, int]:
    """Up to three panels a row for `n` facets of `width` x `height` inches, the unused ones hidden:
    (figure, axes grid, columns)."""
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    fig = _Figure(figsize=(max(min_width, width * ncols + 0.6), height * nrows + title_space),
                  layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for j in range(n, nrows * ncols):
        axes[j // ncols][j % ncols].set_visible(False)
    return fig, axes, ncols


def _plot_bad(ax: Axes, failed_x: pd.Series, infeasible_x: pd.Series, centre: float, half: float) -> None:
    if len(failed_x):
        y = centre + _jitter(len(failed_x), half, 1)
        ax.scatter(failed_x.to_numpy(), y, label=f"failed ({len(failed_x)})", **_FAIL_STYLE)
    if len(infeasible_x):
        y = centre + _jitter(len(infeasible_x), half, 2)
        ax.scatter(infeasible_x.to_numpy(), y, label=f"infeasible ({len(infeasible_x)})", **_INFEAS_STYLE)


# ----------------------------------------------------------------------------------- parameter effects


def _wrap_name(name: str, width: int = 12) -> str:
    """Break a long dotted path or label over lines so neighbouring axis names do not collide."""
    if len(name) <= width:
        return name
    parts = name.replace(".", ".\n").replace(" (", "\n(").split("\n")
    return "\n".join(p for p in parts if p)


# ---------------------------------------------------------------------------------------- Pareto front


def _pareto_indices(a: np.ndarray, b: np.ndarray) -> list[int]:
    """Indices of the points no other point weakly beats on both (minimised) coordinates, by `a`."""
    order = np.lexsort((b, a))
    front: list[int] = []
    best_b = math.inf
    for k in order:
        if b[k] < best_b:
            front.append(int(k))
            best_b = float(b[k])
    return front


# ----------------------------------------------------------------------------------------- env effects
