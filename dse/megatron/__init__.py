"""Megatron knowledge, free of I/O: architectures, the v0.3.0 presets and published runs, pipeline layouts, the
launcher's cmd_args model, and the parallelism rules a configuration must satisfy (checked against
Megatron-Core 0.16.0's own config checks by `tests/test_megatron_oracle.py`).
"""

from dse.megatron._architectures import ARCHITECTURES, Architecture, architecture_for
from dse.megatron._cmd_args import MegatronBridgeCmdArgs
from dse.megatron._columns import (
    COMPUTE_DTYPES,
    GPU_TYPES,
    PRESET_KEYS,
    RESOLVED_FIELDS,
    Columns,
    Rule,
    resolve_scalar,
    split_list,
)
from dse.megatron._explain import explain_pruning, value_origins
from dse.megatron._names import BUILTIN_NAMES, bind_name, describe_names, expression_names, expression_rule
from dse.megatron._pipeline_layout import DEEPSEEK_V3_LAYOUTS, Layout, deepseek_v3_layout, parse_layout
from dse.megatron._presets import (
    PRESETS,
    Preset,
    first_set,
    lookup_preset,
    preset_gbs_scaled,
    resolve_defaults,
)
from dse.megatron._published import PUBLISHED_26_02, PublishedRow
from dse.megatron._rules import (
    GENERIC_RULES,
    MEGATRON_RULES,
    NODES_CAPACITY,
    broken_rules,
    dispatcher,
    layout_problem,
    rules_for,
)

__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "BUILTIN_NAMES",
    "COMPUTE_DTYPES",
    "Columns",
    "DEEPSEEK_V3_LAYOUTS",
    "GENERIC_RULES",
    "GPU_TYPES",
    "Layout",
    "MEGATRON_RULES",
    "MegatronBridgeCmdArgs",
    "NODES_CAPACITY",
    "PRESETS",
    "PRESET_KEYS",
    "PUBLISHED_26_02",
    "Preset",
    "PublishedRow",
    "RESOLVED_FIELDS",
    "Rule",
    "architecture_for",
    "bind_name",
    "broken_rules",
    "deepseek_v3_layout",
    "describe_names",
    "dispatcher",
    "explain_pruning",
    "expression_names",
    "expression_rule",
    "first_set",
    "layout_problem",
    "lookup_preset",
    "parse_layout",
    "preset_gbs_scaled",
    "resolve_defaults",
    "resolve_scalar",
    "rules_for",
    "split_list",
    "value_origins",
]
