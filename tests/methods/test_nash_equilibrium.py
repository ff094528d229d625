"""The regularised Nash equilibrium (`psipo_cli.methods.nash`), checked by routes that do not use the code under
test: hand algebra on two actions and on the cycle, extragradient iteration in KL geometry written out here (in
floating point and, with mpmath, at 40 digits), linear programs written out here, and the theorem
`KL(pi || pi*) <= Gap(pi) / (2 tau)`."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest

from psipo_cli.methods.nash.equilibrium import (
    TAU_MIN,
    certificate,
    equilibrium,
    fixed_point_map,
    solve_equilibrium,
)
from psipo_cli.methods.nash.lottery import condorcet_winner, is_unique_lottery, maximal_lottery
from psipo_cli.schema import LIMIT, OPTIMAL

CYCLE = np.array([[0.5, 1.0, 0.0], [0.0, 0.5, 1.0], [1.0, 0.0, 0.5]])
TAUS = (1e-3, 1e-2, 0.1, 0.5, 1.0, 10.0)


def random_game(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    A = rng.uniform(-0.5, 0.5, (n, n))
    return 0.5 + (A - A.T) / 2.0  # P + P^T = 1, diagonal 1/2


def eg_step(P: np.ndarray, tau: float) -> float:
    return min(0.5 / np.abs(P - 0.5).sum(axis=1).max(), 0.5 / tau)


def extragradient(P: np.ndarray, pi_ref: np.ndarray, tau: float, steps: int) -> np.ndarray:
    """Extragradient in KL geometry (a different algorithm from Newton; it converges linearly for a step
    `eta` with `eta ||A|| < 1` and `eta tau <= 1`): `pi_half ∝ pi^(1 - eta tau) pi_ref^(eta tau) exp(eta A pi)`,
    then the same from `pi` with `A pi_half`. Worked in logits, so probabilities far below 1e-300 are kept."""
    A = P - 0.5
    eta = eg_step(P, tau)
    w = eta * tau
    log_ref = np.log(pi_ref)

    def normalised(z: np.ndarray) -> np.ndarray:
        return z - np.log(np.sum(np.exp(z - z.max()))) - z.max()

    log_pi = log_ref.copy()
    for _ in range(steps):
        half = normalised((1 - w) * log_pi + w * log_ref + eta * A @ np.exp(log_pi))
        log_pi = normalised((1 - w) * log_pi + w * log_ref + eta * A @ np.exp(half))
    return np.exp(log_pi)


@pytest.mark.parametrize("tau", TAUS)
def test_two_actions_by_hand(tau: float) -> None:
    # P = [[1/2, p], [1 - p, 1/2]]: (P pi)_1 - (P pi)_2 = p - 1/2 at every pi, so the fixed point of
    # T(pi) = softmax(log pi_ref + P pi / tau) is pi_1 = sigmoid(log(r1 / r2) + (p - 1/2) / tau).
    p, pi_ref = 0.7, np.array([0.3, 0.7])
    z = np.log(0.3 / 0.7) + (p - 0.5) / tau
    expected = np.array([1.0 / (1.0 + np.exp(-z)), 1.0 / (1.0 + np.exp(z))])
    got = equilibrium(np.array([[0.5, p], [1 - p, 0.5]]), pi_ref, tau)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("tau", TAUS)
def test_cycle_by_hand(tau: float) -> None:
    # The cycle is invariant under the rotation a -> b -> c: with uniform pi_ref the unique equilibrium is
    # uniform. There S(pi) A = A / 3 (A's columns sum to 0), A's eigenvalues are 0 and ± i sqrt(3) / 2 (a
    # circulant (0, 1/2, -1/2)), so T's Jacobian has spectral radius rho = 1 / (2 sqrt(3) tau).
    e = solve_equilibrium(CYCLE, np.ones(3) / 3, tau)
    assert e.status == OPTIMAL
    np.testing.assert_allclose(e.policy, np.ones(3) / 3, rtol=1e-14)
    assert e.certificate.rho == pytest.approx(1 / (2 * np.sqrt(3) * tau), rel=1e-12)
    assert e.certificate.gap <= 1e-15 and e.certificate.residual <= 1e-15


@pytest.mark.parametrize("tau", TAUS)
@pytest.mark.parametrize("seed", [0, 1])
def test_ten_actions_against_extragradient(tau: float, seed: int) -> None:
    P = random_game(10, seed)
    pi_ref = np.random.default_rng(seed + 100).dirichlet(np.ones(10))
    e = solve_equilibrium(P, pi_ref, tau)
    assert e.status == OPTIMAL
    assert np.all(np.isfinite(e.policy)) and e.policy.sum() == pytest.approx(1.0, abs=1e-15)
    assert e.newton_residual <= 1e-12
    assert e.certificate.gap <= 1e-15 and e.certificate.residual <= 1e-12
    # Extragradient contracts by about (1 - eta tau) per step: enough steps for 1e-13.
    steps = int(min(2e5, 40 / (tau * eg_step(P, tau))))
    reference = extragradient(P, pi_ref, tau, steps)
    np.testing.assert_allclose(e.policy, reference, atol=1e-11, rtol=1e-9)


def test_against_forty_digits() -> None:
    # The same extragradient iteration at 40 significant digits (mpmath), on a 4-action game at a tau where
    # plain iteration of T diverges (rho > 1).
    P, tau = random_game(4, 7), mpmath.mpf("0.05")
    pi_ref = np.array([0.1, 0.2, 0.3, 0.4])
    mpmath.mp.dps = 40
    try:
        A = mpmath.matrix([[mpmath.mpf(float(v)) - mpmath.mpf("0.5") for v in row] for row in P])
        ref = [mpmath.mpf(str(r)) for r in pi_ref]
        eta = mpmath.mpf("0.5")
        w = eta * tau
        log_pi = [mpmath.log(r) for r in ref]

        def step(log_from: list, pi_at: list) -> list:
            z = [(1 - w) * log_from[i] + w * mpmath.log(ref[i]) + eta * sum(A[i, j] * pi_at[j] for j in range(4))
                 for i in range(4)]
            top = max(z)
            log_norm = top + mpmath.log(sum(mpmath.exp(v - top) for v in z))
            return [v - log_norm for v in z]

        for _ in range(3000):
            pi = [mpmath.exp(v) for v in log_pi]
            half = [mpmath.exp(v) for v in step(log_pi, pi)]
            log_pi = step(log_pi, half)
        reference = np.array([float(mpmath.exp(v)) for v in log_pi])
    finally:
        mpmath.mp.dps = 15
    e = solve_equilibrium(P, pi_ref, float(tau))
    assert e.certificate.rho > 1
    np.testing.assert_allclose(e.policy, reference, rtol=1e-13)


@pytest.mark.parametrize("seed", range(4))
def test_certificate_bounds_the_distance(seed: int) -> None:
    # Theorem: Gap(pi) = 2 tau KL(pi || T(pi)) and KL(pi || pi*) <= Gap(pi) / (2 tau).
    rng = np.random.default_rng(seed)
    P, tau = random_game(6, seed), 0.2
    pi_ref = rng.dirichlet(np.ones(6))
    star = equilibrium(P, pi_ref, tau)
    for _ in range(20):
        pi = rng.dirichlet(np.ones(6))
        gap = certificate(P, pi_ref, tau, pi).gap
        assert np.sum(pi * np.log(pi / star)) <= gap / (2 * tau) + 1e-14


def test_support_is_that_of_pi_ref() -> None:
    P, pi_ref = random_game(5, 3), np.array([0.25, 0.0, 0.25, 0.5, 0.0])
    e = solve_equilibrium(P, pi_ref, 0.05)
    assert e.policy[1] == 0.0 and e.policy[4] == 0.0
    np.testing.assert_allclose(fixed_point_map(P, pi_ref, 0.05, e.policy), e.policy, rtol=1e-12)
    # The restricted game has the same equilibrium (the missing actions never enter).
    keep = pi_ref > 0
    np.testing.assert_allclose(equilibrium(P[np.ix_(keep, keep)], pi_ref[keep], 0.05), e.policy[keep], rtol=1e-12)


def test_tiny_tau_reports_the_limit_and_no_nan() -> None:
    P = random_game(10, 0)
    e = solve_equilibrium(P, np.ones(10) / 10, TAU_MIN / 10)
    assert e.status == LIMIT
    assert np.all(np.isfinite(e.policy))
    np.testing.assert_allclose(e.policy, maximal_lottery(P), atol=1e-12)
    # Approaching it: pi*_tau at tau = 1e-6 is within O(tau) of the maximal lottery.
    near = solve_equilibrium(P, np.ones(10) / 10, 1e-6)
    assert near.status == OPTIMAL and np.all(np.isfinite(near.policy))
    np.testing.assert_allclose(near.policy, maximal_lottery(P), atol=1e-4)


def test_large_tau_gives_pi_ref() -> None:
    # tau -> inf: T(pi) -> pi_ref, and pi* = pi_ref + O(1 / tau).
    pi_ref = np.array([0.2, 0.3, 0.5])
    np.testing.assert_allclose(equilibrium(CYCLE, pi_ref, 1e6), pi_ref, atol=1e-6)


def test_maximal_lottery_of_rock_paper_scissors_is_uniform() -> None:
    np.testing.assert_allclose(maximal_lottery(CYCLE), np.ones(3) / 3, atol=1e-12)
    assert condorcet_winner(CYCLE) is None
    assert is_unique_lottery(CYCLE)


def test_condorcet_winner_gets_the_whole_lottery() -> None:
    # b beats a and c; a and c form no cycle with b.
    P = np.array([[0.5, 0.4, 0.9], [0.6, 0.5, 0.55], [0.1, 0.45, 0.5]])
    assert condorcet_winner(P) == 1
    np.testing.assert_allclose(maximal_lottery(P), [0.0, 1.0, 0.0], atol=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_maximal_lottery_is_an_equilibrium(seed: int) -> None:
    # Definition: P(y ≻ p) <= 1/2 for every y; for an odd tournament (all entries 0 or 1 off the diagonal) it
    # is unique. A 5-action tournament from random orientations.
    rng = np.random.default_rng(seed)
    upper = np.triu(rng.integers(0, 2, (5, 5)).astype(float), 1)
    P = upper + np.tril(1 - upper.T, -1) + 0.5 * np.eye(5)
    p = maximal_lottery(P)
    assert np.all(P @ p <= 0.5 + 1e-12) and p.sum() == pytest.approx(1.0)
    assert is_unique_lottery(P)


def test_set_of_lotteries_picks_the_closest_to_pi_ref() -> None:
    # All ties: every policy is a maximal lottery; the regularised equilibrium is pi_ref for every tau, and
    # the selected lottery is the one closest to pi_ref in KL, pi_ref itself.
    P = np.full((3, 3), 0.5)
    pi_ref = np.array([0.2, 0.3, 0.5])
    assert not is_unique_lottery(P)
    np.testing.assert_allclose(maximal_lottery(P, pi_ref), pi_ref, atol=1e-7)
    np.testing.assert_allclose(maximal_lottery(P), np.ones(3) / 3, atol=1e-7)


def test_clones_split_the_lottery_as_pi_ref_does() -> None:
    # Rock, paper, scissors and a clone of rock (ties with rock, same results against the others). The maximal
    # lotteries are {rock + clone = paper = scissors = 1/3}, a segment. Clones have equal (P pi)_y, so for every
    # tau pi*(rock) / pi*(clone) = pi_ref(rock) / pi_ref(clone); the tau -> 0 limit splits the 1/3 that way,
    # which is also argmin KL(p || pi_ref) over the segment (by hand: minimise over the split s of 1/3).
    P = np.full((4, 4), 0.5)
    P[:3, :3] = CYCLE
    P[3, :3], P[:3, 3] = CYCLE[0], CYCLE[:, 0]
    pi_ref = np.array([0.1, 0.2, 0.3, 0.4])
    split = np.array([0.1, 0.4]) / 0.5 / 3
    expected = np.array([split[0], 1 / 3, 1 / 3, split[1]])
    assert not is_unique_lottery(P)
    np.testing.assert_allclose(maximal_lottery(P, pi_ref), expected, atol=1e-7)
    for tau in (1e-2, 1e-4):
        pi = equilibrium(P, pi_ref, tau)
        assert pi[0] / pi[3] == pytest.approx(0.25, rel=1e-12)
        np.testing.assert_allclose(pi, expected, atol=10 * tau)
