"""`MegatronBridge`: the real launcher, `scripts/performance/setup_experiment.py` of the pinned repo.

The flag mapping follows CloudAI's `_build_launcher_parts` (reference cloudai-dse.md §4.2) on the v0.3.0
argument parser (reference megatron-bridge.md §1): only fields the user wrote are passed, so the
preset decides everything else. Two v0.3.0 quirks are handled here: `-sl` does not set
`model.seq_length` (a Hydra override is added) and `-vp 1` must be spelled `-vp None`.
The HF token is never passed as `-hf`: it reaches the job through the inherited `HF_TOKEN`.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dse.errors import InputError
from dse.metrics import MetricsError, classify_failure, parse_log
from dse.space import TrialConfig, flatten
from dse.spec import MegatronBridgeCmdArgs, parse_time_limit
from dse.workloads.base import STDERR, STDOUT, JobSpec, Outcome, Workload, read_text
from dse.workloads.outcomes import collect_metrics

SETUP_SCRIPT = "scripts/performance/setup_experiment.py"
DEFAULT_REPO = "/opt/Megatron-Bridge"
GOLDEN_FILE = "golden_values.json"
MISSING_GOLDEN = "Convergence check failed due to missing golden values"

# (cmd_args field, flag, kind) in emission order. kind: "value" -> flag VALUE; "bool" -> flag true|false;
# "store_true" -> bare flag only when true; "list" -> comma string; "nargs" -> one argv item per element.
FLAGS: tuple[tuple[str, str, str], ...] = (
    ("model_family_name", "-m", "value"),
    ("model_recipe_name", "-mr", "value"),
    ("task", "--task", "value"),
    ("domain", "--domain", "value"),
    ("use_recipes", "--use_recipes", "store_true"),
    ("gpu_type", "-g", "value"),
    ("compute_dtype", "-c", "value"),
    ("config_variant", "-cv", "value"),
    ("list_config_variants", "--list_config_variants", "store_true"),
    ("num_gpus", "-ng", "value"),
    ("gpus_per_node", "-gn", "value"),
    ("max_retries", "--max_retries", "value"),
    ("dryrun", "-d", "store_true"),
    ("nemo_home", "-nh", "value"),
    ("hidden_size", "--hidden_size", "value"),
    ("num_layers", "--num_layers", "value"),
    ("pipeline_model_parallel_layout", "--pipeline_model_parallel_layout", "value"),
    ("first_k_dense_replace", "--first_k_dense_replace", "value"),
    ("tp", "-tp", "value"),
    ("pp", "-pp", "value"),
    ("cp", "-cp", "value"),
    ("vp", "-vp", "vp"),
    ("ep", "-ep", "value"),
    ("et", "-et", "value"),
    ("mb", "-mb", "value"),
    ("gb", "-gb", "value"),
    ("seq_length", "-sl", "value"),
    ("max_steps", "-ms", "value"),
    ("lr", "--lr", "value"),
    ("min_lr", "--min_lr", "value"),
    ("warmup_iters", "--warmup_iters", "value"),
    ("cuda_graph_impl", "--cuda_graph_impl", "value"),
    ("cuda_graph_scope", "--cuda_graph_scope", "list"),
    ("recompute_num_layers", "-rl", "value"),
    ("recompute_modules", "--recompute_modules", "list"),
    ("activation_offload_layers", "-ol", "value"),
    ("use_megatron_fsdp", "--use_megatron_fsdp", "bool"),
    ("nccl_ub", "--nccl_ub", "bool"),
    ("moe_a2a_overlap", "--moe_a2a_overlap", "bool"),
    ("use_tokendrop", "--use_tokendrop", "bool"),
    ("enable_vboost", "-vb", "bool"),
    ("data", "--data", "value"),
    ("dataset_paths", "--dataset_paths", "nargs"),
    ("dataset_root", "--dataset_root", "value"),
    ("index_mapping_dir", "--index_mapping_dir", "value"),
    ("dataset_name", "--dataset_name", "value"),
    ("packed_sequence", "--packed_sequence", "store_true"),
    ("head_only", "--head_only", "store_true"),
    ("tokenizer_type", "--tokenizer_type", "value"),
    ("tokenizer_model", "--tokenizer_model", "value"),
    ("vocab_size", "--vocab_size", "value"),
    ("pretrained_checkpoint", "--pretrained_checkpoint", "value"),
    ("save_dir", "--save_dir", "value"),
    ("load_dir", "--load_dir", "value"),
    ("save_interval", "--save_interval", "value"),
    ("most_recent_k", "--most_recent_k", "value"),
    ("save_config_filepath", "--save_config_filepath", "value"),
    ("enable_nsys", "-en", "store_true"),
    ("pytorch_profiler", "-pyp", "bool"),
    ("profiling_start_step", "--profiling_start_step", "value"),
    ("profiling_stop_step", "--profiling_stop_step", "value"),
    ("profiling_ranks", "--profiling_ranks", "list"),
    ("record_memory_history", "-mh", "bool"),
    ("profiling_gpu_metrics", "--profiling_gpu_metrics", "store_true"),
    ("nsys_trace", "--nsys_trace", "list"),
    ("nsys_extra_args", "--nsys_extra_args", "list"),
    ("wandb_key", "-wdk", "value"),
    ("wandb_project_name", "-wdp", "value"),
    ("wandb_entity_name", "-wde", "value"),
    ("wandb_experiment_name", "-wdj", "value"),
    ("wandb_save_dir", "-wds", "value"),
)
# Always passed (model default when unset): the launcher requires them.
FORCED = frozenset({"model_family_name", "model_recipe_name", "num_gpus", "gpus_per_node", "gpu_type"})
# Fields that are not launcher flags: secrets, dse-side settings, or flags that would move the outputs.
NOT_FLAGS = frozenset({"hf_token", "container_image", "log_dir", "fp8_recipe"})
# Known fields without a v0.3.0 flag that still have a config path: passed as Hydra overrides.
HYDRA_FIELDS = {"num_distributed_optimizer_instances": "ddp.num_distributed_optimizer_instances"}
KNOWN_FIELDS = frozenset(MegatronBridgeCmdArgs.model_fields)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _list_text(value: Any) -> str:
    """A list knob as one comma string: `["attn", "mlp"]` and `"[attn, mlp]"` both give `attn,mlp`."""
    items = value if isinstance(value, list) else str(value).strip().strip("[]").split(",")
    return ",".join(str(i).strip().strip("'\"") for i in items if str(i).strip().strip("'\""))


def _hydra_text(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ",".join(_text(v) for v in value) + "]"
    return _text(value)


def _flag_args(flag: str, kind: str, value: Any) -> list[str]:
    if kind == "store_true":
        return [flag] if value else []
    if kind == "bool":
        return [flag, _text(bool(value) if not isinstance(value, str) else value)]
    if kind == "vp":
        return [flag, "None" if value in (1, [1]) else _text(value[0] if isinstance(value, list) else value)]
    if kind == "list":
        return [flag, _list_text(value)]
    if kind == "nargs":
        return [flag, *(_text(v) for v in (value if isinstance(value, list) else str(value).split()))]
    if isinstance(value, list):
        return [flag, _text(value[0]) if len(value) == 1 else ",".join(_text(v) for v in value)]
    return [flag, _text(value)]


def _time_hms(limit: str) -> str:
    minutes = parse_time_limit(limit)
    return f"{minutes // 60:02d}:{minutes % 60:02d}:00"


class MegatronBridgeWorkload(Workload):
    name = "MegatronBridge"

    # ---- command ---------------------------------------------------------------------------------
    def repo_root(self) -> str:
        """Where setup_experiment.py lives: the submit-host checkout, else the repo's mount point."""
        system = self.sweep.system
        if system.megatron_bridge_path:
            return system.megatron_bridge_path
        repo = self.sweep.test.megatron_bridge_repo
        return (repo.mount_as if repo and repo.mount_as else DEFAULT_REPO).rstrip("/") or "/"

    def gpus_per_node(self, cfg: TrialConfig) -> int:
        return int(cfg.cmd_args.get("gpus_per_node") or self.sweep.system.gpus_per_node or 8)

    def launcher_flags(self, cfg: TrialConfig, trial_dir: Path) -> list[str]:
        """setup_experiment.py's arguments: cluster flags, the user's fields, then Hydra overrides."""
        system, test = self.sweep.system, self.sweep.test
        user = cfg.cmd_args
        defaults = {k: f.default for k, f in MegatronBridgeCmdArgs.model_fields.items()}
        values = {**defaults, **{k: v for k, v in user.items() if k in KNOWN_FIELDS}}
        values["gpus_per_node"] = self.gpus_per_node(cfg)
        for name in ("model_family_name", "model_recipe_name"):
            if not str(values.get(name) or "").strip():
                raise InputError("must be set (setup_experiment.py requires it)", file=str(self.sweep.source),
                                 field=f"cmd_args.{name}")
        args: list[str] = []
        if system.account:
            args += ["-a", system.account]
        if system.partition:
            args += ["-p", system.partition]
        if cfg.time_limit:
            args += ["-t", _time_hms(cfg.time_limit)]
        image = str(user.get("container_image") or "")
        if image:
            args += ["-i", image]
        for name, flag, kind in FLAGS:
            if name not in user and name not in FORCED:
                continue
            value = values.get(name)
            if value is None or value == "":
                continue
            args += _flag_args(flag, kind, value)
        if test.extra_container_mounts:
            args += ["-cm", ",".join(test.extra_container_mounts)]
        args += ["--detach", "false", "--golden_values_path", str(trial_dir / GOLDEN_FILE)]
        args += self._hydra_overrides(cfg)
        return args

    def _hydra_overrides(self, cfg: TrialConfig) -> list[str]:
        """`model.seq_length` for `-sl`, then nested/dotted/unknown cmd_args, then `extra_cmd_args`."""
        extras: dict[str, Any] = {}
        for name, path in HYDRA_FIELDS.items():
            if cfg.cmd_args.get(name) is not None:
                extras[path] = cfg.cmd_args[name]
        for key, value in cfg.cmd_args.items():
            if key in KNOWN_FIELDS:
                continue
            if isinstance(value, Mapping):
                extras.update(flatten(value, key + "."))
            else:
                extras[key] = value
        extra_cmd = dict(self.sweep.test.extra_cmd_args)
        out: list[str] = []
        seq = cfg.cmd_args.get("seq_length")
        if seq is not None and "model.seq_length" not in extras and "model.seq_length" not in extra_cmd:
            out.append(f"model.seq_length={_text(seq[0] if isinstance(seq, list) else seq)}")
        out += [f"{k}={_hydra_text(v)}" for k, v in extras.items() if v is not None]
        out += [f"{k}={v}" for k, v in extra_cmd.items()]
        return out

    def container_prefix(self, cfg: TrialConfig) -> list[str]:
        """`srun` with pyxis flags when the launcher itself must run in the container on a Slurm node."""
        system = self.sweep.system
        if system.container_runtime != "pyxis" or system.scheduler != "slurm":
            return []
        image = str(cfg.cmd_args.get("container_image") or "")
        if not image:
            raise InputError("a pyxis system needs a container image (or set container_runtime = 'none' "
                             "in the system TOML)", file=str(self.sweep.source), field="cmd_args.container_image")
        prefix = ["srun", f"--container-image={image}"]
        mounts = [*system.container_mounts, *self.sweep.test.extra_container_mounts]
        if mounts:
            prefix.append(f"--container-mounts={','.join(mounts)}")
        prefix.append("--no-container-mount-home")
        return prefix + list(system.extra_srun_args)

    def build(self, cfg: TrialConfig, trial_dir: Path) -> JobSpec:
        launcher = shlex.split(self.sweep.system.launcher or "python3")
        script = f"{self.repo_root().rstrip('/')}/{SETUP_SCRIPT}"
        argv = [*self.container_prefix(cfg), *launcher, script, *self.launcher_flags(cfg, trial_dir)]
        env = dict(cfg.extra_env_vars)
        env["NEMORUN_HOME"] = str(trial_dir)
        limit = parse_time_limit(cfg.time_limit) * 60 if cfg.time_limit else None
        return JobSpec(argv=argv, cwd=str(trial_dir), env=env, num_nodes=cfg.num_nodes,
                       gpus_per_node=self.gpus_per_node(cfg), time_limit_s=limit)

    # ---- results ---------------------------------------------------------------------------------
    def collect(self, cfg: TrialConfig, trial_dir: Path, returncode: int | None) -> Outcome:
        """Golden-values JSON first (newest), else `Step Time` lines in the launcher's or job's log.

        A first run always ends with exit 1 ("missing golden values") after writing its JSON: tolerated.
        """
        jsons = sorted(trial_dir.rglob("golden_values*.json"), key=_mtime, reverse=True)
        job_logs = sorted(trial_dir.rglob("log-*.out"), key=_mtime, reverse=True)
        texts = [read_text(trial_dir / STDOUT), read_text(trial_dir / STDERR)]
        texts += [read_text(p) for p in job_logs]
        tolerate = any(MISSING_GOLDEN in t for t in texts)
        outcome = collect_metrics(trial_dir, jsons, returncode, tolerate_exit=tolerate)
        if outcome.ok or outcome.reason in ("timeout", "out-of-memory") or not job_logs:
            return outcome
        # The training output lives in nemo_run's job log when the launcher does not echo it.
        job_text = read_text(job_logs[0])
        failure = classify_failure(job_text)
        if failure and failure[0] == "out-of-memory":
            return Outcome(False, reason="out-of-memory", error=f"out-of-memory: {failure[1]}")
        try:
            metrics = parse_log(job_text)
        except MetricsError:
            return outcome
        if not metrics.is_empty() and (returncode == 0 or tolerate):
            return Outcome(True, metrics=metrics)
        return outcome

    def identity(self) -> dict[str, Any]:
        repo = self.sweep.test.megatron_bridge_repo
        return {
            "workload": self.name,
            "repo": repo.url if repo else None,
            "commit": repo.commit if repo else None,
            "container_image": self.sweep.test.cmd_args.get("container_image") or None,
        }


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
