"""`MegatronBridge`: the real launcher, `scripts/performance/setup_experiment.py` of the pinned checkout.

setup_experiment.py is a submitter: it runs on the submit host, submits the training job to Slurm itself
(nemo_run's Slurm executor; v0.3.0 has no local executor) and, with `--detach false`, waits for it and
writes the golden-values JSON. So a trial is a local process on the submit host holding no allocation;
the training job it submits is the trial's Slurm job (its id is parsed from the launcher's output).

The flag mapping follows CloudAI's (docs/reference/cloudai-megatron-bridge-launch.md) on the v0.3.0 argument
parser (docs/reference/megatron-bridge.md §1): only fields the user wrote are passed, so the preset decides
everything else; the sweep's and the system's environment reach the training job as `-cb 'export K=V'`
(expanded in the job's shell); the pinned checkout is mounted at `mount_as`. Two v0.3.0 quirks are handled
here: `-sl` does not set `model.seq_length` (a Hydra override is added) and `-vp 1` is spelled `-vp None`.
Deliberate difference from CloudAI: the HF token is never passed as `-hf` (that would write it into
nemo_run's sbatch script); it reaches the job through the inherited `HF_TOKEN`.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dse.errors import FieldProblem, InputError
from dse.hashing import is_secret_env, resolve_hf_token
from dse.megatron import MegatronBridgeCmdArgs
from dse.metrics import MetricsError, classify_failure, parse_log
from dse.timelimit import parse_time_limit
from dse.trial import TrialConfig, flatten
from dse.workloads._base import STDERR, STDOUT, JobSpec, Outcome, Workload, read_text
from dse.workloads._install import cached_image, checkout_path, launcher_venv_python
from dse.workloads._outcomes import collect_metrics

if TYPE_CHECKING:
    from dse.spec import TestDefinition

SETUP_SCRIPT = "scripts/performance/setup_experiment.py"
DEFAULT_REPO = "/opt/Megatron-Bridge"
GOLDEN_FILE = "golden_values.json"
SAVE_CONFIG = "/nemo_run/configs/ConfigContainer.yaml"  # v0.3.0's default, passed as CloudAI does
# Hydra overrides CloudAI always adds (its _add_extra_cmd_args); the sweep's extra_cmd_args win.
TENSORBOARD = {"logger.tensorboard_dir": "/nemo_run/tb_logs", "logger.log_timers_to_tensorboard": "true",
               "logger.log_throughput_to_tensorboard": "true", "logger.log_memory_to_tensorboard": "true"}
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
FORCED = frozenset({"model_family_name", "model_recipe_name", "num_gpus"})
# Fields that are not plain flags: secrets, or flags dse composes itself (-i, -gn, -l).
NOT_FLAGS = frozenset({"hf_token", "container_image", "log_dir", "fp8_recipe", "gpus_per_node"})
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


def srun_args_as_slurm_params(args: list[str] | str) -> list[str]:
    """`--key value` / `--key=value` / `--flag` srun arguments as `key=value` items of --additional_slurm_params."""
    tokens = shlex.split(args) if isinstance(args, str) else [t for a in args for t in shlex.split(a)]
    out: list[str] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.startswith("--") and "=" in tok:
            out.append(tok[2:])
        elif tok.startswith("--") and i + 1 < len(tokens) and not tokens[i + 1].startswith("-"):
            out.append(f"{tok[2:]}={tokens[i + 1]}")
            i += 1
        elif tok.startswith("--"):
            out.append(tok[2:])
        i += 1
    return out


class MegatronBridgeWorkload(Workload):
    name = "MegatronBridge"
    cmd_args_model = MegatronBridgeCmdArgs
    submits_own_job = True
    megatron = True

    @classmethod
    def check_test(cls, test: TestDefinition) -> None:
        """The launcher needs the pinned Megatron-Bridge checkout and a HuggingFace token."""
        if test.megatron_bridge_repo is None:
            raise FieldProblem(
                "git_repos",
                "MegatronBridge needs the Megatron-Bridge repo pinned in [[git_repos]] "
                "(url = 'https://github.com/NVIDIA-NeMo/Megatron-Bridge.git', commit = 'v0.3.0')",
            )
        if not resolve_hf_token(test.cmd_args):
            raise FieldProblem(
                "cmd_args.hf_token",
                "MegatronBridge needs a HuggingFace token: set HF_TOKEN (recommended), "
                "HF_TOKEN_PATH to a file holding it, or cmd_args.hf_token",
            )

    # ---- command ---------------------------------------------------------------------------------
    def repo_root(self) -> str:
        """Where setup_experiment.py lives: `megatron_bridge_path`, else the pinned checkout `dse install` made."""
        system = self.sweep.system
        if system.megatron_bridge_path:
            return system.megatron_bridge_path.rstrip("/") or "/"
        repo = self.sweep.test.megatron_bridge_repo
        return str(checkout_path(repo)) if repo else DEFAULT_REPO

    def launcher(self) -> list[str]:
        """The Python that runs setup_experiment.py: the system's `launcher`, else dse's nemo_run venv."""
        return shlex.split(self.sweep.system.launcher or str(launcher_venv_python()))

    def gpus_per_node(self, cfg: TrialConfig) -> int | None:
        """-gn: the system's GPUs per node (CloudAI's choice), else the sweep's; omitted when neither says."""
        value = self.sweep.system.gpus_per_node or cfg.cmd_args.get("gpus_per_node")
        return int(value) if value else None

    def mounts(self) -> list[str]:
        """-cm: the pinned checkout at `mount_as` (it replaces the container's copy), then the other mounts."""
        test, system = self.sweep.test, self.sweep.system
        repo = test.megatron_bridge_repo
        out = [f"{self.repo_root()}:{repo.mount_as}"] if repo and repo.mount_as else []
        return out + list(system.container_mounts) + list(test.extra_container_mounts)

    def job_env(self, cfg: TrialConfig) -> dict[str, str]:
        """What the training job exports (-cb): the system's env, then the sweep's extra_env_vars."""
        return {**self.sweep.system.env, **cfg.extra_env_vars}

    def slurm_params(self) -> list[str]:
        """--additional_slurm_params items (sbatch directives of the training job): GPUs, extra sbatch args."""
        system = self.sweep.system
        params = [f"gpus-per-node={system.gpus_per_node}", f"gres=gpu:{system.gpus_per_node}"] \
            if system.gpus_per_node else []
        return params + srun_args_as_slurm_params(list(system.extra_sbatch_args))

    def srun_args(self) -> list[str]:
        """-cs items: the system's and the test's srun arguments, for the job's srun.

        CloudAI turns them into --additional_slurm_params, i.e. sbatch directives, where an srun-only
        argument such as --mpi=pmix is refused by sbatch; v0.3.0's -cs is the srun's own list.
        """
        test = self.sweep.test
        extra = shlex.split(test.extra_srun_args) if isinstance(test.extra_srun_args, str) \
            else [t for a in test.extra_srun_args for t in shlex.split(a)]
        return [t for a in self.sweep.system.extra_srun_args for t in shlex.split(a)] + extra

    def launcher_flags(self, cfg: TrialConfig, trial_dir: Path) -> list[str]:
        """setup_experiment.py's arguments: cluster flags, the user's fields, then Hydra overrides."""
        system = self.sweep.system
        user = cfg.cmd_args
        defaults = {k: f.default for k, f in MegatronBridgeCmdArgs.model_fields.items()}
        values = {**defaults, **{k: v for k, v in user.items() if k in KNOWN_FIELDS}}
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
            args += ["-i", cached_image(image)]
        for name, flag, kind in FLAGS:
            if name not in user and name not in FORCED:
                continue
            value = values.get(name)
            if value is None or value == "":
                continue
            args += _flag_args(flag, kind, value)
        gpn = self.gpus_per_node(cfg)
        if gpn:
            args += ["-gn", str(gpn)]
        args += ["-l", str(user.get("log_dir") or trial_dir)]
        if "save_config_filepath" not in user:
            args += ["--save_config_filepath", SAVE_CONFIG]
        mounts = self.mounts()
        if mounts:
            args += ["-cm", ",".join(mounts)]
        for key, value in sorted(self.job_env(cfg).items()):
            # a secret's value never enters the command line (pickled, and written into nemo_run's sbatch
            # script): the launcher inherits it (JobSpec keeps it out of the pickle) and the job's shell copies it
            shown = f'"${{{key}}}"' if is_secret_env(key, value) else value
            args += ["-cb", f"export {key}={shown}"]
        params = self.slurm_params()
        if params:
            args += ["--additional_slurm_params", ";".join(params)]
        srun = self.srun_args()
        if srun:
            args += ["-cs", ",".join(srun)]
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
        out += [f"{k}={v}" if v else k for k, v in {**TENSORBOARD, **extra_cmd}.items()]
        return out

    def build(self, cfg: TrialConfig, trial_dir: Path) -> JobSpec:
        """The launcher as a local process on the submit host; the job it submits holds the GPUs.

        No time limit of dse's own: the launcher waits while its job queues, and the job carries the
        trial's limit (-t), which Slurm enforces.
        """
        script = f"{self.repo_root().rstrip('/')}/{SETUP_SCRIPT}"
        argv = [*self.launcher(), script, *self.launcher_flags(cfg, trial_dir)]
        secrets = {k: v for k, v in self.job_env(cfg).items() if is_secret_env(k, v)}
        return JobSpec(argv=argv, cwd=str(trial_dir), env={"NEMORUN_HOME": str(trial_dir), **secrets}, num_nodes=1,
                       gpus_per_node=0, time_limit_s=None, submit_host=True)

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

    def progress_logs(self, trial_dir: Path) -> list[Path]:
        """The training job's nemo_run log and the launcher's own output. Read on every poll while early
        stopping is on, so only nemo_run's layout is looked at (NEMORUN_HOME is the trial folder:
        `experiments/<name>/<name>_<time>/<task>/log-<name>_<job id>_0.out`), not the whole folder."""
        return [*sorted(trial_dir.glob("experiments/*/*/*/log-*.out")), trial_dir / STDOUT]

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
