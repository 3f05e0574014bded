"""Metrics of a finished run, free of I/O: parsing (golden-values JSON, flat JSON, log lines), the metric
catalogue (names, directions, one metric's checked value), failure classification, and reward functions.
"""

from dse.metrics._catalogue import (
    BUILTIN_METRICS,
    METRIC_DIRECTIONS,
    MIN_TIME,
    STEP_TIME_ALIASES,
    TFLOPS_ALIASES,
    TOKENS_ALIASES,
    is_step_time,
    metric_directions,
    metric_kind,
    metric_value,
)
from dse.metrics._early_stopping import EarlyStopping, StepTimes, Verdict, verdict
from dse.metrics._failures import FLAKY_PATTERNS, OOM_PATTERNS, REJECT_PATTERNS, classify_failure
from dse.metrics._parse import (
    WINDOW,
    MetricsError,
    RunMetrics,
    normalize_name,
    parse_flat_json,
    parse_golden_values,
    parse_log,
    parse_metrics_json,
)
from dse.metrics._rewards import FAILED_REWARD, get_reward, is_better, register_reward, reward_names, score
from dse.metrics.units import format_metric, format_metrics, format_number, metric_unit

__all__ = [
    "EarlyStopping",
    "StepTimes",
    "Verdict",
    "verdict",
    "BUILTIN_METRICS",
    "FAILED_REWARD",
    "FLAKY_PATTERNS",
    "METRIC_DIRECTIONS",
    "MIN_TIME",
    "MetricsError",
    "OOM_PATTERNS",
    "REJECT_PATTERNS",
    "RunMetrics",
    "STEP_TIME_ALIASES",
    "TFLOPS_ALIASES",
    "TOKENS_ALIASES",
    "WINDOW",
    "classify_failure",
    "format_metric",
    "format_metrics",
    "format_number",
    "get_reward",
    "is_better",
    "is_step_time",
    "metric_directions",
    "metric_kind",
    "metric_unit",
    "metric_value",
    "normalize_name",
    "parse_flat_json",
    "parse_golden_values",
    "parse_log",
    "parse_metrics_json",
    "register_reward",
    "reward_names",
    "score",
]
