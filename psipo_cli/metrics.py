"""Metrics of a policy (docs/outputs.md), their summary over seeds, and their context-weighted aggregate.

Per run: `kl`, `entropy`, `loss` (the method's own objective, from the solver), and when a preference
model is known `win_rate_ref = p*(pi ≻ pi_ref) = pi^T P pi_ref`, `win_rate_mu = pi^T P mu`, `reward = pi^T r`
(Bradley–Terry only) and `tv_to_optimum`, the total variation to the same method's population optimum.
Gradient runs also carry `grad_norm`, `noise` (the run's own measurement of its end-of-run fluctuation,
in probability units) and, when the exact solver ran too, `tv_to_exact`: the total variation between the
run's last iterate and the exact answer on the same data (dataset `k` for seed `k` of a sampled problem).

`context_summary` aggregates the per-context rows over contexts with the weights `rho` of the paper's
objective, `E_{x ~ rho}` (paper Eq. 6).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from psipo_cli.config.settings import GradientSettings
from psipo_cli.methods import get_method
from psipo_cli.methods.game import duality_gap, exploitability
from psipo_cli.methods.kl import kl_divergence
from psipo_cli.methods.linalg import comparison_graph
from psipo_cli.problem import Problem, realise
from psipo_cli.schema import GAUGE_NOTE, METRIC_NAMES, MIXED
from psipo_cli.solvers.exact import solve_exact
from psipo_cli.solvers.inputs import DATASET, POPULATION, method_inputs
from psipo_cli.solvers.runs import EXACT, MethodSpec, RunResult, group_runs

#: Metrics aggregated over contexts by their maximum rather than their weighted mean: `grad_norm` is an
#: inf-norm, and the inf-norm of the gradient over every context's parameters is the largest per context.
MAX_OVER_CONTEXTS = ("grad_norm",)


def entropy(pi: np.ndarray) -> float:
    """`-sum pi log pi`, with `0 log 0 = 0`."""
    mass = pi > 0
    return float(-np.sum(pi[mass] * np.log(pi[mass])))


def t_interval(values: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and 95% Student-t interval over `axis`: `mean ± t_{0.975, S-1} sd / sqrt(S)`, `sd` with ddof 1.

    With one sample there is no interval (no spread to estimate it from): the bounds are NaN, which every
    writer spells as unknown (an empty CSV field, JSON ``null``), never a zero-width interval that would
    read as a deterministic result.
    """
    values = np.asarray(values, dtype=float)
    mean = values.mean(axis=axis)
    S = values.shape[axis]
    if S < 2:
        unknown = np.full_like(mean, np.nan)
        return mean, unknown, unknown.copy()
    half = t_quantile_975(S - 1) * values.std(axis=axis, ddof=1) / np.sqrt(S)
    return mean, mean - half, mean + half


@functools.cache
def t_quantile_975(dof: int) -> float:
    """`t_{0.975, dof}`, the Student-t quantile, via `scipy.special.stdtrit` (scipy.stats would cost ~0.4 s
    of import per process, and `t.ppf` milliseconds per call); cached, since a grid asks for few `dof`."""
    from scipy.special import stdtrit

    return float(stdtrit(dof, 0.975))


@dataclass(frozen=True)
class MetricRow:
    """Metrics of one method label, tau, solver and context, averaged over its seeds."""

    label: str
    tau: float
    solver: str
    context: int
    status: str
    values: dict[str, float | None]
    detail: str
    seeds: int


def population_optima(
    problem: Problem, specs: list[MethodSpec], taus: list[float], settings: GradientSettings | None = None
) -> dict[tuple[str, float, int], np.ndarray]:
    """The population optimum of every method label, tau and context (needs a preference model; `settings`:
    the gradient settings an exact answer may depend on, `Method.settings`)."""
    if not problem.has_model:
        return {}
    return {
        (r.label, r.tau, r.context): r.policy
        for r in solve_exact(problem, specs, taus, POPULATION, settings=settings)
    }


def total_variation(p: np.ndarray, q: np.ndarray) -> float:
    """`TV(p, q) = (1/2) sum_y |p(y) - q(y)|`."""
    return float(0.5 * np.abs(np.asarray(p) - np.asarray(q)).sum())


def gauge_components(
    problem: Problem, specs: list[MethodSpec], objective: str, datasets: int = 1
) -> dict[tuple[str, int, int], int]:
    """For every pairwise method label, dataset and context: how many connected components the comparison
    graph has on `supp pi_ref` (an action no comparison involves is one of its own).

    A pairwise loss (DPO, IPO, and RLHF's reward model without a ridge) depends on the offsets
    `delta = log(pi / pi_ref)` only through differences `delta_w - delta_l` of compared actions, so it
    fixes them only up to one constant per component: with more than one component the optimal *policies*
    form a set (the constants move mass between components), of which the exact solver reports the
    canonical gauge (offsets summing to zero on each component). Plain gradient descent from `pi_ref` keeps
    those sums (every pairwise gradient sums to zero on each component); Adam's per-coordinate scaling
    does not. RLHF with `rm_l2 > 0` is unique (the ridge fixes the constants) and ΨPO's objective is
    strictly concave in `pi`: neither appears here.
    """
    pairwise = [
        s for s in specs
        if get_method(s.method).family.on_comparisons and not (s.method == "rlhf" and (s.option("rm_l2") or 0) > 0)
    ]
    if not pairwise:
        return {}
    count = datasets if (problem.is_sampled and objective == DATASET) else 1
    out: dict[tuple[str, int, int], int] = {}
    for k in range(count):
        realised = realise(problem, k)
        for c, ctx in enumerate(realised.contexts):
            # Every pairwise method sees the same counts, so one graph serves them all.
            W = method_inputs(ctx, get_method(pairwise[0].method), objective, problem.actions).W
            weak = comparison_graph(W).weak
            components = len(np.unique(weak[ctx.pi_ref > 0]))
            for spec in pairwise:
                out[(spec.label, k, c)] = components
    return out


def _gauge_note(components: list[int]) -> str:
    """The detail of an exact group some of whose datasets leave several components free."""
    several = [k for k in components if k > 1]
    if not several:
        return ""
    where = "" if len(several) == len(components) else f" (in {len(several)} of {len(components)} datasets)"
    return (
        f"{GAUGE_NOTE} {max(several)} connected components on supp pi_ref{where}: the loss fixes "
        "log(pi/pi_ref) only up to a constant on each, so the optimal policies form a set; this is the "
        "canonical one (offsets summing to zero on each component, which gradient descent from pi_ref keeps "
        "and Adam need not)"
    )


def run_metrics(
    problem: Problem, run: RunResult, optimum: np.ndarray | None, exact: np.ndarray | None = None
) -> dict[str, float | None]:
    """The metrics of one run; those that need a preference model are `None` without one, `noise` is
    `None` where the run did not measure it, `tv_to_exact` `None` without an `exact` policy to compare to.
    `nash_gap` is the duality gap of the regularised preference game at the run's tau, `exploitability` its
    tau-free part (`psipo_cli.methods.game`): how far the policy is from the game's equilibrium, for every
    method."""
    ctx = problem.contexts[run.context]
    pi = run.policy
    values: dict[str, float | None] = {
        "kl": kl_divergence(pi, ctx.pi_ref),
        "entropy": entropy(pi),
        "loss": run.loss,
        "win_rate_ref": None,
        "win_rate_mu": None,
        "reward": None,
        "tv_to_optimum": None,
        "grad_norm": None if np.isnan(run.grad_norm) else run.grad_norm,
        "noise": None if np.isnan(run.noise) else float(run.noise),
        "tv_to_exact": None if exact is None else total_variation(pi, exact),
        "nash_gap": None,
        "exploitability": None,
    }
    if ctx.preferences is not None:
        values["win_rate_ref"] = float(pi @ ctx.preferences @ ctx.pi_ref)
        values["win_rate_mu"] = float(pi @ ctx.preferences @ ctx.mu)
        values["nash_gap"] = duality_gap(pi, ctx.preferences, ctx.pi_ref, run.tau)
        values["exploitability"] = exploitability(pi, ctx.preferences)
    if ctx.rewards is not None:
        values["reward"] = float(pi @ ctx.rewards)
    if optimum is not None:
        values["tv_to_optimum"] = total_variation(pi, optimum)
    return values


def summarise(
    problem: Problem,
    runs: list[RunResult],
    optima: dict[tuple[str, float, int], np.ndarray],
    components: dict[tuple[str, int, int], int] | None = None,
) -> list[MetricRow]:
    """One row per (label, tau, solver, context): metrics averaged over seeds, status shared or `mixed`.

    A metric is `None` when any seed lacks it (a mean over the seeds that have it would be a different
    quantity). Gradient seed `k` is compared (`tv_to_exact`) with the exact run on its own data: dataset
    `k` when the exact solver solved one dataset per seed, else its single dataset. `components`
    (`gauge_components`) adds a note to the detail of an exact `optimal` answer that is one of a set.
    """
    components = components or {}
    groups = group_runs(runs)
    rows = []
    for (label, tau, solver, context), members in groups.items():
        exact = {r.seed: r.policy for r in groups.get((label, tau, EXACT, context), [])} if solver != EXACT else {}
        per_run = [
            run_metrics(
                problem, r, optima.get((label, tau, context)),
                exact.get(r.seed) if len(exact) > 1 else next(iter(exact.values()), None),
            )
            for r in members
        ]
        values = {
            name: (None if any(v[name] is None for v in per_run) else seed_mean([v[name] for v in per_run]))
            for name in METRIC_NAMES
        }
        statuses = sorted({r.status for r in members})
        status = statuses[0] if len(statuses) == 1 else MIXED
        if status == MIXED:
            counts = ", ".join(f"{s}: {sum(r.status == s for r in members)}" for s in statuses)
            detail = f"statuses over seeds: {counts}"
        else:
            detail = members[0].detail
        if solver == EXACT and status in ("optimal", MIXED):
            counts = [components[(label, r.seed, context)] for r in members if (label, r.seed, context) in components]
            detail = "; ".join(part for part in (detail, _gauge_note(counts)) if part)
        values, notes = _representable(values)
        detail = "; ".join(part for part in (detail, *notes) if part)
        rows.append(MetricRow(label, tau, solver, context, status, values, detail, len(members)))
    return rows


def seed_mean(values: list[float]) -> float:
    """The mean of finite values that may lie near the largest double: each term is divided by the count
    before summing, so the mean of finite values is finite (`np.mean` sums first, and two rewards of 1e308
    would overflow to inf). Non-finite values propagate as they are."""
    x = np.asarray(values, dtype=float)
    with np.errstate(over="ignore", invalid="ignore"):
        return float(np.sum(x / x.size))


def _representable(values: dict[str, float | None]) -> tuple[dict[str, float | None], list[str]]:
    """Metrics with every non-finite value replaced by `None`, and one note per replaced value.

    No output carries an infinity or a NaN (JSON has neither, and an `inf` in a CSV reads like a result): a
    metric that overflows double precision (IPO's loss `(h - 1/(2 tau))^2` for tau below ~1e-154) or is
    genuinely infinite is left empty, and `detail` says which and why.
    """
    out = dict(values)
    notes = []
    for name, value in values.items():
        if value is not None and not np.isfinite(value):
            why = "undefined (nan)" if np.isnan(value) else f"{value} in double precision"
            notes.append(f"{name} is {why}: left empty")
            out[name] = None
    return out, notes


@dataclass(frozen=True)
class SummaryRow:
    """Metrics of one method label, tau and solver aggregated over contexts (`context_summary`)."""

    label: str
    tau: float
    solver: str
    status: str
    values: dict[str, float | None]
    detail: str
    seeds: int


def context_summary(problem: Problem, rows: list[MetricRow]) -> list[SummaryRow]:
    """The context-weighted aggregate of per-context metric rows, one per (label, tau, solver).

    Each metric becomes `E_{x ~ rho}[m_x] = sum_x rho_x m_x`, `rho` the context weights normalised to sum
    to 1 (the paper's objective is this expectation, Eq. 6): the conditional KL, the conditional entropy,
    the expected loss, win rates, reward, total variations and `noise`. `grad_norm` is the largest over
    contexts (an inf-norm over every context's parameters). A metric left empty in any context stays
    empty, and `detail` names the contexts that lack it (unless every context does). The status is the
    contexts' common status, or `mixed` with the count of each in `detail`; `seeds` the smallest count.
    """
    names = [c.name for c in problem.contexts]
    weight = np.array([c.weight for c in problem.contexts], dtype=float)
    groups: dict[tuple[str, float, str], list[MetricRow]] = {}
    for row in rows:
        groups.setdefault((row.label, row.tau, row.solver), []).append(row)
    out = []
    for (label, tau, solver), members in groups.items():
        rho = weight[[m.context for m in members]]
        rho = rho / rho.sum()
        values: dict[str, float | None] = {}
        notes = []
        for name in METRIC_NAMES:
            column = [m.values[name] for m in members]
            missing = [names[m.context] for m, v in zip(members, column, strict=True) if v is None]
            if missing:
                values[name] = None
                if len(missing) < len(members):
                    notes.append(f"{name} is empty in context {', '.join(missing)}: left empty")
            elif name in MAX_OVER_CONTEXTS:
                values[name] = float(max(column))
            else:
                values[name] = float(np.dot(rho, np.asarray(column, dtype=float)))
        values, overflows = _representable(values)  # a convex combination of finite numbers, but say so if not
        notes += overflows
        statuses = sorted({m.status for m in members})
        if len(statuses) == 1:
            status = statuses[0]
        else:
            status = MIXED
            counts = ", ".join(
                f"{s}: {sum(m.status == s for m in members)} "
                f"({', '.join(names[m.context] for m in members if m.status == s)})"
                for s in statuses
            )
            notes.insert(0, f"statuses over contexts: {counts}")
        details = [m.detail for m in members]
        if len(set(details)) == 1:
            parts = [details[0]]
        else:
            parts = [f"{names[m.context]}: {m.detail}" for m in members if m.detail]
        detail = "; ".join(part for part in (*parts, *notes) if part)
        out.append(SummaryRow(label, tau, solver, status, values, detail, min(m.seeds for m in members)))
    return out
