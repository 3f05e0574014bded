"""The trial table (docs/DESIGN.md §6): a pandas DataFrame with fixed columns, and the files built from it."""

from __future__ import annotations

import copy
import importlib
import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from dse.errors import InputError
from dse.metrics import format_metrics, units
from dse.storage import TrialStore
from dse.tomlwrite import dumps
from dse.trial import SUCCESS_STATUSES, FailureReason, TrialRecord
from dse.workloads import WORKLOADS

FIXED_FRONT = ["trial", "status", "reward", "cache_hit", "config_hash"]
FIXED_BACK = ["job_id", "attempts", "started_at", "finished_at", "duration_s", "gpu_hours", "error", "note"]
SUCCESS = tuple(s.value for s in SUCCESS_STATUSES)


def _open_store(run_dir: Path) -> TrialStore:
    db = Path(run_dir) / "trials.db"
    if not db.is_file():
        raise InputError("not a dse run directory (no trials.db)", file=str(run_dir))
    return TrialStore(db, readonly=True)  # reading a run never writes to it


def frame(records: Sequence[TrialRecord], params: Sequence[str], envs: Sequence[str],
          metrics: Sequence[str]) -> pd.DataFrame:
    """Rows in the fixed schema: trial, status, reward, cache_hit, config_hash, param.*, env.*, metric.*, ..."""
    rows = []
    for r in records:
        row: dict[str, Any] = {"trial": r.trial, "status": r.status.value, "reward": r.reward, "cache_hit": r.cache_hit,
                               "config_hash": r.config_hash}
        row.update({f"param.{p}": r.action.get(p) for p in params})
        row.update({f"env.{e}": r.env.get(e) for e in envs})
        row.update({f"metric.{m}": r.metrics.get(m, math.nan) for m in metrics})
        row.update({"job_id": r.job_id, "attempts": r.attempts, "started_at": r.started_at or None,
                    "finished_at": r.finished_at or None, "duration_s": r.duration_s, "gpu_hours": r.gpu_hours,
                    "error": r.error, "note": r.note})
        rows.append(row)
    columns = [*FIXED_FRONT, *(f"param.{p}" for p in params), *(f"env.{e}" for e in envs),
               *(f"metric.{m}" for m in metrics), *FIXED_BACK]
    df = pd.DataFrame(rows, columns=columns)
    for col in ("started_at", "finished_at"):  # one conversion per column, not per row: the driver writes often
        df[col] = pd.to_datetime(pd.to_numeric(df[col], errors="coerce"), unit="s")
    return df


def _schema(store: TrialStore) -> tuple[list[str], list[str], list[str]]:
    return (list(store.get_meta("params", [])), list(store.get_meta("env_params", [])),
            list(store.get_meta("metrics", [])))


def load_trials(run_dirs: str | Path | Sequence[str | Path]) -> pd.DataFrame:
    """The trial table of one run directory, or of several with a `run` column (and `agent`)."""
    many = not isinstance(run_dirs, (str, Path))
    dirs = [Path(run_dirs)] if isinstance(run_dirs, (str, Path)) else [Path(d) for d in run_dirs]
    frames = []
    for d in dirs:
        store = _open_store(d)
        df = frame(store.all(), *_schema(store))
        if many:
            df.insert(0, "run", d.name)
            df.insert(1, "agent", store.get_meta("agent"))
        store.close()
        frames.append(df)
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def write_csv_atomic(df: pd.DataFrame, path: Path) -> None:
    """Replace `path` atomically: readers see the old or the new file, never a partial one.

    Streamed to a temp file (the umask's mode, as every other file of the run), then renamed over.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".trials-", suffix=".csv")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "w") as fh:
            df.to_csv(fh, index=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def best_record(records: Sequence[TrialRecord]) -> TrialRecord | None:
    ok = [r for r in records if r.status in SUCCESS and r.reward is not None and not math.isnan(r.reward)]
    return max(ok, key=lambda r: (r.reward, -r.trial)) if ok else None


def best_toml(sweep_data: dict[str, Any], rec: TrialRecord) -> str:
    """A ready-to-run test TOML of one trial: its values as scalars, a sweep of one point."""
    data = copy.deepcopy(sweep_data)
    cmd = data.setdefault("cmd_args", {})
    cmd.pop("hf_token", None)
    for path, value in {**rec.action, **rec.env}.items():
        if path == "num_nodes":
            data["num_nodes"] = value
        elif path.startswith("extra_env_vars."):
            data.setdefault("extra_env_vars", {})[path.split(".", 1)[1]] = value
        else:
            node = cmd
            parts = path.split(".")
            if path in cmd:
                cmd[path] = value
                continue
            for p in parts[:-1]:
                node = node.setdefault(p, {})
            node[parts[-1]] = value
    data.pop("env_params", None)
    data["agent"] = "grid_search"
    data["agent_steps"] = 1
    return dumps(data, header=f"best trial {rec.trial}: {format_metrics(rec.metrics)}\n"
                              "generated by `dse best --toml`; run it with `dse run FILE`")


def _simulated(store: TrialStore) -> bool:
    """Whether the run's workload is a simulation (its GPU-hours are simulated, not spent)."""
    name = (store.get_meta("sweep_data") or {}).get("test_template_name")
    return name in WORKLOADS and WORKLOADS[name].simulated


def status_counts(records: Sequence[TrialRecord]) -> dict[str, int]:
    """Trials by what a performance engineer asks of them: out-of-memory and rejected configurations are the
    sweep's findings, counted apart from the failures a user must look at (crashes, no metrics, timeouts)."""
    counts = dict.fromkeys(("completed", "cached", "OOM", "rejected", "failed", "infeasible", "pruned", "running"), 0)
    for r in records:
        if r.status.is_failure and r.reason == FailureReason.OUT_OF_MEMORY:
            key = "OOM"
        elif r.status.is_failure and r.reason == FailureReason.REJECTED_CONFIG:
            key = "rejected"
        elif r.status.is_failure:
            key = "failed"
        elif not r.status.is_finished:
            key = "running"
        else:
            key = r.status.value
        counts[key] += 1
    return counts


def counts_text(records: Sequence[TrialRecord]) -> str:
    """`10 completed, 2 cached, 5 OOM, 1 failed` (the kinds that occur, in a fixed order)."""
    return ", ".join(f"{n} {k}" for k, n in status_counts(records).items() if n) or "none"


def total_gpu_hours(records: Sequence[TrialRecord]) -> float:
    """What the sweep spent: every trial's GPU-hours (failed, out-of-memory and pruned ones included)."""
    return sum(r.gpu_hours or 0.0 for r in records)


def gpu_hours_text(records: Sequence[TrialRecord], simulated: bool) -> str:
    """`12.3 GPU-hours`, labelled `(simulated)` for a simulated workload, whose runs cost no real GPU."""
    return units.gpu_hours(total_gpu_hours(records)) + (" (simulated)" if simulated else "")


def status_text(run_dir: Path) -> str:
    store = _open_store(run_dir)
    recs = store.all()
    best = best_record(recs)
    lines = [f"run: {run_dir}", f"trials: {len(recs)} ({counts_text(recs)})",
             "  ".join(f"{k}: {v}" for k, v in status_counts(recs).items())]
    running = [r for r in recs if not r.status.is_finished]
    lines.append(f"in flight: {len(running)}" + (f" (job ids {', '.join(str(r.job_id) for r in running)})"
                                                  if running else ""))
    lines.append(f"spent: {gpu_hours_text(recs, _simulated(store))}")
    if best:
        lines.append(f"best: trial {best.trial}: {format_metrics(best.metrics)}; {best.action}")
    else:
        lines.append("best: none yet")
    return "\n".join(lines)


def _parquet_engine() -> str:
    """pandas' parquet engine that is installed (an optional dependency); an InputError saying what to install."""
    for engine in ("pyarrow", "fastparquet"):
        try:
            importlib.import_module(engine)
        except ImportError:
            continue
        return engine
    raise InputError("parquet needs the pyarrow package, in the extra 'parquet': pip install 'megatron-dse[parquet]' "
                     "(from a checkout: pip install -e '.[parquet]'); or use --format csv", field="--format")


_TEXT_DROP = ("config_hash", "started_at", "note")  # in the csv/json/parquet forms; too wide for a terminal


def _readable(df: pd.DataFrame) -> pd.DataFrame:
    """The text form for a terminal: 4 significant digits, times to the second, no NaN, long errors cut."""
    out = df.drop(columns=[c for c in _TEXT_DROP if c in df.columns])
    for col in out.columns:
        series = out[col]
        if pd.api.types.is_datetime64_any_dtype(series):
            out[col] = series.dt.strftime("%H:%M:%S").fillna("")
        elif pd.api.types.is_float_dtype(series):
            out[col] = series.map(lambda v: "" if v != v else f"{v:.4g}")
        elif col == "error":
            out[col] = series.map(lambda v: "" if v is None or v != v else str(v)[:60])
    return out.fillna("")


def write_table(run_dirs: Sequence[Path], fmt: str = "text", output: Path | None = None) -> str | None:
    """The trial table of one or more runs in `fmt`: written to `output`, else returned as text."""
    df = load_trials(run_dirs[0] if len(run_dirs) == 1 else run_dirs)
    if fmt == "parquet":
        if output is None:
            raise InputError("parquet needs -o FILE", field="--format")
        df.to_parquet(output, engine=_parquet_engine())
        return None
    if fmt == "csv":
        text = df.to_csv(index=False)
    elif fmt == "json":
        text = df.to_json(orient="records", date_format="iso", indent=1)
    else:
        text = _readable(df).to_string(index=False)
    if output is None:
        return text
    Path(output).write_text(text)
    return None
