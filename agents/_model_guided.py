"""Model-guided search: the calibrated performance model ranks the points; measurements correct it.

Why: on a Megatron sweep most points are tens of percent slower than the best or do not fit, and the analytic
model (`dse.simulator.predict`) already knows most of that. A black-box sampler spends its first trials
re-learning it (and, on tight memory, a third of them running out of memory); this agent starts where the
model points and learns only what the model gets wrong:

- step time: log(measured / predicted) is a Bayesian linear model over the prediction's own time shares
  (compute, elementwise, TP/CP/EP/PP/DP communication, host, bubble: a wrong constant shows up as a wrong
  share) plus a per-value offset and a log-slope per dimension (a bias the model does not know, say vp or
  CUDA graphs costing more than it thinks). Gaussian priors keep it at the model until data says otherwise.
- memory: the model's need / capacity ratio (corrected by the measured max-alloc where an agent metric gives
  it) against a capacity threshold whose posterior, on a grid, each success pushes up and each out-of-memory
  pushes down. P(fit) weights every proposal; a point below `min_fit_probability` is skipped (proposed only
  once nothing else is left, so the agent stays exhaustive).
- proposal: expected improvement of log step time over the best measurement, times P(fit). Trials in flight
  are fantasised at their predicted value (a "believer"): that raises the bar and shrinks the uncertainty
  around them, so K asks before any tell spread out instead of piling onto one corner.
- an early-stopped (censored) trial is a lower bound: it counts at max(bound, current prediction).
"""

from __future__ import annotations

import itertools
import math
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import Field

from dse.errors import InputError
from dse.metrics import TFLOPS_ALIASES, TOKENS_ALIASES, metric_kind, normalize_name
from dse.simulator import GPUS, KNOBS, predict
from dse.space import draw_env_params
from dse.trial import FailureReason, TrialResult

from ._base import Agent, AgentConfig, register_agent

if TYPE_CHECKING:
    from dse.space import SweepSpace

FITTING_AGENTS = "grid_search, random_search, optuna"
# The prediction's breakdown, grouped into the shares the time correction learns a factor for.
SHARES = (("compute",), ("elementwise",), ("tp_comm",), ("cp_comm",), ("ep_comm", "moe_overhead"),
          ("pp_comm", "pp_imbalance", "bubble"), ("launch",), ("recompute", "offload"), ("dp_comm", "fsdp_comm"),
          ("optimizer", "fixed"))
GIB_PER_GB = 1024**3 / 1e9
THRESHOLDS = np.linspace(0.5, 1.5, 401)  # the memory threshold's grid (need / capacity)
SOFT = 0.01  # width of the memory likelihood: a few GB of run-to-run spread at 80 GB
MAX_ENV_DRAWS = 16


class ModelGuidedConfig(AgentConfig):
    """`agent_config` of model_guided. The defaults are tuned on benchmarks/bench_search.py's tuning realities."""

    memory_margin: float = Field(default=0.03, ge=-0.5, le=0.5)  # prior: usable capacity = (1 - margin) x model's
    memory_sigma: float = Field(default=0.05, gt=0.0, le=1.0)  # prior spread of that threshold (share of capacity)
    min_fit_probability: float = Field(default=0.25, ge=0.0, le=1.0)  # below: skipped until nothing else is left
    exploration: float = Field(default=0.5, ge=0.0, le=10.0)  # scales the correction's uncertainty in the EI
    prior_strength: float = Field(default=1.0, gt=0.0, le=1e6)  # x the priors' precision: trust in the model
    noise: float = Field(default=0.02, gt=0.0, le=1.0)  # measurement noise of log step time
    max_candidates: int = Field(default=20_000, ge=1)  # points scored per ask; larger spaces are sampled


@dataclass(frozen=True)
class _Pred:
    """The model's view of one point (averaged over env_params draws): seconds, GB, shares of the step."""

    step: float
    mem_gb: float
    cap_gb: float
    shares: tuple[float, ...]
    tflops: float
    tokens: float

    def need(self, mem_factor: float = 1.0) -> float:
        """Memory need / capacity, as the model decides `fits` (fragmentation and CUDA context included)."""
        return (self.mem_gb * mem_factor * KNOBS.fragmentation + KNOBS.context_gb) / self.cap_gb


# Predictions depend on the space only: shared by every agent built on the same space (benchmarks, restarts).
_PREDICTIONS: weakref.WeakKeyDictionary[SweepSpace, dict[tuple[int, str], _Pred | None]] = weakref.WeakKeyDictionary()


@dataclass
class _Block:
    """Points with their predictions and feature rows (time: 1, shares, dims; memory: 1, dims)."""

    index: np.ndarray
    log_step: np.ndarray  # +inf where the model refuses the configuration
    mem_gb: np.ndarray
    cap_gb: np.ndarray
    xt: np.ndarray
    xm: np.ndarray


@dataclass
class _Obs:
    kind: str  # "ok", "censored" (y is a lower bound), "oom"
    row: _Block
    y: float  # log step time (ok, censored)
    mem: float | None = None  # measured GB


@register_agent("model_guided")
class ModelGuidedAgent(Agent):
    """Ranks valid points by the performance model, corrected by a learnt residual; MegatronBridge(Sim) only."""

    accepts_env_params = True
    warm_start: ClassVar[bool] = True
    config_model = ModelGuidedConfig
    config: ModelGuidedConfig

    def __init__(self, space: SweepSpace, *args: Any, **kw: Any) -> None:
        if not space.sweep.kind.megatron:
            raise InputError(f"agent 'model_guided' needs a performance model; it runs on MegatronBridge and "
                             f"MegatronBridgeSim sweeps. For this sweep use one of: {FITTING_AGENTS}",
                             file=str(space.sweep.source), field="agent")
        super().__init__(space, *args, **kw)
        self._rng = np.random.default_rng(self.seed)
        self._cache = _PREDICTIONS.setdefault(space, {})
        self._env = self._env_draws()
        self._numeric = self._numeric_dims()
        self._metrics = [normalize_name(m) for m in space.sweep.test.agent_metrics]
        self._obs: dict[int, _Obs] = {}
        self._rows: dict[int, _Block] = {}  # one-row blocks of told points outside the pool
        self._pool = self._block(self._draw_pool(set()))
        self._done = False
        nt = self._pool.xt.shape[1]
        nd = nt - 1 - len(SHARES)
        tau = [0.5] + [0.3] * len(SHARES) + self._dim_scales()  # prior std: scale, shares, dimensions
        self._prec_t = 1.0 / np.square(np.array(tau, dtype=float)) * self.config.prior_strength
        self._prec_t[0] = 1.0 / 0.5**2
        self._prec_m = np.concatenate([[1.0 / 0.1**2], self._prec_t[-nd:]]) if nd else np.array([1.0 / 0.1**2])

    # ---- the model's predictions ----------------------------------------------------------------------
    def _env_draws(self) -> list[tuple[dict[str, Any], float]]:
        """env_params draws the prediction averages over: every combination when few, else seeded draws."""
        env = self.space.env
        if not env.dimensions:
            return [({}, 1.0)]
        if env.size <= MAX_ENV_DRAWS:
            out = []
            for combo in itertools.product(*(range(len(d.values)) for d in env.dimensions)):
                weight = 1.0
                for d, k in zip(env.dimensions, combo, strict=True):
                    w = self.space.env_weights.get(d.path)
                    weight *= (w[k] / sum(w)) if w else 1.0 / len(d.values)
                out.append(({d.path: d.values[k] for d, k in zip(env.dimensions, combo, strict=True)}, weight))
            return out
        return [(draw_env_params(self.space, self.seed, t), 1.0 / MAX_ENV_DRAWS) for t in range(MAX_ENV_DRAWS)]

    def _predict(self, index: int, env: Mapping[str, Any] | None = None) -> _Pred | None:
        """The model's prediction of a point (None: the launcher would refuse it), cached per space."""
        draws = [(dict(env), 1.0)] if env is not None else self._env
        key = (index, repr(sorted(env.items())) if env is not None else "")
        if key in self._cache:
            return self._cache[key]
        action = self.space.agent.decode(index)
        preds, weights = [], []
        for draw, weight in draws:
            cfg = self.space.resolve(action, draw)
            flat = cfg.flat_cmd_args()
            try:
                p = predict(flat, num_nodes=cfg.num_nodes)
            except (InputError, ValueError, TypeError, KeyError, ZeroDivisionError):
                self._cache[key] = None
                return None
            gpu = GPUS.get(str(flat.get("gpu_type", "")).lower())
            preds.append((p, gpu.hbm_gb * GIB_PER_GB if gpu else math.inf))
            weights.append(weight)
        w = np.array(weights) / sum(weights)
        step = float(sum(wi * p.step_time_s for wi, (p, _) in zip(w, preds, strict=True)))
        shares = tuple(float(sum(wi * sum(p.breakdown.get(k, 0.0) for k in group) / p.step_time_s
                                 for wi, (p, _) in zip(w, preds, strict=True))) for group in SHARES)
        worst, cap = max(preds, key=lambda pc: pc[0].mem_max_alloc_gb / pc[1])
        out = _Pred(step, worst.mem_max_alloc_gb, cap, shares,
                    float(sum(wi * p.tflops_per_gpu for wi, (p, _) in zip(w, preds, strict=True))),
                    float(sum(wi * p.tokens_per_s_per_gpu for wi, (p, _) in zip(w, preds, strict=True))))
        self._cache[key] = out
        return out

    def _numeric_dims(self) -> dict[int, np.ndarray]:
        """Dimensions whose values are all positive numbers: a log2-slope feature (it extrapolates a trend)."""
        out = {}
        for d, dim in enumerate(self.space.agent.dimensions):
            vals = dim.values
            if len(vals) > 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in vals):
                logs = np.log2(np.array(vals, dtype=float))
                out[d] = (logs - logs.mean()) / max(1.0, float(np.ptp(logs)))
        return out

    def _dim_scales(self) -> list[float]:
        """Prior std of the per-value offsets (5 %) and of the normalised log-slopes (10 % across the range)."""
        radices = self.space.agent.radices
        return [0.05] * sum(radices) + [0.1] * len(self._numeric)

    def _block(self, indices: np.ndarray, env: Mapping[str, Any] | None = None) -> _Block:
        idx = np.asarray(indices, dtype=np.int64)
        preds = [self._predict(int(i), env) for i in idx]
        n = idx.size
        digits = self.space.agent.digits(idx)
        dims = [np.eye(radix)[digits[d]] for d, radix in enumerate(self.space.agent.radices)]
        dims += [self._numeric[d][digits[d]][:, None] for d in self._numeric]
        xd = np.hstack(dims) if dims else np.zeros((n, 0))
        shares = np.array([p.shares if p else (0.0,) * len(SHARES) for p in preds]).reshape(n, len(SHARES))
        one = np.ones((n, 1))
        return _Block(
            index=idx,
            log_step=np.array([math.log(p.step) if p and p.step > 0 else math.inf for p in preds]),
            mem_gb=np.array([p.mem_gb if p else math.inf for p in preds]),
            cap_gb=np.array([p.cap_gb if p else 1.0 for p in preds]),
            xt=np.hstack([one, shares, xd]),
            xm=np.hstack([one, xd]),
        )

    def _draw_pool(self, exclude: set[int]) -> np.ndarray:
        """The valid points outside `exclude`, or a seeded sample of `max_candidates` of them."""
        limit = self.config.max_candidates
        if self.space.agent.size <= 1 << 22:
            valid = self.space.valid_indices()
            if exclude:
                valid = valid[~np.isin(valid, np.fromiter(exclude, dtype=np.int64, count=len(exclude)))]
            return valid if valid.size <= limit else np.sort(self._rng.choice(valid, size=limit, replace=False))
        return self._sample(limit, exclude)

    def _sample(self, limit: int, exclude: set[int]) -> np.ndarray:
        """Up to `limit` seeded draws of valid points outside `exclude`."""
        taken = set(exclude)
        picks: list[int] = []
        while len(picks) < limit:
            i = self.space.sample_valid(self._rng, exclude=taken)
            if i is None:
                break
            picks.append(i)
            taken.add(i)
        return np.array(sorted(picks), dtype=np.int64)

    def _row(self, index: int, env: Mapping[str, Any] | None = None) -> _Block:
        """The one-row block of a point (from the pool when it is there and no env draw is named)."""
        if env is None:
            pos = int(np.searchsorted(self._pool.index, index))
            if pos < self._pool.index.size and int(self._pool.index[pos]) == index:
                return _Block(*(getattr(self._pool, f)[pos:pos + 1] for f in _Block.__dataclass_fields__))
            if index in self._rows:
                return self._rows[index]
            self._rows[index] = self._block(np.array([index]))
            return self._rows[index]
        return self._block(np.array([index]), env)

    # ---- what a result says ---------------------------------------------------------------------------
    def _measured(self, result: TrialResult, pred: _Pred | None) -> float | None:
        """Step time in seconds from the agent metrics (a time, TFLOP/s or tokens/s metric), else 1/reward."""
        values = list(result.values)
        for name, v in zip(self._metrics, values, strict=False):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                continue
            if metric_kind(name) == "time":
                return float(v) / 1000.0 if name.endswith("-ms") else float(v)
            if pred is not None and name in TFLOPS_ALIASES and pred.tflops > 0:
                return pred.step * pred.tflops / float(v)
            if pred is not None and name in TOKENS_ALIASES and pred.tokens > 0:
                return pred.step * pred.tokens / float(v)
        if result.ok and not result.censored and result.reward > 0:
            return 1.0 / float(result.reward)
        return None

    def _memory(self, result: TrialResult) -> float | None:
        for name, v in zip(self._metrics, result.values, strict=False):
            if name == "max-alloc-gb" and isinstance(v, (int, float)) and math.isfinite(v) and v > 0:
                return float(v)
        return None

    def tell(self, action: Mapping[str, Any], result: TrialResult) -> None:
        index = self.index_of(action)
        env_names = self.space.env.names
        env = {k: action[k] for k in env_names} if env_names and all(k in action for k in env_names) else None
        self._record(index, result)
        self._obs.pop(index, None)
        row = self._row(index, env)
        pred = self._predict(index, env)
        if result.censored:
            step = self._measured(result, pred)
            if step is None:  # no partial value: it was stopped for being slower than the best by the margin
                best = self._best_measured()
                step = math.exp(best) * 1.1 if best is not None else None
            if step is not None:
                self._obs[index] = _Obs("censored", row, math.log(step))
        elif result.ok:
            step = self._measured(result, pred)
            if step is not None:
                self._obs[index] = _Obs("ok", row, math.log(step), self._memory(result))
        elif result.reason == FailureReason.OUT_OF_MEMORY:
            self._obs[index] = _Obs("oom", row, math.nan)

    def _best_measured(self) -> float | None:
        ys = [o.y for o in self._obs.values() if o.kind == "ok"]
        return min(ys) if ys else None

    # ---- the learnt corrections -----------------------------------------------------------------------
    def _rows_of(self, kinds: tuple[str, ...]) -> tuple[_Block, list[_Obs]]:
        obs = [o for o in self._obs.values() if o.kind in kinds]
        return _concat([o.row for o in obs], self._pool), obs

    def _fit_time(self, fantasies: _Block | None) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and covariance of the time correction; censored points enter at max(bound, mean)."""
        s2 = self.config.noise**2
        prec = np.diag(self._prec_t)
        b = np.zeros(prec.shape[0])
        mean = b
        for kind in ("ok", "censored"):
            rows, obs = self._rows_of((kind,))
            keep = np.isfinite(rows.log_step)
            x = rows.xt[keep]
            r = np.array([o.y for o in obs])[keep] - rows.log_step[keep] if obs else np.zeros(0)
            if kind == "censored":
                r = np.maximum(r, x @ mean)
            prec += x.T @ x / s2
            b += x.T @ r / s2
            mean = np.linalg.solve(prec, b)
        if fantasies is not None and fantasies.index.size:  # believed at their mean: only the spread shrinks
            xf = fantasies.xt[np.isfinite(fantasies.log_step)]
            prec = prec + xf.T @ xf / s2
        return mean, np.linalg.inv(prec)

    def _fit_memory(self) -> np.ndarray:
        """Posterior mean of log(measured / predicted max-alloc) (zero without memory measurements)."""
        obs = [o for o in self._obs.values() if o.kind == "ok" and o.mem is not None]
        rows = _concat([o.row for o in obs], self._pool)
        keep = np.isfinite(rows.mem_gb) & (rows.mem_gb > 0)
        x = rows.xm[keep]
        z = np.log(np.array([o.mem or 1.0 for o in obs])[keep] / rows.mem_gb[keep]) if obs else np.zeros(0)
        return np.linalg.solve(np.diag(self._prec_m) + x.T @ x / 0.02**2, x.T @ z / 0.02**2)

    def _need(self, block: _Block, mem_mean: np.ndarray) -> np.ndarray:
        mem = block.mem_gb * np.exp(block.xm @ mem_mean)
        return (mem * KNOBS.fragmentation + KNOBS.context_gb) / block.cap_gb

    def _threshold_cdf(self, mem_mean: np.ndarray) -> np.ndarray:
        """Cumulative posterior of the capacity threshold: the prior, pushed up by fits and down by OOMs."""
        c = self.config
        logp = -0.5 * np.square((THRESHOLDS - (1.0 - c.memory_margin)) / c.memory_sigma)
        rows, obs = self._rows_of(("ok", "censored", "oom"))
        need = self._need(rows, mem_mean)
        sign = np.array([-1.0 if o.kind == "oom" else 1.0 for o in obs])
        keep = np.isfinite(need)
        if keep.any():
            z = sign[keep, None] * (THRESHOLDS[None, :] - need[keep, None]) / SOFT
            logp = logp - np.logaddexp(0.0, -z).sum(axis=0)  # log sigmoid(z): soft "threshold above/below"
        p = np.exp(logp - logp.max())
        return np.cumsum(p) / p.sum()

    def _p_fit(self, block: _Block, mem_mean: np.ndarray, cdf: np.ndarray) -> np.ndarray:
        need = self._need(block, mem_mean)
        out = 1.0 - np.interp(need, THRESHOLDS, cdf, left=0.0, right=1.0)
        return np.where(np.isfinite(need), out, 0.0)

    def _posterior(self, skip: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Time correction (mean, covariance with the trials in flight but `skip` believed), memory correction
        and the threshold's cumulative posterior: what scoring a point needs."""
        flying = sorted(self.in_flight - {skip})
        mean, cov = self._fit_time(self._block_of(flying) if flying else None)
        mem_mean = self._fit_memory()
        return mean, cov, mem_mean, self._threshold_cdf(mem_mean)

    def _score(self, block: _Block, post: tuple[np.ndarray, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Corrected log step time, its std and P(fit) of each point of `block`."""
        mean, cov, mem_mean, cdf = post
        mu = block.log_step + block.xt @ mean
        sd = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", block.xt, cov, block.xt), 0.0))
        return mu, sd, self._p_fit(block, mem_mean, cdf)

    def _block_of(self, indices: list[int]) -> _Block:
        return _concat([self._row(i) for i in indices], self._pool)

    # ---- ask --------------------------------------------------------------------------------------------
    def ask(self) -> dict[str, Any] | None:
        if self._done:
            return None
        seen = self.seen()
        free = ~np.isin(self._pool.index, np.fromiter(seen, dtype=np.int64, count=len(seen)))
        if not free.any():
            more = self._draw_pool(seen | set(self._pool.index.tolist()))
            if more.size == 0:
                self._done = True
                return None
            self._pool = self._block(more)
            free = np.ones(more.size, dtype=bool)
        pos = np.flatnonzero(free)
        sub = _Block(*(getattr(self._pool, f)[pos] for f in _Block.__dataclass_fields__))
        post = self._posterior()
        mu, sd, pfit = self._score(sub, post)
        runnable = np.isfinite(mu) & (pfit >= self.config.min_fit_probability)
        if not runnable.any():  # only skipped points are left: the likeliest to fit, then the fastest
            order = np.lexsort((np.where(np.isfinite(mu), mu, np.inf), -pfit))
            return self.propose(int(sub.index[order[0]]))
        score = self._acquisition(mu, sd, pfit, post[0])
        score[~runnable] = -np.inf
        return self.propose(int(sub.index[int(np.argmax(score))]))

    def _acquisition(self, mu: np.ndarray, sd: np.ndarray, pfit: np.ndarray, mean: np.ndarray) -> np.ndarray:
        """Expected improvement of log step time over the best measured or believed value, times P(fit);
        with nothing measured or in flight, the expected reward exp(-mu) x P(fit)."""
        best = self._best_measured()
        if self.in_flight:
            fl = self._block_of(sorted(self.in_flight))
            believed = fl.log_step + fl.xt @ mean
            believed = believed[np.isfinite(believed)]
            if believed.size:
                best = min(best, float(believed.min())) if best is not None else float(believed.min())
        if best is None:
            return np.log(np.maximum(pfit, 1e-12)) - np.where(np.isfinite(mu), mu, np.inf)
        s = np.maximum(sd * self.config.exploration, 1e-3)
        z = (best - mu) / s
        ei = (best - mu) * _norm_cdf(z) + s * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
        return np.maximum(ei, 1e-300) * pfit

    # ---- explanation ------------------------------------------------------------------------------------
    def explain(self, action: Mapping[str, Any]) -> str | None:
        """One line for the trial's record: the model's prediction, the learnt correction, memory and P(fit)."""
        index = self.index_of(action)
        pred = self._predict(index)
        if pred is None:
            return "model: the launcher would refuse this configuration (no prediction)"
        row = self._row(index)
        post = self._posterior(skip=index)
        mu, sd, pfit = self._score(row, post)
        factor = math.exp(float(mu[0] - row.log_step[0]))
        mem = float(self._need(row, post[2])[0]) * pred.cap_gb
        return (f"model: {pred.step:.3g} s/step x{factor:.2f} learnt = {math.exp(float(mu[0])):.3g} s "
                f"(+-{100 * float(sd[0]):.0f}%), mem {mem:.0f}/{pred.cap_gb:.0f} GB, P(fit) {float(pfit[0]):.2f}")


def _norm_cdf(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.vectorize(math.erf)(z / math.sqrt(2.0)))


def _concat(rows: list[_Block], like: _Block) -> _Block:
    """One block of several (an empty one shaped like `like` when there are none)."""
    if not rows:
        return _Block(*(getattr(like, f)[:0] for f in _Block.__dataclass_fields__))
    return _Block(*(np.concatenate([getattr(r, f) for r in rows]) for f in _Block.__dataclass_fields__))
