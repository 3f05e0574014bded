#!/usr/bin/env python3
"""Stand-in for Megatron-Bridge v0.3.0's scripts/performance/setup_experiment.py (written for dse's tests).

Runs on the submit host with a plain python3 (stdlib only). Same command line as v0.3.0 (the whole
argument_parser.py flag set, `parse_known_args`, unknown args are Hydra overrides), same experiment name
and nemo_run directory layout, one training job submitted with the real `sbatch`; with `--detach false`
it waits for the job, writes the golden-values JSON where v0.3.0 writes it and fails or passes the same
way. The training job runs train_payload.py (same directory), which prints Megatron-style log lines.

Deliberate differences (no container, no GPUs, no nemo_run): the job is one task per node (so a
2-core test cluster suffices); `-i`/`-cm`/`-cs` are recorded in the job dir, not used; a token given with
`-hf`/`-wdk` reaches the job through sbatch's environment, never through the sbatch script; the job name
is the experiment name (nemo_run prefixes it with the account).
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
import math
import os
import re
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

SCRIPT_DIR = Path(__file__).parent.resolve()
PAYLOAD = SCRIPT_DIR / "train_payload.py"
CONTAINER_RUN_DIR = "/nemo_run"  # where nemo_run mounts the job dir inside the container

logging.basicConfig(level=logging.DEBUG)  # as v0.3.0: every log record goes to stderr
logger = logging.getLogger(__name__)
eval_logger = logging.getLogger("utils.evaluate")

DEFAULT_NEMO_CACHE_HOME = Path.home() / ".cache" / "nemo"
DEFAULT_NEMO_HOME = os.getenv("NEMO_HOME", str(DEFAULT_NEMO_CACHE_HOME))
CUDA_GRAPH_IMPLS = ("none", "local", "transformer_engine")
CUDA_GRAPH_SCOPES = ("full_iteration", "attn", "mlp", "moe", "moe_router", "moe_preprocess", "mamba")
# utils/executors.py PERF_ENV_VARS (exported into the training job)
PERF_ENV_VARS = {
    "TORCH_NCCL_AVOID_RECORD_STREAMS": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "False",
    "NCCL_NVLS_ENABLE": "0",
    "NVTE_NORM_FWD_USE_CUDNN": "1",
    "NVTE_NORM_BWD_USE_CUDNN": "1",
    "TORCH_NCCL_HIGH_PRIORITY": "1",
    "HF_HUB_OFFLINE": "0",
}
# Slurm state -> nemo_run/torchx AppState (what v0.3.0 compares and prints)
APP_STATE = {
    "COMPLETED": "SUCCEEDED", "PENDING": "PENDING", "RUNNING": "RUNNING", "CONFIGURING": "PENDING",
    "COMPLETING": "RUNNING", "REQUEUED": "PENDING", "RESIZING": "PENDING", "SUSPENDED": "PENDING",
    "CANCELLED": "CANCELLED", "FAILED": "FAILED", "TIMEOUT": "FAILED", "OUT_OF_MEMORY": "FAILED",
    "NODE_FAIL": "FAILED", "PREEMPTED": "FAILED", "BOOT_FAIL": "FAILED", "DEADLINE": "FAILED",
    "REVOKED": "FAILED",
}
FINAL_SLURM_STATES = {"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED",
                      "BOOT_FAIL", "DEADLINE", "REVOKED"}
OK_APP_STATES = ("SUCCEEDED", "SUBMITTED", "PENDING", "RUNNING")
POLL_S = 1.0
NO_STATE_GIVE_UP_S = 300.0  # neither sacct nor squeue knows the job for this long -> UNKNOWN


# ---- argument types (same semantics as v0.3.0's argument_parser.py) ---------------------------------
def list_of_strings(arg: str) -> list[str]:
    return arg.split(",")


def list_of_ints(arg: str) -> list[int]:
    try:
        return [int(p, 10) for p in arg.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid comma-separated integer list: {arg!r}") from None


def to_dict(arg: str) -> dict[str, str]:
    pairs = [item.split("=") for item in arg.split(",")]
    return dict(pairs)  # ValueError (-> argparse error) unless every item is exactly k=v, as in v0.3.0


def lower_str(arg: str) -> str:
    return arg.lower()


def bool_arg(arg: str) -> bool:
    value = arg.lower()
    if value in ("true", "1", "t", "yes", "y"):
        return True
    if value in ("false", "0", "f", "no", "n"):
        return False
    raise ValueError(f"Invalid value for boolean argument: {arg}")


def cuda_graph_impl(arg: str) -> str:
    if arg not in CUDA_GRAPH_IMPLS:
        raise ValueError(f"Invalid value for cuda_graph_impl: {arg}. Valid options are: {list(CUDA_GRAPH_IMPLS)}")
    return arg


def cuda_graph_scope(arg: str) -> list[str]:
    scopes = arg.split(",")
    if not all(s in CUDA_GRAPH_SCOPES for s in scopes):
        raise ValueError(f"Invalid value for cuda_graph_scope: {arg}. Valid options are: {list(CUDA_GRAPH_SCOPES)}.")
    return scopes


def vp_size(arg: str) -> int | None:
    return None if arg == "None" else int(arg)


def optional_int(arg: str | None) -> int | None:
    return None if arg is None else int(arg)


def slurm_params(text: str) -> dict[str, str | bool] | None:
    """`k=v;k2=v2` (or space-separated, or a single `k=v,w`) -> {k: v}; a bare key -> True."""
    if not text:
        return None
    if ";" in text:
        parts = text.split(";")
    elif " " in text:
        parts = text.split()
    else:
        parts = [text]
    out: dict[str, str | bool] = {}
    for part in (p.strip() for p in parts):
        if not part:
            continue
        if "=" in part:
            key, value = part.split("=", 1)
            out[key.strip()] = value.strip()
        else:
            out[part] = True
    return out or None


def build_parser() -> argparse.ArgumentParser:
    """All v0.3.0 flags (spellings, types, defaults), so that none of them is mistaken for an override."""
    p = argparse.ArgumentParser(description="Megatron-Bridge Pretraining and Fine-Tuning (dse stand-in)",
                                argument_default=None)
    add = p.add_argument
    add("--domain", type=lower_str, choices=["llm", "vlm"], default="llm")
    add("-m", "--model_family_name", type=lower_str, required=True)
    add("-mr", "--model_recipe_name", type=lower_str, required=True)
    add("--use_recipes", action="store_true", default=False)
    add("-nh", "--nemo_home", type=str, default=DEFAULT_NEMO_HOME)
    add("--detach", type=bool_arg, default=True)
    add("--max_retries", type=int, default=2)
    add("-ng", "--num_gpus", type=int, required=True)
    add("--hidden_size", type=int)
    add("--num_layers", type=int)
    add("--pipeline_model_parallel_layout", type=str)
    add("--first_k_dense_replace", type=int)
    add("-d", "--dryrun", action="store_true")
    # training / optimizer / checkpoint / data / tokenizer
    add("--task", choices=["pretrain", "sft", "lora"], default="pretrain")
    add("-ms", "--max_steps", type=int)
    add("-gb", "--global_batch_size", type=int)
    add("-mb", "--micro_batch_size", type=int)
    add("-sl", "--seq_length", type=int)
    add("--lr", type=float)
    add("--min_lr", type=float)
    add("--warmup_iters", type=int, default=10)
    add("--pretrained_checkpoint", type=str)
    add("--save_dir", type=str)
    add("--load_dir", type=str)
    add("--save_interval", type=int)
    add("--most_recent_k", type=int)
    add("--data", type=str, default="mock", choices=["mock", "rp2", "squad", "squad_packed"])
    add("--dataset_paths", nargs="*")
    add("--dataset_root", type=str)
    add("--index_mapping_dir", type=str)
    add("--dataset_name", type=str)
    add("--packed_sequence", action="store_true")
    add("--head_only", action="store_true")
    add("--tokenizer_type", type=str, choices=["NullTokenizer", "HuggingFaceTokenizer", "SentencePieceTokenizer"])
    add("--tokenizer_model", type=str)
    add("--vocab_size", type=int, default=32000)
    add("-hf", "--hf_token", type=str)
    # parallelism
    add("-tp", "--tensor_model_parallel_size", type=int)
    add("-pp", "--pipeline_model_parallel_size", type=int)
    add("-cp", "--context_parallel_size", type=int)
    add("-vp", "--virtual_pipeline_model_parallel_size", type=vp_size, default=-1)
    add("-ep", "--expert_model_parallel_size", type=int)
    add("-et", "--expert_tensor_parallel_size", type=optional_int, nargs="?", const=None)
    # slurm
    add("-a", "--account", type=str)
    add("-p", "--partition", type=str)
    add("-t", "--time_limit", type=str, default="00:30:00")
    add("-gn", "--gpus_per_node", type=int, default=8)
    add("-i", "--container_image", type=str, default="nvcr.io/nvidia/nemo:dev")
    add("-cm", "--custom_mounts", type=list_of_strings, default=[])
    add("-ce", "--custom_env_vars", type=to_dict, default={})
    add("-cs", "--custom_srun_args", type=list_of_strings, default=[])
    add("-cb", "--custom_bash_cmds", nargs="*", action="append", default=None)  # v0.3.0: greedy nargs="*"
    add("--gres", type=str, default=None)
    add("--additional_slurm_params", type=slurm_params)
    # DGX Cloud (accepted, unused)
    for name in ("cluster", "base_url", "kube_apiserver_url", "app_id", "app_secret", "project_name",
                 "pvc_claim_name", "pvc_mount_path"):
        add(f"--dgxc_{name}", type=str)
    # performance
    add("-g", "--gpu", type=str, choices=["h100", "b200", "gb200", "gb300", "b300"])  # required in v0.3.0
    add("-c", "--compute_dtype", type=str, choices=["bf16", "fp8_cs", "fp8_mx", "fp8_sc", "nvfp4"], default="bf16")
    add("-vb", "--enable_vboost", type=bool_arg)
    add("-en", "--enable_nsys", action="store_true")
    add("-pyp", "--pytorch_profiler", type=bool_arg, default=False)
    add("--profiling_start_step", type=int, default=10)
    add("--profiling_stop_step", type=int, default=11)
    add("-mh", "--record_memory_history", type=bool_arg, default=True)
    add("--profiling_gpu_metrics", action="store_true")
    add("--profiling_ranks", type=list_of_ints, default=None)
    add("--nsys_trace", type=list_of_strings, default=None)
    add("--nsys_extra_args", type=list_of_strings, default=None)
    add("--use_tokendrop", type=bool_arg)
    add("--use_megatron_fsdp", type=bool_arg)
    add("--nccl_ub", type=bool_arg)
    add("--cuda_graph_impl", type=cuda_graph_impl)
    add("--cuda_graph_scope", type=cuda_graph_scope)
    add("--moe_a2a_overlap", type=bool_arg)
    add("-rl", "--recompute_num_layers", type=int)
    add("-ol", "--activation_offload_layers", type=int)
    add("--recompute_modules", type=list_of_strings)
    # logging
    add("-wdk", "--wandb_key", type=str)
    add("-wdp", "--wandb_project_name", type=str)
    add("-wde", "--wandb_entity_name", type=str)
    add("-wdj", "--wandb_experiment_name", type=str)
    add("-wds", "--wandb_save_dir", type=str)
    add("-l", "--log_dir", type=str, default=None)
    add("--save_config_filepath", type=str)
    add("-cv", "--config_variant", type=str, default="v2")
    add("--list_config_variants", action="store_true")
    # testing
    add("--is_long_convergence_run", action="store_true", default=False)
    add("--golden_values_path", type=str)
    add("--timing_threshold", type=float, default=0.05)
    add("--skip_first_percent_time", type=float, default=0.70)
    add("--correlation_threshold", type=float, default=0.95)
    add("--high_loss_tolerance", type=float, default=0.10)
    add("--medium_loss_tolerance", type=float, default=0.05)
    add("--low_loss_tolerance", type=float, default=0.02)
    add("--final_loss_tolerance", type=float, default=0.05)
    add("--max_outlier_ratio", type=float, default=0.1)
    add("--outlier_threshold", type=float, default=3.0)
    add("--skip_first_percent_loss", type=float, default=0.20)
    add("--memory_threshold", type=float, default=0.05)
    return p


# ---- experiment name and directories --------------------------------------------------------------
def _or(value: object, default: object) -> object:
    return default if value is None else value


def experiment_name(args: argparse.Namespace) -> str:
    """v0.3.0's name; values the user left unset come from the preset, here WorkloadBaseConfig's defaults."""
    if args.wandb_experiment_name is not None:
        return args.wandb_experiment_name
    if args.use_recipes:
        return f"{args.model_recipe_name}_{args.task}_{args.num_gpus}gpu_{args.gpu}"
    vp = None if args.virtual_pipeline_model_parallel_size == -1 else args.virtual_pipeline_model_parallel_size
    config = (f"gpus{args.num_gpus}_tp{_or(args.tensor_model_parallel_size, 1)}"
              f"_pp{_or(args.pipeline_model_parallel_size, 1)}_cp{_or(args.context_parallel_size, 1)}"
              f"_vp{vp}_ep{_or(args.expert_model_parallel_size, 1)}_etp{args.expert_tensor_parallel_size}"
              f"_mbs{_or(args.micro_batch_size, 1)}_gbs{_or(args.global_batch_size, 1)}")
    return f"{args.task}_{args.model_recipe_name}_{args.compute_dtype}_{config}"


def nemorun_home(args: argparse.Namespace) -> Path:
    if args.log_dir is not None:
        home = os.path.abspath(args.log_dir)
        os.environ["NEMORUN_HOME"] = home
        return Path(home)
    if os.environ.get("NEMORUN_HOME"):
        return Path(os.path.abspath(os.environ["NEMORUN_HOME"]))
    home = Path.home() / ".nemo_run"
    logger.warning(f"Logs will be written to {home}, which is probably not desired.  export NEMORUN_HOME in "
                   "your shell environment or use the --log_dir argument")
    return home


def host_path(path: str, job_dir: Path) -> Path:
    """A container path under /nemo_run is the job dir on the host (no container here)."""
    if path == CONTAINER_RUN_DIR or path.startswith(CONTAINER_RUN_DIR + "/"):
        return job_dir / path[len(CONTAINER_RUN_DIR):].lstrip("/")
    return Path(path)


# ---- the sbatch script ----------------------------------------------------------------------------
def _directive(key: str, value: object) -> str:
    key = key.replace("_", "-")
    return f"#SBATCH --{key}" if value is True else f"#SBATCH --{key}={shlex.quote(str(value))}"


def job_env(args: argparse.Namespace) -> dict[str, str]:
    """Exported in the sbatch script: PERF_ENV_VARS and friends, then -ce. Secrets are not here."""
    env = dict(PERF_ENV_VARS)
    if (args.gpu or "").lower() == "gb200":
        env.update({"NCCL_NET_GDR_LEVEL": "PHB", "NCCL_NET_GDR_C2C": "1"})
    if str(args.nemo_home) != str(DEFAULT_NEMO_CACHE_HOME):
        env["NEMO_HOME"] = str(args.nemo_home)
    if args.hf_token is not None:
        env["TRANSFORMERS_OFFLINE"] = "0"  # HF_TOKEN itself travels through sbatch's environment
    custom = dict(args.custom_env_vars)
    if args.nccl_ub:
        custom.update({"NCCL_NVLS_ENABLE": "1", "NCCL_CTA_POLICY": "1"})
    env.update(custom)
    return env


def secret_env(args: argparse.Namespace) -> dict[str, str]:
    """Given on the command line, handed to sbatch through its environment (exported to the job)."""
    env = {}
    if args.hf_token is not None:
        env["HF_TOKEN"] = args.hf_token
    if args.wandb_key is not None:
        env["WANDB_API_KEY"] = args.wandb_key
    return env


def payload_argv(args: argparse.Namespace, job_dir: Path, exp_name: str) -> list[str]:
    argv = ["python3", str(PAYLOAD), "--job_dir", str(job_dir), "--exp_name", exp_name,
            "--model_recipe_name", args.model_recipe_name, "--compute_dtype", args.compute_dtype,
            "--num_gpus", str(args.num_gpus)]
    optional = {
        "--tp": args.tensor_model_parallel_size, "--pp": args.pipeline_model_parallel_size,
        "--cp": args.context_parallel_size, "--ep": args.expert_model_parallel_size,
        "--etp": args.expert_tensor_parallel_size, "--mbs": args.micro_batch_size,
        "--gbs": args.global_batch_size, "--max_steps": args.max_steps, "--seq_length": args.seq_length,
    }
    if args.virtual_pipeline_model_parallel_size not in (-1, None):
        optional["--vp"] = args.virtual_pipeline_model_parallel_size
    if args.save_config_filepath:
        optional["--save_config"] = host_path(args.save_config_filepath, job_dir)
    for flag, value in optional.items():
        if value is not None:
            argv += [flag, str(value)]
    return argv


def sbatch_script(args: argparse.Namespace, exp_name: str, home: Path, job_dir: Path) -> str:
    nodes = -(args.num_gpus // -args.gpus_per_node)
    log_stem = job_dir / f"log-{exp_name}_%j_0"
    directives: list[tuple[str, object]] = [("job_name", exp_name), ("nodes", nodes), ("ntasks_per_node", 1),
                                           ("time", args.time_limit)]
    if args.partition:
        directives.append(("partition", args.partition))
    if args.account:
        directives.append(("account", args.account))
    if args.gres:
        directives.append(("gres", args.gres))
    directives += [("output", f"{log_stem}.out"), ("error", f"{log_stem}.err")]
    directives += list((args.additional_slurm_params or {}).items())
    lines = ["#!/bin/bash", *(_directive(k, v) for k, v in directives), "",
             "# dse stand-in for Megatron-Bridge v0.3.0 (nemo_run Slurm executor): no container, one task per node",
             f"# container image (not used): {args.container_image}",
             f"# srun args (not used): {' '.join(args.custom_srun_args + ['--mpi=pmix', '--no-container-mount-home'])}",
             "set -e", f"export NEMORUN_HOME={shlex.quote(str(home))}"]
    lines += [f"export {k.upper()}={shlex.quote(v)}" for k, v in job_env(args).items()]
    lines.append(f"export PYTHONPATH={shlex.quote(str(SCRIPT_DIR))}:${{PYTHONPATH}}")
    lines += [" ".join(cmd) for cmd in (args.custom_bash_cmds or [])]  # verbatim: expands in the job shell
    # nemo_run's srun sends the training's stderr to the log-*.out file too (stderr_to_stdout)
    lines.append(" ".join(shlex.quote(a) for a in payload_argv(args, job_dir, exp_name)) + " 2>&1")
    return "\n".join(lines) + "\n"


def mounts(args: argparse.Namespace) -> list[str]:
    out = []
    if str(args.nemo_home) != str(DEFAULT_NEMO_CACHE_HOME):
        out.append(f"{args.nemo_home}:{args.nemo_home}")
    out += [m for m in args.custom_mounts if m]
    if args.pretrained_checkpoint is not None:
        out.append(f"{args.pretrained_checkpoint}:{args.pretrained_checkpoint}")
    out += [f"{PAYLOAD}:{PAYLOAD}", f"{SCRIPT_DIR}:{SCRIPT_DIR}"]
    return out


# ---- Slurm ----------------------------------------------------------------------------------------
def _run(cmd: list[str]) -> str | None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def slurm_state(job_id: str) -> str | None:
    """sacct's state (newest line; `CANCELLED by 0` -> CANCELLED), else squeue's, else None."""
    out = _run(["sacct", "-n", "-X", "-P", "-j", job_id, "-o", "State"])
    lines = [ln.split()[0].upper() for ln in (out or "").splitlines() if ln.strip()]
    if lines:
        if lines[-1] in FINAL_SLURM_STATES:
            return lines[-1]
        queued = _run(["squeue", "-h", "-j", job_id, "-o", "%T"])
        return (queued or "").strip().upper() or lines[-1]  # accounting lags the controller by seconds
    queued = _run(["squeue", "-h", "-j", job_id, "-o", "%T"])
    return (queued or "").strip().upper() or None


def wait_for_job(job_id: str) -> str:
    """Poll until the job is in a final state; returns that Slurm state (UNKNOWN if nobody knows it)."""
    last, unknown_since = None, None
    while True:
        state = slurm_state(job_id)
        if state is None:
            unknown_since = unknown_since or time.monotonic()
            if time.monotonic() - unknown_since > NO_STATE_GIVE_UP_S:
                return "UNKNOWN"
        else:
            unknown_since = None
            if state != last:
                logger.info(f"Job {job_id} is {state}")
                last = state
            if state in FINAL_SLURM_STATES:
                return state
        time.sleep(POLL_S)


def submit(script_path: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(["sbatch", str(script_path)], capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"sbatch {script_path} failed ({proc.returncode}): {proc.stderr.strip()}")
    for line in proc.stdout.splitlines():
        print(line, flush=True)  # `Submitted batch job N`: callers take the job id from it
    match = re.search(r"Submitted batch job (\d+)", proc.stdout)
    if not match:
        raise RuntimeError(f"cannot find the job id in sbatch's output: {proc.stdout!r}")
    return match.group(1)


# ---- log parsing and golden values (semantics of v0.3.0 utils/evaluate.py) --------------------------
PATTERNS = {
    "iteration": r"iteration\s+(\d+)/",
    "elapsed time per iteration (ms)": r"elapsed time per iteration \(ms\):\s+([\d.]+)",
    "lm loss": r"lm loss:\s+([\d.E+\-]+)",
    "GPU utilization": r"GPU utilization:\s+([\d.]+)",
    "step time": r"Step Time :\s+([\d.]+)s",
    "grad norm": r"grad norm:\s+([\d.]+|nan|inf)",
    "alloc": r"mem-allocated-gigabytes:\s*([\d\.]+)",
    "max_alloc": r"mem-max-allocated-gigabytes:\s*([\d\.]+)",
}


def parse_logs(log_paths: list[str]) -> dict[str, object]:
    """Per-step values keyed by str(iteration-1); Step Time / GPU util / grad norm wait for the next
    iteration line; memory keeps the last occurrence."""
    metrics: dict[str, object] = {k: {} for k in ("elapsed time per iteration (ms)", "lm loss", "GPU utilization",
                                                  "step time", "grad norm")}
    metrics["alloc"] = metrics["max_alloc"] = None
    content = "\n".join(Path(p).read_text(errors="replace") for p in log_paths)
    pending: dict[str, float] = {}
    for line in content.split("\n"):
        for key in ("step time", "grad norm", "GPU utilization"):
            if m := re.search(PATTERNS[key], line):
                pending[key] = float(m.group(1))
        for key in ("alloc", "max_alloc"):
            if m := re.search(PATTERNS[key], line):
                metrics[key] = float(m.group(1))
        if m := re.search(PATTERNS["iteration"], line):
            step = str(int(m.group(1)) - 1)
            for key, value in pending.items():
                metrics[key][step] = value  # type: ignore[index]
            pending = {}
            for key in ("elapsed time per iteration (ms)", "lm loss"):
                if m := re.search(PATTERNS[key], line):
                    metrics[key][step] = float(m.group(1))  # type: ignore[index]
    return metrics


def _correlation(a: list[float], b: list[float]) -> float:
    try:
        return statistics.correlation(a, b)
    except statistics.StatisticsError:
        return float("nan")  # numpy gives nan for a constant series; nan < threshold is False


def compare_loss(cur: list[float], gold: list[float], steps: list[str], cfg: dict[str, float]) -> tuple[bool, str]:
    skip = max(0, int(len(cur) * cfg["skip_first_percent_loss"]))
    cur, gold, steps = cur[skip:], gold[skip:], steps[skip:]
    failed: list[str] = []
    if _correlation(cur, gold) < cfg["correlation_threshold"]:
        failed.append("correlation")
    point_failures = []
    for step, c, g in zip(steps, cur, gold, strict=True):
        tol = cfg["high_loss_tolerance"] if g > 2.0 else cfg["medium_loss_tolerance"] if g > 0.5 \
            else cfg["low_loss_tolerance"]
        diff = abs(c - g) / abs(g) if g != 0 else abs(c)
        if diff > tol:
            point_failures.append((step, c, g, diff))
    if point_failures and len(point_failures) / len(cur) > cfg["max_outlier_ratio"]:
        failed.append("point_wise_tolerance")
    final_diff = abs(cur[-1] - gold[-1]) / gold[-1] if gold[-1] != 0 else abs(cur[-1])
    if final_diff > cfg["final_loss_tolerance"]:
        failed.append("final_loss")
    residuals = [c - g for c, g in zip(cur, gold, strict=True)]
    mean, std = statistics.fmean(residuals), statistics.pstdev(residuals)
    outliers = sum(abs(r - mean) > cfg["outlier_threshold"] * std for r in residuals)
    if outliers / len(cur) > cfg["max_outlier_ratio"]:
        failed.append("outliers")
    if not failed:
        return True, ""
    msg = f"Convergence check failed. Failed {len(failed)} out of 5 validation tests\n"
    msg += f"Failed metrics: {', '.join(failed)}\n"
    if point_failures:
        msg += f"Details:\nPoint-wise failures ({len(point_failures)}):\n"
        msg += "\n".join(f"  Step {s}: {c:.6f} vs {g:.6f} (diff: {d:.4f})" for s, c, g, d in point_failures[:5])
    return False, msg


def evaluate(log_paths: list[str], assets_dir: str, golden_values_path: str, cfg: dict[str, float]) -> tuple[bool, str]:
    metrics = parse_logs(log_paths)
    loss, times, util = metrics["lm loss"], metrics["elapsed time per iteration (ms)"], metrics["GPU utilization"]
    grad = metrics["grad norm"]
    name = Path(golden_values_path).name  # TypeError for a missing --golden_values_path, as in v0.3.0
    out_path = os.path.join(assets_dir, "golden_values", name)
    expected = os.path.join(Path(golden_values_path).parent, name)
    eval_logger.info(f"Golden values path: {expected}")
    current = {step: {"lm loss": loss[step], "elapsed time per iteration (ms)": times[step],  # type: ignore[index]
                      "GPU utilization": util[step]} for step in loss}  # type: ignore[index,union-attr]
    current.update({"alloc": metrics["alloc"], "max_alloc": metrics["max_alloc"]})  # type: ignore[dict-item]
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    with open(out_path, "w") as f:
        json.dump(current, f)
    eval_logger.info(f"Golden values were saved for {out_path}.")

    error = ""
    bad_grad = any(math.isnan(v) or math.isinf(v) for v in grad.values())  # type: ignore[union-attr]
    if bad_grad:
        error += f"Grad norm check failed. Found NaN or Inf in grad norm.\nGrad norm values: {grad}\n"
    if not os.path.exists(expected):
        error += ("Convergence check failed due to missing golden values.\n"
                  "This is expected if it is the first time running this model.\n"
                  f"You will need to add the golden values ({expected}) into the repository before the next run.")
        eval_logger.error(error)
        sys.exit(1)

    eval_logger.info("Found existing golden values file, performing convergence check")
    with open(expected) as f:
        golden = json.load(f)
    steps = sorted((k for k in golden if k not in ("alloc", "max_alloc")), key=int)
    ok_loss, msg = compare_loss([loss[s] for s in steps], [golden[s]["lm loss"] for s in steps],  # type: ignore[index]
                                steps, cfg)
    error += msg
    skip = max(1, int(len(steps) * cfg["skip_first_percent_time"]))
    cur_t = statistics.fmean([times[s] for s in steps][skip:])  # type: ignore[index]
    gold_t = statistics.fmean([golden[s]["elapsed time per iteration (ms)"] for s in steps][skip:])
    timing_diff = abs(cur_t - gold_t) / gold_t
    ok_time = timing_diff <= cfg["timing_threshold"]
    if not ok_time:
        error += ("Performance check failed. Failed 1 out of 1 tests\nTiming difference is greater than threshold: "
                  f"{timing_diff * 100:.2f}% > {cfg['timing_threshold'] * 100:.1f}%\n")
    ok_mem = True
    if golden.get("alloc") is None or golden.get("max_alloc") is None:
        eval_logger.warning("Memory metrics (alloc, max_alloc) not found in golden values - skipping memory validation")
        if ok_loss and ok_time and not bad_grad:
            error += ("\nMemory metrics (alloc, max_alloc) are missing from golden values.\n"
                      f"All other validations passed successfully.\nPlease update the golden values file: {expected}\n"
                      f'Add the following memory metrics to the golden values:\n  "alloc": {metrics["alloc"]},\n'
                      f'  "max_alloc": {metrics["max_alloc"]}\n')
    else:
        diffs = {k: abs(metrics[k] - golden[k]) / golden[k] for k in ("max_alloc", "alloc")}  # type: ignore[operator]
        failed = [k for k, d in diffs.items() if d > cfg["memory_threshold"]]
        if failed:
            ok_mem = False
            error += f"Memory check failed. Failed {len(failed)} out of 2 validation tests\n"
            error += "".join(f"{'Max alloc' if k == 'max_alloc' else 'Alloc'} difference: {diffs[k] * 100:.2f}%\n"
                             for k in failed)
            error += f"Threshold: {cfg['memory_threshold'] * 100:.1f}%\n"
    return ok_loss and ok_time and ok_mem and not bad_grad, error


# ---- main -----------------------------------------------------------------------------------------
def main(args: argparse.Namespace, unknown: list[str]) -> int:
    if args.wandb_key is not None:
        assert args.wandb_project_name is not None and args.wandb_experiment_name is not None, (
            "both wandb_project_name and wandb_experiment_name are required for logging with WandB")
    exp_name = experiment_name(args)
    if not PAYLOAD.is_file():
        logger.error(f"Specified run script not found: {PAYLOAD}")
        return 1
    home = nemorun_home(args)
    exp_dir = home / "experiments" / exp_name / f"{exp_name}_{int(time.time())}"
    job_dir = exp_dir / exp_name
    script = sbatch_script(args, exp_name, home, job_dir)
    if args.dryrun:
        print(script, flush=True)
        logger.info("dryrun requested: exiting")
        return 0

    job_dir.mkdir(parents=True, exist_ok=True)
    (job_dir / "mounts.txt").write_text("".join(m + "\n" for m in mounts(args)))
    (job_dir / "hydra_overrides.txt").write_text("".join(u + "\n" for u in unknown))
    script_path = job_dir / f"sbatch_{exp_name}.sh"
    script_path.write_text(script)
    logger.info(f"Will launch the following command with Nemo-Run: sbatch {script_path}")
    time.sleep(float(os.environ.get("STANDIN_SUBMIT_DELAY_S", "0")))  # tests: nemo_run packaging before sbatch
    job_id = submit(script_path, {**os.environ, "NEMORUN_HOME": str(home), **secret_env(args)})
    if args.detach:
        return 0

    slurm = wait_for_job(job_id)
    status = APP_STATE.get(slurm, "UNKNOWN")
    if status not in OK_APP_STATES:
        logger.error(f"Slurm job {job_id} ended in state {slurm}")
        raise Exception(f"Experiment failed for {exp_name} with status: {status}.")

    log_files = list(job_dir.glob("log-*_0.out"))
    if len(log_files) != 1:
        raise FileNotFoundError(f"Unexpected number of log files found: {log_files}. Expected 1, got {len(log_files)}")
    log_paths = sorted(glob.glob(f"{home}/experiments/{exp_name}/{exp_name}_*/{exp_name}/log-*_0.out"))
    if not args.is_long_convergence_run:
        log_paths = [log_paths[-1]]
    logger.info(f"Starting convergence check for {args.model_family_name}_{args.model_recipe_name}")
    settle = float(os.environ.get("STANDIN_IO_SETTLE_S", "1"))  # v0.3.0 waits 10 s
    logger.info(f"Waiting {settle:g} seconds for I/O to settle")
    time.sleep(settle)
    cfg = {k: getattr(args, k) for k in (
        "correlation_threshold", "high_loss_tolerance", "medium_loss_tolerance", "low_loss_tolerance",
        "final_loss_tolerance", "max_outlier_ratio", "outlier_threshold", "skip_first_percent_loss",
        "timing_threshold", "skip_first_percent_time", "memory_threshold")}
    passed, error = evaluate(log_paths, os.path.join(job_dir, exp_name), args.golden_values_path, cfg)
    if not passed:
        raise AssertionError(error)
    if error:
        logger.warning(error)
    logger.info("Megatron-Bridge CI test job completed successfully!")
    return 0


if __name__ == "__main__":
    parsed, unknown_args = build_parser().parse_known_args()
    assert not (parsed.enable_nsys and parsed.pytorch_profiler), (
        "Both NSys and PyTorch profiler cannot be enabled at the same time")
    if unknown_args:
        logger.warning(f"Ignoring unrecognized arguments: {' '.join(unknown_args)}")
    sys.exit(main(parsed, unknown_args))
