"""Megatron-Bridge's launcher arguments as a pydantic model (CloudAI's `MegatronBridgeCmdArgs`)."""

from __future__ import annotations

from typing import Any

from pydantic import field_validator

from dse.cmd_args import CmdArgsModel

__all__ = ["MegatronBridgeCmdArgs"]

_POSITIVE_INT_FIELDS = (
    "num_gpus", "gpus_per_node", "tp", "pp", "cp", "vp", "ep", "et", "mb", "gb", "seq_length", "max_steps",
)


class MegatronBridgeCmdArgs(CmdArgsModel):
    """Megatron-Bridge launcher arguments (CloudAI's `MegatronBridgeCmdArgs`, same fields and defaults).

    `X | list[X]` fields are sweepable; a list-typed knob (cuda_graph_scope, recompute_modules) names
    several items in one comma string, so a TOML list of such strings is always a sweep.
    """

    gpu_type: str = "gb200"
    log_dir: str = ""
    container_image: str = ""
    num_gpus: int = 8
    gpus_per_node: int | None = None
    enable_vboost: bool | None = False
    dryrun: bool | None = False
    enable_nsys: bool | None = False
    domain: str | None = None
    hidden_size: int | None = None
    num_layers: int | None = None
    pipeline_model_parallel_layout: str | None = None
    first_k_dense_replace: int | None = None
    model_family_name: str = ""
    model_recipe_name: str = ""
    use_recipes: bool | None = None
    task: str = "pretrain"
    compute_dtype: str = "bf16"
    fp8_recipe: str | None = None
    hf_token: str = ""
    nemo_home: str | None = None
    wandb_key: str | None = None
    wandb_project_name: str | None = None
    wandb_entity_name: str | None = None
    wandb_experiment_name: str | None = None
    wandb_save_dir: str | None = None
    max_retries: int | None = 1
    use_tokendrop: bool | list[bool] | None = None
    use_megatron_fsdp: bool | list[bool] | None = None
    cuda_graph_impl: str | list[str] | None = None
    cuda_graph_scope: str | list[str] | None = None
    tp: int | list[int] | None = None
    pp: int | list[int] | None = None
    cp: int | list[int] | None = None
    vp: int | list[int] | None = None
    ep: int | list[int] | None = None
    et: int | list[int] | None = None
    mb: int | list[int] | None = None
    gb: int | list[int] | None = None
    seq_length: int | list[int] | None = None
    lr: float | list[float] | None = None
    min_lr: float | list[float] | None = None
    warmup_iters: int | list[int] | None = None
    pretrained_checkpoint: str | None = None
    save_dir: str | None = None
    load_dir: str | None = None
    save_interval: int | None = None
    most_recent_k: int | None = None
    save_config_filepath: str | None = "/nemo_run/configs/ConfigContainer.yaml"
    data: str | None = None
    dataset_paths: str | list[str] | None = None
    dataset_root: str | None = None
    index_mapping_dir: str | None = None
    dataset_name: str | None = None
    packed_sequence: bool | None = None
    head_only: bool | None = None
    tokenizer_type: str | None = None
    tokenizer_model: str | None = None
    vocab_size: int | None = None
    pytorch_profiler: bool | None = None
    profiling_start_step: int | None = None
    profiling_stop_step: int | None = None
    record_memory_history: bool | None = None
    profiling_gpu_metrics: bool | None = None
    profiling_ranks: int | str | list[int] | None = None
    nsys_trace: str | list[str] | None = None
    nsys_extra_args: str | list[str] | None = None
    nccl_ub: bool | list[bool] | None = None
    moe_a2a_overlap: bool | list[bool] | None = None
    max_steps: int | None = 10
    recompute_num_layers: int | list[int] | None = None
    activation_offload_layers: int | list[int] | None = None
    recompute_modules: str | list[str] | None = None
    num_distributed_optimizer_instances: int | None = None
    config_variant: str | None = None
    list_config_variants: bool | None = None

    @field_validator(*_POSITIVE_INT_FIELDS)
    @classmethod
    def _positive(cls, v: Any) -> Any:
        for item in v if isinstance(v, list) else [v]:
            if item is not None and item < 1:
                raise ValueError(f"must be a positive integer, got {item}")
        if isinstance(v, list) and not v:
            raise ValueError("an empty list sweeps nothing")
        return v

    @field_validator("recompute_num_layers", "activation_offload_layers")
    @classmethod
    def _non_negative(cls, v: Any) -> Any:
        for item in v if isinstance(v, list) else [v]:
            if item is not None and item < 0:
                raise ValueError(f"must be >= 0, got {item}")
        return v

