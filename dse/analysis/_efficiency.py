"""How well each trial used its GPUs: MFU (TFLOP/s/GPU over the GPU's dense peak for the run's compute dtype),
TFLOP/s/GPU and MFU per parameter value, and the best trial's memory headroom against the GPU's capacity.

No I/O and no figures: the trial table and the sweep's cmd_args in, DataFrames and sentences out. The peaks
and capacities are the simulator's datasheet table (`dse.simulator.GPUS`), so MFU and the simulated runs
read one set of numbers. The GPU and the dtype are the sweep's `gpu_type` and `compute_dtype`, or a trial's
own where the sweep varies them (a `param.*` column).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from dse.analysis._figures import SUCCESS, _categories, _fmt_value, _is_missing, _param_columns
from dse.metrics import units
from dse.simulator import GPU, GPUS
from dse.trial import FailureReason

__all__ = [
    "FLOPS",
    "MEMORY",
    "Headroom",
    "best_index",
    "dtype_peak_tflops",
    "efficiency_note",
    "failed_with",
    "headroom",
    "is_oom",
    "per_value",
    "with_efficiency",
]

FLOPS = "metric.tflops-per-gpu"
MEMORY = "metric.max-alloc-gb"


def dtype_peak_tflops(gpu: GPU, compute_dtype: str) -> float | None:
    """The GPU's dense tensor-core peak for a Megatron-Bridge compute dtype (bf16, fp8_cs, fp8_mx, nvfp4...);
    None for a dtype of unknown precision. A GPU without FP4 units lists its FP8 peak as its FP4 one."""
    name = compute_dtype.lower()
    if name in ("bf16", "fp16"):
        return gpu.peak_bf16_tflops
    if name.startswith("fp8"):
        return gpu.peak_fp8_tflops
    if "fp4" in name:
        return gpu.peak_fp4_tflops
    return None


def _setting(row: pd.Series, cmd_args: Mapping[str, Any], name: str) -> Any:
    """A trial's own value of a cmd_args field where the sweep varies it, else the sweep's (None: unset)."""
    value = row.get(f"param.{name}")
    if not _is_missing(value):
        return value
    fixed = cmd_args.get(name)
    return None if isinstance(fixed, list | dict) else fixed


def with_efficiency(df: pd.DataFrame, cmd_args: Mapping[str, Any] | None) -> pd.DataFrame:
    """The table with each trial's `gpu_type`, `compute_dtype`, `peak_tflops` (the dtype's dense peak),
    `hbm_gb` (the GPU's capacity) and `mfu` (TFLOP/s/GPU / peak, a fraction; NaN where either is unknown)."""
    cmd = cmd_args or {}
    out = df.copy()
    gpus = [_setting(row, cmd, "gpu_type") for _, row in df.iterrows()]
    dtypes = [_setting(row, cmd, "compute_dtype") for _, row in df.iterrows()]
    peaks, hbm = [], []
    for gpu_type, dtype in zip(gpus, dtypes, strict=True):
        gpu = GPUS.get(str(gpu_type).lower()) if gpu_type is not None else None
        peak = dtype_peak_tflops(gpu, str(dtype)) if gpu is not None and dtype is not None else None
        peaks.append(np.nan if peak is None else peak)
        hbm.append(np.nan if gpu is None else gpu.hbm_gb)
    out["gpu_type"] = pd.Series(gpus, index=df.index, dtype=object)
    out["compute_dtype"] = pd.Series(dtypes, index=df.index, dtype=object)
    out["peak_tflops"] = pd.Series(peaks, index=df.index, dtype=float)
    out["hbm_gb"] = pd.Series(hbm, index=df.index, dtype=float)
    flops = pd.to_numeric(df[FLOPS], errors="coerce") if FLOPS in df.columns else pd.Series(np.nan, index=df.index)
    out["mfu"] = flops.astype(float) / out["peak_tflops"]
    return out


def efficiency_note(eff: pd.DataFrame) -> str | None:
    """One line saying why MFU is unknown (None: every trial has a peak)."""
    if FLOPS not in eff.columns:
        return ("no TFLOP/s/GPU or MFU per parameter value: the sweep did not measure tflops-per-gpu "
                "(add it to agent_metrics; a Command program must print it)")
    if eff.empty or eff["peak_tflops"].notna().all():
        return None
    gpus = {str(g) for g in eff["gpu_type"] if not _is_missing(g)}
    dtypes = {str(d) for d in eff["compute_dtype"] if not _is_missing(d)}
    if not gpus:
        return "no MFU: the sweep names no gpu_type, so the GPU's peak is unknown"
    unknown = sorted(g for g in gpus if g.lower() not in GPUS)
    if unknown:
        return (f"no MFU for gpu_type {', '.join(unknown)}: no datasheet peak for it "
                f"(known: {', '.join(sorted(GPUS))})")
    if not dtypes:
        return "no MFU: the sweep names no compute_dtype, so the peak's precision is unknown"
    return f"no MFU for compute_dtype {', '.join(sorted(dtypes))}: its precision (bf16, fp8, fp4) is unknown"


def _ok(eff: pd.DataFrame) -> pd.Series:
    if "status" not in eff.columns:
        return pd.Series(True, index=eff.index)
    return eff["status"].astype(str).str.lower().isin(SUCCESS)


def best_index(df: pd.DataFrame) -> Any | None:
    """The row of the best trial as the report ranks it: the highest reward of the successful trials, the
    earliest trial on a tie (None: no successful trial with a reward)."""
    if "reward" not in df.columns:
        return None
    rewards = pd.to_numeric(df.loc[_ok(df), "reward"], errors="coerce").astype(float)
    rewards = rewards[np.isfinite(rewards)]
    if rewards.empty:
        return None
    top = rewards[rewards == rewards.max()]
    if "trial" in df.columns:
        return df.loc[top.index, "trial"].astype(float).idxmin()
    return top.index[0]


def per_value(eff: pd.DataFrame) -> pd.DataFrame:
    """One row per (swept parameter, value) over the successful trials that measured TFLOP/s/GPU: `param`,
    `value`, `trials`, `median_tflops`, `best_tflops`, `best_mfu` and `best_trial_value` (the best trial
    runs this value). Values in display order, parameters in the table's order."""
    columns = ["param", "value", "trials", "median_tflops", "best_tflops", "best_mfu", "best_trial_value"]
    if FLOPS not in eff.columns:
        return pd.DataFrame(columns=columns)
    flops = pd.to_numeric(eff[FLOPS], errors="coerce").astype(float)
    ok = eff[_ok(eff) & np.isfinite(flops)]
    best = best_index(eff)
    rows = []
    for col in _param_columns(eff):
        for value in _categories(ok[col]):
            mask = ok[col].map(_fmt_value) == _fmt_value(value)
            sub = ok[mask]
            f = pd.to_numeric(sub[FLOPS], errors="coerce").astype(float)
            mfu = sub["mfu"].astype(float) if "mfu" in sub.columns else pd.Series(np.nan, index=sub.index)
            rows.append({"param": col.removeprefix("param."), "value": value, "trials": len(sub),
                         "median_tflops": float(f.median()), "best_tflops": float(f.max()),
                         "best_mfu": float(mfu.max()) if mfu.notna().any() else np.nan,
                         "best_trial_value": best is not None and best in sub.index})
    return pd.DataFrame(rows, columns=columns)


def failed_with(df: pd.DataFrame, reason: FailureReason) -> pd.Series:
    """Trials whose error names `reason` (the engine writes `out-of-memory: ...`, `rejected-config: ...`)."""
    if "error" not in df.columns:
        return pd.Series(False, index=df.index)
    return df["error"].map(lambda e: not _is_missing(e) and str(e).startswith(reason.value)).astype(bool)


def is_oom(df: pd.DataFrame) -> pd.Series:
    """Trials that ran out of memory (failed with the reason `out-of-memory`)."""
    return failed_with(df, FailureReason.OUT_OF_MEMORY)


@dataclass(frozen=True)
class Headroom:
    """The best trial's peak memory against its GPU's capacity."""

    trial: Any
    used_gb: float
    capacity_gb: float

    @property
    def fraction(self) -> float:
        """The share of the capacity left free (negative: over it)."""
        return (self.capacity_gb - self.used_gb) / self.capacity_gb

    def text(self) -> str:
        """"best trial 15 uses 70.0 of 79.6 GB, 12 % headroom"."""
        return (f"best trial {self.trial} uses {units.gb(self.used_gb, unit=False)} of "
                f"{units.gb(self.capacity_gb)}, {units.percent(self.fraction, digits=0)} headroom")


def headroom(eff: pd.DataFrame) -> Headroom | None:
    """The best trial's headroom, or None when its peak memory or its GPU's capacity is unknown."""
    best = best_index(eff)
    if best is None or MEMORY not in eff.columns or "hbm_gb" not in eff.columns:
        return None
    used = pd.to_numeric(pd.Series([eff.loc[best, MEMORY]]), errors="coerce").iloc[0]
    capacity = eff.loc[best, "hbm_gb"]
    if not (np.isfinite(used) and np.isfinite(capacity)):
        return None
    trial = eff.loc[best, "trial"] if "trial" in eff.columns else best
    return Headroom(trial=trial, used_gb=float(used), capacity_gb=float(capacity))
