"""Slurm-style time limits (`[D-]HH:MM:SS`, `MM:SS`, minutes): the system, the spec and the jobs read them."""

from __future__ import annotations

import math

__all__ = ["parse_time_limit", "time_limit_seconds"]


def time_limit_seconds(text: str) -> int:
    """Slurm-style `[D-]HH:MM:SS`, `MM:SS` or minutes -> seconds."""
    s = str(text).strip()
    days = 0
    if "-" in s:
        d, s = s.split("-", 1)
        days = int(d) if d.isdigit() else -1
    parts = s.split(":")
    if days < 0 or not 1 <= len(parts) <= 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"'{text}' is not a time limit like '00:30:00'")
    nums = [int(p) for p in parts]
    seconds = {1: lambda: nums[0] * 60, 2: lambda: nums[0] * 60 + nums[1],
               3: lambda: nums[0] * 3600 + nums[1] * 60 + nums[2]}[len(nums)]() + days * 86400
    if seconds <= 0:
        raise ValueError(f"'{text}' is not a positive time limit")
    return seconds


def parse_time_limit(text: str) -> int:
    """Slurm-style time limit -> whole minutes (rounded up, at least 1), as sbatch takes it."""
    return max(1, math.ceil(time_limit_seconds(text) / 60))
