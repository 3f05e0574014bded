"""Plain-text explanation of a sweep's space, shared by `dse space`, the run directory and the report."""

from __future__ import annotations

from dse.megatron import describe_names, explain_pruning
from dse.space._space import SpaceCount, SweepSpace


def _fmt_values(values: tuple[object, ...], weights: list[float] | None = None) -> str:
    if weights is None:
        return ", ".join(repr(v) if isinstance(v, str) else str(v) for v in values)
    return ", ".join(f"{v!r} (p={w:g})" if isinstance(v, str) else f"{v} (p={w:g})"
                     for v, w in zip(values, weights, strict=True))


def trials_to_run(space: SweepSpace, count: SpaceCount, agent: str | None = None, steps: int | None = None) -> int:
    """How many trials `dse run` runs: `--steps`, else the sweep's `agent_steps`, else for grid search every
    valid point (CloudAI's grid runs them all) and for the other agents 1 (CloudAI's default)."""
    if steps is not None:
        return steps
    test = space.sweep.test
    if (agent or test.agent) == "grid_search" and "agent_steps" not in test.model_fields_set:
        return count.valid
    return test.agent_steps


def space_summary(space: SweepSpace, count: SpaceCount | None = None) -> tuple[str, SpaceCount]:
    """The text `dse space` prints, and the count behind it."""
    sweep = space.sweep
    count = count or space.count()
    label = " [SIMULATED: analytic performance model, no GPU]" if sweep.kind.simulated else ""
    lines = [f"sweep: {sweep.name} ({sweep.source})", f"workload: {sweep.workload}{label}",
             f"agent: {sweep.test.agent}, metrics {', '.join(sweep.test.agent_metrics)}, "
             f"reward {sweep.test.agent_reward_function}"]
    dims = space.agent.dimensions
    width = max([len(d.path) for d in (*dims, *space.env.dimensions)] + [10])
    lines.append(f"dimensions ({len(dims)}):")
    for d in dims:
        lines.append(f"  {d.path:<{width}}  [{_fmt_values(d.values)}]  ({len(d.values)} values)")
    if not dims:
        lines.append("  (none: a single configuration)")
    if space.env.dimensions:
        lines.append(f"env_params ({len(space.env.dimensions)}, drawn per trial, not chosen by the agent):")
        for d in space.env.dimensions:
            w = space.env_weights.get(d.path)
            lines.append(f"  {d.path:<{width}}  [{_fmt_values(d.values, w)}]{'' if w else '  (uniform)'}")
    pct = 100.0 * count.valid / count.total if count.total else 0.0
    lines.append(f"total points: {count.total:,}")
    lines.append(f"valid points: {count.valid:,} ({pct:.1f}%)")
    to_run = trials_to_run(space, count)
    basis = ("agent_steps" if "agent_steps" in sweep.test.model_fields_set else
           "grid search runs every valid point" if sweep.test.agent == "grid_search" else
           "agent_steps is not set; set it, or pass dse run --steps N")
    lines.append(f"trials to run: {to_run:,} ({basis})")
    pruning = [(r, count.pruned.get(r.name, 0)) for r in space.rules]
    active = [(r, n) for r, n in pruning if n]
    if active:
        lines.append("pruned by rule (a point may break several):")
        rw = max(len(r.name) for r, _ in active)
        for r, n in sorted(active, key=lambda x: -x[1]):
            lines.append(f"  {r.name:<{rw}}  {n:>12,}  {r.message}")
            why = explain_pruning(space, r, count.example.get(r.name))
            if why:
                lines.append(f"  {'':<{rw}}  {'':>12}  {why}")
    else:
        lines.append(f"pruned by rule: none ({len(space.rules)} rules checked)")
    lines.extend(_constraint_names(space))
    return "\n".join(lines), count


def _constraint_names(space: SweepSpace) -> list[str]:
    """Each user constraint with the meaning every name in it got (your field, or a builtin)."""
    user_rules = [r for r in space.rules if r.source == "user"]
    if not user_rules:
        return []
    user_fields = set(space.fixed) | set(space.derived) | set(space.agent.names) | set(space.env.names)
    swept = set(space.agent.names) | set(space.env.names)
    resolved = space.sweep.kind.megatron
    lines = ["constraints (what each name reads):"]
    for r in user_rules:
        lines.append(f"  {r.name}  {r.message.removeprefix('user constraint ')}")
        lines.append(f"      {'; '.join(describe_names(r.fields, user_fields, swept, resolved))}")
    return lines
