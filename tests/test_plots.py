"""dse.analysis.plots: every figure draws on realistic and degenerate trial tables, with labels that carry units."""

from __future__ import annotations

import io
from collections.abc import Callable

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (after the backend choice)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from dse import plots  # noqa: E402

METRICS = ("metric.step-time", "metric.tflops-per-gpu", "metric.max-alloc-gb", "metric.tokens-per-second-per-gpu")


def realistic_trials(n: int = 60, seed: int = 0, run: str | None = None, agent: str = "optuna") -> pd.DataFrame:
    """A trial table shaped like `dse.load_trials`: OOM failures, infeasible points, timeouts, cache hits."""
    rng = np.random.default_rng(seed)
    rows = []
    t0 = pd.Timestamp("2025-01-01")
    for i in range(1, n + 1):
        tp, pp, mb = int(rng.choice([1, 2, 4, 8, 16])), int(rng.choice([1, 2, 4])), int(rng.choice([1, 2, 4]))
        scope = str(rng.choice(["none", "attn", "full_iteration"]))
        recompute, seq = bool(rng.random() < 0.5), int(rng.choice([4096, 8192]))
        mem = 70 / (tp * pp) * mb * (seq / 4096) * (0.7 if recompute else 1.0) + 8
        step = (1.6 * (1 + 0.15 * np.log2(tp)) * (1 + 0.1 * (pp - 1)) / (1 + 0.15 * np.log2(mb))
                * (0.9 if scope == "full_iteration" else 1.0) * (seq / 4096) * rng.normal(1, 0.03))
        status, error = "completed", ""
        if tp * pp > 16:
            status, error = "infeasible", "tp*pp exceeds the world size"
        elif mem > 80:
            status, error = "failed", "torch.OutOfMemoryError: CUDA out of memory"
        elif rng.random() < 0.05:
            status, error = "timeout", "job exceeded its time limit"
        elif rng.random() < 0.1:
            status = "cached"
        ok = status in ("completed", "cached")
        values = (step, 600 / step, mem, seq / step) if ok else (np.nan,) * 4
        row = {"trial": i, "status": status, "reward": -step if ok else -np.inf, "cache_hit": status == "cached",
               "config_hash": f"{i:016x}", "param.tp": tp, "param.pp": pp, "param.mb": mb,
               "param.cuda_graph_scope": scope, "param.recompute": recompute,
               "param.extra_env_vars.NCCL_ALGO": str(rng.choice(["Ring", "Tree"])), "env.seq_length": seq,
               **dict(zip(METRICS, values, strict=True)), "job_id": str(1000 + i), "attempts": 1,
               "started_at": t0 + pd.Timedelta(minutes=5 * i), "finished_at": t0 + pd.Timedelta(minutes=5 * i + 4),
               "duration_s": 240.0, "error": error}
        if run is not None:
            row |= {"run": run, "agent": agent}
        rows.append(row)
    return pd.DataFrame(rows)


REAL = realistic_trials()
MULTI = pd.concat([realistic_trials(40, seed=1, run="tpe-a"), realistic_trials(40, seed=2, run="rand-b",
                                                                              agent="random_search")],
                  ignore_index=True)
FRAMES: dict[str, pd.DataFrame] = {
    "realistic": REAL,
    "empty": REAL.iloc[:0],
    "bare-empty": pd.DataFrame(),
    "all-failed": REAL[REAL["status"].isin(["failed", "infeasible", "timeout"])].reset_index(drop=True),
    "single": REAL[REAL["status"] == "completed"].head(1).reset_index(drop=True),
    "single-failed": REAL[REAL["status"] == "failed"].head(1).reset_index(drop=True),
    "multi-run": MULTI,
    "no-metrics": REAL.drop(columns=list(METRICS)),
}
FUNCS: dict[str, Callable[[pd.DataFrame], Figure]] = {
    "convergence": plots.convergence,
    "convergence-metric": lambda df: plots.convergence(df, metric="step-time"),
    "parameter_effects": plots.parameter_effects,
    "parallel_coordinates": plots.parallel_coordinates,
    "pareto_front": plots.pareto_front,
    "env_effects": plots.env_effects,
}


def _visible_axes(fig: Figure) -> list:
    return [ax for ax in fig.axes if ax.get_visible() and ax.get_label() != "<colorbar>"]


def _texts(fig: Figure) -> str:
    return " | ".join(t.get_text() for ax in fig.axes for t in ax.texts)


def _legend_texts(fig: Figure) -> list[str]:
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None] + list(fig.legends)
    return [t.get_text() for leg in legends for t in leg.get_texts()]


def _draw(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=40)  # layout and text only resolve at draw time
    return buf.getvalue()


@pytest.mark.parametrize("frame", FRAMES)
@pytest.mark.parametrize("func", FUNCS)
def test_every_figure_draws_with_labelled_axes(func: str, frame: str) -> None:
    before = plt.get_fignums()
    fig = FUNCS[func](FRAMES[frame])
    assert isinstance(fig, Figure)
    axes = _visible_axes(fig)
    assert axes
    for ax in axes:
        assert ax.get_xlabel().strip() and ax.get_ylabel().strip(), (func, frame, ax.get_title())
    assert _draw(fig).startswith(b"\x89PNG")
    assert plt.get_fignums() == before  # nothing leaked into pyplot's global figure list


def test_metric_labels_carry_units() -> None:
    assert plots.METRIC_LABELS["step-time"] == "step time (s)"
    assert plots.METRIC_LABELS["tflops-per-gpu"] == "TFLOP/s/GPU"
    assert plots.METRIC_LABELS["max-alloc-gb"] == "peak memory (GB)"
    assert plots.METRIC_LABELS["tokens-per-second-per-gpu"] == "tokens/s/GPU"
    assert plots.lower_is_better("step-time") and plots.lower_is_better("metric.max-alloc-gb")
    assert not plots.lower_is_better("tflops-per-gpu") and not plots.lower_is_better("reward")


def test_convergence_best_so_far_and_failure_markers() -> None:
    fig = plots.convergence(REAL)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "trial number"
    assert "reward" in ax.get_ylabel()
    ok = REAL[REAL["status"].isin(["completed", "cached"])]
    best_line = next(line for line in ax.get_lines() if line.get_label() == "best so far")
    y = np.asarray(best_line.get_ydata(), dtype=float)
    assert np.all(np.diff(y) >= 0)  # reward: best so far never gets worse
    assert y[-1] == pytest.approx(ok["reward"].max())
    assert y[0] == pytest.approx(ok.sort_values("trial")["reward"].iloc[0])
    n_failed = int(REAL["status"].isin(["failed", "timeout", "preempted"]).sum())
    n_infeasible = int((REAL["status"] == "infeasible").sum())
    legend = _legend_texts(fig)
    assert f"failed ({n_failed})" in legend and f"infeasible ({n_infeasible})" in legend
    # the failure band sits below every successful reward
    failed_y = [c.get_offsets()[:, 1] for c in ax.collections if c.get_label().startswith("failed")][0]
    assert failed_y.max() < ok["reward"].min()


def test_convergence_on_a_metric_minimises_step_time() -> None:
    fig = plots.convergence(REAL, metric="step-time")
    ax = fig.axes[0]
    assert "(s)" in ax.get_ylabel() and "lower is better" in ax.get_ylabel()
    y = np.asarray(next(li for li in ax.get_lines() if li.get_label() == "best so far").get_ydata(), dtype=float)
    assert np.all(np.diff(y) <= 0)
    assert y[-1] == pytest.approx(REAL["metric.step-time"].min())


def test_convergence_one_line_per_run_and_by_agent() -> None:
    legend = _legend_texts(plots.convergence(MULTI))
    assert "tpe-a (optuna)" in legend and "rand-b (random_search)" in legend
    legend = _legend_texts(plots.convergence(MULTI, by="agent"))
    assert "optuna" in legend and "random_search" in legend
    title = plots.convergence(REAL, by="agent").axes[0].get_title()
    assert "no 'agent' column" in title


def test_parameter_effects_one_subplot_per_dimension_in_natural_order() -> None:
    fig = plots.parameter_effects(REAL)
    params = [c for c in REAL.columns if c.startswith("param.")]
    axes = _visible_axes(fig)
    assert [ax.get_xlabel() for ax in axes] == [p.removeprefix("param.") for p in params]
    ticks = {ax.get_xlabel(): [t.get_text() for t in ax.get_xticklabels()] for ax in axes}
    assert ticks["tp"] == ["1", "2", "4", "8", "16"]  # numeric, not lexicographic
    assert ticks["recompute"] == ["False", "True"]
    assert ticks["cuda_graph_scope"] == ["attn", "full_iteration", "none"]
    assert all(ax.get_ylabel() == "step time (s)" for ax in axes)
    legend = " ".join(_legend_texts(fig))
    assert "median per value" in legend and "failed" in legend and "infeasible" in legend
    assert "lower is better" in fig.get_suptitle()


def test_parameter_effects_failures_on_the_worse_side() -> None:
    ok = REAL["status"].isin(["completed", "cached"])
    ax = plots.parameter_effects(REAL, metric="tflops-per-gpu").axes[0]
    red = [c for c in ax.collections if c.get_offsets().shape[0] and c.get_edgecolor().size
           and tuple(np.round(c.get_edgecolor()[0][:3], 2)) == (0.84, 0.15, 0.16)]
    # throughput: higher is better, so failures sit below the worst successful trial
    assert red and red[0].get_offsets()[:, 1].max() < REAL.loc[ok, "metric.tflops-per-gpu"].min()
    assert "TFLOP/s/GPU" in ax.get_ylabel()


def test_parallel_coordinates_draws_top_lines_and_colour_bar() -> None:
    fig = plots.parallel_coordinates(REAL, top=7)
    ax = fig.axes[0]
    n_axes = sum(c.startswith("param.") for c in REAL.columns) + 1
    trial_lines = [li for li in ax.get_lines() if len(li.get_xdata()) == n_axes]
    assert len(trial_lines) == 7
    colorbar = fig.axes[1]
    assert colorbar.get_ylabel() == "step time (s)"
    best = REAL.loc[REAL["metric.step-time"].idxmin(), "trial"]
    assert f"best: trial {best} " in _legend_texts(fig)[0]
    few = plots.parallel_coordinates(REAL[REAL["status"] == "completed"].head(3), top=10)
    assert len([li for li in few.axes[0].get_lines() if len(li.get_xdata()) == n_axes]) == 3


def test_pareto_front_is_the_non_dominated_set() -> None:
    df = pd.DataFrame({
        "trial": [1, 2, 3, 4, 5, 6],
        "status": ["completed", "completed", "cached", "completed", "failed", "completed"],
        "reward": [-3.0, -2.0, -1.0, -2.5, -np.inf, -1.5],
        "param.tp": [1, 2, 4, 2, 8, 4],
        "metric.max-alloc-gb": [10.0, 20.0, 40.0, 30.0, np.nan, 45.0],
        "metric.step-time": [3.0, 2.0, 1.0, 2.5, np.nan, 1.5],
    })
    fig = plots.pareto_front(df)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "peak memory (GB)" and ax.get_ylabel() == "step time (s)"
    front = next(li for li in ax.get_lines() if li.get_label().startswith("Pareto front"))
    assert front.get_label() == "Pareto front (3)"  # trials 1, 2, 3; 4 and 6 are dominated
    annotations = sorted(t.get_text() for t in ax.texts if t.get_text().startswith("#"))
    assert annotations == ["#1", "#2", "#3"]
    assert "failed, not shown (1)" in _legend_texts(fig)


def test_env_effects_boxes_per_value_and_no_env_message() -> None:
    fig = plots.env_effects(REAL)
    ax = _visible_axes(fig)[0]
    assert ax.get_xlabel() == "seq_length (env_param)" and ax.get_ylabel() == "step time (s)"
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels[0].startswith("4096\nn=") and labels[1].startswith("8192\nn=")
    assert "median" in _legend_texts(fig)
    none = plots.env_effects(REAL.drop(columns=["env.seq_length"]))
    assert "no env_params in this sweep" in _texts(none)


@pytest.mark.parametrize("func", ["parameter_effects", "parallel_coordinates", "pareto_front", "env_effects"])
def test_missing_metric_column_is_said_in_the_figure(func: str) -> None:
    fig = FUNCS[func](FRAMES["no-metrics"])
    assert "metric.step-time" in _texts(fig) or "metric.max-alloc-gb" in _texts(fig)


def test_all_failed_says_so() -> None:
    frame = FRAMES["all-failed"]
    assert "no successful trial" in _texts(plots.convergence(frame))
    assert "no successful trial" in _texts(plots.parameter_effects(frame))
    assert "no successful trial" in _texts(plots.pareto_front(frame))
    assert "no trials yet" in _texts(plots.convergence(FRAMES["empty"]))


def test_figure_shows_itself_in_jupyter() -> None:
    png = plots.convergence(REAL)._repr_png_()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000


def test_convergence_against_gpu_hours_spent() -> None:
    """The cost view of convergence: each trial sits at the GPU-hours spent up to it."""
    df = pd.DataFrame({"trial": [1, 2, 3], "status": ["completed", "failed", "completed"],
                       "reward": [0.5, float("-inf"), 1.0], "metric.step-time": [2.0, float("nan"), 1.0],
                       "gpu_hours": [4.0, 0.5, 2.0]})
    fig = plots.convergence(df, metric="step-time", x="gpu_hours")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "GPU-hours spent"
    line = next(line for line in ax.get_lines() if line.get_label() == "best so far")
    assert list(line.get_xdata())[:2] == [4.0, 6.5] and list(line.get_ydata())[:2] == [2.0, 1.0]
