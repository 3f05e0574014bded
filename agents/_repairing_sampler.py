"""An Optuna sampler wrapper that only ever proposes points the agent can run.

Optuna knows nothing of the parallelism rules or of which points already ran, so a plain sampler proposes
pruned points and repeats. Asking again for each of those costs a full sampler pass (and, with TPE, a trial
in the study that every later ask pays for). Instead the wrapper lets the wrapped sampler choose the whole
point, hands it to `repair` (the agent's: it returns the point itself when it can run, else the nearest valid unseen one), and gives the trial
the repaired point. The study then holds exactly the evaluated points, one trial each, the same shape as a
plain ask/tell loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

Params = dict[str, Any]


class RepairingSampler(BaseSampler):
    """Delegates to `base` and passes every complete proposal through `repair` before the trial gets it."""

    def __init__(
        self,
        base: BaseSampler,
        distributions: dict[str, BaseDistribution],
        repair: Callable[[Params], Params | None],
    ) -> None:
        self.base = base
        self.distributions = dict(distributions)
        self.repair = repair
        self._base_space: dict[str, BaseDistribution] = {}

    def __str__(self) -> str:
        return f"RepairingSampler({self.base})"

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        # The whole space is "relative" so the point is chosen, and repaired, as a whole; the wrapped sampler
        # still sees only the space it asked for.
        self._base_space = self.base.infer_relative_search_space(study, trial)
        return dict(self.distributions)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        params = self._sample(study, trial, search_space)
        # `repair` returns a usable proposal as it is. Sampling again instead of repairing would cost a full
        # sampler pass per repeat and, measured on the simulator spaces, found the optimum no sooner.
        return self.repair(params) or params

    def _sample(self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]) -> Params:
        params = dict(self.base.sample_relative(study, trial, self._base_space)) if self._base_space else {}
        for name, dist in search_space.items():
            if name not in params:  # what the trial would have asked the wrapped sampler one by one
                params[name] = self.base.sample_independent(study, trial, name, dist)
        return params

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return self.base.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self.base.before_trial(study, trial)

    def after_trial(
        self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        self.base.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.base.reseed_rng()
