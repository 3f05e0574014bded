"""The real MegatronBridge workload: the launcher command (pinned by golden files) and metrics collection."""

from __future__ import annotations

import difflib
import json
import os
import shlex
from pathlib import Path
from typing import Any

import pytest
from conftest import MB_REPO, make_test, sweep_from

from dse.errors import InputError
from dse.space import SweepSpace
from dse.spec import GitRepo, SystemConfig
from dse.trial import TrialConfig
from dse.workloads import STDERR, STDOUT, MegatronBridgeWorkload, checkout_path
from dse.workloads._megatron_bridge import FLAGS, HYDRA_FIELDS, KNOWN_FIELDS, NOT_FLAGS

GOLDEN = Path(__file__).parent / "golden"
TRIAL_DIR = Path("/runs/qwen-sweep/trials/7")
SECRET = "hf_VERYrecognisableSECRET4242"

REALISTIC: dict[str, Any] = {
    "gpu_type": "h100",
    "num_gpus": 16,
    "gpus_per_node": 8,
    "container_image": "nvcr.io#nvidia/nemo:26.02.00",
    "model_family_name": "qwen",
    "model_recipe_name": "qwen3_30b_a3b",
    "task": "pretrain",
    "domain": "llm",
    "compute_dtype": "fp8_cs",
    "tp": [1, 2],
    "pp": [1, 2],
    "vp": [1, 2],
    "ep": [4, 8],
    "mb": 1,
    "gb": 512,
    "seq_length": 4096,
    "max_steps": 30,
    "cuda_graph_impl": "transformer_engine",
    "cuda_graph_scope": "attn,moe_router",
    "recompute_modules": "moe_act,layernorm",
    "moe_a2a_overlap": [False, True],
    "use_tokendrop": True,
    "data": "mock",
    "model": {"num_layers": 24},
    "logger.log_throughput": True,
}


def realistic_sweep(**system: Any):  # type: ignore[no-untyped-def]
    data = make_test(
        REALISTIC,
        workload="MegatronBridge",
        extra_env_vars={"NCCL_DEBUG": "INFO", "NCCL_ALGO": ["Ring", "Tree"]},
        extra_cmd_args={"logger.log_interval": "1"},
        extra_container_mounts=["/lustre/data:/data"],
        time_limit="00:45:00",
    )
    sweep = sweep_from(data, source="sweeps/qwen.toml")
    sweep.system = SystemConfig.model_validate({
        "name": "cluster", "scheduler": "slurm", "default_partition": "batch", "account": "perf",
        "gpus_per_node": 8, "container_mounts": ["/lustre/cache:/cache"], "extra_srun_args": ["--mpi=pmix"],
        "launcher": "/opt/nemo_run_venv/bin/python -u", **system,
    })
    return sweep


def resolve(sweep, action: dict[str, Any]) -> TrialConfig:  # type: ignore[no-untyped-def]
    return SweepSpace(sweep).resolve(action)


POINT = {"tp": 2, "pp": 2, "vp": 2, "ep": 8, "moe_a2a_overlap": True, "extra_env_vars.NCCL_ALGO": "Tree"}


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("DSE_UPDATE_GOLDEN"):
        path.write_text(text)
    expected = path.read_text()
    diff = "".join(difflib.unified_diff(expected.splitlines(True), text.splitlines(True), "golden", "actual"))
    assert text == expected, f"{name} differs from tests/golden (DSE_UPDATE_GOLDEN=1 rewrites it):\n{diff}"


def test_golden_command_and_script(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DSE_HOME", "/home/perf/.cache/dse")
    workload = MegatronBridgeWorkload(realistic_sweep())
    job = workload.build(resolve(workload.sweep, POINT), TRIAL_DIR)
    check_golden("megatron_bridge_argv.txt", shlex.join(job.argv) + "\n")
    check_golden("megatron_bridge_script.sh", job.script())
    # a local process on the submit host: no allocation, no time limit of its own (the job carries -t)
    assert job.submit_host and job.num_nodes == 1 and job.gpus_per_node == 0 and job.time_limit_s is None
    assert job.env == {"NEMORUN_HOME": str(TRIAL_DIR)}
    argv = job.argv
    assert argv[argv.index("-t") + 1] == "00:45:00"
    assert argv[argv.index("-cb"):][:4] == ["-cb", "export NCCL_ALGO=Tree", "-cb", "export NCCL_DEBUG=INFO"]
    assert argv[argv.index("-cm") + 1].endswith(":/opt/Megatron-Bridge,/lustre/cache:/cache,/lustre/data:/data")
    assert argv[argv.index("--additional_slurm_params") + 1] == "gpus-per-node=8;gres=gpu:8"
    assert argv[argv.index("-cs") + 1] == "--mpi=pmix"  # an srun argument, not an sbatch directive


def test_every_cmd_args_field_has_a_mapping() -> None:
    mapped = {f for f, _, _ in FLAGS} | NOT_FLAGS | set(HYDRA_FIELDS)
    assert mapped == KNOWN_FIELDS


def flags_of(cmd_args: dict[str, Any], action: dict[str, Any] | None = None, **system: Any) -> list[str]:
    sweep = sweep_from(make_test(cmd_args, workload="MegatronBridge"))
    if system:
        sweep.system = SystemConfig.model_validate(system)
    return MegatronBridgeWorkload(sweep).build(resolve(sweep, action or {}), TRIAL_DIR).argv


BASE = {"model_family_name": "llama", "model_recipe_name": "llama3_8b", "gpu_type": "h100"}


def test_vp_one_is_none_and_vp_two_is_two() -> None:
    argv = flags_of({**BASE, "vp": [1, 2]}, {"vp": 1})
    assert argv[argv.index("-vp") + 1] == "None"
    argv = flags_of({**BASE, "vp": [1, 2]}, {"vp": 2})
    assert argv[argv.index("-vp") + 1] == "2"


def test_seq_length_adds_hydra_override_unless_given() -> None:
    argv = flags_of({**BASE, "seq_length": 2048})
    assert argv[argv.index("-sl") + 1] == "2048" and "model.seq_length=2048" in argv
    argv = flags_of({**BASE, "seq_length": 2048, "model": {"seq_length": 1024}})
    assert [a for a in argv if a.startswith("model.seq_length=")] == ["model.seq_length=1024"]
    assert "model.seq_length=2048" not in flags_of(BASE)


def test_only_set_fields_and_forced_ones() -> None:
    argv = flags_of(BASE, launcher="python3")
    checkout = checkout_path(GitRepo.model_validate(MB_REPO))
    assert argv[:2] == ["python3", f"{checkout}/scripts/performance/setup_experiment.py"]
    assert argv[2:] == ["-m", "llama", "-mr", "llama3_8b", "-g", "h100", "-ng", "8", "-l", str(TRIAL_DIR),
                        "--save_config_filepath", "/nemo_run/configs/ConfigContainer.yaml",
                        "-cm", f"{checkout}:/opt/Megatron-Bridge",
                        "--detach", "false", "--golden_values_path", f"{TRIAL_DIR}/golden_values.json",
                        "logger.tensorboard_dir=/nemo_run/tb_logs", "logger.log_timers_to_tensorboard=true",
                        "logger.log_throughput_to_tensorboard=true", "logger.log_memory_to_tensorboard=true"]


def test_cloudai_choices_for_gpu_flags_and_log_dir() -> None:
    """-g only when set, -gn from the system before cmd_args, -l as given (docs/reference/cloudai-megatron-bridge-launch.md §3)."""
    cmd = {k: v for k, v in BASE.items() if k != "gpu_type"}
    argv = flags_of({**cmd, "gpus_per_node": 2, "log_dir": "/logs"}, gpus_per_node=4)
    assert "-g" not in argv
    assert argv[argv.index("-gn") + 1] == "4" and argv[argv.index("-l") + 1] == "/logs"
    argv = flags_of({**cmd, "gpus_per_node": 2})
    assert argv[argv.index("-gn") + 1] == "2" and "--additional_slurm_params" not in argv


def test_env_reaches_the_job_shell_unexpanded_here() -> None:
    """`${VAR}` stays for the job's shell to expand; the system's env comes too, the sweep's wins, sorted."""
    sweep = sweep_from(make_test(BASE, workload="MegatronBridge", extra_env_vars={
        "PYTHONPATH": "/opt/Megatron-Bridge/3rdparty/Megatron-LM:${PYTHONPATH}", "A": "sweep"}))
    sweep.system = SystemConfig.model_validate({"env": {"A": "system", "B": "b"}})
    argv = MegatronBridgeWorkload(sweep).build(resolve(sweep, {}), TRIAL_DIR).argv
    cbs = [argv[i + 1] for i, a in enumerate(argv) if a == "-cb"]
    assert cbs == ["export A=sweep", "export B=b",
                   "export PYTHONPATH=/opt/Megatron-Bridge/3rdparty/Megatron-LM:${PYTHONPATH}"]


def test_user_extra_cmd_args_win_over_tensorboard_defaults() -> None:
    sweep = sweep_from(make_test(BASE, workload="MegatronBridge",
                                 extra_cmd_args={"logger.tensorboard_dir": "/mine"}))
    argv = MegatronBridgeWorkload(sweep).build(resolve(sweep, {}), TRIAL_DIR).argv
    assert [a for a in argv if a.startswith("logger.tensorboard_dir=")] == ["logger.tensorboard_dir=/mine"]


def test_srun_args_go_to_the_jobs_srun_and_sbatch_args_to_its_directives() -> None:
    sweep = sweep_from(make_test(BASE, workload="MegatronBridge", extra_srun_args="--cpu-bind=none"))
    sweep.system = SystemConfig.model_validate({"extra_srun_args": ["--mpi=pmix"],
                                                "extra_sbatch_args": ["--exclusive", "--nodelist=n[1-2]"]})
    argv = MegatronBridgeWorkload(sweep).build(resolve(sweep, {}), TRIAL_DIR).argv
    assert argv[argv.index("--additional_slurm_params") + 1] == "exclusive;nodelist=n[1-2]"
    assert argv[argv.index("-cs") + 1] == "--mpi=pmix,--cpu-bind=none"


def test_bools_store_true_and_lists() -> None:
    argv = flags_of({**BASE, "nccl_ub": False, "enable_nsys": False, "use_recipes": True,
                     "cuda_graph_scope": "[attn, mlp]", "dataset_paths": ["/a", "/b"]})
    assert argv[argv.index("--nccl_ub") + 1] == "false"
    assert "-en" not in argv and "--use_recipes" in argv
    assert argv[argv.index("--cuda_graph_scope") + 1] == "attn,mlp"
    i = argv.index("--dataset_paths")
    assert argv[i + 1:i + 3] == ["/a", "/b"]


def test_megatron_bridge_path_overrides_the_checkout() -> None:
    argv = flags_of(BASE, scheduler="slurm", megatron_bridge_path="/home/u/MB", launcher="python3")
    assert argv[0] == "python3" and argv[1] == "/home/u/MB/scripts/performance/setup_experiment.py"
    assert argv[argv.index("-cm") + 1] == "/home/u/MB:/opt/Megatron-Bridge"


def test_missing_recipe_is_an_input_error() -> None:
    with pytest.raises(InputError, match="model_recipe_name"):
        flags_of({"model_family_name": "llama", "model_recipe_name": ""})


def test_token_is_nowhere(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_TOKEN", SECRET)
    sweep = realistic_sweep()
    sweep.test.cmd_args["hf_token"] = SECRET + "_cmd"
    workload = MegatronBridgeWorkload(sweep)
    job = workload.build(resolve(sweep, POINT), tmp_path)
    assert "-hf" not in job.argv and "--hf_token" not in job.argv
    blob = "\n".join([*job.argv, *job.env, *job.env.values(), job.script(), json.dumps(workload.identity())])
    assert SECRET not in blob
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and SECRET in p.read_text(errors="replace")]


def test_identity_pins_repo_and_image() -> None:
    ident = MegatronBridgeWorkload(realistic_sweep()).identity()
    assert ident == {"workload": "MegatronBridge", "repo": MB_REPO["url"], "commit": "v0.3.0",
                     "container_image": "nvcr.io#nvidia/nemo:26.02.00"}


# ---- collection ------------------------------------------------------------------------------------
def golden_json(times_ms: list[float]) -> str:
    data: dict[str, Any] = {str(i): {"lm loss": 11.0 - i, "elapsed time per iteration (ms)": t,
                                     "GPU utilization": 300.0} for i, t in enumerate(times_ms)}
    data.update({"alloc": 60.5, "max_alloc": 70.25})
    return json.dumps(data)


def collect(trial_dir: Path, returncode: int | None):  # type: ignore[no-untyped-def]
    sweep = sweep_from(make_test(BASE, workload="MegatronBridge"))
    return MegatronBridgeWorkload(sweep).collect(resolve(sweep, {}), trial_dir, returncode)


def test_collect_golden_json_with_missing_golden_exit(tmp_path: Path) -> None:
    exp = tmp_path / "experiments" / "exp" / "exp_1" / "exp" / "exp" / "golden_values"
    exp.mkdir(parents=True)
    (exp / "golden_values.json").write_text(golden_json([5000.0, 250.0, 240.0]))
    (tmp_path / STDERR).write_text(
        "ERROR Convergence check failed due to missing golden values.\n"
        "This is expected if it is the first time running this model.\n")
    out = collect(tmp_path, 1)
    assert out.ok, out.error
    assert out.metrics is not None and out.metrics.step_times_s == {0: 5.0, 1: 0.25, 2: 0.24}
    assert out.metrics.max_alloc_gb == 70.25


def test_collect_newest_json_wins(tmp_path: Path) -> None:
    old, new = tmp_path / "a" / "golden_values.json", tmp_path / "b" / "golden_values.json"
    for p, t in ((old, 900.0), (new, 100.0)):
        p.parent.mkdir()
        p.write_text(golden_json([t]))
    os.utime(old, (1_000_000, 1_000_000))
    out = collect(tmp_path, 0)
    assert out.ok and out.metrics is not None and out.metrics.step_times_s == {0: 0.1}


def test_collect_log_lines_only(tmp_path: Path) -> None:
    (tmp_path / STDOUT).write_text("".join(
        f"Step Time : {t}s GPU utilization: 512.5MODEL_TFLOP/s/GPU\n"
        f" [2026-03-01 10:00:0{i}] iteration        {i + 1}/      3 | elapsed time per iteration (ms): "
        f"{t * 1000} | lm loss: 1.0E+01 |\n" for i, t in enumerate([3.5, 1.25, 1.5])))
    out = collect(tmp_path, 0)
    assert out.ok, out.error
    assert out.metrics is not None and out.metrics.step_times_s[1] == 1.25


def test_collect_nemo_run_job_log(tmp_path: Path) -> None:
    job = tmp_path / "experiments" / "x" / "x_1" / "x"
    job.mkdir(parents=True)
    (job / "log-perf-x_1234_0.out").write_text("Step Time : 2.5s GPU utilization: 100.0MODEL_TFLOP/s/GPU\n")
    out = collect(tmp_path, 0)
    assert out.ok and out.metrics is not None and out.metrics.step_times_s == {0: 2.5}


def test_collect_oom(tmp_path: Path) -> None:
    (tmp_path / STDERR).write_text("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n")
    out = collect(tmp_path, 1)
    assert not out.ok and out.reason == "out-of-memory"


def test_collect_oom_in_job_log(tmp_path: Path) -> None:
    (tmp_path / "log-perf-x_1_0.out").write_text("RuntimeError: CUDA out of memory.\n")
    out = collect(tmp_path, 1)
    assert not out.ok and out.reason == "out-of-memory"


def test_collect_nothing(tmp_path: Path) -> None:
    out = collect(tmp_path, 0)
    assert not out.ok and out.reason == "no-metrics"


def test_collect_log_lines_with_exit_one_needs_the_missing_golden_message(tmp_path: Path) -> None:
    (tmp_path / STDOUT).write_text("Step Time : 2.0s GPU utilization: 100.0MODEL_TFLOP/s/GPU\n")
    assert collect(tmp_path, 1).reason == "exit-code"
    (tmp_path / STDERR).write_text("Convergence check failed due to missing golden values.\n")
    assert collect(tmp_path, 1).ok


def test_secret_env_reaches_the_job_by_name_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """A secret extra_env_var is exported in the job as `${NAME}` from the inherited environment: its value is
    in neither the launcher's argv (nemo_run writes it into the sbatch script) nor the pickled JobSpec."""
    value = "hf_ENVsecretVALUE0123456789abcdef"
    sweep = sweep_from(make_test(BASE, workload="MegatronBridge", extra_env_vars={"WANDB_API_KEY": value}))
    job = MegatronBridgeWorkload(sweep).build(resolve(sweep, {}), TRIAL_DIR)
    assert 'export WANDB_API_KEY="${WANDB_API_KEY}"' in job.argv
    assert value not in " ".join(job.argv) and value not in repr(job.env) and value not in job.script()
    carrier = job.secret_env["WANDB_API_KEY"]
    assert os.environ[carrier] == value  # what the launcher, and the job it submits, inherit


def test_progress_logs_are_the_nemo_run_job_log_and_the_launchers_output(tmp_path: Path) -> None:
    """Read on every poll while early stopping is on: nemo_run's job log where nemo_run writes it, not any
    `log-*.out` anywhere under the trial folder (a packaged code copy, a nested checkout)."""
    job_log = tmp_path / "experiments" / "exp" / "exp_1733000000" / "exp" / "log-exp_4242_0.out"
    decoy = tmp_path / "experiments" / "exp" / "exp_1733000000" / "code" / "tests" / "fixtures" / "log-old_1_0.out"
    for path in (job_log, decoy):
        path.parent.mkdir(parents=True)
        path.write_text("iteration 1/10 | elapsed time per iteration (ms): 1000.0\n")
    logs = MegatronBridgeWorkload(realistic_sweep()).progress_logs(tmp_path)
    assert logs == [job_log, tmp_path / STDOUT]
