"""The performance engineer's answer: the best trial against the baseline (the preset), and what it cost.

"Trial 15 is 2.1x faster than the preset (trial 1): pp 2 -> 4, mb 1 -> 2; found in 24 trials and 139
GPU-hours (simulated)." `best_summary` is the same as data (`dse best --json`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from dse.analysis._table import (
    _open_store,
    _schema,
    _simulated,
    best_record,
    best_toml,
    frame,
    status_counts,
    total_gpu_hours,
)
from dse.errors import InputError
from dse.metrics import format_metric, format_metrics, is_step_time, units
from dse.storage import TrialStore
from dse.trial import TrialRecord


def _step_metric(metrics: list[str]) -> str | None:
    return next((m for m in metrics if is_step_time(m)), None)


def _trial(rec: TrialRecord) -> dict[str, Any]:
    return {"trial": rec.trial, "status": rec.status.value, "params": rec.action, "env": rec.env,
            "metrics": rec.metrics, "reward": rec.reward, "gpu_hours": rec.gpu_hours, "config_hash": rec.config_hash}


def _summary(store: TrialStore, recs: list[TrialRecord]) -> dict[str, Any] | None:
    """`best_summary` of a store already read (None: no successful trial)."""
    best = best_record(recs)
    if best is None:
        return None
    meta = store.get_meta("baseline") or {}
    base_action = meta.get("action")
    base = next((r for r in recs if base_action is not None and r.action == base_action), None)
    step = _step_metric(list(store.get_meta("metrics", [])))
    speedup = None
    if base is not None and step and base.status.is_success and step in base.metrics and step in best.metrics:
        b, w = float(base.metrics[step]), float(best.metrics[step])
        speedup = b / w if w > 0 and math.isfinite(b) else None
    return {
        **_trial(best),
        "baseline": None if base is None else {**_trial(base), "source": meta.get("why")},
        "baseline_note": None if base is not None else meta.get("why"),
        "speedup": speedup,
        "step_metric": step,
        "trials": len(recs),
        "gpu_hours": total_gpu_hours(recs),
        "gpu_hours_simulated": _simulated(store),
    }


def best_summary(run_dir: Path) -> dict[str, Any]:
    """The best trial, the baseline and the speed-up (baseline step time / best step time), and the sweep's
    total GPU-hours; `baseline` is null when the sweep has none, `speedup` when either lacks a step time."""
    store = _open_store(run_dir)
    summary = _summary(store, store.all())
    if summary is None:
        raise InputError("no successful trial in this run", file=str(run_dir))
    return summary


def _diff(best: dict[str, Any], base: dict[str, Any]) -> str:
    changed = [f"{k.rsplit('.', 1)[-1]} {base[k]} -> {v}" for k, v in best.items() if base.get(k) != v]
    return ", ".join(changed) or "the same configuration"


def best_text(run_dir: Path) -> str:
    """One sentence with the speed-up and the diff of the winner against the preset, then the details."""
    return _text(best_summary(run_dir))


def _text(s: dict[str, Any]) -> str:
    cost = f"found in {s['trials']} trials and {units.gpu_hours(s['gpu_hours'])}" + (
        " (simulated)" if s["gpu_hours_simulated"] else "")
    base = s["baseline"]
    if base is None:
        head = f"trial {s['trial']} is the best; {cost} (no baseline: {s['baseline_note'] or 'none measured'})"
    elif s["speedup"] is None:
        head = (f"trial {s['trial']} is the best; the baseline (trial {base['trial']}) is {base['status']}; "
                f"changes: {_diff(s['params'], base['params'])}; {cost}")
    else:
        head = (f"trial {s['trial']} is {s['speedup']:.2f}x faster than the baseline (trial {base['trial']}, "
                f"{base['source']}): {_diff(s['params'], base['params'])}; {cost}")
    step = s["step_metric"]
    lines = [head, f"  params: {s['params']}", f"  metrics: {format_metrics(s['metrics'])}"]
    if base is not None and step in base["metrics"] and step in s["metrics"]:
        lines.append(f"  {step}: {format_metric(step, base['metrics'][step])} (baseline) -> "
                     f"{format_metric(step, s['metrics'][step])}")
    lines += [f"  env: {s['env']}", f"  config_hash: {s['config_hash']}"]
    return "\n".join(lines)


def _settings(store: TrialStore, recs: list[TrialRecord]) -> str:
    """The run's real settings (what `dse run` was given, not only what the sweep file says)."""
    options = store.get_meta("options", {}) or {}
    starts = [r.started_at for r in recs if r.started_at]
    ends = [r.finished_at for r in recs if r.finished_at]
    wall = f"{(max(ends) - min(starts)) / 60:.1f} min of trials" if starts and ends else "no trial finished"
    return (f"agent {store.get_meta('agent')}, seed {store.get_meta('seed')}, steps {store.get_meta('steps')}, "
            f"parallel {options.get('parallel')}, executor {options.get('executor') or 'the system default'}, "
            f"early stopping {'on' if options.get('early_stopping') else 'off'}; {wall}")


def write_report(run_dir: Path, output: Path | None = None, *, interactive: bool = False) -> Path:
    """The HTML report of a run directory, led by the speed-up over the baseline and the run's settings;
    `interactive` adds plotly figures (refused with one line, before anything is read, without plotly)."""
    from dse.analysis._importance import run_importance  # here: the report's own imports (optuna, sklearn)
    from dse.analysis._interactive import require_plotly
    from dse.analysis._report import (
        render_report,  # here: the figures load matplotlib, the rest never needs it
    )

    if interactive:
        require_plotly()
    store = _open_store(run_dir)
    recs = store.all()
    df = frame(recs, *_schema(store))
    sweep_data = store.get_meta("sweep_data") or {}
    best = best_record(recs)
    best_t = best_toml(sweep_data, best) if best else None
    summary = _summary(store, recs)
    headline = _text(summary).splitlines()[0] if summary else None
    out = output or Path(run_dir) / "report.html"
    return render_report(df, title=f"dse sweep {Path(run_dir).name}", best_toml=best_t,
                         space_summary=str(store.get_meta("space_summary", "")), out_path=out,
                         headline=headline, settings=_settings(store, recs), cmd_args=sweep_data.get("cmd_args"),
                         importance=run_importance(Path(run_dir), sweep_data.get("name"), df),
                         interactive=interactive)


def status_summary(run_dir: Path) -> dict[str, Any]:
    """`dse status --json`: the trials by kind, the jobs in flight, the GPU-hours and the best so far."""
    store = _open_store(run_dir)
    return _status(store, store.all(), run_dir)


def _status(store: TrialStore, recs: list[TrialRecord], run_dir: Path) -> dict[str, Any]:
    running = [r for r in recs if not r.status.is_finished]
    return {"run": str(run_dir), "trials": len(recs), "counts": status_counts(recs),
            "in_flight": [{"trial": r.trial, "job_id": r.job_id} for r in running],
            "gpu_hours": total_gpu_hours(recs), "gpu_hours_simulated": _simulated(store),
            "best": _summary(store, recs)}


def compare_runs(run_dirs: list[Path]) -> list[dict[str, Any]]:
    """One row per run (`dse compare`): its agent, trials, best step time, speed-up and GPU-hours."""
    rows = []
    for run_dir in run_dirs:
        store = _open_store(run_dir)
        status = _status(store, store.all(), run_dir)
        best = status["best"]
        step = best["step_metric"] if best else None
        rows.append({"run": str(run_dir), "agent": store.get_meta("agent"), "seed": store.get_meta("seed"),
                     "trials": status["trials"], "best_trial": best["trial"] if best else None,
                     "best_step_time": best["metrics"].get(step) if best and step else None,
                     "speedup": best["speedup"] if best else None, "gpu_hours": status["gpu_hours"]})
    return rows
