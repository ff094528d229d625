"""What each method sees of a context: which objective runs, and its counts or preferences.

Shared by the exact and the gradient solver, so that both optimise exactly the same objective.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from psipo_cli.config.settings import setting
from psipo_cli.errors import InputError
from psipo_cli.methods import Method
from psipo_cli.methods.population.psipo import empirical_preferences
from psipo_cli.problem import Context, Problem, expected_wins

DATASET = "dataset"
POPULATION = "population"


def resolve_objective(problem: Problem, objective: str | None = None) -> str:
    """Problem with data -> empirical objective; without -> population (`objective` forces one)."""
    if objective is None:
        objective = "auto"
    setting("objective").check(objective)  # the declared choices, keyed `--objective`
    if objective == "auto":
        return DATASET if problem.has_data else POPULATION
    if objective == POPULATION and not problem.has_model:
        raise InputError("--objective", objective, "the population objective needs a preference model")
    if objective == DATASET and not problem.has_data:
        raise InputError("--objective", objective, "the problem has no data (pairs, pairs_csv or sample)")
    return objective


@dataclass(frozen=True, eq=False)
class MethodInputs:
    """One context as a method sees it: `W` when its family is `on_comparisons`, else `(P, mu)`."""

    pi_ref: np.ndarray
    mu: np.ndarray
    W: np.ndarray | None = None
    P: np.ndarray | None = None


def method_inputs(ctx: Context, method: Method, objective: str, actions: tuple[str, ...]) -> MethodInputs:
    """The counts or preferences of `ctx` for `method` under `objective` (data already realised)."""
    if objective == DATASET:
        if ctx.wins is None:
            raise InputError("problem", ctx.name, "context has no realised dataset")
        return data_inputs(method, np.asarray(ctx.wins), ctx.pi_ref, ctx.name, actions, ctx.mu)
    if method.family.on_comparisons:
        if np.count_nonzero(ctx.mu) < 2:
            # W = mu mu^T P off the diagonal is zero: the loss is 0/0, every policy is as good as any other.
            raise InputError(
                f"contexts[{ctx.name}].mu", ctx.mu.tolist(),
                f"the population {method.name} objective has no comparisons: mu (default pi_ref) must put mass "
                "on at least two actions",
            )
        return MethodInputs(ctx.pi_ref, ctx.mu, W=expected_wins(ctx.mu, ctx.preferences))
    return MethodInputs(ctx.pi_ref, ctx.mu, P=ctx.preferences)


def data_inputs(
    method: Method, W: np.ndarray, pi_ref: np.ndarray, name: str, actions: tuple[str, ...], mu: np.ndarray
) -> MethodInputs:
    """What `method` sees of one context's recorded win counts `W` (the empirical objective): `W` itself,
    or the empirical preferences `(P_hat, mu_hat)` (`empirical_preferences`; `mu` is then unused)."""
    if method.family.on_comparisons:
        return MethodInputs(pi_ref, mu, W=W)
    try:
        P, mu_hat = empirical_preferences(W, actions)
    except InputError as exc:
        raise InputError(f"contexts[{name}].pairs", exc.value, exc.reason) from None
    return MethodInputs(pi_ref, mu_hat, P=P)
