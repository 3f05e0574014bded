"""Fitting the performance model's constants (`dse.simulator._hardware.Knobs`) to published measurements.

The shipped `Knobs` defaults are the output of `fit()` on the whole 26.02 table (`dse.megatron._published`), rounded
to 3 significant digits; `python -m dse.simulator._fit` reruns the fit and prints them by Knobs path (with
the shipped value wherever it differs), and tests/test_perfmodel.py checks that the fit still lands on
them (so they are never tuned by hand).

Method: bounded nonlinear least squares (`scipy.optimize.least_squares`, trust-region reflective) on
log(predicted / published TFLOP/s per GPU), one residual per row, all rows weighted alike. Each fitted
constant is searched in log space between physically plausible bounds and carries a weak prior towards
a nominal (datasheet or textbook) value: an extra residual `PRIOR_WEIGHT * ln(value / nominal) / ln 2`.
The prior only matters where the rows say little about a constant (e.g. when the one row that measures
it is left out in the leave-one-out benchmark); it makes every fit well-posed and deterministic.
The start point is the nominal values, never the shipped defaults, so the fit does not depend on them;
from random start points it lands on the same minimum. Constants not listed in `FIT_PARAMS` stay at
their `Knobs` defaults (physical estimates; some were chosen by hand against the same table before this
fit existed, which flatters the leave-one-out figures a little). PRIOR_WEIGHT was chosen among
0.03 / 0.05 / 0.07 / 0.1 / 0.2 for the best leave-one-out median, itself a mild use of all rows.

scipy is imported lazily: the runtime model (`dse.simulator._model`) never needs it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from dse.megatron import PUBLISHED_26_02, PublishedRow
from dse.simulator._hardware import KNOBS, Knobs
from dse.simulator._model import predict

__all__ = ["FIT_PARAMS", "FitParam", "FitResult", "fit", "get_knob", "knobs_with", "leave_one_out", "log_errors",
           "main"]

PRIOR_WEIGHT = 0.05  # residual of a constant at 2x (or 1/2) its nominal value, vs a row's log error
ROUND_DIGITS = 3  # significant digits of the shipped defaults


@dataclass(frozen=True)
class FitParam:
    """One fitted constant: its `Knobs` path (`field` or `field.key` or `field.key.key`), nominal, bounds."""

    path: str
    nominal: float
    lo: float
    hi: float
    why: str = ""


# Bounds are what the hardware and the software stack make plausible; nominals are the textbook values.
FIT_PARAMS: tuple[FitParam, ...] = (
    FitParam("gemm_eff.hopper.fp8", 0.62, 0.35, 0.85, "cuBLAS FP8 on H100 reaches ~60-70 % of 1979"),
    FitParam("gemm_eff.hopper.bf16", 0.75, 0.6, 0.9, "cuBLAS BF16 on H100 reaches ~75-80 % of 989"),
    FitParam("gemm_eff.blackwell.bf16", 0.72, 0.6, 0.85, "BF16 GEMMs on B200/GB200"),
    FitParam("gemm_eff.blackwell.fp8", 0.6, 0.35, 0.85, "FP8 (per-tensor and MX) GEMMs on Blackwell"),
    FitParam("gemm_eff.blackwell.fp4", 0.4, 0.2, 0.8, "NVFP4 GEMMs reach a smaller share of a 4x peak"),
    FitParam("grouped_gemm_eff.hopper_bf16", 0.8, 0.2, 1.0, "per-expert cuBLAS GEMMs, BF16"),
    FitParam("grouped_gemm_eff.hopper_fp8", 0.5, 0.15, 1.0, "per-expert FP8 GEMMs plus their casts"),
    FitParam("grouped_gemm_eff.blackwell", 0.8, 0.3, 1.0, "fused grouped GEMM vs one large GEMM"),
    FitParam("sustained.gb300", 1.2, 1.0, 1.4, "1.4 kW GB300 holds higher clocks than 1.2 kW GB200"),
    FitParam("sustained.b300", 1.1, 1.0, 1.3, "1.1 kW B300 vs 1.0 kW B200"),
    FitParam("gemm_m0", 256.0, 64.0, 2048.0, "tokens at which a GEMM reaches half its best (roofline ~250)"),
    FitParam("gemm_n0", 256.0, 64.0, 2048.0, "width at which a GEMM reaches half its best (roofline ~250)"),
    FitParam("grouped_m0", 512.0, 64.0, 4096.0, "tokens per expert at which a grouped GEMM halves"),
    FitParam("attn_eff", 0.5, 0.25, 0.75, "flash attention fwd+bwd share of BF16 peak"),
    FitParam("attn_exp_exposed", 0.5, 0.05, 1.0, "share of softmax exp time the MMAs do not hide"),
    FitParam("elem_moe_token", 30.0, 8.0, 80.0, "elementwise passes over each routed token copy"),
    FitParam("elem_glu_unfused", 10.0, 0.5, 60.0, "passes of an unfused GLU over the expert intermediate"),
    FitParam("elem_quant.fp8_mx", 3.0, 0.5, 10.0, "MXFP8 quantize/transpose passes per GEMM input"),
    FitParam("elem_quant.fp8_cs", 4.0, 0.5, 10.0, "FP8 current-scaling amax + cast passes per GEMM input"),
    FitParam("a2a_eff.alltoall", 0.66, 0.3, 0.95, "NCCL all-to-all share of link bandwidth"),
    FitParam("a2a_eff.hybridep", 0.85, 0.4, 0.95, "HybridEP (TMA, NVLink-native) share of link bandwidth"),
    FitParam("a2a_net_gbps", 45.0, 15.0, 100.0, "all-to-all across nodes per GPU (rail fabric, PXN hops)"),
    FitParam("moe_fixed_s.alltoall", 1e-3, 1e-5, 1e-2, "host sync for dropless token counts, per MoE layer"),
    FitParam("moe_fixed_s.deepep", 5e-4, 1e-5, 1e-2, "DeepEP's host wait for the received-token counts"),
    FitParam("moe_fixed_s.hybridep", 1e-4, 1e-6, 1e-2, "HybridEP's fixed cost per MoE layer (no host sync)"),
    FitParam("cpu_smooth_p", 4.0, 1.5, 12.0, "sharpness of max(GPU, CPU) per micro-batch"),
    FitParam("launch_s", 8e-6, 2e-6, 4e-5, "host time per kernel: Python, PyTorch dispatch, launch"),
    FitParam("kernels_moe_layer", 220.0, 80.0, 600.0, "kernels of one MoE layer, forward + backward"),
    FitParam("blackwell_expert_kernels", 10.0, 0.5, 100.0, "kernels per local expert per layer (split, casts)"),
    FitParam("hopper_expert_kernels.fp8", 24.0, 4.0, 100.0, "per-expert FP8 GEMMs and casts, one by one"),
    FitParam("a2a_exposed_overlap", 0.3, 0.05, 1.0, "share of the dispatch --moe_a2a_overlap leaves exposed"),
    FitParam("fsdp_slowdown", 0.04, 0.005, 0.3, "SM contention of the overlapped FSDP collectives"),
    FitParam("host_slowdown.b300", 1.0, 0.5, 3.0, "B300 hosts' CPU time per kernel vs B200/H100 x86 hosts"),
    FitParam("host_slowdown.grace", 1.0, 0.5, 3.0, "Grace + NVLink-C2C (GB200/GB300) vs x86 + PCIe hosts"),
    FitParam("window_skip", 0.7, 0.05, 1.0, "share of the masked work sliding-window kernels skip"),
)


@dataclass(frozen=True)
class FitResult:
    """What one fit found: the knobs, the fitted values by path, and the log errors of the rows fitted."""

    knobs: Knobs
    values: dict[str, float]
    log_errors: tuple[float, ...]
    cost: float
    nfev: int


def get_knob(knobs: Knobs, path: str) -> float:
    """The value at a dotted `Knobs` path (NaN where a mapping lacks the key)."""
    head, *rest = path.split(".")
    value: Any = getattr(knobs, head)
    for key in rest:
        if key not in value:
            return math.nan
        value = value[key]
    return float(value)


def _set_path(mapping: Mapping[str, Any], keys: Sequence[str], value: float) -> dict[str, Any]:
    out = dict(mapping)
    if len(keys) == 1:
        out[keys[0]] = value
    else:
        out[keys[0]] = _set_path(mapping.get(keys[0], {}), keys[1:], value)
    return out


def knobs_with(values: Mapping[str, float], base: Knobs = KNOBS) -> Knobs:
    """`base` with the constants at the dotted paths of `values` replaced."""
    names = {f.name for f in fields(Knobs)}
    changes: dict[str, Any] = {}
    for path, value in values.items():
        head, *rest = path.split(".")
        if head not in names:
            raise KeyError(f"Knobs has no field {head!r}")
        if rest:
            current = changes.get(head, getattr(base, head))
            changes[head] = _set_path(current, rest, float(value))
        else:
            changes[head] = float(value)
    return replace(base, **changes)


def log_errors(knobs: Knobs, rows: Iterable[PublishedRow] = PUBLISHED_26_02) -> list[float]:
    """ln(predicted / published TFLOP/s per GPU) of each row."""
    return [math.log(predict(r.cmd_args(), knobs=knobs).tflops_per_gpu / r.tflops_per_gpu) for r in rows]


def fit(rows: Sequence[PublishedRow] = PUBLISHED_26_02, params: Sequence[FitParam] = FIT_PARAMS,
        base: Knobs = KNOBS, prior_weight: float = PRIOR_WEIGHT) -> FitResult:
    """Fit `params` to `rows` (see the module docstring); the other constants stay as in `base`."""
    import numpy as np
    from scipy.optimize import least_squares

    rows = list(rows)
    x0 = np.array([math.log(p.nominal) for p in params])
    lo = np.array([math.log(p.lo) for p in params])
    hi = np.array([math.log(p.hi) for p in params])
    ln2 = math.log(2.0)

    def knobs_at(x: Any) -> Knobs:
        return knobs_with({p.path: math.exp(v) for p, v in zip(params, x, strict=True)}, base)

    def residuals(x: Any) -> Any:
        data = log_errors(knobs_at(x), rows)
        prior = prior_weight * (x - x0) / ln2
        return np.concatenate([np.array(data), prior])

    res = least_squares(residuals, np.clip(x0, lo, hi), bounds=(lo, hi), method="trf", x_scale=1.0,
                        diff_step=1e-5, xtol=1e-10, ftol=1e-10, gtol=1e-10, max_nfev=2000)
    knobs = knobs_at(res.x)
    values = {p.path: math.exp(v) for p, v in zip(params, res.x, strict=True)}
    return FitResult(knobs=knobs, values=values, log_errors=tuple(log_errors(knobs, rows)), cost=float(res.cost),
                     nfev=int(res.nfev))


def rounded(values: Mapping[str, float], digits: int = ROUND_DIGITS) -> dict[str, float]:
    """Values rounded to `digits` significant digits (how the defaults are shipped)."""
    return {k: float(f"{v:.{digits}g}") for k, v in values.items()}


def _loo_one(args: tuple[int, Sequence[PublishedRow], Sequence[FitParam], Knobs]) -> float:
    i, rows, params, base = args
    result = fit([r for j, r in enumerate(rows) if j != i], params, base)
    return predict(rows[i].cmd_args(), knobs=result.knobs).tflops_per_gpu


def leave_one_out(rows: Sequence[PublishedRow] = PUBLISHED_26_02, params: Sequence[FitParam] = FIT_PARAMS,
                  base: Knobs = KNOBS, processes: int = 1,
                  progress: Callable[[int], None] | None = None) -> list[float]:
    """For each row: fit on all the other rows, predict it (TFLOP/s per GPU). Rows in input order."""
    jobs = [(i, list(rows), list(params), base) for i in range(len(rows))]
    if processes <= 1:
        out = []
        for job in jobs:
            out.append(_loo_one(job))
            if progress:
                progress(len(out))
        return out
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        out = []
        for value in pool.imap(_loo_one, jobs):
            out.append(value)
            if progress:
                progress(len(out))
        return out


def main() -> int:
    """Fit on the whole 26.02 table and print the constants as they belong in `Knobs`."""
    result = fit()
    print(f"# fit on {len(PUBLISHED_26_02)} rows: cost {result.cost:.5f}, {result.nfev} evaluations")
    for path, value in rounded(result.values).items():
        shipped = get_knob(KNOBS, path)
        flag = "" if math.isclose(shipped, value, rel_tol=1e-9) else f"   # shipped {shipped:.4g}"
        print(f"{path:32s} = {value:.{ROUND_DIGITS}g}{flag}")
    errs = sorted(abs(math.expm1(e)) for e in result.log_errors)
    print(f"# in-sample |error|: median {errs[len(errs) // 2] * 100:.1f} %, worst {errs[-1] * 100:.1f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
