"""One self-contained HTML report of a sweep: counts, best configuration, top trials, every figure.

The file must open anywhere (a laptop after `scp`, an e-mail attachment, a CI artifact), so it
carries its own CSS and embeds the figures as base64 PNGs: no network, no sibling files. Every
piece of text from the trial table is escaped, since error messages and string parameters come
from job logs and user TOMLs.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from dse.analysis import plots
from dse.analysis._efficiency import best_index, failed_with, with_efficiency
from dse.analysis._figures import _is_missing
from dse.analysis._importance import Importance, table_importance
from dse.analysis._interactive import interactive_section
from dse.analysis._report_engineer import CSS as _ENGINEER_CSS
from dse.analysis._report_engineer import efficiency_section, figure_html, importance_section, memory_section
from dse.metrics import units
from dse.tomlwrite import write_text_atomic
from dse.trial import FAILURE_STATUSES, FailureReason, TrialStatus

__all__ = ["STATUSES", "build_html", "render_report"]

STATUSES: tuple[str, ...] = tuple(s.value for s in TrialStatus)
_FAILED = (*(s.value for s in FAILURE_STATUSES), TrialStatus.INFEASIBLE.value)  # the report lists their errors
_MAX_ERRORS = 50
_ERROR_CHARS = 400

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2rem auto;
       max-width: 1200px; padding: 0 1rem; color: #222; line-height: 1.4; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; } h2 { font-size: 1.2rem; margin-top: 2rem;
  border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; }
.sub { color: #666; margin-top: 0; }
pre { background: #f6f8fa; border: 1px solid #e1e4e8; border-radius: 4px; padding: 0.8rem;
      overflow-x: auto; font-size: 0.85rem; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #f0f3f6; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #fafbfc; }
.scroll { overflow-x: auto; }
td.err { font-family: monospace; white-space: pre-wrap; max-width: 60rem; }
figure { margin: 1.5rem 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9rem; }
.zero { color: #aaa; }
""" + _ENGINEER_CSS


def render_report(
    df: pd.DataFrame,
    *,
    title: str,
    best_toml: str | None,
    space_summary: str,
    top: int = 20,
    out_path: Path,
    headline: str | None = None,
    settings: str | None = None,
    cmd_args: Mapping[str, Any] | None = None,
    importance: Importance | None = None,
    interactive: bool = False,
) -> Path:
    """Write the HTML report of the trial table `df` to `out_path` (atomically) and return the path.

    `best_toml` and `space_summary` are shown verbatim (escaped) in <pre> blocks; callers pass
    text that is already redacted. `top` bounds the table of best successful trials. `cmd_args` (the
    sweep's) name the GPU and the compute dtype for MFU and the memory capacity; `importance` is the
    run's (`dse.analysis._importance.run_importance`), else it is computed from the table. `interactive` adds
    the plotly figures (`dse.analysis._interactive`; without plotly: InputError before anything is written).
    """
    out_path = Path(out_path)
    document = build_html(df, title=title, best_toml=best_toml, space_summary=space_summary, top=top,
                          headline=headline, settings=settings, cmd_args=cmd_args, importance=importance,
                          interactive=interactive)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    return write_text_atomic(out_path, document)  # the umask's mode, like every other file of the run


def build_html(df: pd.DataFrame, *, title: str, best_toml: str | None, space_summary: str, top: int = 20,
               headline: str | None = None, settings: str | None = None,
               cmd_args: Mapping[str, Any] | None = None, importance: Importance | None = None,
               interactive: bool = False) -> str:
    """The report as one HTML string (no I/O), so that it can be served or tested without a file.

    `headline` (the speed-up over the baseline, `dse best`'s first line) leads; `settings` are the run's own.
    Then the engineer's sections: TFLOP/s/GPU and MFU per parameter value, memory against the GPU's capacity
    (both from the sweep's `cmd_args`: gpu_type, compute_dtype) and parameter importance (fANOVA)."""
    e = html.escape
    eff = with_efficiency(df, cmd_args)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        f'<p class="sub">{e(_subtitle(df))}</p>',
        f'<p class="headline" id="headline"><strong>{e(headline)}</strong></p>' if headline else "",
        f'<p class="sub" id="settings">run settings: {e(settings)}</p>' if settings else "",
        '<h2 id="status">Trials by status</h2>',
        _status_table(df),
        '<h2 id="best">Best configuration</h2>',
        f"<pre>{e(best_toml)}</pre>" if best_toml else "<p>No successful trial yet: no best configuration.</p>",
        '<h2 id="space">Search space</h2>',
        f"<pre>{e(space_summary)}</pre>" if space_summary else "<p>No space summary given.</p>",
        '<h2 id="top">Top trials by reward</h2>',
        _top_table(eff, top),
        efficiency_section(eff, cmd_args),
        memory_section(eff, cmd_args),
        importance_section(importance if importance is not None else table_importance(df)),
        '<h2 id="failures">Failed and infeasible trials</h2>',
        _failure_table(df),
        '<h2 id="figures">Figures</h2>',
        *_figures(df),
        *([interactive_section(eff, _primary_metric(df))] if interactive else []),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


# ------------------------------------------------------------------------------------------- sections
def _statuses(df: pd.DataFrame) -> pd.Series:
    if "status" not in df.columns:
        return pd.Series([], dtype=object)
    return df["status"].astype(str).str.lower()


def _success_mask(df: pd.DataFrame) -> pd.Series:
    return _statuses(df).isin(plots.SUCCESS).reindex(df.index, fill_value=False)


def _subtitle(df: pd.DataFrame) -> str:
    n = len(df)
    ok = int(_success_mask(df).sum())
    text = f"{n} trial{'s' if n != 1 else ''}, {ok} successful"
    if "run" in df.columns and df["run"].nunique() > 1:
        text += f", {df['run'].nunique()} runs"
    best = best_index(df)  # the best trial as every section of the report ranks it
    if best is not None:
        step = pd.to_numeric(pd.Series([df.loc[best].get("metric.step-time")]), errors="coerce").iloc[0]
        trial = df.loc[best].get("trial")
        if np.isfinite(step):  # an engineer reads a step time; the reward only where there is none
            text += f"; best step time {units.format_metric('step-time', float(step))} (trial {trial})"
        else:
            text += f"; best reward {_fmt(float(df.loc[best, 'reward']))} (trial {trial})"
    return text


def _status_table(df: pd.DataFrame) -> str:
    counts = _statuses(df).value_counts()
    names = list(STATUSES) + sorted(s for s in counts.index if s not in STATUSES)
    failed = _statuses(df).isin([s.value for s in FAILURE_STATUSES])
    rows = []
    for name in names:
        n = int(counts.get(name, 0))
        cls = ' class="num zero"' if n == 0 else ' class="num"'
        rows.append(f'<tr><th scope="row">{html.escape(name)}</th><td{cls} data-status="{html.escape(name)}">'
                    f"{n}</td></tr>")
        if name != TrialStatus.FAILED:
            continue
        for reason, label in ((FailureReason.OUT_OF_MEMORY, "of which out of memory"),
                              (FailureReason.REJECTED_CONFIG, "of which rejected by the framework")):
            k = int((failed & failed_with(df, reason)).sum())  # the sweep's findings, not faults
            rows.append(f'<tr><th scope="row">&nbsp;&nbsp;{label}</th><td class="num{" zero" if k == 0 else ""}" '
                        f'data-reason="{reason.value}">{k}</td></tr>')
    rows.append(f'<tr><th scope="row">total</th><td class="num" data-status="total">{len(df)}</td></tr>')
    if "gpu_hours" in df.columns:
        spent = float(pd.to_numeric(df["gpu_hours"], errors="coerce").fillna(0.0).sum())
        rows.append(f'<tr><th scope="row">GPU-hours spent</th><td class="num" data-total="gpu_hours">'
                    f"{units.gpu_hours(spent)}</td></tr>")
    return '<table class="status"><tbody>' + "".join(rows) + "</tbody></table>"


def _top_columns(df: pd.DataFrame) -> list[str]:
    lead = [c for c in ("run", "agent", "trial", "status", "reward") if c in df.columns]
    params = [c for c in df.columns if isinstance(c, str) and c.startswith("param.")]
    envs = [c for c in df.columns if isinstance(c, str) and c.startswith("env.")]
    metrics = [c for c in df.columns if isinstance(c, str) and c.startswith("metric.")]
    mfu = ["mfu"] if "mfu" in df.columns and df["mfu"].notna().any() else []  # with_efficiency's, when known
    tail = [c for c in ("cache_hit", "job_id", "duration_s") if c in df.columns]
    return lead + params + envs + metrics + mfu + tail


def _header(column: str) -> str:
    if column.startswith("metric."):
        return plots.metric_label(column)
    if column.startswith("env."):
        return f"{column.removeprefix('env.')} (env)"
    if column == "duration_s":
        return "duration (s)"
    if column == "mfu":
        return "MFU"
    return column.removeprefix("param.")


def _top_table(df: pd.DataFrame, top: int) -> str:
    ok = _success_mask(df)
    if not ok.any() or top <= 0:
        return "<p>No successful trial yet.</p>"
    best = df[ok].copy()
    best["_r"] = pd.to_numeric(best["reward"], errors="coerce") if "reward" in best.columns else np.nan
    sort_by = ["_r"] + (["trial"] if "trial" in best.columns else [])
    best = best.sort_values(sort_by, ascending=[False] + [True] * (len(sort_by) - 1), na_position="last",
                            kind="stable").head(int(top))
    columns = _top_columns(df)
    head = "<tr><th>rank</th>" + "".join(f"<th>{html.escape(_header(c))}</th>" for c in columns) + "</tr>"
    body = []
    for rank, (_, row) in enumerate(best.iterrows(), start=1):
        cells = "".join(f'<td class="num mfu">{units.percent(row[c])}</td>' if c == "mfu" else _cell(row[c])
                        for c in columns)
        body.append(f'<tr class="trial"><td class="num">{rank}</td>{cells}</tr>')
    n_ok = int(ok.sum())
    note = f"<p>{len(best)} of {n_ok} successful trials, highest reward first.</p>"
    return (note + '<div class="scroll"><table class="top"><thead>' + head + "</thead><tbody>"
            + "".join(body) + "</tbody></table></div>")


def _failure_table(df: pd.DataFrame) -> str:
    """Failed and infeasible trials grouped by what went wrong (ten out-of-memory trials are one row, with
    their trial numbers and one example of the error), most frequent first."""
    bad = _statuses(df).isin(_FAILED).reindex(df.index, fill_value=False)
    if not bad.any():
        return "<p>None.</p>"
    rows = df[bad]
    if "trial" in rows.columns:
        rows = rows.sort_values("trial", kind="stable")
    errors = rows["error"] if "error" in rows.columns else pd.Series("", index=rows.index)
    kinds = errors.map(lambda v: "" if _is_missing(v) else str(v).split(":", 1)[0].strip()[:60])
    groups: dict[tuple[str, str], list[Any]] = {}
    for idx in rows.index:
        groups.setdefault((str(_statuses(df).loc[idx]), str(kinds.loc[idx]) or "-"), []).append(idx)
    head = "<tr><th>status</th><th>what</th><th>trials</th><th>which</th><th>example error</th></tr>"
    body = []
    for (status, kind), idxs in sorted(groups.items(), key=lambda kv: -len(kv[1]))[:_MAX_ERRORS]:
        which = [str(rows.loc[i, "trial"]) if "trial" in rows.columns else str(i) for i in idxs]
        shown = ", ".join(which[:15]) + (f" and {len(which) - 15} more" if len(which) > 15 else "")
        example = "" if _is_missing(errors.loc[idxs[0]]) else str(errors.loc[idxs[0]])
        if len(example) > _ERROR_CHARS:
            example = example[:_ERROR_CHARS] + " \u2026"
        body.append(f"<tr><td>{html.escape(status)}</td><td>{html.escape(kind)}</td>"
                    f'<td class="num">{len(idxs)}</td><td>{html.escape(shown)}</td>'
                    f'<td class="err">{html.escape(example)}</td></tr>')
    return ('<div class="scroll"><table class="failures"><thead>' + head + "</thead><tbody>"
            + "".join(body) + "</tbody></table></div>")


# -------------------------------------------------------------------------------------------- figures
def _primary_metric(df: pd.DataFrame) -> str:
    """Step time when the sweep measured it, else its first metric: the axis the figures explain."""
    metrics = [c.removeprefix("metric.") for c in df.columns if isinstance(c, str) and c.startswith("metric.")]
    if "step-time" in metrics or not metrics:
        return "step-time"
    return metrics[0]


def _figures(df: pd.DataFrame) -> list[str]:
    metric = _primary_metric(df)
    label = plots.metric_label(metric)
    specs: list[tuple[str, str, Callable[[], Figure]]] = [
        ("Convergence: best reward so far against trial number", "convergence",
         lambda: plots.convergence(df)),
        (f"Convergence: best {label} so far", "convergence-metric",
         lambda: plots.convergence(df, metric=metric)),
        (f"Cost: best {label} so far against the GPU-hours spent", "convergence-gpu-hours",
         lambda: plots.convergence(df, metric=metric, x="gpu_hours")),
        (f"Parameter effects: {label} against each search dimension", "parameter-effects",
         lambda: plots.parameter_effects(df, metric=metric)),
        (f"Parallel coordinates: the best trials by {label}", "parallel-coordinates",
         lambda: plots.parallel_coordinates(df, metric=metric)),
        ("Pareto front: step time against peak memory", "pareto-front", lambda: plots.pareto_front(df)),
    ]
    figures = [figure_html(caption, ident, draw) for caption, ident, draw in specs]
    if any(isinstance(c, str) and c.startswith("env.") for c in df.columns):
        figures.append(figure_html(f"Environment effects: {label} per env_param value", "env-effects",
                                   lambda: plots.env_effects(df, metric=metric)))
    else:  # an empty figure says less than one line
        figures.append('<p class="unknown" id="env-effects-why">No environment figure: this sweep draws no '
                       "env_params.</p>")
    return figures


# ---------------------------------------------------------------------------------------------- cells

def _fmt(value: Any) -> str:
    if _is_missing(value):
        return ""
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, pd.Timestamp):
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, float | np.floating):
        f = float(value)
        if math.isinf(f):
            return "-inf" if f < 0 else "inf"
        if f.is_integer() and abs(f) < 1e15:
            return str(int(f))
        return f"{f:.4g}"
    return str(value)


def _cell(value: Any) -> str:
    numeric = isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool | np.bool_)
    cls = ' class="num"' if numeric else ""
    return f"<td{cls}>{html.escape(_fmt(value))}</td>"
