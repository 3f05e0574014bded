"""`dse report --interactive` (#16): the same report plus plotly figures, offline (plotly.js embedded, no
`<script src>`), one hover point per trial naming its parameters and step time with units, the best so far,
parallel coordinates of the swept parameters; the plain report unchanged; without plotly one line, exit 2.
One small simulator run per module."""

from __future__ import annotations

import json
import re
import sys
import warnings
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

import dse  # noqa: E402
from dse import cli  # noqa: E402
from dse.analysis import load_trials, write_report  # noqa: E402
from dse.analysis._report import build_html  # noqa: E402

pytest.importorskip("plotly")

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "sweeps" / "demo_sim_qwen30b_h100.toml"
SECTION = re.compile(r'\n<h2 id="interactive">.*?(?=\n</body></html>)', re.S)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """8 trials of the simulator demo (some run out of memory), its plain and interactive reports."""
    out = tmp_path_factory.mktemp("interactive")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = dse.run(DEMO, steps=8, parallel=4, executor="debug", out=out, cache=out / "c.db")
    run_dir = Path(result.run_dir)
    plain = write_report(run_dir, output=out / "plain.html").read_text()
    rich = write_report(run_dir, output=out / "interactive.html", interactive=True).read_text()
    return {"dir": run_dir, "out": out, "df": load_trials(run_dir), "plain": plain, "rich": rich}


def _spec(page: str, ident: str) -> dict[str, Any]:
    match = re.search(rf'<script type="application/json" id="{ident}-spec">(.*?)</script>', page, re.S)
    assert match, f"no {ident} figure"
    spec: dict[str, Any] = json.loads(match.group(1))
    return spec


def _points(page: str) -> list[dict[str, Any]]:
    return [t for t in _spec(page, "ifig-trials")["data"] if t.get("mode") == "markers"]


def test_plotly_js_is_embedded_and_nothing_is_fetched(run: dict[str, Any]) -> None:
    rich = run["rich"]
    scripts = re.findall(r"<script\b[^>]*>", rich)
    assert not [s for s in scripts if "src=" in s], scripts
    embedded = max((m.group(1) for m in re.finditer(r'<script type="text/javascript">(.*?)</script>', rich, re.S)),
                   key=len)
    assert len(embedded) > 1_000_000 and "plotly.js" in embedded[:200]
    assert rich.count("Plotly.newPlot(") == 2
    assert "cdn.plot.ly" not in rich.replace(embedded, "")


def test_one_point_per_trial_whose_hover_names_its_params_and_step_time(run: dict[str, Any]) -> None:
    df = run["df"]
    points = _points(run["rich"])
    trials = [int(t) for trace in points for t in trace["customdata"]]
    assert sorted(trials) == sorted(df["trial"].astype(int)) and len(trials) == len(df) == 8
    texts = {int(t): text for trace in points for t, text in zip(trace["customdata"], trace["text"], strict=True)}
    params = [c for c in df.columns if c.startswith("param.")]
    assert params
    for _, row in df.iterrows():
        text = texts[int(row["trial"])]
        assert f"trial {row['trial']}</b> ({row['status']})" in text
        for c in params:
            assert f"<br>{c.removeprefix('param.')}: {row[c]}<br>" in text
        step = row["metric.step-time"]
        if row["status"] == "completed":
            assert f"step-time: {step:.4g} s" in text
            assert "tflops-per-gpu: " in text and " TFLOP/s/GPU" in text and " GB" in text
        else:
            assert "step-time" not in text and "why: out-of-memory" in text
    statuses = {trace["name"].split(" (")[0] for trace in points}
    assert statuses == set(df["status"]) and "failed" in statuses  # coloured by status: a trace each


def test_best_so_far_is_the_running_minimum_of_the_step_times(run: dict[str, Any]) -> None:
    df = run["df"].sort_values("trial")
    ok = df["status"].isin(["completed", "cached"])
    expected = df["metric.step-time"].where(ok).cummin().ffill()
    line = next(t for t in _spec(run["rich"], "ifig-trials")["data"] if "so far" in t.get("name", ""))
    assert line["x"] == [float(t) for t in df["trial"]]
    assert np.allclose([np.nan if v is None else v for v in line["y"]], expected.to_numpy(), equal_nan=True)


def test_parallel_coordinates_have_one_axis_per_swept_parameter(run: dict[str, Any]) -> None:
    df = run["df"]
    (trace,) = _spec(run["rich"], "ifig-parallel")["data"]
    assert trace["type"] == "parcoords"
    params = [c.removeprefix("param.") for c in df.columns if c.startswith("param.")]
    labels = [d["label"] for d in trace["dimensions"]]
    assert labels == [*params, "step time (s)"]
    ok = df[df["status"] == "completed"]
    assert all(len(d["values"]) == len(ok) for d in trace["dimensions"])
    assert sorted(trace["dimensions"][-1]["values"]) == pytest.approx(sorted(ok["metric.step-time"]))
    assert trace["line"]["color"] == trace["dimensions"][-1]["values"]
    tp = trace["dimensions"][params.index("tp")]  # a value's position on its axis names that value
    assert [tp["ticktext"][v] for v in tp["values"]] == [str(v) for v in ok["param.tp"]]


def test_the_plain_report_is_unchanged_and_holds_no_plotly(run: dict[str, Any]) -> None:
    plain, rich = run["plain"], run["rich"]
    assert "plotly" not in plain.lower() and "<script" not in plain
    assert SECTION.sub("", rich) == plain  # the interactive report is the plain one plus one section at the end
    assert SECTION.search(rich)


def test_user_strings_in_the_hover_text_cannot_break_out_of_the_page() -> None:
    evil = "</script><script>alert(1)</script>"
    df = pd.DataFrame([{"trial": i, "status": "completed", "reward": -float(i), "param.name": evil,
                        "param.tp": i, "metric.step-time": float(i)} for i in (1, 2)])
    page = build_html(df, title="t", best_toml=None, space_summary="", interactive=True)
    assert evil not in page
    assert page.count("<script") == page.count("</script>") == 5  # plotly.js, and a spec and a call per figure
    texts = _points(page)[0]["text"]
    assert all("&lt;/script&gt;" in t for t in texts)  # escaped for plotly's hover HTML, then JSON-escaped


def test_without_plotly_one_line_exit_2_and_nothing_written(run: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("plotly", "plotly.graph_objects", "plotly.offline"):
        monkeypatch.setitem(sys.modules, name, None)  # `import plotly...` now raises ImportError
    before = sorted(p.name for p in run["dir"].iterdir())
    assert cli.main(["report", str(run["dir"]), "--interactive"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--interactive" in err and "pip install 'megatron-dse[report]'" in err, err
    assert sorted(p.name for p in run["dir"].iterdir()) == before and not (run["dir"] / "report.html").exists()
