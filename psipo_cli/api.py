"""The public Python API: `psipo_cli.solve(...)` returns tidy pandas frames (DESIGN §8).

This is also what the CLI calls: it resolves the problem and the objective, runs the exact solver and the
gradient engine, computes the metrics and lays everything out as the tables of DESIGN §5 and §7.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from psipo_cli.errors import InputError
from psipo_cli.metrics import METRIC_NAMES, population_optima, summarise, t_interval
from psipo_cli.problem import Problem, get_problem
from psipo_cli.solvers.exact import solve_exact
from psipo_cli.solvers.inputs import resolve_objective
from psipo_cli.solvers.runs import EXACT, GRADIENT, MethodSpec, RunResult, group_runs, method_spec

if TYPE_CHECKING:
    import pandas as pd

    from psipo_cli.solvers.gradient import GradientSettings

SOLVERS = ("exact", "gradient", "both")
POLICY_COLUMNS = ["method", "tau", "solver", "context", "action", "prob", "prob_lo", "prob_hi"]
METRIC_COLUMNS = ["method", "tau", "solver", "context", "status", *METRIC_NAMES, "seeds", "objective", "detail"]
CURVE_COLUMNS = ["step", "method", "tau", "context", "action", "mean", "lo", "hi"]


@dataclass
class Frames:
    """Tidy results: `policy`, `metrics` and `curves` (empty without a gradient run)."""

    policy: pd.DataFrame
    metrics: pd.DataFrame
    curves: pd.DataFrame
    objective: str
    runs: list[RunResult] = field(default_factory=list, repr=False)


def check_taus(taus: Sequence[float]) -> list[float]:
    """Validated tau values: finite and positive."""
    out = []
    for tau in taus:
        if not isinstance(tau, int | float) or isinstance(tau, bool) or not np.isfinite(tau) or tau <= 0:
            raise InputError("tau", tau, "must be a positive finite number")
        out.append(float(tau))
    if not out:
        raise InputError("tau", list(taus), "give at least one value")
    return out


def solve(
    problem: str | Path | Problem,
    method: str | MethodSpec | Sequence[str | MethodSpec],
    tau: float | Sequence[float],
    solver: str = "exact",
    objective: str | None = None,
    settings: GradientSettings | None = None,
    progress: Callable[[int, int], None] | None = None,
    **options: Any,
) -> Frames:
    """Solve `problem` with one or more methods over one or more tau values.

    Parameters
    ----------
    problem : preset name, TOML path or `Problem`
    method : name, `MethodSpec`, or a list of them; keyword `options` (`rm_l2`, `psi`, ...) apply to
        methods given by name that accept them.
    tau : one value or a list (DPO's beta is the same number).
    solver : `exact`, `gradient` or `both`.
    objective : `dataset`, `population` or None (data if the problem has any, else population).
    settings : gradient settings (`GradientSettings()` by default: the paper's §5.4 values).
    """
    problem = get_problem(problem)
    if solver not in SOLVERS:
        raise InputError("solver", solver, f"must be one of {', '.join(SOLVERS)}")
    taus = check_taus([tau] if isinstance(tau, int | float) else list(tau))
    specs = _specs(method, options)
    objective = resolve_objective(problem, objective)
    if settings is None and solver != EXACT:
        from psipo_cli.solvers.gradient import GradientSettings

        settings = GradientSettings()
    seeds = settings.seeds if settings is not None else 1
    runs: list[RunResult] = []
    steps: np.ndarray | None = None
    if solver in (EXACT, "both"):
        runs += solve_exact(problem, specs, taus, objective, datasets=seeds)
    if solver in (GRADIENT, "both"):
        from psipo_cli.solvers.gradient import run_gradient

        steps, gradient_runs = run_gradient(problem, specs, taus, settings, objective, progress=progress)
        runs += gradient_runs
    optima = population_optima(problem, specs, taus)
    return Frames(
        policy=_policy_frame(problem, runs),
        metrics=_metrics_frame(problem, runs, optima, objective),
        curves=_curves_frame(problem, runs, steps),
        objective=objective,
        runs=runs,
    )


def _specs(method: str | MethodSpec | Sequence[str | MethodSpec], options: dict[str, Any]) -> list[MethodSpec]:
    from psipo_cli.objectives import get_method

    items = [method] if isinstance(method, str | MethodSpec) else list(method)
    if not items:
        raise InputError("method", [], "give at least one method")
    specs = []
    for item in items:
        if isinstance(item, MethodSpec):
            specs.append(item)
            continue
        accepted = get_method(item).options
        specs.append(method_spec(item, **{k: v for k, v in options.items() if k in accepted}))
    labels = [s.label for s in specs]
    if len(set(labels)) != len(labels):
        raise InputError("method", labels, "method labels must be unique")
    return specs


def _policy_frame(problem: Problem, runs: list[RunResult]) -> pd.DataFrame:
    import pandas as pd

    records = []
    for (label, tau, solver, context), members in group_runs(runs).items():
        mean, lo, hi = t_interval(np.stack([r.policy for r in members]))
        if solver == EXACT and len(members) == 1:
            lo = hi = mean  # one deterministic solve: its "interval" is the point itself
        for y, action in enumerate(problem.actions):
            records.append(
                (label, tau, solver, problem.contexts[context].name, action, mean[y], lo[y], hi[y])
            )
    return pd.DataFrame.from_records(records, columns=POLICY_COLUMNS)


def _metrics_frame(problem: Problem, runs: list[RunResult], optima: dict, objective: str) -> pd.DataFrame:
    import pandas as pd

    records = []
    for row in summarise(problem, runs, optima):
        records.append(
            {
                "method": row.label,
                "tau": row.tau,
                "solver": row.solver,
                "context": problem.contexts[row.context].name,
                "status": row.status,
                **row.values,
                "seeds": row.seeds,
                "objective": objective,
                "detail": row.detail,
            }
        )
    return pd.DataFrame.from_records(records, columns=METRIC_COLUMNS)


def _curves_frame(problem: Problem, runs: list[RunResult], steps: np.ndarray | None) -> pd.DataFrame:
    import pandas as pd

    if steps is None:
        return pd.DataFrame(columns=CURVE_COLUMNS)
    parts = []
    for (label, tau, solver, context), members in group_runs(runs).items():
        if solver != GRADIENT:
            continue
        mean, lo, hi = t_interval(np.stack([r.curve for r in members]))  # (T, n) each
        T, n = mean.shape
        parts.append(
            pd.DataFrame(
                {
                    "step": np.repeat(steps, n),
                    "method": label,
                    "tau": tau,
                    "context": problem.contexts[context].name,
                    "action": np.tile(np.array(problem.actions, dtype=object), T),
                    "mean": mean.ravel(),
                    "lo": lo.ravel(),
                    "hi": hi.ravel(),
                }
            )
        )
    if not parts:
        return pd.DataFrame(columns=CURVE_COLUMNS)
    return pd.concat(parts, ignore_index=True)[CURVE_COLUMNS]


TAU_GRID_COLUMNS = ["method", "tau", "context", "action", "prob", "kl", "win_rate_ref", "status"]


def tau_grid(
    problem: Problem, specs: list[MethodSpec], taus: Sequence[float], objective: str | None, datasets: int = 1,
    points: int = 41,
) -> pd.DataFrame:
    """Exact policies, KL and win rate on a dense log grid around `taus` (for `policy_vs_tau.png` and
    `frontier.png`): `points` values from `min(taus) / 4` to `max(taus) * 4`, plus the `taus` themselves."""
    from psipo_cli.solvers.gradient import GradientSettings

    lo, hi = min(taus) / 4.0, max(taus) * 4.0
    grid = sorted(set(np.geomspace(lo, hi, points).tolist()) | set(taus))
    settings = GradientSettings(seeds=datasets)
    frames = solve(problem, specs, grid, solver=EXACT, objective=objective, settings=settings)
    merged = frames.policy.merge(
        frames.metrics[["method", "tau", "context", "kl", "win_rate_ref", "status"]], on=["method", "tau", "context"]
    )
    return merged[TAU_GRID_COLUMNS].reset_index(drop=True)
