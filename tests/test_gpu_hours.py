"""GPU-hours as a first-class number: per trial in the table, summed in `dse status` and the run's last line."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from conftest import REPO, make_test, sweep_from

from dse.agents import create_sweep_agent
from dse.analysis import load_trials, status_text
from dse.engine import RunOptions, SweepRunner
from dse.storage import TrialStore
from dse.trial import TrialStatus

OLD_SCHEMA = """CREATE TABLE trials (trial INTEGER PRIMARY KEY, status TEXT NOT NULL, action TEXT NOT NULL,
    env TEXT NOT NULL, config_hash TEXT, reward REAL, reward_nan INTEGER NOT NULL DEFAULT 0,
    metrics TEXT NOT NULL DEFAULT '{}', cache_hit INTEGER NOT NULL DEFAULT 0, job_id TEXT,
    attempts INTEGER NOT NULL DEFAULT 0, started_at REAL, finished_at REAL, error TEXT, reason TEXT,
    trial_dir TEXT)"""


def _old_run(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute(OLD_SCHEMA)
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute("INSERT INTO trials (trial, status, action, env, reward, metrics) "
                 "VALUES (1, 'completed', '{}', '{}', 1.0, '{\"default\": 1.0}')")
    conn.commit()
    conn.close()


def test_a_trials_db_from_before_gpu_hours_is_read_and_upgraded(tmp_path: Path) -> None:
    db = tmp_path / "trials.db"
    _old_run(db)
    (rec,) = TrialStore(db, readonly=True).all()  # read-only: the missing columns read as NULL
    assert rec.gpu_hours is None and rec.note is None and rec.status is TrialStatus.COMPLETED
    store = TrialStore(db)  # writable: the columns are added
    assert store.reserve({}, {}).trial == 2
    assert {row[1] for row in sqlite3.connect(db).execute("PRAGMA table_info(trials)")} >= {"gpu_hours", "note"}


def test_simulated_sweep_counts_simulated_gpu_hours_oom_included(tmp_path: Path) -> None:
    """Out-of-memory trials count what they burned; cached ones cost nothing again."""
    args = {"model_recipe_name": "qwen3_30b_a3b", "gpu_type": "h100", "compute_dtype": "fp8_cs", "num_gpus": 16,
            "ep": 8, "gb": 256, "tp": 1, "mb": [2, 4]}  # mb 4 does not fit (see the simulator)
    sweep = sweep_from(make_test(args, num_nodes=2), source=str(REPO / "t.toml"))
    cache = tmp_path / "cache.db"
    for run in ("a", "b"):
        runner = SweepRunner(sweep, tmp_path / run, RunOptions(executor="debug", cache=cache), create_sweep_agent)
        runner.run()
    first = load_trials(tmp_path / "a").set_index("param.mb")
    assert first.loc[2, "status"] == "completed" and first.loc[4, "status"] == "failed"
    assert first.loc[2, "gpu_hours"] > first.loc[4, "gpu_hours"] > 0
    again = load_trials(tmp_path / "b")
    assert set(again["status"]) == {"cached", "failed"} and again["gpu_hours"].fillna(0).sum() == 0
    text = status_text(tmp_path / "a")
    total = first["gpu_hours"].sum()
    assert f"spent: {total:.3g} GPU-hours (simulated)" in text
