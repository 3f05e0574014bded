"""The report's interactive figures (`dse report --interactive`): plotly, offline and self-contained.

A static PNG cannot say which configuration a point is; here hovering a trial shows its parameters and
metrics with units, and the parallel coordinates can be brushed to see which values the fast trials share.
plotly.js is embedded once in the HTML (no `<script src>`, no network when the file is opened), and each
figure's spec is a JSON block that a one-line script hands to `Plotly.newPlot`, so tests read it as data.
plotly is an optional dependency (the extra `report`): it is imported only when asked for.
"""

from __future__ import annotations

import html
import importlib
import json
from typing import Any

import numpy as np
import pandas as pd

from dse.analysis._figures import (
    FAILED,
    INFEASIBLE,
    SUCCESS,
    _categories,
    _fmt_value,
    _is_missing,
    _metric_column,
    _numeric,
    _param_columns,
    _status,
    lower_is_better,
    metric_label,
)
from dse.errors import InputError
from dse.metrics import units
from dse.trial import TrialStatus

__all__ = ["EXTRA", "interactive_section", "require_plotly"]

EXTRA = "pip install 'megatron-dse[report]'"
_ORDINAL_MAX = 12  # a numeric parameter with at most this many values gets evenly spaced ticks (1 2 4 8 16)
_STYLES: dict[str, dict[str, Any]] = {  # marker per status: success blue dots, failures red crosses
    "completed": {"color": "#1f77b4", "symbol": "circle"},
    "cached": {"color": "#6baed6", "symbol": "circle-open"},
    "failed": {"color": "#d62728", "symbol": "x"},
    "timeout": {"color": "#ff7f0e", "symbol": "x"},
    "preempted": {"color": "#9467bd", "symbol": "x"},
    "infeasible": {"color": "#7f7f7f", "symbol": "triangle-up-open"},
}
_CONFIG = {"displaylogo": False, "responsive": True}


def require_plotly() -> Any:
    """plotly.graph_objects, or the one-line refusal naming the extra (exit 2) before anything is written."""
    try:
        return importlib.import_module("plotly.graph_objects")
    except ImportError:
        raise InputError(f"needs plotly, which is not installed: {EXTRA}", field="--interactive") from None


def interactive_section(df: pd.DataFrame, metric: str) -> str:
    """The section: plotly.js once, then the trials in order (hover: every parameter and metric) and the
    parallel coordinates of the swept parameters, coloured by `metric` (step time, else the first metric)."""
    go = require_plotly()
    plotlyjs = importlib.import_module("plotly.offline").get_plotlyjs()
    parts = ['<h2 id="interactive">Interactive figures</h2>',
             "<p>Hover a point for the trial's parameters and metrics; drag along an axis of the parallel "
             "coordinates to keep only the trials in that range.</p>",
             f'<script type="text/javascript">{plotlyjs}</script>']
    label = metric_label(metric)
    trials = trial_figure(go, df, metric)
    parts.append(_embed("ifig-trials", f"{label} of each trial in trial order, by status, with the best so far",
                        trials))
    parcoords = parallel_figure(go, df, metric)
    if isinstance(parcoords, str):
        parts.append(f'<p class="unknown" id="ifig-parallel-why">{html.escape(parcoords)}</p>')
    else:
        parts.append(_embed("ifig-parallel", f"Parallel coordinates of the swept parameters, coloured by {label} "
                            "(successful trials)", parcoords))
    return "\n".join(parts)


def _embed(ident: str, caption: str, fig: Any) -> str:
    """A div, the figure's JSON (every `<`, `>`, `&` escaped: hover text carries user strings) and the call."""
    spec = fig.to_json().replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    call = (f'(function(){{var s=JSON.parse(document.getElementById("{ident}-spec").textContent);'
            f'Plotly.newPlot("{ident}",s.data,s.layout,{json.dumps(_CONFIG)});}})();')
    return (f'<figure class="interactive" id="{ident}-figure"><div id="{ident}" class="plotly-figure"></div>'
            f'<script type="application/json" id="{ident}-spec">{spec}</script><script>{call}</script>'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


# ------------------------------------------------------------------------------------------------ hover text
def _hover(row: pd.Series, columns: list[str]) -> str:
    """Trial, status, then every parameter, env value and metric, rounded with units (escaped: plotly reads
    a little HTML in hover text)."""
    e = html.escape
    status = str(row.get("status", ""))
    head = f"<b>trial {e(str(row.get('trial', '')))}</b> ({e(status)})"
    if "run" in row.index and not _is_missing(row["run"]):
        head += f" {e(str(row['run']))}"
    lines = [head]
    for c in columns:
        value = row[c]
        if c.startswith("metric."):
            name = c.removeprefix("metric.")
            number = pd.to_numeric(pd.Series([value]), errors="coerce").iloc[0]
            if np.isfinite(number):
                lines.append(f"{e(name)}: {e(units.format_metric(name, float(number)))}")
        elif c == "mfu":
            if not _is_missing(value):
                lines.append(f"MFU: {units.percent(value)}")
        else:
            suffix = " (env)" if c.startswith("env.") else ""
            lines.append(f"{e(c.split('.', 1)[1])}{suffix}: {e(_fmt_value(value))}")
    error = row.get("error")
    if status in FAILED | INFEASIBLE and not _is_missing(error) and str(error):
        lines.append(f"why: {e(str(error).split(':', 1)[0].strip()[:60])}")
    return "<br>".join(lines)


def _hover_columns(df: pd.DataFrame) -> list[str]:
    mfu = ["mfu"] if "mfu" in df.columns and df["mfu"].notna().any() else []  # with_efficiency's, when known
    return _param_columns(df) + _param_columns(df, "env.") + _param_columns(df, "metric.") + mfu


# ------------------------------------------------------------------------------------------- trials in order
def _trial_axis(df: pd.DataFrame) -> np.ndarray:
    """The trial numbers where they name each row once (one run), else 1..n in the table's order."""
    if "trial" in df.columns:
        trial = pd.to_numeric(df["trial"], errors="coerce")
        if trial.notna().all() and trial.is_unique:
            return trial.to_numpy(dtype=float)
    return np.arange(1, len(df) + 1, dtype=float)


def best_so_far(df: pd.DataFrame, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(x, best value of `metric` among the successful trials up to x), in trial order; NaN before the first."""
    x = _trial_axis(df)
    values = _numeric(df, _metric_column(metric)).to_numpy(dtype=float)
    ok = _status(df).isin(SUCCESS).to_numpy() & np.isfinite(values)
    order = np.argsort(x, kind="stable")
    running = np.fmin if lower_is_better(metric) else np.fmax  # they skip NaN: the failed trials hold none
    return x[order], running.accumulate(np.where(ok, values, np.nan)[order])


def trial_figure(go: Any, df: pd.DataFrame, metric: str) -> Any:
    """One point per trial (x: trial, y: `metric`), a trace per status; trials without the metric (failed,
    infeasible, still running) sit on a band above (or below, for a throughput) the measured ones."""
    label = metric_label(metric)
    x = _trial_axis(df)
    values = _numeric(df, _metric_column(metric)).to_numpy(dtype=float)
    status = _status(df)
    finite = values[np.isfinite(values)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    span = (hi - lo) or (abs(hi) or 1.0)
    band = hi + 0.15 * span if lower_is_better(metric) else lo - 0.15 * span
    columns = _hover_columns(df)
    fig = go.Figure()
    names = [s.value for s in TrialStatus]
    for name in names + sorted(set(status) - set(names)):
        rows = np.flatnonzero((status == name).to_numpy())
        if not rows.size:
            continue
        y = [float(values[k]) if np.isfinite(values[k]) else band for k in rows]
        style = _STYLES.get(name, {"color": "#bcbd22", "symbol": "diamond-open"})
        fig.add_trace(go.Scatter(
            x=x[rows].tolist(), y=y, mode="markers", name=f"{name} ({rows.size})",
            marker={"size": 9, "line": {"width": 1.5, "color": style["color"]}, **style},
            customdata=x[rows].tolist(), text=[_hover(df.iloc[k], columns) for k in rows],
            hovertemplate="%{text}<extra></extra>"))
    bx, by = best_so_far(df, metric)
    if np.isfinite(by).any():
        fig.add_trace(go.Scatter(x=bx.tolist(), y=[None if np.isnan(v) else float(v) for v in by],
                                 mode="lines", line={"shape": "hv", "color": "#2ca02c", "width": 2},
                                 name=f"best {label} so far", hoverinfo="skip"))
    if (~np.isfinite(values)).any():
        fig.add_hline(y=band, line={"color": "#fbe3e3", "width": 14}, layer="below",
                      annotation_text=f"no {label}", annotation_position="top left")
    fig.update_layout(template="plotly_white", height=480, margin={"t": 30, "l": 70, "r": 20, "b": 50},
                      xaxis_title="trial", yaxis_title=label, legend={"orientation": "h", "y": -0.15},
                      hoverlabel={"align": "left"})
    return fig


# ------------------------------------------------------------------------------------- parallel coordinates
def _dimension(values: pd.Series, name: str) -> dict[str, Any]:
    """One axis: a parameter's values evenly spaced in their sorted order (strings, bools, 1 2 4 8 16 alike),
    or its numbers as they are when it takes many (a float range)."""
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().all() and values.map(lambda v: not isinstance(v, bool | np.bool_)).all() \
            and numeric.nunique() > _ORDINAL_MAX:
        return {"label": name, "values": numeric.astype(float).tolist()}
    cats = _categories(values)
    index = {_fmt_value(c): i for i, c in enumerate(cats)}
    return {"label": name, "values": [index[_fmt_value(v)] for v in values],
            "tickvals": list(range(len(cats))), "ticktext": [_fmt_value(c) for c in cats],
            "range": [-0.3, len(cats) - 0.7] if len(cats) > 1 else [-1, 1]}


def parallel_figure(go: Any, df: pd.DataFrame, metric: str) -> Any:
    """The successful trials as lines through one axis per swept parameter, then `metric`, coloured by it
    (the best bright); a string saying why where there is nothing to draw."""
    params = _param_columns(df)
    if not params:
        return "no parallel coordinates: the sweep has no parameters"
    values = _numeric(df, _metric_column(metric))
    ok = (_status(df).isin(SUCCESS) & np.isfinite(values)).to_numpy()
    label = metric_label(metric)
    if not ok.any():
        return f"no parallel coordinates: no successful trial measured {label}"
    rows = df[ok]
    dims = [_dimension(rows[c], c.removeprefix("param.")) for c in params]
    dims.append({"label": label, "values": values[ok].astype(float).tolist()})
    line = {"color": values[ok].astype(float).tolist(), "colorscale": "Viridis",
            "reversescale": lower_is_better(metric), "showscale": True, "colorbar": {"title": {"text": label}}}
    fig = go.Figure(go.Parcoords(line=line, dimensions=dims))
    fig.update_layout(template="plotly_white", height=520, margin={"t": 60, "l": 60, "r": 40, "b": 30})
    return fig
