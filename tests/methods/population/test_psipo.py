"""Population ΨPO's exact solver (paper Eq. 6-7): softmax optimum, the eps -> 0 limit, data.

Expected values are derived by hand (in a comment), from a loss written out from its definition, or from a
theorem of the paper — never with the code under test; the conventions relied on are listed in
`tests/reference/routes.py`.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from reference.routes import (
    TAUS,
    WIDE_TAUS,
    model_problem,
    one_policy,
    policies,
    problem_from,
    random_preferences,
    random_simplex,
    statuses,
    tilt,
)
from scipy.special import logit

import psipo_cli
from psipo_cli.errors import InputError
from psipo_cli.problem import build_problem


def test_psipo_identity_random_matrix() -> None:
    """Paper Eq. 7 with Psi = identity: pi* ∝ pi_ref exp(P(y > mu) / tau)."""
    rng = np.random.default_rng(11)
    for trial in range(30):
        n = int(rng.integers(2, 7))
        pi_ref = random_simplex(rng, n, zeros=int(trial % 3 == 0 and n > 2))
        mu = random_simplex(rng, n, zeros=int(trial % 2 and n > 2))
        P = random_preferences(rng, n)
        tau = float(rng.choice([0.01, 0.3, 1.0, 20.0]))
        frames = psipo_cli.solve(model_problem(pi_ref, mu, P), "psipo", tau, psi="identity")
        pi = next(iter(policies(frames).values()))
        np.testing.assert_allclose(pi, tilt(pi_ref, (P @ mu) / tau), rtol=1e-9, atol=1e-14)
        assert frames.metrics.iloc[0].status == "optimal"


@pytest.mark.parametrize("tau", TAUS)
def test_psipo_logit_bradley_terry_is_prop_1(tau: float) -> None:
    """Prop. 1: logit(sigmoid(r_y - r_y')) = r_y - r_y', so g(y) = sum_y' mu(y') (r_y - r_y') =
    r_y - E_mu r: a constant shift of r, hence pi* ∝ pi_ref exp(r / tau). Under Bradley–Terry, DPO and RLHF
    on the expected counts give the same policy (docs/maths.md §2.5): the BT MLE of exact BT counts is r."""
    rng = np.random.default_rng(int(tau * 100))
    r = rng.normal(size=5)
    pi_ref = random_simplex(rng, 5)
    mu = random_simplex(rng, 5)
    problem = build_problem(
        {"actions": list("abcde"), "rewards": r.tolist(), "pi_ref": pi_ref.tolist(), "mu": mu.tolist()}
    )
    expected = tilt(pi_ref, r / tau)
    frames = psipo_cli.solve(problem, ["psipo", "dpo", "rlhf"], tau, psi="logit")
    for label in ("psipo", "dpo", "rlhf"):
        np.testing.assert_allclose(policies(frames)[(label, tau)], expected, rtol=1e-8, atol=1e-12)
    assert set(statuses(frames).values()) == {"optimal"}


@pytest.mark.parametrize("tau", WIDE_TAUS)
def test_psipo_logit_on_order_is_the_limit(tau: float) -> None:
    """logit(P) = ±inf off the diagonal of a total order: a(y) = mu(worse than y) - mu(better than y) is
    largest for the top action, so the limit puts all mass there, whatever tau (paper §4.2)."""
    frames = psipo_cli.solve("paper-d1", "psipo", tau, psi="logit", objective="population")
    np.testing.assert_array_equal(next(iter(policies(frames).values())), [1.0, 0.0, 0.0])
    assert frames.metrics.iloc[0].status == "limit"
    # The top action outside supp pi_ref: the mass goes to the best action inside it.
    problem = build_problem({"actions": list("abcd"), "order": list("dabc"), "pi_ref": [0.5, 0.3, 0.2, 0.0]})
    np.testing.assert_array_equal(one_policy(problem, "psipo", tau, psi="logit"), [1.0, 0, 0, 0])


def clipped_target(P: np.ndarray, mu: np.ndarray, psi: str, L: float) -> np.ndarray:
    """g(y) = sum mu(y') Psi(P_eps[y, y']) with P clipped to [eps, 1 - eps], L = log((1 - eps) / eps),
    eps -> 0 (so that log(1 - eps) = 0 to double precision): logit(1 - eps) = L, logit(eps) = -L,
    log(1 - eps) = 0, log(eps) = -L."""
    if psi == "logit":
        with np.errstate(divide="ignore"):
            vals = np.where(P == 1, L, np.where(P == 0, -L, logit(np.clip(P, 1e-300, 1 - 1e-16))))
    else:
        vals = np.where(P == 0, -L, np.log(np.where(P == 0, 1.0, P)))
    return vals @ mu


@pytest.mark.parametrize("psi", ["logit", "log"])
def test_psipo_infinite_psi_is_the_clipped_limit(psi: str) -> None:
    """docs/maths.md §2.1: the reported policy is the eps -> 0 limit of the problem with P clipped to [eps, 1-eps].
    mu on a grid of tenths, so that distinct a(y) differ by >= 0.1: at L = 690 (eps = 1e-300) the
    clipped optimum is within exp(-69 / tau) of its limit."""
    rng = np.random.default_rng(12 if psi == "logit" else 13)
    for _ in range(40):
        n = int(rng.integers(2, 6))
        P = random_preferences(rng, n)
        for i, j in itertools.combinations(range(n), 2):
            if rng.random() < 0.5:
                P[i, j] = float(rng.integers(0, 2))
                P[j, i] = 1.0 - P[i, j]
        counts = rng.multinomial(10, np.ones(n) / n)
        mu = counts / 10.0
        pi_ref = random_simplex(rng, n, zeros=int(n > 2 and rng.random() < 0.3))
        tau = float(rng.choice([0.2, 1.0, 2.0]))
        expected = tilt(pi_ref, clipped_target(P, mu, psi, 690.0) / tau)
        got = one_policy(model_problem(pi_ref, mu, P), "psipo", tau, psi=psi)
        np.testing.assert_allclose(got, expected, atol=1e-9)


def test_psipo_from_data_uses_empirical_preferences() -> None:
    """docs/maths.md §2.5: P_hat = W / (W + W^T), mu_hat = share of appearances (each comparison shows 2 actions)."""
    rng = np.random.default_rng(14)
    n = 4
    W = rng.integers(1, 6, size=(n, n)).astype(float)
    np.fill_diagonal(W, 0)
    pi_ref = random_simplex(rng, n)
    P_hat = np.full((n, n), 0.5)
    mu_hat = np.zeros(n)
    for i in range(n):
        mu_hat[i] = (W[i].sum() + W[:, i].sum()) / (2 * W.sum())
        for j in range(n):
            if i != j:
                P_hat[i, j] = W[i, j] / (W[i, j] + W[j, i])
    tau = 0.4
    got = one_policy(problem_from(W, pi_ref), "psipo", tau, psi="identity")
    np.testing.assert_allclose(got, tilt(pi_ref, P_hat @ mu_hat / tau), rtol=1e-10)


def test_psipo_from_incomplete_data_names_the_pairs() -> None:
    with pytest.raises(InputError) as info:
        psipo_cli.solve("paper-d3", "psipo", 1.0)
    assert "('a', 'c')" in str(info.value)
