"""`--log-to wandb|mlflow` and `dse export`: each finished trial reaches W&B and MLflow with the trial table's
values, once, and without a secret; a missing extra is refused up front; a failing logger never stops a sweep.

Offline only: W&B with WANDB_MODE=offline (read back from its `.wandb` file and the table's JSON), MLflow in
the SQLite store the run dir gets when MLFLOW_TRACKING_URI is unset (read back with MlflowClient).
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import write_toml

from dse.analysis import load_trials
from dse.errors import InputError
from dse.storage import TrialStore
from dse.trial import TrialRecord

pytest.importorskip("wandb")
pytest.importorskip("mlflow")
# MLflow's SQLite store, read back here, uses a SQLAlchemy option SQLAlchemy 2.1 deprecates (not ours to fix)
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

TOKEN = "hf_EXPORTsecretEXPORT0123456789abcdefXYZ"
PLAIN = "plainExportSecret0123"  # a resolved HF token without the hf_ prefix: only known by its value


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "MLFLOW_"))}
    env.update(WANDB_MODE="offline", WANDB_SILENT="true", WANDB_CONFIG_DIR=str(tmp / "wandb-config"),
               WANDB_CACHE_DIR=str(tmp / "wandb-cache"), WANDB_DATA_DIR=str(tmp / "wandb-data"), **extra)
    return env


def dse(tmp: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a fresh process, from `tmp` (so that a tracker writing into the cwd would show)."""
    return subprocess.run([sys.executable, "-m", "dse.cli", *args], capture_output=True, text=True, cwd=tmp,
                          timeout=180, env=_env(tmp, **env))


def sweep(tmp: Path, values: str = "[1, 2, 3]", secrets: bool = False, name: str = "exp") -> Path:
    cmd = "echo '{{\"step-time\": {x}}}' > metrics.json"
    text = (f'name = "{name}"\ntest_template_name = "Command"\nagent = "grid_search"\n'
            f'agent_metrics = ["step-time"]\n[cmd_args]\ncommand = {json.dumps(cmd)}\nx = {values}\n')
    if secrets:
        text += (f'wandb_key = "{TOKEN}"\n[extra_env_vars]\nMY_TOKEN = "{TOKEN}"\nARGS = "--token={TOKEN}"\n')
    return write_toml(tmp / f"{name}.toml", text)


def one_run(out: Path) -> Path:
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    return run


# ---- reading back what was logged ------------------------------------------------------------------
def _wandb_records(path: Path) -> list[Any]:
    """The records of a `.wandb` file (W&B's LevelDB-style log: 32 KiB blocks of crc/length/type chunks)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    out, pos, buf = [], 7, b""
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if length == 0 and kind == 0:
            pos += left
            continue
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        buf = chunk if kind in (1, 2) else buf + chunk
        if kind in (1, 4):  # a full record, or the last chunk of one
            rec = pb.Record()
            rec.ParseFromString(buf)
            out.append(rec)
    return out


def wandb_runs(run_dir: Path) -> list[dict[str, Any]]:
    """Each offline W&B run under RUN_DIR/wandb: its id, config and history rows (JSON-decoded)."""
    runs = []
    for folder in sorted((run_dir / "wandb").glob("offline-run-*")):
        (file,) = folder.glob("run-*.wandb")
        recs = _wandb_records(file)
        run = next(r.run for r in recs if r.WhichOneof("record_type") == "run")
        config = {u.key: json.loads(u.value_json) for u in run.config.update}
        rows = [{i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
                for r in recs if r.WhichOneof("record_type") == "history"]
        tables = [json.loads(p.read_text()) for p in sorted(folder.glob("files/media/table/trials_*.table.json"))]
        runs.append({"id": run.run_id, "project": run.project, "name": run.display_name, "config": config,
                     "rows": [r for r in rows if "trial" in r], "tables": tables})
    return runs


def mlflow_children(run_dir: Path) -> tuple[Any, list[Any]]:
    """The parent run and its child runs, in the store the run's ledger names."""
    from mlflow.tracking import MlflowClient

    state = json.loads((run_dir / "export" / "mlflow.json").read_text())
    client = MlflowClient(state["tracking_uri"])
    parent = client.get_run(state["parent_run_id"])
    children = client.search_runs([parent.info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{parent.info.run_id}'", max_results=1000)
    return parent, children


def _files_with(root: Path, secret: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


# ---- a run logged to both -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    tmp = tmp_path_factory.mktemp("logged")
    r = dse(tmp, "run", str(sweep(tmp, secrets=True)), "--out", str(tmp / "runs"), "--no-cache", "--executor", "debug",
            "--log-to", "wandb,mlflow", "--wandb-project", "dse-test", HF_TOKEN=PLAIN)
    assert r.returncode == 0, r.stdout + r.stderr
    return one_run(tmp / "runs"), r


def test_mlflow_has_one_child_run_per_trial_with_the_tables_values(logged: tuple[Path, Any]) -> None:
    run, _ = logged
    df = load_trials(run).set_index("trial")
    parent, children = mlflow_children(run)
    assert json.loads((run / "export" / "mlflow.json").read_text())["tracking_uri"] == \
        f"sqlite:///{run.resolve() / 'mlflow.db'}"  # no MLFLOW_TRACKING_URI: a store in the run dir
    assert parent.info.run_name == run.name and parent.info.status == "FINISHED"
    assert parent.data.params["dse.agent"] == "grid_search" and parent.data.metrics["trials"] == 3
    assert sorted(int(c.data.tags["dse.trial"]) for c in children) == [1, 2, 3]
    for child in children:
        row = df.loc[int(child.data.tags["dse.trial"])]
        assert child.data.params == {"x": str(row["param.x"])}
        assert child.data.metrics["step-time"] == pytest.approx(row["metric.step-time"])
        assert child.data.metrics["reward"] == pytest.approx(row["reward"])
        assert child.data.metrics["gpu_hours"] == pytest.approx(row["gpu_hours"])
        tags = child.data.tags
        assert (tags["status"], tags["config_hash"], tags["cache_hit"]) == (row["status"], row["config_hash"],
                                                                            "false")
        assert child.info.status == "FINISHED"


def test_wandb_has_one_row_per_trial_and_the_table(logged: tuple[Path, Any]) -> None:
    run, r = logged
    df = load_trials(run).set_index("trial")
    (wb,) = wandb_runs(run)
    assert (wb["project"], wb["name"]) == ("dse-test", run.name) and "wandb sync" in r.stdout
    assert wb["config"]["dse"]["agent"] == "grid_search" and wb["config"]["sweep"]["name"] == "exp"
    assert sorted(row["trial"] for row in wb["rows"]) == [1, 2, 3]
    for row in wb["rows"]:
        want = df.loc[row["trial"]]
        assert row["params/x"] == want["param.x"] and row["status"] == want["status"]
        assert row["metrics/step-time"] == pytest.approx(want["metric.step-time"])
        assert row["reward"] == pytest.approx(want["reward"])
        assert row["gpu_hours"] == pytest.approx(want["gpu_hours"])
        assert (row["cache_hit"], row["config_hash"]) == (False, want["config_hash"])
    (table,) = wb["tables"]
    got = {row[table["columns"].index("trial")]: row[table["columns"].index("metric.step-time")]
           for row in table["data"]}
    assert got == pytest.approx(df["metric.step-time"].to_dict())


def test_no_secret_reaches_a_tracker_and_nothing_lands_in_the_cwd(logged: tuple[Path, Any]) -> None:
    run, r = logged
    tmp = run.parent.parent
    assert (run / "mlflow.db").is_file() and (run / "wandb").is_dir()
    assert not [p.name for p in tmp.iterdir() if p.name in ("mlruns", "mlartifacts", "wandb", "mlflow.db")]
    for secret in (TOKEN, PLAIN):
        assert secret not in r.stdout + r.stderr
        assert [p for p in _files_with(tmp, secret) if p.name != "exp.toml"] == []  # only the sweep we wrote


# ---- refusals and failures --------------------------------------------------------------------------
@pytest.mark.parametrize("tracker", ["wandb", "mlflow"])
def test_missing_extra_is_one_line_exit_2_before_anything_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str],
                                                               tracker: str) -> None:
    from dse.cli import main

    monkeypatch.setitem(sys.modules, tracker, None)  # as if the extra were not installed
    out = tmp_path / "runs"
    assert main(["run", str(sweep(tmp_path)), "--out", str(out), "--log-to", f"wandb,{tracker}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: --log-to {tracker}: needs the {tracker} extra: pip install 'megatron-dse[{tracker}]'"]
    assert not out.exists()
    assert main(["run", str(sweep(tmp_path)), "--out", str(out), "--log-to", "neptune"]) == 2
    assert "unknown tracker 'neptune'" in capsys.readouterr().err and not out.exists()


class Boom:
    """A trial observer that fails at every trial and at close."""

    name = "boom"

    def __init__(self) -> None:
        self.seen: list[int] = []
        self.closed = False

    def start(self, run_dir: Path) -> None:
        pass

    def on_trial(self, record: TrialRecord) -> None:
        self.seen.append(record.trial)
        raise RuntimeError(f"tracker down ({TOKEN})")

    def close(self) -> None:
        self.closed = True
        raise RuntimeError("still down")


def test_a_failing_logger_warns_once_and_the_sweep_goes_on(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from dse.agents import create_sweep_agent
    from dse.engine import RunOptions, run_sweep
    from dse.spec import load_sweep

    boom = Boom()
    opts = RunOptions(out=tmp_path / "runs", no_cache=True, executor="debug", trial_observers=[boom],
                      log_to=["boom"])
    assert run_sweep(load_sweep(sweep(tmp_path)), opts, create_sweep_agent) == 0
    run = one_run(tmp_path / "runs")
    assert set(load_trials(run)["status"]) == {"completed"} and len(load_trials(run)) == 3
    assert boom.seen == [1, 2, 3] and boom.closed
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("warning: trial logger boom: on_trial failed (RuntimeError: tracker "
                                               "down (***))"), err
    with TrialStore(run / "trials.db", readonly=True) as store:
        assert store.get_meta("options")["log_to"] == ["boom"]  # kept for resume; the observer itself is not


def test_a_tracker_that_cannot_start_leaves_the_sweep_running(tmp_path: Path) -> None:
    r = dse(tmp_path, "run", str(sweep(tmp_path)), "--out", str(tmp_path / "runs"), "--no-cache", "--executor", "debug",
            "--log-to", "mlflow", MLFLOW_TRACKING_URI="nosuchscheme://nowhere")
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(load_trials(one_run(tmp_path / "runs"))) == 3
    warnings = [line for line in r.stderr.splitlines() if line.startswith("warning: trial logger mlflow: start")]
    assert len(warnings) == 1 and "dse export" in warnings[0]


# ---- resume and export: the same runs, no trial twice ---------------------------------------------
def tracking_uri(logged: tuple[Path, Any], tmp: Path) -> str:
    """A store that already holds another dse run (a copy of the first run's): a new SQLite store costs 5 s of
    schema migrations, and a shared server holds many runs anyway."""
    (tmp / "store.db").write_bytes((logged[0] / "mlflow.db").read_bytes())
    return f"sqlite:///{tmp / 'store.db'}"


def test_resume_continues_the_same_tracker_runs_without_duplicates(tmp_path: Path,
                                                                  logged: tuple[Path, Any]) -> None:
    out, uri = tmp_path / "runs", tracking_uri(logged, tmp_path)
    r = dse(tmp_path, "run", str(sweep(tmp_path, "[1, 2, 3, 4]")), "--out", str(out), "--no-cache", "--executor", "debug",
            "--steps", "2", "--log-to", "wandb", "--log-to", "mlflow", MLFLOW_TRACKING_URI=uri)
    assert r.returncode == 0, r.stdout + r.stderr
    run = one_run(out)
    with TrialStore(run / "trials.db") as store:  # as a run stopped after 2 of its 4 trials leaves it
        store.set_meta("steps", 4)
    ledger = run / "export" / "mlflow.trials"  # and as if the driver had died before noting trial 2 as sent
    ledger.write_text("1\n")
    r = dse(tmp_path, "resume", str(run), MLFLOW_TRACKING_URI=uri)  # no --log-to: the run's own trackers go on
    assert r.returncode == 0, r.stdout + r.stderr
    assert sorted(load_trials(run)["trial"]) == [1, 2, 3, 4]
    _, children = mlflow_children(run)
    assert sorted(int(c.data.tags["dse.trial"]) for c in children) == [1, 2, 3, 4]
    first, second = wandb_runs(run)
    assert first["id"] == second["id"]
    assert [row["trial"] for row in first["rows"]] == [1, 2] and [row["trial"] for row in second["rows"]] == [3, 4]
    assert len(second["tables"][0]["data"]) == 4  # the table at close holds the whole run


def test_export_sends_a_finished_run_once(tmp_path: Path, logged: tuple[Path, Any],
                                          monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from dse.cli import main

    out, uri = tmp_path / "runs", tracking_uri(logged, tmp_path)
    assert dse(tmp_path, "run", str(sweep(tmp_path)), "--out", str(out), "--no-cache", "--executor", "debug").returncode == 0
    run = one_run(out)
    assert not (run / "export").exists()
    r = dse(tmp_path, "export", str(run), "--to", "mlflow,wandb", MLFLOW_TRACKING_URI=uri)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "mlflow: sent 3 trials (0 were sent before)" in r.stdout
    assert "wandb: sent 3 trials (0 were sent before)" in r.stdout
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # in this process from here: no second start-up to pay
    assert main(["export", str(run), "--to", "mlflow"]) == 0
    assert "mlflow: sent 0 trials (3 were sent before)" in capsys.readouterr().out
    assert main(["export", str(run), "--to", "mlflow", "--json"]) == 0  # the same as data
    assert json.loads(capsys.readouterr().out) == [{"tracker": "mlflow", "sent": 0, "sent_before": 3}]
    _, children = mlflow_children(run)
    assert sorted(int(c.data.tags["dse.trial"]) for c in children) == [1, 2, 3]
    (wb,) = wandb_runs(run)
    assert sorted(row["trial"] for row in wb["rows"]) == [1, 2, 3]
    assert main(["export", str(tmp_path), "--to", "wandb"]) == 2
    assert "not a dse run directory" in capsys.readouterr().err


def test_the_library_run_logs_to_mlflow_too(tmp_path: Path, logged: tuple[Path, Any],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import dse as library

    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri(logged, tmp_path))
    result = library.run(sweep(tmp_path), out=tmp_path / "runs", no_cache=True, executor="debug",
                         log_to=["mlflow"])
    assert result.exit_code == 0
    _, children = mlflow_children(result.run_dir)
    assert sorted(int(c.data.tags["dse.trial"]) for c in children) == [1, 2, 3]
    with pytest.raises(InputError) as err:
        library.run(sweep(tmp_path), out=tmp_path / "runs", log_to=["nope"])
    assert err.value.field == "log_to"
