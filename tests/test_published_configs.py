"""Every configuration NVIDIA published for Megatron-Bridge v0.3.0, and every preset dse knows, is valid.

A rule that refuses a configuration that ran is a rule that can silently prune a sweep's optimum.
"""

from __future__ import annotations

from typing import Any

import pytest
from conftest import make_test, sweep_from

from dse.megatron import PRESETS, PUBLISHED_26_02, PublishedRow
from dse.space import SweepSpace

assert len({r.label for r in PUBLISHED_26_02}) == 29  # the whole 26.02 table, each row once


@pytest.mark.parametrize("row", PUBLISHED_26_02, ids=lambda r: r.label)
def test_published_row_is_a_valid_one_point_sweep(row: PublishedRow) -> None:
    space = SweepSpace(sweep_from(make_test(row.cmd_args())))
    count = space.require_valid()
    assert (count.total, count.valid) == (1, 1), [r.name for r in space.violations({})]


PRESET_KEYS = sorted(PRESETS)


@pytest.mark.parametrize("key", PRESET_KEYS, ids=lambda k: "/".join(k))
def test_every_preset_is_valid_as_shipped(key: tuple[str, str, str, str, str]) -> None:
    recipe, task, gpu, dtype, variant = key
    preset = PRESETS[key]
    cmd: dict[str, Any] = {"model_recipe_name": recipe, "task": task, "gpu_type": gpu, "compute_dtype": dtype,
                           "config_variant": variant, "num_gpus": preset.num_gpus}
    space = SweepSpace(sweep_from(make_test(cmd)))
    assert space.violations({}) == []
