"""Metrics of a policy (DESIGN §4) and their summary over seeds (NOTES, confidence intervals).

Per run: `kl`, `entropy`, `loss` (the method's own objective, from the solver), and when a preference
model is known `win_rate_ref = p*(pi ≻ pi_ref) = pi^T P pi_ref`, `win_rate_mu = pi^T P mu`, `reward = pi^T r`
(Bradley–Terry only) and `tv_to_optimum`, the total variation to the same method's population optimum.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from psipo_cli.objectives.kl import kl_divergence
from psipo_cli.problem import Problem
from psipo_cli.solvers.exact import solve_exact
from psipo_cli.solvers.inputs import POPULATION
from psipo_cli.solvers.runs import MethodSpec, RunResult, group_runs

METRIC_NAMES = ("kl", "entropy", "loss", "win_rate_ref", "win_rate_mu", "reward", "tv_to_optimum", "grad_norm")


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
    problem: Problem, specs: list[MethodSpec], taus: list[float]
) -> dict[tuple[str, float, int], np.ndarray]:
    """The population optimum of every method label, tau and context (needs a preference model)."""
    if not problem.has_model:
        return {}
    return {
        (r.label, r.tau, r.context): r.policy for r in solve_exact(problem, specs, taus, POPULATION)
    }


def run_metrics(problem: Problem, run: RunResult, optimum: np.ndarray | None) -> dict[str, float | None]:
    """The metrics of one run; those that need a preference model are `None` without one."""
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
    }
    if ctx.preferences is not None:
        values["win_rate_ref"] = float(pi @ ctx.preferences @ ctx.pi_ref)
        values["win_rate_mu"] = float(pi @ ctx.preferences @ ctx.mu)
    if ctx.rewards is not None:
        values["reward"] = float(pi @ ctx.rewards)
    if optimum is not None:
        values["tv_to_optimum"] = float(0.5 * np.abs(pi - optimum).sum())
    return values


def summarise(
    problem: Problem, runs: list[RunResult], optima: dict[tuple[str, float, int], np.ndarray]
) -> list[MetricRow]:
    """One row per (label, tau, solver, context): metrics averaged over seeds, status shared or `mixed`."""
    rows = []
    for (label, tau, solver, context), members in group_runs(runs).items():
        per_run = [run_metrics(problem, r, optima.get((label, tau, context))) for r in members]
        values = {
            name: (None if per_run[0][name] is None else float(np.mean([v[name] for v in per_run])))
            for name in METRIC_NAMES
        }
        statuses = sorted({r.status for r in members})
        status = statuses[0] if len(statuses) == 1 else "mixed"
        if status == "mixed":
            counts = ", ".join(f"{s}: {sum(r.status == s for r in members)}" for s in statuses)
            detail = f"statuses over seeds: {counts}"
        else:
            detail = members[0].detail
        values, notes = _representable(values)
        detail = "; ".join(part for part in (detail, *notes) if part)
        rows.append(MetricRow(label, tau, solver, context, status, values, detail, len(members)))
    return rows


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
