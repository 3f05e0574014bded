"""The engineer's figures: TFLOP/s/GPU (and MFU) per parameter value, and peak memory against the GPU's capacity.

Like every figure of `dse.analysis.plots`: built without pyplot, a new Figure per call, and a figure that says
in words why it is empty rather than an exception. `cmd_args` are the sweep's (its `gpu_type` and
`compute_dtype` give the peak and the capacity, `dse.analysis._efficiency`); without them the figures show
what the table holds and say what is unknown.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from dse.analysis._efficiency import FLOPS, MEMORY, best_index, efficiency_note, is_oom, with_efficiency
from dse.analysis._figures import (
    _FAIL_STYLE,
    _FIGSIZE,
    _OK_COLOR,
    SUCCESS,
    _categories,
    _category_axis,
    _empty_facets,
    _facet_grid,
    _Figure,
    _jitter,
    _note,
    _numeric,
    _param_columns,
    _positions,
    _status,
)
from dse.metrics import units

__all__ = ["efficiency_by_value", "memory_vs_capacity"]

_BEST_STYLE: dict[str, Any] = {"marker": "*", "s": 190, "color": "#ffbf00", "edgecolors": "black",
                               "linewidths": 0.8, "zorder": 5}
_CAPACITY_COLOR = "#d62728"
_LABEL = "TFLOP/s/GPU"


def _single_peak(eff: pd.DataFrame, ok: pd.Series) -> tuple[float, str] | None:
    """The one dense peak every successful trial shares, and its name ("h100 fp8_cs"); None if they differ."""
    peaks = eff.loc[ok, "peak_tflops"].dropna().unique()
    if len(peaks) != 1 or eff.loc[ok, "peak_tflops"].isna().any():
        return None
    row = eff.loc[ok].iloc[0]
    return float(peaks[0]), f"{row['gpu_type']} {row['compute_dtype']}"


def efficiency_by_value(df: pd.DataFrame, *, cmd_args: Mapping[str, Any] | None = None) -> Figure:
    """TFLOP/s/GPU of the successful trials per value of each search dimension: a box and the trials per
    value, the best trial (highest reward) starred, and MFU (% of the dtype's dense peak) on the right axis
    when every trial shares one GPU and dtype."""
    title = f"{_LABEL} and MFU per parameter value"
    if FLOPS not in df.columns:
        return _empty_facets("search dimension value", _LABEL, title, "the sweep did not measure tflops-per-gpu")
    eff = with_efficiency(df, cmd_args)
    params = _param_columns(eff)
    flops = _numeric(eff, FLOPS)
    ok = _status(eff).isin(SUCCESS) & np.isfinite(flops)
    if not params or not ok.any():
        why = "no search dimensions (param.* columns) in this table" if not params else \
            f"no successful trial with a {_LABEL}"
        return _empty_facets("search dimension value", _LABEL, title, why)
    peak = _single_peak(eff, ok)
    best = best_index(eff)
    fig, axes, ncols = _facet_grid(len(params), 4.2, 3.4)
    mfu_note = (f"right axis: MFU, % of the {peak[1]} dense peak ({peak[0]:.0f} TFLOP/s)" if peak
                else (efficiency_note(eff) or "MFU per trial: the trials differ in GPU or dtype"))
    fig.suptitle(f"{title}\n{mfu_note}", fontsize=11)
    for i, param in enumerate(params):
        ax = axes[i // ncols][i % ncols]
        cats = _categories(eff.loc[ok, param])
        x = _positions(eff.loc[ok, param], cats)
        y = flops[ok].to_numpy()
        groups = [y[x == pos] for pos in range(len(cats))]
        ax.boxplot(groups, positions=range(len(cats)), widths=0.55, showfliers=False, patch_artist=True,
                   boxprops={"facecolor": "#e8eef6", "edgecolor": "#8aa2c0"},
                   medianprops={"color": "black", "lw": 1.8}, whiskerprops={"color": "#8aa2c0"},
                   capprops={"color": "#8aa2c0"})
        ax.scatter(x + _jitter(x.size, 0.16, i), y, s=16, alpha=0.6, color=_OK_COLOR, lw=0, zorder=3)
        if best is not None and bool(ok.loc[best]):
            bx = _positions(eff.loc[[best], param], cats)
            ax.scatter(bx, [flops.loc[best]], **_BEST_STYLE)
        _category_axis(ax, param, cats, _LABEL)
        if peak:
            p = peak[0]
            right = ax.secondary_yaxis("right", functions=(lambda t, p=p: 100.0 * t / p,
                                                           lambda m, p=p: m * p / 100.0))
            right.set_ylabel("MFU (%)")
    handles: list[Any] = [Line2D([], [], marker="o", ls="", color=_OK_COLOR, alpha=0.6, markersize=5),
                          Line2D([], [], color="black", lw=1.8)]
    names = [f"successful trial ({int(ok.sum())})", "median per value (box: quartiles)"]
    if best is not None and bool(ok.loc[best]):
        handles.append(Line2D([], [], marker="*", ls="", markerfacecolor=_BEST_STYLE["color"],
                              markeredgecolor="black", markersize=12))
        names.append(f"best trial ({eff.loc[best, 'trial'] if 'trial' in eff.columns else best}): "
                     f"{units.tflops(flops.loc[best])}")
    fig.legend(handles, names, loc="outside lower center", ncols=len(handles), fontsize=9, frameon=False)
    return fig


def memory_vs_capacity(df: pd.DataFrame, *, cmd_args: Mapping[str, Any] | None = None) -> Figure:
    """Each trial's peak memory (GB) against the GPU's capacity (a line at its HBM size): out-of-memory trials
    on that line as red crosses, the best trial starred."""
    fig = _Figure(figsize=_FIGSIZE, layout="constrained")
    ax = fig.add_subplot()
    ax.set_xlabel("trial")
    ax.set_ylabel("peak memory (GB)")
    ax.set_title("Peak memory against the GPU's capacity")
    if MEMORY not in df.columns:
        _note(ax, "the sweep did not measure max-alloc-gb", blank=True)
        return fig
    eff = with_efficiency(df, cmd_args)
    trial = _numeric(eff, "trial") if "trial" in eff.columns else pd.Series(np.arange(1, len(eff) + 1.0), eff.index)
    mem = _numeric(eff, MEMORY)
    ok = _status(eff).isin(SUCCESS) & np.isfinite(mem)
    oom = is_oom(eff)
    capacities = eff["hbm_gb"].dropna().unique()
    capacity = float(capacities.max()) if len(capacities) else None
    if not ok.any() and not oom.any():
        _note(ax, "no trial measured its peak memory yet", blank=True)
        return fig
    if ok.any():
        ax.scatter(trial[ok], mem[ok], s=22, color=_OK_COLOR, alpha=0.75, lw=0, zorder=3,
                   label=f"peak memory ({int(ok.sum())} trials)")
    top = float(mem[ok].max()) if ok.any() else 1.0
    if capacity is not None:
        gpus = ", ".join(sorted({str(g) for g in eff["gpu_type"].dropna()}))
        ax.axhline(capacity, color=_CAPACITY_COLOR, ls="--", lw=1.4, zorder=2,
                   label=f"{gpus} capacity {units.gb(capacity)}")
        top = max(top, capacity)
    if oom.any():
        y = np.full(int(oom.sum()), capacity if capacity is not None else top * 1.08)
        ax.scatter(trial[oom], y, label=f"out of memory ({int(oom.sum())})", **_FAIL_STYLE)
    best = best_index(eff)
    if best is not None and bool(ok.loc[best]):
        ax.scatter([trial.loc[best]], [mem.loc[best]], label=f"best trial ({units.gb(mem.loc[best])})",
                   **_BEST_STYLE)
    ax.set_ylim(0, top * 1.15)
    ax.grid(True, alpha=0.3)
    if capacity is None:
        ax.text(0.01, 0.98, "GPU capacity unknown (no known gpu_type)", transform=ax.transAxes, va="top",
                fontsize=9, color="#444444")
    ax.legend(loc="lower right", fontsize=9)
    return fig
