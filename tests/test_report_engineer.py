"""The report for performance engineers (#16): TFLOP/s/GPU and MFU per parameter value, memory against the GPU's
capacity with the best trial's headroom, fANOVA parameter importance (from the run's Optuna study when there is
one), and numbers rounded with units. Two simulator demo runs per module, shared by every test."""

from __future__ import annotations

import hashlib
import html
import math
import re
import sys
import warnings
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import optuna  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

import dse  # noqa: E402
from dse.analysis import best_summary, load_trials, write_report  # noqa: E402
from dse.analysis import plots as dse_plots  # noqa: E402
from dse.analysis._efficiency import with_efficiency  # noqa: E402
from dse.analysis._importance import table_importance  # noqa: E402
from dse.analysis._report import build_html  # noqa: E402
from dse.analysis._report_engineer import importance_section  # noqa: E402
from dse.simulator import GPUS  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "sweeps" / "demo_sim_qwen30b_h100.toml"
H100_FP8_PEAK = 1979.0  # H100 SXM dense FP8 TFLOP/s (datasheet), what the demo's fp8_cs runs against
H100_HBM_GB = 79.6
STUDY = "demo_sim_qwen30b_h100"


def _run(sweep: Path, out: Path, **kw: Any) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # optuna's ExperimentalWarning
        result = dse.run(sweep, parallel=4, out=out, cache=out / "cache.db", executor="debug", **kw)
    return Path(result.run_dir)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The demo (random search, 24 trials, tflops-per-gpu and max-alloc-gb measured) and a short optuna run
    of the demo on step time alone, warm-started from the first's cache; each with its report written."""
    out = tmp_path_factory.mktemp("engineer")
    random_run = _run(DEMO, out)
    one = out / "one_metric.toml"
    one.write_text(re.sub(r"(?m)^agent_metrics = .*$", 'agent_metrics = ["step-time"]', DEMO.read_text()))
    optuna_run = _run(one, out, agent="optuna", steps=4)
    for run in (random_run, optuna_run):
        write_report(run)
    return {"random": random_run, "optuna": optuna_run}


def _doc(run: Path) -> str:
    return (run / "report.html").read_text(encoding="utf-8")


def _text(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", fragment)).strip()


def _by_id(doc: str, ident: str) -> str:
    match = re.search(rf'<p[^>]*id="{ident}"[^>]*>(.*?)</p>', doc, re.S)
    assert match, f"no #{ident} in the report"
    return _text(match.group(1))


def _importance_rows(doc: str) -> dict[str, tuple[float, str]]:
    rows = re.findall(r'<tr class="importance" data-param="([^"]+)" data-share="([^"]+)">.*?'
                      r'<td class="num">([^<]+)</td>', doc)
    return {html.unescape(p): (float(share), pct) for p, share, pct in rows}


def _visible(doc: str) -> str:
    """The report's text as a reader sees it: no embedded images, no attributes."""
    return html.unescape(re.sub(r"<[^>]+>", " ", re.sub(r"<style>.*?</style>", "", doc, flags=re.S)))


# --------------------------------------------------------------------------------------- TFLOP/s and MFU
def test_mfu_per_parameter_value_is_tflops_over_the_h100_fp8_dense_peak(runs: dict[str, Path]) -> None:
    assert GPUS["h100"].peak_fp8_tflops == H100_FP8_PEAK
    df = load_trials(runs["random"])
    ok = df[df["status"] == "completed"]
    doc = _doc(runs["random"])
    rows = re.findall(r'<tr class="per-value[^"]*" data-param="([^"]+)" data-value="([^"]+)">.*?'
                      r'<td class="num">(\d+)</td><td class="num">([^<]+)</td><td class="num">([^<]+)</td>'
                      r'<td class="num mfu">([^<]+)</td>', doc)
    params = [c.removeprefix("param.") for c in df.columns if c.startswith("param.")]
    expected_rows = sum(ok[f"param.{p}"].nunique() for p in params)
    assert len(rows) == expected_rows and {r[0] for r in rows} == set(params)
    for param, value, n, median, best, mfu in rows:
        sub = ok[ok[f"param.{param}"].astype(str) == html.unescape(value)]
        tflops = sub["metric.tflops-per-gpu"]
        assert int(n) == len(sub)
        assert median == f"{tflops.median():.1f}" and best == f"{tflops.max():.1f}"
        assert mfu == f"{100 * tflops.max() / H100_FP8_PEAK:.1f} %", (param, value)
    summary = best_summary(runs["random"])
    tf = summary["metrics"]["tflops-per-gpu"]
    line = _by_id(doc, "best-mfu")
    assert line.startswith(f"best trial {summary['trial']}: {tf:.1f} TFLOP/s/GPU, MFU {100 * tf / H100_FP8_PEAK:.1f} %")
    assert "h100 fp8_cs dense peak (1979 TFLOP/s)" in line
    # the top table carries each trial's MFU
    top_mfu = re.findall(r'<td class="num mfu">([^<]+)</td></tr>|<td class="num mfu">([^<]+)</td><td>', doc)
    assert top_mfu and f"{100 * tf / H100_FP8_PEAK:.1f} %" in {a or b for a, b in top_mfu}


def test_mfu_uses_each_trials_own_dtype_and_gpu_where_they_are_swept() -> None:
    df = pd.DataFrame({"trial": [1, 2, 3, 4], "status": ["completed"] * 4, "reward": [1.0, 2.0, 3.0, 4.0],
                       "param.compute_dtype": ["bf16", "fp8_cs", "nvfp4", "fp8_mx"],
                       "param.gpu_type": ["h100", "h100", "b200", "gb300"],
                       "metric.tflops-per-gpu": [500.0, 900.0, 2000.0, 1000.0]})
    eff = with_efficiency(df, {"gpu_type": ["h100", "b200", "gb300"], "compute_dtype": ["bf16", "fp8_cs"]})
    peaks = [GPUS["h100"].peak_bf16_tflops, GPUS["h100"].peak_fp8_tflops, GPUS["b200"].peak_fp4_tflops,
             GPUS["gb300"].peak_fp8_tflops]
    assert eff["peak_tflops"].tolist() == peaks
    assert eff["mfu"].tolist() == pytest.approx([t / p for t, p in zip(df["metric.tflops-per-gpu"], peaks,
                                                                        strict=True)])
    assert eff["hbm_gb"].tolist() == [GPUS[g].hbm_gb for g in df["param.gpu_type"]]


def test_unknown_metric_or_gpu_is_one_line_not_an_empty_section() -> None:
    command = pd.DataFrame({"trial": [1, 2], "status": ["completed", "completed"], "reward": [1.0, 2.0],
                            "param.threads": [1, 2], "metric.step-time": [1.0, 0.5]})
    doc = build_html(command, title="t", best_toml=None, space_summary="")
    assert "tflops-per-gpu" in _by_id(doc, "efficiency-unknown")
    assert "max-alloc-gb" in _by_id(doc, "memory-unknown")
    assert 'id="efficiency-by-value"' not in doc and 'id="memory-vs-capacity"' not in doc
    measured = command.assign(**{"metric.tflops-per-gpu": [100.0, 200.0], "metric.max-alloc-gb": [10.0, 20.0]})
    doc = build_html(measured, title="t", best_toml=None, space_summary="", cmd_args={"command": "x"})
    assert "names no gpu_type" in _by_id(doc, "mfu-unknown")
    assert "capacity is unknown" in _by_id(doc, "headroom-unknown")
    assert 'id="efficiency-by-value"' in doc and 'id="memory-vs-capacity"' in doc
    doc = build_html(measured, title="t", best_toml=None, space_summary="",
                     cmd_args={"gpu_type": "a100", "compute_dtype": "bf16"})
    assert "no datasheet peak" in _by_id(doc, "mfu-unknown") and "a100" in _by_id(doc, "mfu-unknown")


# --------------------------------------------------------------------------------------------- memory
def test_headroom_sentence_and_out_of_memory_trials_match_the_table(runs: dict[str, Path]) -> None:
    df = load_trials(runs["random"])
    summary = best_summary(runs["random"])
    used = float(df.loc[df["trial"] == summary["trial"], "metric.max-alloc-gb"].iloc[0])
    headroom = round(100 * (H100_HBM_GB - used) / H100_HBM_GB)
    doc = _doc(runs["random"])
    assert _by_id(doc, "headroom") == (f"best trial {summary['trial']} uses {used:.1f} of {H100_HBM_GB:.1f} GB, "
                                       f"{headroom} % headroom")
    oom = df.loc[df["error"].fillna("").str.startswith("out-of-memory"), "trial"].tolist()
    assert oom, "the demo runs some configurations out of memory"
    assert _by_id(doc, "oom").startswith(f"{len(oom)} trials ran out of memory (trials {', '.join(map(str, oom))})")


def test_memory_figure_draws_the_capacity_line_and_the_oom_trials(runs: dict[str, Path]) -> None:
    df = load_trials(runs["random"])
    sweep = {"gpu_type": "h100", "compute_dtype": "fp8_cs"}
    fig = dse_plots.memory_vs_capacity(df, cmd_args=sweep)
    ax = fig.axes[0]
    assert any(list(line.get_ydata()) == [H100_HBM_GB, H100_HBM_GB] for line in ax.get_lines())
    labels = {c.get_label(): len(c.get_offsets()) for c in ax.collections}
    n_oom = int(df["error"].fillna("").str.startswith("out-of-memory").sum())
    assert labels[f"out of memory ({n_oom})"] == n_oom
    assert labels[f"peak memory ({int((df['status'] == 'completed').sum())} trials)"] > 0
    fig = dse_plots.efficiency_by_value(df, cmd_args=sweep)
    right = [child for ax in fig.axes for child in ax.child_axes]  # secondary axes are the panels' children
    assert sum(1 for a in right if a.get_ylabel() == "MFU (%)") == 6  # one MFU axis per search dimension
    doc = _doc(runs["random"])
    assert 'id="efficiency-by-value"><img src="data:image/png;base64,' in doc
    assert 'id="memory-vs-capacity"><img src="data:image/png;base64,' in doc


# ----------------------------------------------------------------------------------------- importance
def test_importance_names_the_parameters_and_sums_to_one(runs: dict[str, Path]) -> None:
    doc = _doc(runs["random"])
    rows = _importance_rows(doc)
    params = {c.removeprefix("param.") for c in load_trials(runs["random"]).columns if c.startswith("param.")}
    assert set(rows) == params
    assert sum(share for share, _ in rows.values()) == pytest.approx(1.0, abs=1e-3)
    assert sum(float(pct.removesuffix(" %")) for _, pct in rows.values()) == pytest.approx(100.0, abs=0.5)
    shares = [share for share, _ in rows.values()]
    assert shares == sorted(shares, reverse=True)  # the most important first
    assert "in-memory study" in _by_id(doc, "importance-source")


def test_an_optuna_run_takes_its_importance_from_optuna_db(runs: dict[str, Path]) -> None:
    run = runs["optuna"]
    db = run / "optuna.db"
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    write_report(run, output=run / "again.html")
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before  # the report reads the study, never writes it
    doc = _doc(run)
    source = _by_id(doc, "importance-source")
    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{db}")
    complete = [t for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
                if math.isfinite(t.values[0])]
    assert f"the Optuna study '{STUDY}' in optuna.db" in source and f", {len(complete)} trials:" in source
    assert len(complete) > int(load_trials(run)["status"].isin(["completed", "cached"]).sum())  # not the table's
    expected = optuna.importance.get_param_importances(
        study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
    rows = _importance_rows(doc)
    assert set(rows) == set(expected)
    for name, (share, _) in rows.items():
        assert share == pytest.approx(expected[name], abs=1e-4)


def test_without_scikit_learn_the_section_names_the_extra(runs: dict[str, Path],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "sklearn" or m.startswith("sklearn.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "sklearn", None)  # `import sklearn...` now raises ImportError
    doc = importance_section(table_importance(load_trials(runs["random"])))
    why = _by_id(doc, "importance-why")
    assert "scikit-learn" in why and "megatron-dse[report]" in why
    assert "Traceback" not in doc and not _importance_rows(doc)
    full = build_html(load_trials(runs["random"]), title="t", best_toml=None, space_summary="")
    assert "megatron-dse[report]" in _by_id(full, "importance-why")  # and the report still renders


def test_too_few_trials_or_one_dimension_say_why_there_is_no_importance(runs: dict[str, Path]) -> None:
    df = load_trials(runs["random"])
    ok = df[df["status"] == "completed"]
    doc = importance_section(table_importance(ok.head(4)))
    assert "4 completed trials" in _by_id(doc, "importance-why") and "at least 5" in _by_id(doc, "importance-why")
    one = df.drop(columns=[c for c in df.columns if c.startswith("param.") and c != "param.tp"])
    assert "one dimension" in _by_id(importance_section(table_importance(one)), "importance-why")


# ---------------------------------------------------------------------------------------------- units
def test_numbers_are_rounded_with_units(runs: dict[str, Path]) -> None:
    doc = _doc(runs["random"])
    text = _visible(doc)
    assert not re.search(r"\d\.\d{9,}", text), re.search(r".{40}\d\.\d{9,}.{20}", text)
    step = best_summary(runs["random"])["metrics"]["step-time"]
    best = best_summary(runs["random"])["trial"]
    assert f"best step time {step:.4g} s (trial {best})" in text  # the subtitle: a step time, not a reward
    assert "reward 0." not in text  # nor in the best configuration's header
    spent = load_trials(runs["random"])["gpu_hours"].sum()
    assert re.search(rf'data-total="gpu_hours">{spent:.0f} GPU-hours<', doc)
    assert re.search(r"\d+\.\d TFLOP/s/GPU, MFU \d+\.\d %", text)
    assert re.search(r"uses \d+\.\d of \d+\.\d GB, \d+ % headroom", text)


def test_out_of_memory_and_rejected_trials_are_counted_apart_within_the_failed(runs: dict[str, Path]) -> None:
    doc = _doc(runs["random"])
    df = load_trials(runs["random"])
    oom = int(df["error"].astype(str).str.startswith("out-of-memory").sum())
    assert oom > 0
    assert re.search(rf'of which out of memory</th><td class="num" data-reason="out-of-memory">{oom}<', doc)
    assert re.search(r'data-reason="rejected-config">0<', doc)


def test_a_sweep_without_env_params_gets_one_line_not_an_empty_environment_figure(runs: dict[str, Path]) -> None:
    doc = _doc(runs["random"])
    assert 'id="env-effects"' not in doc and "Environment effects" not in doc
    assert "draws no env_params" in _by_id(doc, "env-effects-why")
