"""Every built-in workload, and a plugin one, runs the workload contract (`tests/workload_contract.py`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, ClassVar

import pytest
from conftest import make_test, sweep_from
from workload_contract import WorkloadContract

from dse.space import SweepSpace
from dse.spec import Sweep
from dse.trial import TrialConfig
from dse.workloads import WORKLOADS, CommandCmdArgs, JobSpec, Outcome, Workload

MB_ARGS: dict[str, Any] = {"model_recipe_name": "qwen3_30b_a3b", "gpu_type": "h100", "compute_dtype": "bf16",
                           "num_gpus": 16, "tp": [1, 2], "ep": 8, "mb": 1, "gb": 512}


class TestMegatronBridge(WorkloadContract):
    def make_sweep(self, tmp_path: Path) -> Sweep:
        return sweep_from(make_test({**MB_ARGS, "model_family_name": "qwen"}, workload="MegatronBridge"))


class TestMegatronBridgeSim(WorkloadContract):
    def make_sweep(self, tmp_path: Path) -> Sweep:
        return sweep_from(make_test(dict(MB_ARGS), workload="MegatronBridgeSim"))


class TestCommand(WorkloadContract):
    def make_sweep(self, tmp_path: Path) -> Sweep:
        return sweep_from(make_test({"command": "echo {x}", "x": [1, 2]}, workload="Command"))


class EchoWorkload(Workload):
    """A plugin workload: one class, one registry line. It prints its point as a flat metrics JSON."""

    name: ClassVar[str] = "Echo"
    cmd_args_model = CommandCmdArgs
    default_gpus_per_node = None

    def build(self, cfg: TrialConfig, trial_dir: Path) -> JobSpec:
        code = "import json,sys; json.dump({'step-time': float(sys.argv[1])}, open('metrics.json', 'w'))"
        return JobSpec(argv=[sys.executable, "-c", code, str(cfg.flat_cmd_args()["x"])], cwd=str(trial_dir))

    def collect(self, cfg: TrialConfig, trial_dir: Path, returncode: int | None) -> Outcome:
        from dse.metrics import MetricsError, parse_metrics_json

        try:
            return Outcome(True, metrics=parse_metrics_json((trial_dir / "metrics.json").read_text()))
        except (OSError, MetricsError, UnicodeDecodeError) as exc:
            return Outcome(False, reason="no-metrics", error=str(exc)[:200])


@pytest.fixture
def echo_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(WORKLOADS, "Echo", EchoWorkload)


@pytest.mark.usefixtures("echo_registered")
class TestPluginWorkload(WorkloadContract):
    def make_sweep(self, tmp_path: Path) -> Sweep:
        return sweep_from(make_test({"command": "unused", "x": [3, 1, 2]}, workload="Echo"))

    def test_a_registered_workload_runs_end_to_end(self, tmp_path: Path) -> None:
        """Adding a workload touches one place: the spec accepts it, the space and the engine run it."""
        from dse.agents import create_sweep_agent
        from dse.engine import RunOptions, SweepRunner
        from dse.storage import TrialStore

        sweep = self.make_sweep(tmp_path)
        assert SweepSpace(sweep).count().valid == 3
        runner = SweepRunner(sweep, tmp_path / "run", RunOptions(executor="debug", no_cache=True, steps=3),
                             create_sweep_agent)
        assert runner.run() == 0
        recs = TrialStore(tmp_path / "run" / "trials.db").all()
        assert sorted(r.metrics["default"] for r in recs) == [1.0, 2.0, 3.0]


def test_an_unregistered_workload_is_refused_naming_the_known_ones() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="'MegatronBridge', 'MegatronBridgeSim' or 'Command'"):
        sweep_from(make_test({"command": "x"}, workload="Echo"))
