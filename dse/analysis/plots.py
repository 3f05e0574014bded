"""Figures of a sweep's trial table: convergence, parameter effects, Pareto front, env effects.

Each function takes the DataFrame of `dse.load_trials` (one row per trial, docs/DESIGN.md §6) and returns a
new `matplotlib.figure.Figure`. Figures are built without pyplot so that nothing global is touched
(safe in threads, headless servers and the HTML report) and nothing is ever shown or closed behind
the caller's back. Degenerate tables (empty, no successes, a missing metric) give a figure that says
so in words instead of raising: a notebook cell or a report must never die on a half-finished sweep.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import ListedColormap, Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

__all__ = [
    "METRIC_LABELS",
    "convergence",
    "efficiency_by_value",
    "env_effects",
    "metric_label",
    "lower_is_better",
    "memory_vs_capacity",
    "parallel_coordinates",
    "parameter_effects",
    "pareto_front",
]

from dse.analysis._efficiency_plots import efficiency_by_value, memory_vs_capacity
from dse.analysis._figures import (
    _BAND_COLOR,
    _FAIL_STYLE,
    _FIGSIZE,
    _INFEAS_STYLE,
    _OK_COLOR,
    FAILED,
    INFEASIBLE,
    METRIC_LABELS,
    SUCCESS,
    _categories,
    _category_axis,
    _data_range,
    _empty_facets,
    _facet_grid,
    _failure_band,
    _Figure,
    _fmt_value,
    _group_column,
    _group_label,
    _jitter,
    _metric_column,
    _note,
    _numeric,
    _param_columns,
    _pareto_indices,
    _plot_bad,
    _positions,
    _status,
    _wrap_name,
    lower_is_better,
    metric_label,
)


def convergence(df: pd.DataFrame, *, by: str | None = None, metric: str | None = None,
                x: str = "trial") -> Figure:
    """Best reward (or best `metric`) so far against trial number: how fast the search found good points.

    With `x="gpu_hours"` the axis is the GPU-hours spent so far instead (what the search cost, trial by
    trial: an out-of-memory trial is cheap, a long one is not).

    One line per group when `by` names a column ("run", "agent") or when a `run` column holds several
    runs. Each successful trial is a faint dot; failed and infeasible trials sit in a shaded band on
    the worse side of the plot so that wasted trials are visible without distorting the scale.
    """
    target = "reward" if metric is None else _metric_column(metric)
    label = metric_label(target)
    lower = lower_is_better(target)
    fig = _Figure(figsize=_FIGSIZE, layout="constrained")
    ax = fig.add_subplot()
    ax.set_xlabel("GPU-hours spent" if x == "gpu_hours" else "trial number")
    better = "lower" if lower else "higher"
    ax.set_ylabel(f"best {label} so far ({better} is better)")
    ax.set_title(f"Convergence: best {label} so far")
    ax.grid(True, alpha=0.3)

    if df.empty:
        _note(ax, "no trials yet", blank=True)
        return fig
    if target not in df.columns:
        _note(ax, f"no column '{target}' in the trial table", blank=True)
        return fig
    group_col = _group_column(df, by)
    if by is not None and group_col is None:
        ax.set_title(f"Convergence: best {label} so far (no '{by}' column: one group)")

    status = _status(df)
    trial = _numeric(df, "trial") if "trial" in df.columns else pd.Series(np.arange(1, len(df) + 1.0), df.index)
    if x == "gpu_hours":  # each trial at the GPU-hours spent up to and including it, per group
        spent = _numeric(df, "gpu_hours").fillna(0.0) if "gpu_hours" in df.columns else trial * 0.0
        order = trial.sort_values(kind="stable").index
        ordered = spent.loc[order]
        cum = ordered.groupby(df.loc[order, group_col], dropna=False).cumsum() if group_col else ordered.cumsum()
        trial = cum.reindex(df.index)
    value = _numeric(df, target)
    ok = status.isin(SUCCESS) & np.isfinite(value)
    bad = status.isin(FAILED)
    infeasible = status.isin(INFEASIBLE)

    if not ok.any():
        ax.set_ylim(0, 1)
        ax.set_yticks([])  # no values: a 0..1 scale would pretend there were some
        if bad.any() or infeasible.any():
            ax.axhspan(0.04, 0.2, color=_BAND_COLOR, zorder=0, lw=0)
            _plot_bad(ax, trial[bad], trial[infeasible], 0.12, 0.04)
            ax.legend(loc="upper right", fontsize=9)
        _note(ax, f"no successful trial with a {label} yet")
        return fig

    groups: list[tuple[str, pd.Index]] = []
    if group_col is None:
        groups.append(("best so far", df.index))
    else:
        for key, sub in df.groupby(group_col, sort=True, dropna=False):
            groups.append((_group_label(df, group_col, key), sub.index))

    colors = [f"C{i % 10}" for i in range(len(groups))]
    for (name, idx), color in zip(groups, colors, strict=True):
        g_ok = ok.loc[idx]
        t = trial.loc[idx][g_ok]
        v = value.loc[idx][g_ok]
        order = np.argsort(t.to_numpy(), kind="stable")
        t, v = t.to_numpy()[order], v.to_numpy()[order]
        if t.size == 0:
            ax.plot([], [], color=color, label=f"{name} (no success)")
            continue
        best = np.minimum.accumulate(v) if lower else np.maximum.accumulate(v)
        ax.scatter(t, v, s=14, color=color, alpha=0.3, lw=0, zorder=2)
        # extend the step line to the group's last trial so a stalled search reads as a flat tail
        last = float(np.nanmax(trial.loc[idx].to_numpy()))
        xs, ys = np.append(t, max(last, float(t[-1]))), np.append(best, best[-1])
        ax.step(xs, ys, where="post", color=color, lw=2, label=name, zorder=3)
        k_best = int(np.argmin(v)) if lower else int(np.argmax(v))
        ax.scatter([t[k_best]], [v[k_best]], marker="*", s=140, color=color, edgecolors="black",
                   linewidths=0.6, zorder=5)

    if bad.any() or infeasible.any():
        lo, hi = _data_range(value[ok].to_numpy())
        centre, half = _failure_band(ax, lo, hi, top=lower)
        _plot_bad(ax, trial[bad], trial[infeasible], centre, half)
    handles, labels = ax.get_legend_handles_labels()
    handles.append(Line2D([], [], marker="*", ls="", color="grey", markeredgecolor="black", markersize=10))
    labels.append("best trial")
    handles.append(Line2D([], [], marker="o", ls="", color="grey", alpha=0.4, markersize=5))
    labels.append("successful trial")
    ax.legend(handles, labels, loc="best", fontsize=9)
    return fig


def parameter_effects(df: pd.DataFrame, *, metric: str = "step-time") -> Figure:
    """`metric` against each search dimension's values: which knobs matter and which values fail.

    One subplot per `param.*` column with a categorical x axis (values in natural order), jittered
    successful trials, the median per value, and failed / infeasible trials as markers in a shaded
    band on the worse side (top for step time, bottom for throughput).
    """
    column = _metric_column(metric)
    label = metric_label(column)
    lower = lower_is_better(column)
    params = _param_columns(df)
    if df.empty or not params:
        return _empty_facets("search dimension value", label, f"Parameter effects on {label}",
                             "no trials yet" if df.empty else "no search dimensions (param.* columns) in this table")

    fig, axes, ncols = _facet_grid(len(params), 4.2, 3.4)
    fig.suptitle(f"Parameter effects on {label} ({'lower' if lower else 'higher'} is better)")

    status = _status(df)
    value = _numeric(df, column)
    ok = status.isin(SUCCESS) & np.isfinite(value)
    bad = status.isin(FAILED)
    infeasible = status.isin(INFEASIBLE)
    missing_metric = column not in df.columns
    lo, hi = _data_range(value[ok].to_numpy())
    shown: set[str] = set()

    for i, param in enumerate(params):
        ax = axes[i // ncols][i % ncols]
        cats = _categories(df[param])
        _category_axis(ax, param, cats, label)
        if ok.any():
            x = _positions(df.loc[ok, param], cats)
            y = value[ok].to_numpy()
            ax.scatter(x + _jitter(x.size, 0.18, i), y, s=16, alpha=0.55, color=_OK_COLOR, lw=0, zorder=2)
            shown.add("ok")
            for pos in np.unique(x):
                med = float(np.median(y[x == pos]))
                ax.hlines(med, pos - 0.32, pos + 0.32, color="black", lw=2.2, zorder=3)
            shown.add("median")
        else:
            ax.set_ylim(0, 1)
            ax.set_yticks([])
            why = f"no '{column}' column" if missing_metric else f"no successful trial with a {label}"
            _note(ax, why)
        if bad.any() or infeasible.any():
            if ok.any():
                centre, half = _failure_band(ax, lo, hi, top=lower)
            else:
                centre, half = (0.88, 0.04) if lower else (0.12, 0.04)
                ax.axhspan(centre - 0.08, centre + 0.08, color=_BAND_COLOR, zorder=0, lw=0)
            if bad.any():
                xb = _positions(df.loc[bad, param], cats)
                yb = centre + _jitter(xb.size, half, 100 + i)
                ax.scatter(xb + _jitter(xb.size, 0.18, 200 + i), yb, **_FAIL_STYLE)
                shown.add("failed")
            if infeasible.any():
                xi = _positions(df.loc[infeasible, param], cats)
                yi = centre + _jitter(xi.size, half, 300 + i)
                ax.scatter(xi + _jitter(xi.size, 0.18, 400 + i), yi, **_INFEAS_STYLE)
                shown.add("infeasible")

    handles: list[Any] = []
    names: list[str] = []
    if "ok" in shown:
        handles.append(Line2D([], [], marker="o", ls="", color=_OK_COLOR, alpha=0.6, markersize=5))
        names.append(f"successful trial ({int(ok.sum())})")
    if "median" in shown:
        handles.append(Line2D([], [], color="black", lw=2.2))
        names.append("median per value")
    if "failed" in shown:
        handles.append(Line2D([], [], marker="x", ls="", color=_FAIL_STYLE["color"], markeredgewidth=1.6))
        names.append(f"failed / timeout / preempted ({int(bad.sum())}), shaded band")
    if "infeasible" in shown:
        handles.append(Line2D([], [], marker="^", ls="", markerfacecolor="none",
                              markeredgecolor=_INFEAS_STYLE["edgecolors"]))
        names.append(f"infeasible ({int(infeasible.sum())}), shaded band")
    if handles:
        fig.legend(handles, names, loc="outside lower center", ncols=min(4, len(handles)), fontsize=9,
                   frameon=False)
    return fig


# -------------------------------------------------------------------------------- parallel coordinates
def parallel_coordinates(df: pd.DataFrame, *, top: int = 10, metric: str = "step-time") -> Figure:
    """The best `top` successful trials as lines across the search dimensions, coloured by `metric`.

    Every axis is categorical (the dimension's values seen in the whole table, evenly spaced), so
    values the best trials never use stand out as empty ticks; the last axis is the metric itself.
    """
    column = _metric_column(metric)
    label = metric_label(column)
    lower = lower_is_better(column)
    fig = _Figure(figsize=(9.0, 5.2), layout="constrained")
    ax = fig.add_subplot()
    ax.set_ylabel("dimension value (categories evenly spaced)")
    ax.set_xlabel("search dimension")
    params = _param_columns(df)
    status = _status(df)
    value = _numeric(df, column)
    ok = status.isin(SUCCESS) & np.isfinite(value)
    n_best = max(0, int(top))
    ax.set_title(f"Top {n_best} trials by {label} across the search dimensions")
    ax.set_yticks([])

    problem = None
    if df.empty:
        problem = "no trials yet"
    elif not params:
        problem = "no search dimensions (param.* columns) in this table"
    elif column not in df.columns:
        problem = f"no '{column}' column in the trial table"
    elif not ok.any():
        problem = f"no successful trial with a {label} yet"
    elif n_best == 0:
        problem = f"top = {top}: nothing to draw"
    if problem is not None:
        ax.set_xticks(range(len(params)), [_wrap_name(p.removeprefix("param.")) for p in params])
        _note(ax, problem)
        return fig

    best = df[ok].assign(_v=value[ok]).sort_values(["_v"], ascending=lower, kind="stable").head(n_best)
    ax.set_title(f"Top {len(best)} of {int(ok.sum())} successful trials by {label}")
    axes_names = [_wrap_name(p.removeprefix("param.")) for p in params] + [_wrap_name(label)]
    n_axes = len(axes_names)
    ys = np.zeros((len(best), n_axes))
    for j, param in enumerate(params):
        cats = _categories(df[param])
        pos = _positions(best[param], cats)
        scale = max(len(cats) - 1, 1)
        ys[:, j] = pos / scale if len(cats) > 1 else 0.5
        for k, cat in enumerate(cats):
            y = k / scale if len(cats) > 1 else 0.5
            ax.text(j + 0.04, y, _fmt_value(cat), fontsize=8, va="center", ha="left", zorder=6,
                    bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.8})
    v = best["_v"].to_numpy(dtype=float)
    vlo, vhi = float(v.min()), float(v.max())
    ys[:, -1] = (v - vlo) / (vhi - vlo) if vhi > vlo else 0.5
    for q in np.linspace(0, 1, 5) if vhi > vlo else [0.5]:
        ax.text(n_axes - 1 + 0.04, q, f"{vlo + q * (vhi - vlo):.4g}", fontsize=8, va="center", zorder=6,
                bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.8})

    # darkest = best; the bright yellow end of viridis is cut off because it vanishes on white
    colors = colormaps["viridis"](np.linspace(0.0, 0.85, 256))
    cmap = ListedColormap(colors if lower else colors[::-1])
    pad = 0.0 if vhi > vlo else (abs(vlo) * 0.05 or 1.0)  # one value: a readable colour bar around it
    norm = Normalize(vmin=vlo - pad, vmax=vhi + pad)
    sm = ScalarMappable(norm=norm, cmap=cmap)
    xs = np.arange(n_axes)
    # draw worst first so the best line ends on top
    for r in range(len(best) - 1, -1, -1):
        lw, alpha = (3.0, 1.0) if r == 0 else (1.5, 0.75)
        ax.plot(xs, ys[r], color=sm.to_rgba(v[r]), lw=lw, alpha=alpha, zorder=3 if r else 4)
    for j in range(n_axes):
        ax.axvline(j, color="#555555", lw=1, zorder=1)
    ax.set_xticks(xs, axes_names)
    ax.set_xlim(-0.2, n_axes - 1 + 0.5)
    ax.set_ylim(-0.08, 1.08)
    fig.colorbar(sm, ax=ax, label=label, pad=0.01)
    trial0 = best["trial"].iloc[0] if "trial" in best.columns else best.index[0]
    run0 = f"{best['run'].iloc[0]} " if "run" in best.columns and best["run"].nunique() > 1 else ""
    best_color: Any = sm.to_rgba(v[0])
    ax.legend([Line2D([], [], color=best_color, lw=3)],
              [f"best: {run0}trial {_fmt_value(trial0)} ({v[0]:.4g})"], loc="upper left",
              bbox_to_anchor=(0, -0.1), fontsize=9, frameon=False)
    return fig


def pareto_front(df: pd.DataFrame, *, x: str = "max-alloc-gb", y: str = "step-time") -> Figure:
    """`y` against `x` for successful trials with the Pareto front (both minimised) as a step line.

    The front is the set of trials no other trial beats on both metrics: the honest menu of
    trade-offs (e.g. a little more memory for a faster step). Metrics where higher is better are
    maximised instead.
    """
    xcol, ycol = _metric_column(x), _metric_column(y)
    xlabel, ylabel = metric_label(xcol), metric_label(ycol)
    xlow, ylow = lower_is_better(xcol), lower_is_better(ycol)
    fig = _Figure(figsize=_FIGSIZE, layout="constrained")
    ax = fig.add_subplot()
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(f"{ylabel} vs {xlabel}: Pareto front")
    ax.grid(True, alpha=0.3)
    missing = [c for c in (xcol, ycol) if c not in df.columns]
    if df.empty:
        _note(ax, "no trials yet", blank=True)
        return fig
    if missing:
        _note(ax, "no " + " / ".join(f"'{c}'" for c in missing) + " column in the trial table", blank=True)
        return fig
    status = _status(df)
    xv, yv = _numeric(df, xcol), _numeric(df, ycol)
    ok = status.isin(SUCCESS) & np.isfinite(xv) & np.isfinite(yv)
    if not ok.any():
        _note(ax, f"no successful trial with both {xlabel} and {ylabel} yet", blank=True)
        return fig

    sub = df[ok]
    px, py = xv[ok].to_numpy(), yv[ok].to_numpy()
    group_col = _group_column(df, None)
    if group_col is None:
        ax.scatter(px, py, s=22, color="#9aa7b5", alpha=0.8, lw=0, label=f"trial ({len(sub)})", zorder=2)
    else:
        for i, (key, g) in enumerate(sub.groupby(group_col, sort=True)):
            m = sub.index.isin(g.index)
            ax.scatter(px[m], py[m], s=22, color=f"C{i % 10}", alpha=0.6, lw=0,
                       label=_group_label(df, group_col, key), zorder=2)

    front = _pareto_indices(px if xlow else -px, py if ylow else -py)
    fx, fy = px[front], py[front]
    ax.step(fx, fy, where="post", color="#d62728", lw=2, zorder=3, label=f"Pareto front ({len(front)})")
    ax.scatter(fx, fy, s=60, facecolors="none", edgecolors="#d62728", linewidths=1.6, zorder=4)
    trials = sub["trial"].to_numpy() if "trial" in sub.columns else sub.index.to_numpy()
    runs = sub[group_col].astype(str).to_numpy() if group_col is not None else None
    for k in front[:12]:
        name = f"#{_fmt_value(trials[k])}" if runs is None else f"{runs[k]} #{_fmt_value(trials[k])}"
        ax.annotate(name, (px[k], py[k]), xytext=(5, 5), textcoords="offset points",
                    fontsize=8, color="#8b1a1a")
    better = f"better: {'left' if xlow else 'right'} and {'down' if ylow else 'up'}"
    ax.text(0.99, 0.01, better, transform=ax.transAxes, ha="right", va="bottom", fontsize=9, color="#555555")
    n_failed = int(status.isin(FAILED).sum())
    if n_failed:
        ax.plot([], [], ls="", marker="x", color="#d62728", label=f"failed, not shown ({n_failed})")
    ax.legend(loc="best", fontsize=9)
    return fig


def env_effects(df: pd.DataFrame, *, metric: str = "step-time") -> Figure:
    """Distribution of `metric` per value of each env_param (domain randomisation draw).

    Box plots with the trials overlaid show how much of the spread comes from the environment
    rather than from the agent's choices; a sweep without env_params gets a figure that says so.
    """
    column = _metric_column(metric)
    label = metric_label(column)
    envs = _param_columns(df, "env.")
    if not envs:
        return _empty_facets("env_param value", label, f"Environment effects on {label}",
                             "no trials yet" if df.empty and not len(df.columns) else "no env_params in this sweep")

    fig, axes, ncols = _facet_grid(len(envs), 4.4, 3.8, min_width=7.0, title_space=0.8)
    fig.suptitle(f"Environment effects on {label}")
    status = _status(df)
    value = _numeric(df, column)
    ok = status.isin(SUCCESS) & np.isfinite(value)
    bad = status.isin(FAILED)
    drew_box = False
    for i, env in enumerate(envs):
        ax = axes[i // ncols][i % ncols]
        cats = _categories(df[env])
        ticks = []
        for c in cats:
            same = df[env].map(_fmt_value) == _fmt_value(c)
            n_ok, n_bad = int((same & ok).sum()), int((same & bad).sum())
            ticks.append(f"{_fmt_value(c)}\nn={n_ok}" + (f", {n_bad} failed" if n_bad else ""))
        ax.set_xticks(range(len(cats)), ticks)
        ax.set_xlim(-0.6, len(cats) - 0.4)
        ax.set_xlabel(f"{env.removeprefix('env.')} (env_param)")
        ax.set_ylabel(label)
        ax.grid(True, axis="y", alpha=0.3)
        if not ok.any():
            why = f"no '{column}' column" if column not in df.columns else f"no successful trial with a {label}"
            _note(ax, why)
            continue
        x = _positions(df.loc[ok, env], cats)
        y = value[ok].to_numpy()
        data, pos = [], []
        for p in range(len(cats)):
            if (x == p).any():
                data.append(y[x == p])
                pos.append(p)
        ax.boxplot(data, positions=pos, widths=0.5, showfliers=False, patch_artist=True, manage_ticks=False,
                   boxprops={"facecolor": "#dbe7f3", "edgecolor": "#35608a"},
                   medianprops={"color": "black", "lw": 2}, whiskerprops={"color": "#35608a"},
                   capprops={"color": "#35608a"})
        ax.scatter(x + _jitter(x.size, 0.16, 500 + i), y, s=12, alpha=0.55, color=_OK_COLOR, lw=0, zorder=3)
        drew_box = True
    if drew_box:
        fig.legend(
            [Line2D([], [], marker="s", ls="", markerfacecolor="#dbe7f3", markeredgecolor="#35608a",
                    markersize=10),
             Line2D([], [], color="black", lw=2),
             Line2D([], [], marker="o", ls="", color=_OK_COLOR, alpha=0.6, markersize=5)],
            ["interquartile range (whiskers 1.5 IQR)", "median", "successful trial"],
            loc="outside lower center", ncols=3, fontsize=9, frameon=False)
    return fig
