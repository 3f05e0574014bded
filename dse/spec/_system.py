"""The system (where trials run) and the scenario (which tests, with which nodes and time limits)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from dse.spec._test import _coerce_nodes, check_sweep_name
from dse.timelimit import parse_time_limit


class ScenarioTest(BaseModel):
    """One `[[Tests]]` entry: a test by `test_name`, or written inline; plus run and agent overrides."""

    model_config = ConfigDict(extra="allow")

    id: str
    test_name: str | None = None
    num_nodes: int | list[int] | None = None
    time_limit: str | None = None

    @field_validator("num_nodes", mode="before")
    @classmethod
    def _nodes(cls, v: Any) -> Any:
        return _coerce_nodes(v)


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    Tests: list[ScenarioTest] = Field(min_length=1)
    job_status_check: bool | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_sweep_name(v)


class SystemConfig(BaseModel):
    """Where trials run (docs/DESIGN.md §4). The default is this machine, through submitit's local executor."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = "local"
    scheduler: Literal["local", "slurm", "debug"] = "local"
    partition: str | None = Field(default=None, alias="default_partition")
    account: str | None = None
    gpus_per_node: int | None = None
    cpus_per_task: int | None = None
    mem_gb: int | None = None
    time_limit: str | None = None
    container_runtime: Literal["pyxis", "none"] = "pyxis"  # accepted for older system TOMLs; the launcher's job
    # gets its container from -i (MegatronBridge trials no longer run under dse's own srun)
    container_mounts: list[str] = Field(default_factory=list)
    extra_sbatch_args: list[str] = Field(default_factory=list)
    extra_srun_args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    max_jobs_in_flight: int | None = None
    use_job_arrays: bool = True
    launcher: str | None = None  # command that runs setup_experiment.py (default: python3); tests swap it
    megatron_bridge_path: str | None = None  # checkout of the pinned repo on the submit host
    poll_interval_s: float = 1.0

    @field_validator("gpus_per_node", "cpus_per_task", "mem_gb", "max_jobs_in_flight")
    @classmethod
    def _positive(cls, v: int | None) -> int | None:
        if v is not None and v < 1:
            raise ValueError(f"must be a positive integer, got {v}")
        return v

    @field_validator("time_limit")
    @classmethod
    def _time(cls, v: str | None) -> str | None:
        if v is not None:
            parse_time_limit(v)
        return v

