"""The `nash` method through the public routes (`solve`, the CLI): the equilibrium on the population `P` and on
`P_hat` from data, its certificate in the detail, the data rule shared with ΨPO, and the gradient route's
one-line refusal. Expected policies come from scipy's root finder on the fixed-point equation written here, or
from symmetry."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import root
from scipy.special import softmax

import psipo_cli
from psipo_cli.errors import InputError
from psipo_cli.problem import build_problem

SKEWED = {
    "name": "skewed-cycle",
    "actions": ["a", "b", "c"],
    "pi_ref": [0.5, 0.3, 0.2],
    "preferences": [[0.5, 0.9, 0.3], [0.1, 0.5, 0.7], [0.7, 0.3, 0.5]],
}


def by_root(P: np.ndarray, pi_ref: np.ndarray, tau: float) -> np.ndarray:
    """`pi*_tau` from scipy's hybrid root finder on `theta - log pi_ref - P softmax(theta) / tau = 0`."""
    sol = root(lambda t: t - np.log(pi_ref) - P @ softmax(t) / tau, np.log(pi_ref), tol=1e-14)
    assert sol.success
    return softmax(sol.x)


@pytest.mark.parametrize("tau", [0.05, 0.5, 2.0])
def test_population_equilibrium_and_certificate(tau: float) -> None:
    frames = psipo_cli.solve(build_problem(SKEWED), "nash", tau, solver="exact")
    m = frames.metrics.iloc[0]
    assert m.status == "optimal"
    expected = by_root(np.array(SKEWED["preferences"]), np.array(SKEWED["pi_ref"]), tau)
    np.testing.assert_allclose(frames.policy.prob.to_numpy(), expected, rtol=1e-10)
    assert m.nash_gap < 1e-15
    assert "gap" in m.detail and "fixed-point residual" in m.detail and "rho" in m.detail
    # rho at pi* is the modulus of the Jacobian's imaginary eigenvalues (test_nash_equilibrium checks it by
    # hand on the symmetric cycle); the detail says when plain iteration diverges.
    assert ("diverges" in m.detail) == (tau == 0.05)


def test_on_data_uses_p_hat() -> None:
    # The cycle preset's data: each pair once, a > b > c > a, so P_hat is the deterministic cycle; with uniform
    # pi_ref the equilibrium is uniform by the rotation symmetry, for every tau.
    frames = psipo_cli.solve("cycle", "nash", [0.01, 1.0], solver="exact", objective="dataset")
    np.testing.assert_allclose(frames.policy.prob.to_numpy(), np.full(6, 1 / 3), rtol=1e-14)
    # Counts 3:1 on (a, b) instead: P_hat[a, b] = 3/4 is what the equilibrium sees.
    table = {"actions": ["a", "b", "c"], "pairs": [
        {"winner": "a", "loser": "b", "count": 3}, {"winner": "b", "loser": "a"},
        {"winner": "b", "loser": "c"}, {"winner": "c", "loser": "a"}]}
    P_hat = np.array([[0.5, 0.75, 0.0], [0.25, 0.5, 1.0], [1.0, 0.0, 0.5]])
    got = psipo_cli.solve(build_problem(table), "nash", 0.2, solver="exact").policy.prob.to_numpy()
    np.testing.assert_allclose(got, by_root(P_hat, np.full(3, 1 / 3), 0.2), rtol=1e-10)


def test_data_with_an_unobserved_pair_is_refused_as_for_psipo() -> None:
    # paper-d3 never compares a with c: P_hat[a, c] is unknown.
    with pytest.raises(InputError, match="every pair of compared actions observed"):
        psipo_cli.solve("paper-d3", "nash", 1.0, solver="exact")


@pytest.mark.parametrize("optimizer", ["md", "sgd"])
def test_gradient_route_is_extragradient_and_reaches_the_equilibrium(optimizer: str) -> None:
    # The gradient solver runs EGPO's extragradient self-play, whose fixed point is pi*_tau: at full batch it
    # must land on the root of the fixed-point equation (scipy, `by_root`) and the detail must name the route.
    tau = 0.5
    frames = psipo_cli.solve(build_problem(SKEWED), "nash", tau, solver="gradient", optimizer=optimizer,
                             batch_size=0, lr=0.5, steps=4000, seeds=1)
    m = frames.metrics.iloc[0]
    expected = by_root(np.array(SKEWED["preferences"]), np.array(SKEWED["pi_ref"]), tau)
    np.testing.assert_allclose(frames.policy.prob.to_numpy(), expected, atol=1e-9)
    assert m.status == "converged" and m.detail.startswith("gradient route: EGPO's extragradient")
