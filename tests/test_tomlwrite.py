"""Every TOML dse writes reads back, with tomllib, as the data it wrote: emoji and any other character
included (a run stays resumable), and best.toml / sweep.toml are replaced atomically."""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, write_toml
from hypothesis import given, settings
from hypothesis import strategies as st

from dse import tomlwrite
from dse.storage import TrialStore
from dse.tomlwrite import dumps

DATA: dict[str, Any] = {
    "name": "emoji 🚀 sweep 😀",
    "description": 'quotes " and \' and \\ backslash, tab\t, newline\n, bell\x07, del\x7f, nul\x00',
    "agent_steps": 3,
    "big": 2**62,
    "neg": -7,
    "ratio": 1e-05,
    "zero": -0.0,
    "flag": True,
    "off": False,
    "list": [1, 2, 3],
    "mixed": ["a🚀", "b"],
    "nested_lists": [[1, 2], ["x"]],
    "empty_list": [],
    "cmd_args": {
        "tp": [1, 2],
        "model.seq_length": 4096,
        "key with spaces 🚀": "v",
        "deep": {"deeper": {"x": "y😀"}},
        "empty": {},
    },
    "git_repos": [{"url": "file:///r/🚀.git", "commit": "v0.3.0", "mount_as": "/opt/Megatron-Bridge"},
                  {"url": "https://example.com/" + "long" * 40, "commit": "abc"}],
    "extra_env_vars": {"NCCL_DEBUG": "INFO", "EMOJI": "🚀"},
}


def test_dumps_round_trips_every_kind_of_value() -> None:
    text = dumps(DATA, header="first line 🚀\nsecond line\twith tab and a \x01 control")
    assert tomllib.loads(text) == DATA
    assert text.startswith("# first line 🚀\n# second line\twith tab and a   control\n")
    assert math.copysign(1.0, tomllib.loads(text)["zero"]) == -1.0


def test_dumps_leaves_none_out_and_writes_other_objects_as_text() -> None:
    data = {"a": None, "b": 1, "t": {"x": None, "y": (1, 2)}, "p": Path("/x/y")}
    assert tomllib.loads(dumps(data)) == {"b": 1, "t": {"y": [1, 2]}, "p": "/x/y"}
    assert dumps({}) == "" and tomllib.loads(dumps({}, header="only a header")) == {}


def test_non_finite_floats_are_valid_toml() -> None:
    out = tomllib.loads(dumps({"a": math.inf, "b": -math.inf, "c": math.nan}))
    assert out["a"] == math.inf and out["b"] == -math.inf and math.isnan(out["c"])


def test_lone_surrogate_still_gives_valid_utf8_toml(tmp_path: Path) -> None:
    from dse.tomlwrite import write_toml_atomic

    path = write_toml_atomic(tmp_path / "s.toml", {"name": "bad\udcff name"}, header="from \udcff.toml")
    assert tomllib.loads(path.read_text(encoding="utf-8"))["name"] == "bad\\udcff name"


_scalars = st.one_of(st.booleans(), st.integers(min_value=-(2**63), max_value=2**63 - 1),
                     st.floats(allow_nan=False), st.text())
_values = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                         st.dictionaries(st.text(), inner, max_size=4)),
                       max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(), _values, max_size=6), st.text())
def test_dumps_round_trips_any_data(data: dict[str, Any], header: str) -> None:
    assert tomllib.loads(dumps(data, header=header)) == data


def test_write_toml_atomic_replaces_and_leaves_no_temp_file(tmp_path: Path) -> None:
    from dse.tomlwrite import write_toml_atomic

    path = tmp_path / "best.toml"
    path.write_text("old = 1\n")
    write_toml_atomic(path, {"new": "🚀"}, header="h")
    assert tomllib.loads(path.read_text(encoding="utf-8")) == {"new": "🚀"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.toml"]


def test_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dse.tomlwrite import write_text_atomic

    path = tmp_path / "best.toml"
    path.write_text("old = 1\n")

    def broken_replace(src: Any, dst: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(tomlwrite.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_text_atomic(path, "new = 2\n")
    assert path.read_text() == "old = 1\n" and sorted(p.name for p in tmp_path.iterdir()) == ["best.toml"]


# ---- a real run ----------------------------------------------------------------------------------------
def _dse(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dse.cli", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=180, env=os.environ.copy())


def _emoji_sweep(tmp_path: Path) -> Path:
    command = "echo '{{\"step-time\": {x}}}' > metrics.json; echo {label}"
    text = "\n".join([
        'name = "emoji 🚀 sweep"', 'description = "a \\"quoted\\" 😀 description\\nwith a newline"',
        'test_template_name = "Command"', 'agent = "grid_search"', 'agent_metrics = ["step-time"]',
        "[cmd_args]", f"command = {json.dumps(command)}", "x = [2, 1]", 'label = ["🚀 rocket", "plain"]',
        'note = "naïve 😀 \\\\ backslash"',
        "[extra_env_vars]", 'GREETING = "héllo 🚀"',
    ]) + "\n"
    return write_toml(tmp_path / "emoji.toml", text)


def test_real_run_toml_round_trips_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    r = _dse("run", str(_emoji_sweep(tmp_path)), "--out", str(out), "--no-cache")
    assert r.returncode == 0, r.stdout + r.stderr
    (run,) = list(out.iterdir())
    with TrialStore(run / "trials.db") as store:
        data = store.get_meta("sweep_data")
        best = max(store.all(), key=lambda rec: (rec.reward, -rec.trial))
    assert tomllib.loads((run / "sweep.toml").read_text(encoding="utf-8")) == data
    assert data["name"] == "emoji 🚀 sweep" and data["cmd_args"]["label"] == ["🚀 rocket", "plain"]
    expected = copy.deepcopy(data)
    expected["cmd_args"].update(best.action)
    expected.update(agent="grid_search", agent_steps=1)
    expected.pop("env_params", None)
    assert tomllib.loads((run / "best.toml").read_text(encoding="utf-8")) == expected
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]

    resumed = _dse("resume", str(run))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    printed = _dse("best", str(run), "--toml")
    assert printed.returncode == 0 and tomllib.loads(printed.stdout) == expected
    again = _dse("run", str(run / "best.toml"), "--out", str(tmp_path / "again"), "--no-cache")
    assert again.returncode == 0, again.stdout + again.stderr


def test_run_writes_sweep_and_best_toml_through_os_replace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dse.cli import main

    targets: list[str] = []
    real_replace = os.replace

    def recording_replace(src: Any, dst: Any) -> None:
        targets.append(Path(dst).name)
        real_replace(src, dst)

    monkeypatch.setattr(tomlwrite.os, "replace", recording_replace)
    sweep = _emoji_sweep(tmp_path)
    assert main(["run", str(sweep), "--out", str(tmp_path / "runs"), "--no-cache", "--executor", "debug"]) == 0
    assert "sweep.toml" in targets and "best.toml" in targets
