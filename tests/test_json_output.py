"""Every `dse` command takes `--json` (#16): stdout is then one JSON document and nothing else, while what a
long command prints as it works (a run's trial lines) goes to stderr."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO, write_toml

from dse.analysis import load_trials
from dse.cli import build_parser

COMMAND = "echo '{{\\\"step-time\\\": {x}}}' > metrics.json"


def dse(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dse.cli", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=300, env=os.environ.copy())


def _sweep(tmp_path: Path) -> Path:
    return write_toml(tmp_path / "s.toml", f'name = "j"\ntest_template_name = "Command"\nagent = "grid_search"\n'
                                          f'[cmd_args]\ncommand = "{COMMAND}"\nx = [3, 1, 2]\n')


def test_every_command_takes_json() -> None:
    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    lacking = [name for name, p in sub.choices.items() if "--json" not in {o for a in p._actions
                                                                          for o in a.option_strings}]
    assert lacking == []


def test_run_and_resume_print_one_json_object_and_their_progress_to_stderr(tmp_path: Path) -> None:
    r = dse("run", str(_sweep(tmp_path)), "--json", "--out", str(tmp_path / "o"), "--no-cache",
            "--executor", "debug")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)  # the whole of stdout is the object
    run_dir = Path(out["run_dir"])
    assert out["exit_code"] == 0 and out["trials"] == 3 and out["counts"]["completed"] == 3
    assert out["best"]["params"] == {"x": 1} and out["best"]["metrics"] == {"default": 1.0}
    assert run_dir.parent == tmp_path / "o" and "trial    1 completed" in r.stderr
    again = dse("resume", str(run_dir), "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["run_dir"] == str(run_dir) and "resuming" in again.stderr
    assert len(load_trials(run_dir)) == 3


def test_dry_run_json_lists_the_scripts_it_wrote(tmp_path: Path) -> None:
    r = dse("dry-run", str(_sweep(tmp_path)), "-n", "2", "--out", str(tmp_path / "d"), "--json")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert [t["params"] for t in plan["trials"]] == [{"x": 3}, {"x": 1}] and plan["valid"] == 3
    for t in plan["trials"]:
        assert Path(t["script_path"]).read_text() == t["script"] and "echo" in t["script"]


def test_report_table_install_and_completion_json(tmp_path: Path) -> None:
    sweep = _sweep(tmp_path)
    assert dse("run", str(sweep), "--out", str(tmp_path / "o"), "--no-cache", "--executor", "debug").returncode == 0
    (run_dir,) = (tmp_path / "o").iterdir()
    report = json.loads(dse("report", str(run_dir), "--json").stdout)
    assert Path(report["report"]).is_file() and report["report"].endswith("report.html")
    assert dse("table", str(run_dir), "--json").stdout == dse("table", str(run_dir), "--format", "json").stdout
    assert json.loads(dse("install", str(sweep), "--json").stdout) == {"repos": {}, "launcher": None,
                                                                       "image": None, "lines": []}
    words = json.loads(dse("completion", "bash", "--json").stdout)
    assert "run" in words["commands"] and "--json" in words["run"] and "--early-stopping" in words["run"]
