"""The report's sections for performance engineers: TFLOP/s/GPU and MFU per parameter value, memory against the
GPU's capacity, and parameter importance; and the embedding of a figure as a base64 PNG, which every section
of the report shares.

Each section is HTML (escaped) from the trial table and the sweep's cmd_args; where the sweep did not measure
what a section needs, or the GPU is unknown, the section is one line saying so.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from dse.analysis._efficiency import (
    FLOPS,
    MEMORY,
    best_index,
    efficiency_note,
    headroom,
    is_oom,
    per_value,
)
from dse.analysis._efficiency_plots import efficiency_by_value, memory_vs_capacity
from dse.analysis._figures import _fmt_value
from dse.analysis._importance import Importance
from dse.metrics import units

__all__ = ["efficiency_section", "figure_html", "importance_section", "memory_section", "png_base64"]

CSS = """
p.unknown { color: #555; font-style: italic; }
tr.best-value td, tr.best-value th { font-weight: bold; }
div.bar { background: #1f77b4; height: 0.8rem; min-width: 1px; }
td.bar { width: 16rem; }
"""


def png_base64(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode("ascii")


def figure_html(caption: str, ident: str, draw: Callable[[], Figure]) -> str:
    """A <figure> with the drawing embedded, or one line saying why it could not be drawn."""
    try:
        data = png_base64(draw())
    except Exception as exc:  # a figure bug must not cost the user the rest of the report
        return (f'<p class="error">Figure "{html.escape(caption)}" could not be drawn: '
                f"{html.escape(type(exc).__name__)}: {html.escape(str(exc))}</p>")
    return (f'<figure id="{ident}"><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _line(ident: str, text: str) -> str:
    return f'<p class="unknown" id="{ident}">{html.escape(text)}</p>'


def _trial_name(eff: pd.DataFrame, idx: Any) -> str:
    return str(eff.loc[idx, "trial"]) if "trial" in eff.columns else str(idx)


# -------------------------------------------------------------------------------------------- efficiency
def efficiency_section(eff: pd.DataFrame, cmd_args: Mapping[str, Any] | None) -> str:
    """TFLOP/s/GPU and MFU per parameter value: the best trial's MFU, a figure and a table per value.
    `eff` is the table with `dse.analysis._efficiency.with_efficiency`'s columns."""
    parts = ['<h2 id="efficiency">TFLOP/s/GPU and MFU per parameter value</h2>']
    note = efficiency_note(eff)
    if FLOPS not in eff.columns:
        return parts[0] + _line("efficiency-unknown", note or "")
    if note:
        parts.append(_line("mfu-unknown", note))
    best = best_index(eff)
    if best is not None and pd.notna(eff.loc[best, "mfu"]):
        row = eff.loc[best]
        parts.append(f'<p id="best-mfu">best trial {html.escape(_trial_name(eff, best))}: '
                     f"{units.tflops(row[FLOPS])}, MFU {units.percent(row['mfu'])} of the "
                     f"{html.escape(str(row['gpu_type']))} {html.escape(str(row['compute_dtype']))} dense peak "
                     f"({row['peak_tflops']:.0f} TFLOP/s); MFU = TFLOP/s/GPU / the GPU's dense peak for the "
                     "run's compute dtype</p>")
    parts.append(figure_html("TFLOP/s/GPU (and MFU) per parameter value, best trial starred", "efficiency-by-value",
                             lambda: efficiency_by_value(eff, cmd_args=cmd_args)))
    parts.append(_per_value_table(per_value(eff)))
    return "\n".join(parts)


def _per_value_table(table: pd.DataFrame) -> str:
    if table.empty:
        return "<p>No successful trial measured TFLOP/s/GPU yet.</p>"
    head = ("<tr><th>parameter</th><th>value</th><th>trials</th><th>median TFLOP/s/GPU</th>"
            "<th>best TFLOP/s/GPU</th><th>best MFU</th><th></th></tr>")
    body = []
    for _, r in table.iterrows():
        param, value = html.escape(str(r["param"])), html.escape(_fmt_value(r["value"]))
        cls = "per-value best-value" if r["best_trial_value"] else "per-value"
        body.append(f'<tr class="{cls}" data-param="{param}" data-value="{value}"><th>{param}</th>'
                    f'<td>{value}</td><td class="num">{int(r["trials"])}</td>'
                    f'<td class="num">{units.tflops(r["median_tflops"], unit=False)}</td>'
                    f'<td class="num">{units.tflops(r["best_tflops"], unit=False)}</td>'
                    f'<td class="num mfu">{units.percent(r["best_mfu"])}</td>'
                    f"<td>{'best trial' if r['best_trial_value'] else ''}</td></tr>")
    return ('<div class="scroll"><table class="per-value"><thead>' + head + "</thead><tbody>" + "".join(body)
            + "</tbody></table></div>")


# ------------------------------------------------------------------------------------------------ memory
def memory_section(eff: pd.DataFrame, cmd_args: Mapping[str, Any] | None) -> str:
    """Peak memory against the GPU's capacity: the best trial's headroom in one line, the OOM trials, a figure."""
    parts = ['<h2 id="memory">Memory against capacity</h2>']
    if MEMORY not in eff.columns:
        return parts[0] + _line("memory-unknown", "no memory figures: the sweep did not measure max-alloc-gb "
                                                  "(add it to agent_metrics)")
    room = headroom(eff)
    if room is not None:
        parts.append(f'<p id="headroom"><strong>{html.escape(room.text())}</strong></p>')
    elif best_index(eff) is None:
        parts.append(_line("headroom-unknown", "no headroom: no successful trial yet"))
    elif eff["hbm_gb"].isna().all():
        parts.append(_line("headroom-unknown", "no headroom: the GPU's capacity is unknown (no known gpu_type)"))
    else:
        parts.append(_line("headroom-unknown", "no headroom: the best trial did not report its peak memory"))
    oom = is_oom(eff)
    if oom.any():
        which = [_trial_name(eff, i) for i in eff.index[oom]]
        shown = ", ".join(which[:20]) + (f" and {len(which) - 20} more" if len(which) > 20 else "")
        parts.append(f'<p id="oom">{len(which)} trial{"s" if len(which) != 1 else ""} ran out of memory '
                     f"(trials {html.escape(shown)}): the red crosses on the capacity line</p>")
    parts.append(figure_html("Peak memory of each trial against the GPU's capacity", "memory-vs-capacity",
                             lambda: memory_vs_capacity(eff, cmd_args=cmd_args)))
    return "\n".join(parts)


# -------------------------------------------------------------------------------------------- importance
def importance_section(importance: Importance) -> str:
    """fANOVA importance as a table of shares with bars, or the one line saying why there is none."""
    parts = ['<h2 id="importance">Parameter importance</h2>']
    if importance.why or not importance.values:
        return parts[0] + _line("importance-why", importance.why or "no parameter importance")
    parts.append(f'<p id="importance-source">fANOVA (Optuna) of the {html.escape(importance.objective)} on '
                 f"{html.escape(importance.source)}, {importance.trials} trials: each parameter's share of "
                 "the objective's variance (the shares sum to 100 %).</p>")
    rows = []
    for name, share in importance.values.items():
        pct = units.percent(share)
        rows.append(f'<tr class="importance" data-param="{html.escape(name)}" data-share="{share:.4f}">'
                    f'<th scope="row">{html.escape(name)}</th><td class="num">{pct}</td>'
                    f'<td class="bar"><div class="bar" style="width: {100.0 * share:.1f}%"></div></td></tr>')
    parts.append('<table class="importance"><thead><tr><th>parameter</th><th>importance</th><th></th></tr>'
                 "</thead><tbody>" + "".join(rows) + "</tbody></table>")
    return "\n".join(parts)
