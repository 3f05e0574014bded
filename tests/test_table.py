"""trials.csv is replaced atomically: a write that dies midway leaves the previous file intact."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from dse.analysis._table import write_csv_atomic


def test_interrupted_csv_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "trials.csv"
    write_csv_atomic(pd.DataFrame({"trial": [1, 2]}), path)
    before = path.read_text()

    def boom(self, fh, **kw):  # type: ignore[no-untyped-def]
        fh.write("trial\n3\n")  # a partial write, then the process "dies"
        raise KeyboardInterrupt

    monkeypatch.setattr(pd.DataFrame, "to_csv", boom)
    with pytest.raises(KeyboardInterrupt):
        write_csv_atomic(pd.DataFrame({"trial": [1, 2, 3]}), path)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["trials.csv"]  # no temporary file left behind
