"""What users script against, after the redesign: the installed names and the re-exported entry points."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_only_dse_is_installed_top_level(tmp_path: Path) -> None:
    """`agents` and `envs` are taken on PyPI: they install as dse.agents / dse.envs, never top level."""
    code = ("import importlib.util as u, importlib.metadata as m\n"
            "import dse.agents, dse.envs\n"
            "print(u.find_spec('agents') is None, u.find_spec('envs') is None, m.version('megatron-dse') != '')\n"
            "print(dse.agents.__name__, dse.envs.__name__)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["True True True", "dse.agents dse.envs"]


def test_names_users_script_against_keep_working() -> None:
    import dse
    import dse.simulator

    assert callable(dse.load_trials) and callable(dse.load_sweep) and isinstance(dse.SweepSpace, type)
    assert dse.plots.convergence is not None
    sweep = dse.load_sweep(REPO / "sweeps" / "demo_sim_qwen30b_h100.toml")
    assert dse.SweepSpace(sweep).count().valid > 0
    pred = dse.simulator.predict({"model_recipe_name": "qwen3_30b_a3b", "gpu_type": "h100", "compute_dtype": "bf16",
                                  "num_gpus": 16, "tp": 1, "pp": 1, "ep": 8, "mb": 1, "gb": 512}, 2)
    assert isinstance(pred, dse.simulator.Prediction)
    for name in ("step_time_s", "tflops_per_gpu", "mem_max_alloc_gb", "fits", "flops_per_step"):
        assert hasattr(pred, name)
    assert pred.step_time_s > 0 and pred.flops_per_step > 0


def test_top_level_facade_lists_what_it_exports() -> None:
    import dse

    for name in dse.__all__:
        assert getattr(dse, name) is not None
    with pytest.raises(AttributeError):
        dse.no_such_name  # noqa: B018


def test_one_call_run_and_load(tmp_path: Path) -> None:
    """`dse.run(...)` returns the run with its table, best, baseline and speed-up; `dse.load` gives the same."""
    import dse

    sweep = tmp_path / "s.toml"
    sweep.write_text('name = "api"\ntest_template_name = "Command"\nbaseline = { x = 3 }\n[cmd_args]\n'
                     'command = "echo \'{{\\"step-time\\": {x}}}\' > metrics.json"\nx = [3, 1, 2]\n')
    result = dse.run(sweep, agent="grid_search", out=tmp_path / "runs", no_cache=True, executor="debug")
    assert result.exit_code == 0 and result.run_dir.parent == tmp_path / "runs"
    assert len(result.trials) == 3 and result.trials.iloc[0]["param.x"] == 3
    assert result.best is not None and result.best["params"] == {"x": 1}
    assert result.baseline is not None and result.baseline["params"] == {"x": 3} and result.speedup == 3.0
    again = dse.load(result.run_dir)
    assert again.best == result.best and again.exit_code is None
