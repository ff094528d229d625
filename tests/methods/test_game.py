"""The regularised preference game's certificates (`psipo_cli.methods.game`), checked against the gap's
definition written out here, a hand-solved two-action equilibrium, and an equilibrium found by scipy's root
finder on the fixed-point equation — never with the code under test."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import root
from scipy.special import logsumexp, softmax

import psipo_cli
from psipo_cli.methods.game import duality_gap, exploitability


def gap_by_definition(pi: np.ndarray, P: np.ndarray, pi_ref: np.ndarray, tau: float) -> float:
    """`2 max_pi' f(pi', pi) - 1` with the best response in closed form (the softmax of `log pi_ref + P pi / tau`):
    `max_pi' [pi'^T P pi - tau KL(pi' || pi_ref)] = tau logsumexp(log pi_ref + P pi / tau)`."""
    mass = pi > 0
    kl = np.sum(pi[mass] * np.log(pi[mass] / pi_ref[mass]))
    return 2.0 * (tau * logsumexp(np.log(pi_ref) + P @ pi / tau) + tau * kl) - 1.0


def random_game(n: int, rng: np.random.Generator) -> np.ndarray:
    A = rng.uniform(-0.5, 0.5, (n, n))
    A = (A - A.T) / 2.0  # skew-symmetric, entries in (-1/2, 1/2)
    return 0.5 + A  # P + P^T = 1, diagonal 1/2


def test_two_actions_by_hand() -> None:
    # P = [[1/2, p], [1 - p, 1/2]], uniform pi_ref. At pi = (x, 1 - x): (P pi)_1 - (P pi)_2 = p - 1/2 for every x,
    # so the fixed point pi = softmax(log pi_ref + P pi / tau) is x* = sigmoid((p - 1/2) / tau).
    p, tau = 0.8, 0.25
    P = np.array([[0.5, p], [1 - p, 0.5]])
    pi_ref = np.array([0.5, 0.5])
    x = 1.0 / (1.0 + np.exp(-(p - 0.5) / tau))
    assert duality_gap(np.array([x, 1 - x]), P, pi_ref, tau) == pytest.approx(0.0, abs=1e-15)
    for y in (0.1, 0.5, 0.99):
        pi = np.array([y, 1 - y])
        assert duality_gap(pi, P, pi_ref, tau) == pytest.approx(gap_by_definition(pi, P, pi_ref, tau), abs=1e-13)
        assert duality_gap(pi, P, pi_ref, tau) > 0


@pytest.mark.parametrize("seed", range(5))
def test_gap_vanishes_only_at_the_equilibrium_and_bounds_the_distance(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, tau = 6, 0.7
    P = random_game(n, rng)
    pi_ref = rng.dirichlet(np.ones(n))
    # The equilibrium by scipy's root finder on F(theta) = theta - log pi_ref - P softmax(theta) / tau.
    def fixed_point(t: np.ndarray) -> np.ndarray:
        return t - np.log(pi_ref) - P @ softmax(t) / tau

    sol = root(fixed_point, np.log(pi_ref), tol=1e-14)
    star = softmax(sol.x)
    assert np.max(np.abs(fixed_point(sol.x))) < 1e-13
    assert duality_gap(star, P, pi_ref, tau) < 1e-13
    for _ in range(20):
        pi = rng.dirichlet(np.ones(n))
        gap = duality_gap(pi, P, pi_ref, tau)
        assert gap == pytest.approx(gap_by_definition(pi, P, pi_ref, tau), abs=1e-12)
        # KL(pi || pi*) <= Gap / (2 tau): the gap certifies the distance to the equilibrium.
        assert np.sum(pi * np.log(pi / star)) <= gap / (2 * tau) + 1e-12


def test_mass_outside_the_reference_support_has_an_infinite_gap() -> None:
    P = np.array([[0.5, 1.0], [0.0, 0.5]])
    assert duality_gap(np.array([0.5, 0.5]), P, np.array([1.0, 0.0]), 1.0) == float("inf")


def test_exploitability_on_the_cycle() -> None:
    # a > b > c > a deterministically: against uniform every action wins (1 + 0 + 1/2) / 3 = 1/2 -> 0;
    # against pure a, c wins for sure -> 1 - 1/2.
    P = np.array([[0.5, 1.0, 0.0], [0.0, 0.5, 1.0], [1.0, 0.0, 0.5]])
    assert exploitability(np.full(3, 1 / 3), P) == pytest.approx(0.0, abs=1e-15)
    assert exploitability(np.array([1.0, 0.0, 0.0]), P) == 0.5


def test_every_method_reports_the_gap_when_the_model_is_known() -> None:
    frames = psipo_cli.solve("paper-two-actions", list(psipo_cli.METHODS), [0.5])
    # p(y1 > y2) = 1, tau = 0.5, uniform pi_ref. DPO's limit is pi = (1, 0); there P pi = (1/2, 0), so the best
    # response is T_1 = sigmoid((1/2 - 0) / tau) = sigmoid(1), and Gap = 2 tau KL((1, 0) || T) = -2 tau log T_1.
    dpo = frames.metrics[frames.metrics["method"] == "dpo"].iloc[0]
    expected = -2 * 0.5 * np.log(1 / (1 + np.exp(-1.0)))
    assert dpo["nash_gap"] == pytest.approx(expected, rel=1e-12)
    assert dpo["exploitability"] == pytest.approx(0.0, abs=1e-15)  # pure y1 is the Condorcet winner
    assert frames.metrics["nash_gap"].notna().all()
    without = psipo_cli.solve("paper-d3", ["dpo"], [0.5])  # no preference model
    assert without.metrics["nash_gap"].isna().all() and without.metrics["exploitability"].isna().all()
