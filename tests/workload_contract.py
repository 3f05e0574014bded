"""The contract every workload honours, as a reusable test suite (in the spirit of Optuna's sampler tests).

A workload's test module subclasses `WorkloadContract` and says how to build a small sweep of it
(`make_sweep`); the suite then checks what the spec, the space and the engine rely on: the class is its own
registry entry, `build` gives a job in the trial folder with no secret written, `collect` never raises on a
missing or broken run, and `identity` is what the cache key needs. A plugin workload runs the same suite.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

from conftest import DUMMY_TOKEN

from dse.cmd_args import CmdArgsModel
from dse.space import SweepSpace
from dse.spec import Sweep
from dse.trial import TrialConfig
from dse.workloads import WORKLOADS, JobSpec, Outcome, Workload, workload_for


class WorkloadContract:
    """Subclass with `make_sweep(tmp_path) -> Sweep` (a sweep of the workload under test, >= 2 points)."""

    def make_sweep(self, tmp_path: Path) -> Sweep:
        raise NotImplementedError

    # ---- helpers ---------------------------------------------------------------------------------
    def _first(self, tmp_path: Path) -> tuple[Workload, TrialConfig, Path]:
        sweep = self.make_sweep(tmp_path)
        space = SweepSpace(sweep)
        index = next(iter(space.iter_valid()))
        cfg = space.resolve(space.agent.decode(index))
        trial_dir = tmp_path / "run" / "trials" / "1"
        trial_dir.mkdir(parents=True)
        return workload_for(sweep), cfg, trial_dir

    # ---- the contract ----------------------------------------------------------------------------
    def test_the_class_is_its_registry_entry(self, tmp_path: Path) -> None:
        sweep = self.make_sweep(tmp_path)
        cls = type(workload_for(sweep))
        assert WORKLOADS[cls.name] is cls and sweep.kind is cls
        assert issubclass(cls.cmd_args_model, CmdArgsModel)
        assert isinstance(cls.simulated, bool) and isinstance(cls.megatron, bool)
        assert all(rule.name for rule in cls.rules())
        cls.check_test(sweep.test)  # the sweep the test built is valid for its own checks

    def test_build_gives_a_job_in_the_trial_folder_without_secrets(self, tmp_path: Path) -> None:
        workload, cfg, trial_dir = self._first(tmp_path)
        spec = workload.build(cfg, trial_dir)
        assert isinstance(spec, JobSpec) and spec.argv and all(isinstance(a, str) for a in spec.argv)
        assert Path(spec.cwd).resolve() == trial_dir.resolve()
        assert spec.num_nodes >= 1 and spec.gpus_per_node >= 0
        script = spec.script()
        written = "".join(p.read_text(errors="replace") for p in trial_dir.rglob("*") if p.is_file())
        for text in (script, written, repr(pickle.loads(pickle.dumps(spec)).__dict__)):
            assert DUMMY_TOKEN not in text

    def test_collect_never_raises_on_a_run_that_left_nothing(self, tmp_path: Path) -> None:
        workload, cfg, trial_dir = self._first(tmp_path)
        for returncode in (1, 0, None):
            outcome = workload.collect(cfg, trial_dir, returncode)
            assert isinstance(outcome, Outcome) and not outcome.ok
            assert outcome.reason and outcome.error is not None

    def test_collect_never_raises_on_garbage_output(self, tmp_path: Path) -> None:
        workload, cfg, trial_dir = self._first(tmp_path)
        for name in ("stdout.log", "stderr.log", "metrics.json", "golden_values.json"):
            (trial_dir / name).write_bytes(b"\xff\xfe{not json\x00" * 10)
        outcome = workload.collect(cfg, trial_dir, 0)
        assert isinstance(outcome, Outcome) and not outcome.ok and outcome.reason

    def test_identity_names_the_workload_and_is_json(self, tmp_path: Path) -> None:
        workload, _, _ = self._first(tmp_path)
        identity: dict[str, Any] = workload.identity()
        assert identity["workload"] == workload.name
        assert json.loads(json.dumps(identity)) == identity
        assert workload_for(self.make_sweep(tmp_path)).identity() == identity  # stable: a cache key part
