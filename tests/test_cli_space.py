"""`dse space` end to end through the console script: seed examples explained, bad input refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, write_toml

SEED = REPO / "sweeps" / "seed"


def dse(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "dse.cli", *args], capture_output=True, text=True, cwd=REPO,
                          env=full_env, timeout=120)


@pytest.mark.parametrize("args", [
    [str(SEED / "tests" / "megatron_bridge_qwen_30b.toml")],
    [str(SEED / "megatron_bridge_qwen_30b_scenario.toml"), "--tests-dir", str(SEED / "tests")],
    [str(SEED / "megatron_bridge_test_in_scenario.toml")],
])
def test_space_explains_seed_examples(args: list[str]) -> None:
    r = dse("space", *args)
    assert r.returncode == 0, r.stderr
    assert "total points: 1" in r.stdout and "valid points: 1 (100.0%)" in r.stdout
    assert "workload: MegatronBridge" in r.stdout


def test_space_of_demo_reports_dimensions_and_pruning() -> None:
    r = dse("space", "sweeps/demo_sim_qwen30b_h100.toml")
    assert r.returncode == 0, r.stderr
    assert "SIMULATED" in r.stdout
    assert "total points: 1,080" in r.stdout
    assert "vp_needs_pp" in r.stdout and "constraints[0]" in r.stdout


def test_env_params_shown_with_weights(tmp_path: Path) -> None:
    p = write_toml(tmp_path / "s.toml", 'name="e"\ntest_template_name="MegatronBridgeSim"\nagent="random_search"\n'
                   '[cmd_args]\ngpu_type="h100"\nnum_gpus=8\nmodel_recipe_name="llama3_8b"\ntp=[1,2]\n'
                   'seq_length=[4096,8192]\n[env_params.seq_length]\nweights=[0.7,0.3]\n')
    r = dse("space", str(p))
    assert r.returncode == 0, r.stderr
    assert "4096 (p=0.7), 8192 (p=0.3)" in r.stdout and "total points: 2" in r.stdout


def test_empty_space_refused_naming_rules(tmp_path: Path) -> None:
    p = write_toml(tmp_path / "s.toml", 'name="e"\ntest_template_name="MegatronBridgeSim"\n'
                   '[cmd_args]\ngpu_type="h100"\nnum_gpus=8\nmodel_recipe_name="llama3_8b"\ntp=[3,5]\n')
    r = dse("space", str(p))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {p}") and "world_divisible" in lines[0]
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("text, field", [
    ('name = "x"\ntest_template_name = [', "line"),
    ('name = "x"\ntest_template_name = "Nope"\n', "test_template_name"),
    ('name = "x"\ntest_template_name = "MegatronBridgeSim"\n[cmd_args]\ntp = "x"\n', "cmd_args.tp"),
    ('name = "x"\ntest_template_name = "MegatronBridgeSim"\nconstraints = ["tp +"]\n', "constraints[0]"),
    ('name = "x"\ntest_template_name = "MegatronBridgeSim"\nconstraints = ["nope > 1"]\n[cmd_args]\ntp=[1,2]\n',
     "constraints[0]"),
])
def test_bad_input_one_line_exit_2(tmp_path: Path, text: str, field: str) -> None:
    p = write_toml(tmp_path / "bad.toml", text)
    before = set(tmp_path.rglob("*"))
    r = dse("space", str(p))
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {p}: {field}"), r.stderr
    assert set(tmp_path.rglob("*")) == before  # nothing written


def test_missing_hf_token_refused() -> None:
    env = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"}
    r = subprocess.run([sys.executable, "-m", "dse.cli", "space", str(SEED / "megatron_bridge_test_in_scenario.toml")],
                       capture_output=True, text=True, cwd=REPO, env=env, timeout=60)
    assert r.returncode == 2 and "cmd_args.hf_token" in r.stderr


def test_bad_system_file(tmp_path: Path) -> None:
    sys_toml = write_toml(tmp_path / "sys.toml", 'scheduler = "slurm"\ngpus_per_node = 0\n')
    r = dse("space", "sweeps/demo_sim_qwen30b_h100.toml", "--system", str(sys_toml))
    assert r.returncode == 2 and r.stderr.startswith(f"error: {sys_toml}: gpus_per_node")


@pytest.mark.parametrize("cmd", ["space", "dry-run", "run", "resume", "status", "table", "best", "report", "agents"])
def test_help_everywhere(cmd: str) -> None:
    r = dse(cmd, "--help")
    assert r.returncode == 0 and "usage: dse" in r.stdout


VP_PRESET = ('name="vp"\ntest_template_name="MegatronBridgeSim"\n[cmd_args]\ngpu_type="h100"\n'
             'model_recipe_name="qwen3_30b_a3b"\ncompute_dtype="fp8_cs"\nnum_gpus=16\n')


def test_space_says_the_preset_set_vp_and_how_to_sweep_it(tmp_path: Path) -> None:
    r = dse("space", str(write_toml(tmp_path / "s.toml", VP_PRESET + "pp=[1, 2]\n")))
    assert r.returncode == 0, r.stderr
    line = next(ln for ln in r.stdout.splitlines() if "vp = 12" in ln)
    assert "from the qwen3_30b_a3b h100 fp8_cs preset" in line and "pp = 1 (swept)" in line
    assert "vp = [1, 12]" in line


def test_no_valid_point_error_names_the_preset_value_and_the_fix(tmp_path: Path) -> None:
    p = write_toml(tmp_path / "s.toml", VP_PRESET + "pp=[1]\n")
    for cmd in ("space", "dry-run"):
        r = dse(cmd, str(p))
        assert r.returncode == 2, (cmd, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "vp_needs_pp" in lines[0], (cmd, r.stderr)
        assert "vp = 12 from the qwen3_30b_a3b h100 fp8_cs preset" in lines[0] and "vp = [1, 12]" in lines[0]


def test_space_shows_what_each_constraint_name_reads(tmp_path: Path) -> None:
    p = write_toml(tmp_path / "s.toml", 'name="c"\ntest_template_name="Command"\nconstraints=["gb % (mb * dp) == 0", '
                   '"gpus // tp >= 1"]\n[cmd_args]\ncommand="true"\ngpus=32\ntp=[1,2]\nmb=[1,2]\ngb=[2,4]\n')
    r = dse("space", str(p))
    assert r.returncode == 0, r.stderr
    assert "gpus = your field cmd_args.gpus (shadows the builtin gpus)" in r.stdout
    assert "dp = builtin: the data-parallel size" in r.stdout
    assert "tp = your swept field cmd_args.tp" in r.stdout


def test_space_and_run_agree_on_the_trials_to_run(tmp_path: Path) -> None:
    """`dse space` says how many trials `dse run` runs, for grid (every valid point) and random (agent_steps)."""
    import re

    for agent, extra, expected in (("grid_search", "", 3), ("random_search", "", 1),
                                   ("random_search", "agent_steps = 2\n", 2)):
        path = tmp_path / f"{agent}{len(extra)}.toml"
        path.write_text(f'name = "n"\ntest_template_name = "Command"\nagent = "{agent}"\n{extra}'
                        '[cmd_args]\ncommand = "echo \'{{\\"step-time\\": {x}}}\' > metrics.json"\nx = [1, 2, 3]\n')
        space = subprocess.run([sys.executable, "-m", "dse.cli", "space", str(path)], capture_output=True, text=True,
                               cwd=REPO)
        said = int(re.search(r"trials to run: (\d+)", space.stdout).group(1))  # type: ignore[union-attr]
        run = subprocess.run([sys.executable, "-m", "dse.cli", "run", str(path), "--out", str(tmp_path / "o"),
                              "--no-cache", "--executor", "debug"], capture_output=True, text=True, cwd=REPO)
        assert run.returncode == 0, run.stderr
        ran = int(re.search(r"done: (\d+) trials", run.stdout).group(1))  # type: ignore[union-attr]
        assert said == ran == expected, (agent, extra, space.stdout, run.stdout)
        assert f"trials to run: {expected}" in run.stdout


def test_bash_completion_completes_commands_and_each_commands_flags(tmp_path: Path) -> None:
    """`eval "$(dse completion bash)"`, then bash itself completes `dse ru` and `dse run --early`."""
    script = subprocess.run([sys.executable, "-m", "dse.cli", "completion", "bash"], capture_output=True, text=True,
                            cwd=REPO, check=True).stdout
    (tmp_path / "c.sh").write_text(script)
    probe = ('source c.sh; COMP_WORDS=(dse ru); COMP_CWORD=1; _dse_complete; echo "${COMPREPLY[*]}"; '
             'COMP_WORDS=(dse run --early); COMP_CWORD=2; _dse_complete; echo "${COMPREPLY[*]}"; '
             'COMP_WORDS=(dse best --j); COMP_CWORD=2; _dse_complete; echo "${COMPREPLY[*]}"')
    out = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, cwd=tmp_path, check=True).stdout
    assert out.splitlines() == ["run", "--early-stopping", "--json"]
