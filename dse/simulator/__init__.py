"""The SIMULATED Megatron-Bridge run: an analytic performance model of step time and memory, its constants
fitted to published measurements, and the program (`python -m dse.simulator`) that prints what a real run
would print. Everything it produces is labelled a simulation.
"""

from dse.simulator._fit import (
    FIT_PARAMS,
    FitParam,
    FitResult,
    fit,
    get_knob,
    knobs_with,
    leave_one_out,
    rounded,
)
from dse.simulator._flops import flops_parts_per_token, model_flops_per_step, padded_vocab, parameter_count
from dse.simulator._hardware import GPU, GPUS, KNOBS, Knobs
from dse.simulator._model import Prediction, predict
from dse.simulator._program import BANNER, STARTUP_S, run_simulation

__all__ = [
    "BANNER",
    "STARTUP_S",
    "FIT_PARAMS",
    "FitParam",
    "FitResult",
    "GPU",
    "GPUS",
    "KNOBS",
    "Knobs",
    "Prediction",
    "fit",
    "flops_parts_per_token",
    "get_knob",
    "knobs_with",
    "leave_one_out",
    "model_flops_per_step",
    "padded_vocab",
    "parameter_count",
    "predict",
    "rounded",
    "run_simulation",
]
