"""dse.analysis._report: one self-contained, escaped HTML file with counts, the top trials and every figure."""

from __future__ import annotations

import base64
import struct
from html.parser import HTMLParser
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from dse.analysis._report import STATUSES, render_report  # noqa: E402

EVIL = "<script>alert('pwned')</script>"
N_FIGURES = 9  # six, the best so far against the GPU-hours spent, TFLOP/s per value and memory vs capacity (#16)


def trials(n: int = 48, seed: int = 3, run: str | None = None) -> pd.DataFrame:
    """A small trial table in the `dse.load_trials` schema with every terminal status represented."""
    rng = np.random.default_rng(seed)
    cycle = ["completed", "completed", "cached", "failed", "completed", "infeasible", "completed", "timeout",
             "completed", "preempted", "completed", "completed"]
    rows = []
    for i in range(1, n + 1):
        status = cycle[(i - 1) % len(cycle)]
        ok = status in ("completed", "cached")
        step = float(rng.uniform(1.0, 5.0))
        rows.append({
            "trial": i, "status": status, "reward": -step if ok else -np.inf, "cache_hit": status == "cached",
            "config_hash": f"{i:012x}", "param.tp": int(rng.choice([1, 2, 4, 8])),
            "param.mb": int(rng.choice([1, 2])), "param.cuda_graph_scope": str(rng.choice(["none", "attn"])),
            "param.use_fp8": bool(rng.random() < 0.5), "env.seq_length": int(rng.choice([4096, 8192])),
            "metric.step-time": step if ok else np.nan,
            "metric.max-alloc-gb": float(rng.uniform(20, 80)) if ok else np.nan,
            "metric.tflops-per-gpu": 600 / step if ok else np.nan,
            "job_id": str(500 + i), "attempts": 1, "started_at": pd.Timestamp("2025-02-01") + pd.Timedelta(hours=i),
            "finished_at": pd.NaT, "duration_s": 100.0 + i, "error": "" if ok else f"{status}: {EVIL}",
        } | ({"run": run, "agent": "grid_search"} if run else {}))
    return pd.DataFrame(rows)


class _Page(HTMLParser):
    """Collects what the tests look at: images, status counts, top-table rows, <pre> text, all text."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict[str, str | None]] = []
        self.counts: dict[str, int] = {}
        self.top_rows: list[list[str]] = []
        self.pres: list[str] = []
        self.tags: set[str] = set()
        self.text: list[str] = []
        self._status: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._pre: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.add(tag)
        if tag == "img":
            self.images.append(a)
        elif tag == "td" and a.get("data-status"):
            self._status = a["data-status"]
        elif tag == "tr" and a.get("class") == "trial":
            self._row = []
        elif tag == "td" and self._row is not None:
            self._cell = []
        elif tag == "pre":
            self._pre = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.top_rows.append(self._row)
            self._row = None
        elif tag == "pre" and self._pre is not None:
            self.pres.append("".join(self._pre))
            self._pre = None
        elif tag == "td":
            self._status = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._status is not None:
            self.counts[self._status] = int(data)
        if self._cell is not None:
            self._cell.append(data)
        if self._pre is not None:
            self._pre.append(data)


def _render(tmp_path: Path, df: pd.DataFrame, **kw: object) -> tuple[str, _Page]:
    args = {"title": "llama3-8b <sweep> & co", "best_toml": '[cmd_args]\ntp = 2\nname = "<b>x</b>"',
            "space_summary": "tp: [1, 2, 4, 8]  (4 values)\nvalid: 12 of 16", "top": 10,
            "out_path": tmp_path / "sub" / "report.html"} | kw
    out = render_report(df, **args)  # type: ignore[arg-type]
    assert out == args["out_path"] and out.is_file()
    document = out.read_text(encoding="utf-8")
    page = _Page()
    page.feed(document)
    page.close()
    return document, page


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def realistic(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, str, _Page]:
    df = trials()
    document, page = _render(tmp_path_factory.mktemp("report"), df, top=15)
    return df, document, page


def test_every_figure_is_an_embedded_png(realistic: tuple[pd.DataFrame, str, _Page]) -> None:
    _, _, page = realistic
    assert len(page.images) == N_FIGURES
    for img in page.images:
        src = img["src"] or ""
        assert src.startswith("data:image/png;base64,")
        data = base64.b64decode(src.split(",", 1)[1], validate=True)
        width, height = _png_size(data)
        assert width > 200 and height > 200
        assert len(data) > 5000
        assert (img.get("alt") or "").strip()


def test_self_contained(realistic: tuple[pd.DataFrame, str, _Page]) -> None:
    _, document, page = realistic
    assert not page.tags & {"script", "link", "iframe", "object"}
    assert "http://" not in document and "https://" not in document and "url(" not in document


def test_counts_by_status(realistic: tuple[pd.DataFrame, str, _Page]) -> None:
    df, _, page = realistic
    expected = df["status"].value_counts()
    for status in STATUSES:
        assert page.counts[status] == int(expected.get(status, 0)), status
    assert page.counts["total"] == len(df)
    assert page.counts["failed"] > 0 and page.counts["pending"] == 0


def test_top_table_has_the_best_trials_in_order(realistic: tuple[pd.DataFrame, str, _Page]) -> None:
    df, _, page = realistic
    ok = df[df["status"].isin(["completed", "cached"])]
    expected = ok.sort_values("reward", ascending=False)["trial"].head(15).astype(str).tolist()
    assert len(page.top_rows) == 15
    assert [row[0] for row in page.top_rows] == [str(i) for i in range(1, 16)]  # rank column
    assert [row[1] for row in page.top_rows] == expected  # trial column
    best = ok.loc[ok["reward"].idxmax()]
    assert f"{best['metric.step-time']:.4g}" in page.top_rows[0]
    assert {"true", "false"} & set(page.top_rows[0])  # bool param rendered


def test_text_is_escaped(realistic: tuple[pd.DataFrame, str, _Page]) -> None:
    _, document, page = realistic
    assert "<script>" not in document and "&lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt;" in document
    assert "<sweep>" not in document and "llama3-8b &lt;sweep&gt; &amp; co" in document
    assert "<b>x</b>" not in document
    assert page.pres[0] == '[cmd_args]\ntp = 2\nname = "<b>x</b>"'  # round-trips through the parser
    assert page.pres[1].startswith("tp: [1, 2, 4, 8]")
    assert EVIL in "".join(page.text)  # the error is shown, as text


def test_fewer_successes_than_top(tmp_path: Path) -> None:
    df = trials(12)
    _, page = _render(tmp_path, df, top=20)
    assert len(page.top_rows) == int(df["status"].isin(["completed", "cached"]).sum())


def test_empty_and_all_failed_tables_still_render(tmp_path: Path) -> None:
    _, page = _render(tmp_path, trials().iloc[:0], best_toml=None)
    assert page.counts["total"] == 0 and not page.top_rows
    assert len(page.images) == N_FIGURES
    assert any("No successful trial yet" in t for t in page.text)
    failed = trials()
    failed = failed[~failed["status"].isin(["completed", "cached"])]
    _, page = _render(tmp_path, failed, best_toml=None)
    assert page.counts["total"] == len(failed) and not page.top_rows
    assert len(page.images) == N_FIGURES


def test_multi_run_table_names_the_run(tmp_path: Path) -> None:
    df = pd.concat([trials(24, seed=1, run="run-a"), trials(24, seed=2, run="run-b")], ignore_index=True)
    _, page = _render(tmp_path, df, top=5)
    assert len(page.top_rows) == 5
    assert all(row[1] in {"run-a", "run-b"} for row in page.top_rows)
    assert any("2 runs" in t for t in page.text)


def test_failures_are_grouped_not_repeated(tmp_path: Path) -> None:
    """Ten out-of-memory trials are one row with their trial numbers and one example, not ten copies."""
    df = trials(12)
    df["status"] = ["completed", "completed"] + ["failed"] * 10
    df["error"] = ["", ""] + ["out-of-memory: CUDA out of memory"] * 9 + ["exit-code: exit code 3"]
    document, page = _render(tmp_path, df)
    failures = document[document.index('class="failures"'):document.index('id="figures"')]
    assert failures.count("CUDA out of memory") == 1 and failures.count("<tr>") == 3  # header, OOM, exit-code
    assert "3, 4, 5, 6, 7, 8, 9, 10, 11" in failures and "exit code 3" in failures
