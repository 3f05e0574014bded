"""Failure classification: a failed job's log -> (reason, the line that says so).

Out-of-memory and rejected configurations are the configuration's own (deterministic); NCCL and node
trouble is the cluster's (transient, retried). The patterns are the log lines Megatron-Bridge and PyTorch
print. The module does no I/O.
"""

from __future__ import annotations

import re

FLAKY_PATTERNS: tuple[str, ...] = (
    r"Some NCCL operations have failed or timed out",
    r"Watchdog caught collective operation timeout",
    r"NCCL.*\btimed out\b",  # not a bare "timeout": env dumps print NCCL_*_TIMEOUT settings
    r"ProcessGroupNCCL.*(?:Timeout\(ms\)|watchdog thread terminated)",
    r"unhandled system error",
    r"ncclRemoteError|ncclSystemError|ncclInternalError",
    r"uncorrectable ECC error",
    r"ECC error",
    r"illegal memory access",
    r"illegal instruction",
    r"unspecified launch failure",
    r"Segmentation fault|SIGSEGV|Segfault",
    r"double free or corruption",
    r"Call to CUDA function failed",
    r"Connection reset by peer",
    r"Connection refused",
    r"torch\.distributed\.DistNetworkError|DistNetworkError",
    r"torch\.distributed\.DistBackendError|DistBackendError",
    r"The server socket has failed to listen",
    r"\bXid\b",
    r"DUE TO NODE FAIL|NODE_FAIL|node failure",
    r"DUE TO PREEMPTION",
)
OOM_PATTERNS: tuple[str, ...] = (
    r"CUDA out of memory",
    r"torch\.OutOfMemoryError",
    r"torch\.cuda\.OutOfMemoryError",
    r"OutOfMemoryError",
    r"CUDA error: out of memory",
    r"cudaErrorMemoryAllocation",
    r"oom[-_]kill",
)
# Deterministic framework refusals (docs/reference/megatron-bridge.md §3); retrying cannot help.
REJECT_PATTERNS: tuple[str, ...] = (
    r"is not divisible by",
    r"should be divisible by",
    r"must be divisible by",
    r"should be greater than 1 with interleaved schedule",
    r"must be a multiple of",
    r"must be a multiple or divisor of",
    r"number of microbatches should be at least 1",
    r"Make sure the number of model chunks is the same across all pipeline stages",
    r"contiguous micro-batches in a virtual pipeline stage should range in",
    r"should be 0, or larger than or equal to the pipeline-parallel size",
    r"Cannot use sequence parallelism without tensor parallelism",
    r"ensure sequence length configuration in model config and dataset config match",
    r"num_moe_experts must be non None to use expert-parallel",
    r"If enabling EP A2A overlap",
    r"CPU offloading can be done only for layers less than",
    r"no support for Pipeline parallelism with CPU offloading",
    r"CPU offloading does not work when activation recomputation is enabled",
    r"CUDA graphs not supported with CPU offloading",
    r"When using recompute_granularity",
    r"RNG tracker is required for cudagraphs",
    r"conflicts with pipeline_model_parallel_layout",
    r"ep_size must be less than or equal to",
    r"moe_expert_capacity_factor only works with alltoall token dispatcher",
    r"error: unrecognized arguments",
    r"error: argument \S+: invalid",
    # A bare AssertionError is a config refusal, except Megatron-Bridge's own post-run checks (which fire
    # after a successful run when no golden values exist) and the end-of-data marker.
    r"AssertionError(?!.*(?:Convergence check|Performance check|golden values|Grad norm check"
    r"|Memory metrics|no samples left to consume))",
)
_CATEGORIES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (category, re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE))
    for category, patterns in (
        ("out-of-memory", OOM_PATTERNS),
        ("rejected-config", REJECT_PATTERNS),
        ("transient", FLAKY_PATTERNS),
    )
)
_MAX_LINE = 240


def classify_failure(log_text: str) -> tuple[str, str] | None:
    """Why a run failed: ("out-of-memory" | "rejected-config" | "transient", the first matching line).

    Priority is in that order, so an OOM on one rank wins over the NCCL timeouts it causes on the others.
    """
    if isinstance(log_text, (bytes, bytearray)):
        log_text = bytes(log_text).decode("utf-8", errors="replace")
    if not isinstance(log_text, str) or not log_text:
        return None
    lines = log_text.splitlines()
    for category, regex in _CATEGORIES:
        for line in lines:
            if regex.search(line):
                trimmed = " ".join(line.split())
                if len(trimmed) > _MAX_LINE:
                    trimmed = trimmed[: _MAX_LINE - 3] + "..."
                return category, trimmed
    return None
