"""IPO's exact solver (paper Eq. 17): closed forms, Theorem 2 and the Laplacian solve.

Expected values are derived by hand (in a comment), from a loss written out from its definition, or from a
theorem of the paper — never with the code under test; the conventions relied on are listed in
`tests/reference/routes.py`.
"""

from __future__ import annotations

import numpy as np
import pytest
from reference.routes import (
    TAUS,
    canonical,
    ipo_grad,
    model_problem,
    one_policy,
    policies,
    random_preferences,
    random_simplex,
    random_W,
    tilt,
)
from scipy.special import expit
from support import exact_solution

import psipo_cli
from psipo_cli.methods.pairwise import ipo


@pytest.mark.parametrize("tau", [*TAUS, 1e-3, 1e3])
def test_ipo_paper_d1_logit_gaps(tau: float) -> None:
    """D1 = {a>b, b>c, a>c}, once each. Lap = 3I - J on three actions, b = (wins - losses) = (2, 0, -2).

    On sum-zero vectors Lap acts as 3I, so Lap^+ b = b / 3 = (2/3, 0, -2/3) and
    delta = Lap^+ b / (2 tau) = (1, 0, -1) / (3 tau): consecutive logit gaps are 1/(3 tau).
    The loss: h_ab = h_bc = 1/(3 tau), h_ac = 2/(3 tau), target 1/(2 tau); each residual is
    ±1/(6 tau), so the mean loss is 1/(36 tau^2).
    """
    frames = psipo_cli.solve("paper-d1", "ipo", tau)
    pi = next(iter(policies(frames).values()))
    s = np.log(pi)
    assert s[0] - s[1] == pytest.approx(1 / (3 * tau), rel=1e-9)
    assert s[1] - s[2] == pytest.approx(1 / (3 * tau), rel=1e-9)
    row = frames.metrics.iloc[0]
    assert row.status == "optimal"
    assert row.loss == pytest.approx(1 / (36 * tau**2), rel=1e-9)


@pytest.mark.parametrize("tau", TAUS)
def test_ipo_two_actions_population(tau: float) -> None:
    """Paper §5.3.1: p(y1 > y2) = 1, mu = pi_ref uniform. Expected counts W = [[0, 1/4], [0, 0]]: one
    comparison, whose residual vanishes at h = 1/(2 tau), so pi(y1) = sigmoid(1/(2 tau))."""
    pi = one_policy("paper-two-actions", "ipo", tau)
    assert pi[0] == pytest.approx(expit(0.5 / tau), abs=1e-12)


def test_ipo_population_theorem_2() -> None:
    """Theorem 2 / Prop. 3: IPO on the expected counts W = mu(w) mu(l) P[w,l] (supp mu = supp pi_ref)
    equals pi* ∝ pi_ref exp(P(y > mu) / tau), P(y > mu) = sum_y' mu(y') P[y, y']."""
    rng = np.random.default_rng(2)
    for trial in range(30):
        n = int(rng.integers(2, 7))
        zeros = int(rng.integers(0, n - 1)) if trial % 2 else 0
        pi_ref = random_simplex(rng, n, zeros)
        mu = rng.random(n) * (pi_ref > 0)
        mu /= mu.sum()
        P = random_preferences(rng, n)
        tau = float(rng.choice([0.05, 0.3, 1.0, 7.0]))
        expected = tilt(pi_ref, P @ mu / tau)
        got = one_policy(model_problem(pi_ref, mu, P), "ipo", tau)
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)


def test_ipo_sparse_path_agrees_with_dense() -> None:
    rng = np.random.default_rng(3)
    for _ in range(10):
        n = int(rng.integers(3, 12))
        W = random_W(rng, n, 0.3)
        S = W + W.T
        lap = np.diag(S.sum(1)) - S  # written out: sum W (e_w - e_l)(e_w - e_l)^T
        b = W.sum(1) - W.sum(0)
        sparse = ipo.offsets(W, 0.5, sparse=True)  # tau = 1/2: delta = Lap^+ b
        # Independent dense route: the minimum-norm solution through the pseudo-inverse.
        np.testing.assert_allclose(sparse, np.linalg.pinv(lap) @ b, atol=1e-10)


def test_ipo_large_sparse_problem() -> None:
    """n above the sparse threshold: first-order conditions (analytic gradient) and the gauge hold."""
    rng = np.random.default_rng(4)
    n = 400
    W = np.zeros((n, n))
    # A chain over the first 350 actions plus random extra edges, a separate 30-action chain, and
    # 20 absent actions.
    for i in range(349):
        W[i, i + 1] = rng.integers(1, 3)
    for i in range(350, 379):
        W[i + 1, i] = 1
    for _ in range(400):
        i, j = rng.integers(0, 350, size=2)
        if i != j:
            W[i, j] += 1
    pi_ref = random_simplex(rng, n)
    tau = 0.7
    sol = exact_solution("ipo", W, pi_ref, tau)
    assert sol.status == "optimal"
    delta = np.log(sol.policy / pi_ref)
    delta -= delta[-1]  # absent action: delta = 0 fixes the softmax constant
    assert np.max(np.abs(ipo_grad(delta, W, tau))) < 1e-9
    np.testing.assert_allclose(delta, canonical(delta, W), atol=1e-9)
