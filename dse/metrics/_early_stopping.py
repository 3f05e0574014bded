"""Early stopping of a running trial: is it confidently slower than the best completed trial?

The rule, in the spirit of Optuna's `PercentilePruner` and of ASHA, but on the one signal a Megatron run
gives while it runs (its per-iteration step time), is deliberately conservative:

- the first `warmup_iterations` are ignored (compilation, CUDA-graph capture and the first all-reduce make
  them several times slower than the rest: stopping on them would stop everything);
- at least `min_iterations` after the warm-up are needed;
- the trial's step time is the median of those iterations (robust to a stray slow step), and its
  uncertainty a robust standard error, 1.4826 * MAD / sqrt(n);
- it is stopped when even its optimistic estimate, median - `z` * standard error, is slower than the best
  completed trial's step time by more than `margin` (10 %: two configurations within 10 % are both kept).

A stopped trial is `pruned`: its partial step time is a lower bound on the true one (censored), it is
never the best, and its GPU-hours are what it burned. The module does no I/O: `StepTimes` is fed text.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["EarlyStopping", "StepTimes", "Verdict", "verdict"]

_NUM = r"([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)"
_ITERATION_MS = re.compile(r"\biteration\s+(\d+)\s*/\s*\d+.*?elapsed time per iteration \(ms\):\s*" + _NUM)
_STEP_TIME_S = re.compile(r"Step Time\s*:\s*" + _NUM + r"\s*s\b")


class EarlyStopping(BaseModel):
    """Settings of `--early-stopping` (`early_stopping = true`, or an `[early_stopping]` table of these)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    warmup_iterations: int = Field(default=2, ge=0)
    min_iterations: int = Field(default=3, ge=1)
    margin: float = Field(default=0.10, ge=0.0, le=10.0)
    z: float = Field(default=2.0, ge=0.0, le=10.0)

    @property
    def signature(self) -> str:
        """Names the rule and its settings: a pruned result is reused from the cache only under the same rule."""
        return f"median-z{self.z:g}-margin{self.margin:g}-warmup{self.warmup_iterations}-min{self.min_iterations}"


@dataclass
class StepTimes:
    """Per-iteration step times (s) read incrementally from a job's log text (Megatron's iteration lines, or
    `Step Time : Xs` lines when a log has no iteration lines). Feed it chunks; partial lines wait."""

    by_iteration: dict[int, float] = field(default_factory=dict)
    plain: list[float] = field(default_factory=list)
    _partial: str = ""

    def feed(self, text: str) -> None:
        text = self._partial + text
        lines = text.split("\n")
        self._partial = lines.pop()  # the last piece has no newline yet
        for line in lines:
            if m := _ITERATION_MS.search(line):
                self.by_iteration[int(m.group(1))] = float(m.group(2)) / 1000.0
            elif m := _STEP_TIME_S.search(line):
                self.plain.append(float(m.group(1)))

    def series(self) -> list[float]:
        """The step times in iteration order."""
        if self.by_iteration:
            return [self.by_iteration[i] for i in sorted(self.by_iteration)]
        return list(self.plain)


@dataclass(frozen=True)
class Verdict:
    """A stop decision: the trial's estimate and why it is stopped."""

    step_time_s: float  # the median after warm-up: a lower bound (censored) on the trial's step time
    optimistic_s: float  # median - z * standard error
    best_s: float
    iterations: int

    @property
    def message(self) -> str:
        return (f"early-stopped: step time {self.step_time_s:.4g} s over {self.iterations} iterations (at best "
                f"{self.optimistic_s:.4g} s) is slower than the best trial's {self.best_s:.4g} s by more than "
                "the margin")


def verdict(times: Sequence[float], best_s: float | None, rule: EarlyStopping) -> Verdict | None:
    """A `Verdict` when the trial should stop now, else None (too early, too noisy, or not slower)."""
    if not rule.enabled or best_s is None or not math.isfinite(best_s) or best_s <= 0:
        return None
    after = [t for t in times[rule.warmup_iterations:] if math.isfinite(t) and t > 0]
    if len(after) < rule.min_iterations:
        return None
    median = statistics.median(after)
    mad = statistics.median(abs(t - median) for t in after)
    stderr = 1.4826 * mad / math.sqrt(len(after))
    optimistic = median - rule.z * stderr
    if optimistic > best_s * (1.0 + rule.margin):
        return Verdict(step_time_s=median, optimistic_s=optimistic, best_s=best_s, iterations=len(after))
    return None
