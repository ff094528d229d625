"""Precision of the exact solvers when counts span many orders of magnitude.

Expected values come from closed forms derived here, rational arithmetic (`fractions.Fraction`) or the
first-order conditions evaluated in 50-digit arithmetic (`mpmath`), with the losses written out below from
their definitions (paper Eq. 4 / Eq. 2 for Bradley–Terry, Eq. 17 for IPO). Nothing uses the code under test.
"""

from __future__ import annotations

import math
from fractions import Fraction

import mpmath as mp
import numpy as np
import pytest
from support import exact_solution

import psipo_cli
from psipo_cli.methods.pairwise import ipo
from psipo_cli.problem import build_problem

A, B, C = 0, 1, 2


def counts(n: int, *pairs: tuple[int, int, float]) -> np.ndarray:
    W = np.zeros((n, n))
    for w, l_, c in pairs:
        W[w, l_] = c
    return W


# ============================================================================== Bradley–Terry / DPO


def test_dpo_tree_with_counts_over_nine_decades() -> None:
    """a > b x 1e9, b > a x 1, b > c x 1, c > b x 2 (tau 1, uniform pi_ref).

    The comparison graph a - b - c is a tree, so the Bradley–Terry log-likelihood is a sum of one term per
    edge, each a function of that edge's difference alone, and the edges' differences are free: the MLE
    decouples. On edge (x, y) stationarity reads `c_xy sigma(-h) = c_yx sigma(h)`, i.e. `h = log(c_xy / c_yx)`.
    So `r_a - r_b = log(1e9)` and `r_b - r_c = log(1/2)`; DPO's minimiser is `r / tau` (Prop. 4) and with
    a uniform pi_ref `log(pi_x / pi_y) = h / tau`. (Before the fix: 20.7227160778 instead of 20.7232658369.)
    """
    W = counts(3, (A, B, 1e9), (B, A, 1.0), (B, C, 1.0), (C, B, 2.0))
    pi_ref = np.full(3, 1 / 3)
    for sol in (exact_solution("dpo", W, pi_ref, 1.0), exact_solution("rlhf", W, pi_ref, 1.0)):
        assert sol.status == "optimal"
        log_pi = np.log(sol.policy)
        assert log_pi[A] - log_pi[B] == pytest.approx(math.log(1e9), rel=1e-13)
        assert log_pi[B] - log_pi[C] == pytest.approx(math.log(0.5), rel=1e-13)
    # tau scales the differences as 1/tau.
    log_pi = np.log(exact_solution("dpo", W, pi_ref, 0.25).policy)
    assert log_pi[A] - log_pi[B] == pytest.approx(4 * math.log(1e9), rel=1e-13)


def test_dpo_tree_through_the_public_api() -> None:
    problem = build_problem(
        {
            "actions": ["a", "b", "c"],
            "pairs": [
                {"winner": "a", "loser": "b", "count": 1e9},
                {"winner": "b", "loser": "a", "count": 1},
                {"winner": "b", "loser": "c", "count": 1},
                {"winner": "c", "loser": "b", "count": 2},
            ],
        }
    )
    frames = psipo_cli.solve(problem, "dpo", 1.0)
    pi = frames.policy["prob"].to_numpy()
    assert math.log(pi[0] / pi[1]) == pytest.approx(math.log(1e9), rel=1e-13)


def mp_newton_step(r: np.ndarray, W: np.ndarray) -> float:
    """Largest coordinate of the Newton step `-H^-1 g` of the Bradley–Terry log-loss at `r`, in 50 digits.

    Loss `sum W[w,l] log(1 + exp(-(r_w - r_l)))` (the sum; the mean has the same step). Near the minimiser
    the step is `r* - r` to second order, so this is the distance to the exact MLE. Node 0 is grounded (the
    loss depends on differences only, and the comparison graph is connected).
    """
    n = len(r)
    with mp.workdps(50):
        x = [mp.mpf(float(v)) for v in r]
        g = mp.matrix(n, 1)
        H = mp.matrix(n, n)
        for w, l_ in zip(*(idx.tolist() for idx in np.nonzero(W)), strict=True):
            c = mp.mpf(float(W[w, l_]))
            s = 1 / (1 + mp.exp(x[w] - x[l_]))  # sigma(-(r_w - r_l))
            g[w] -= c * s
            g[l_] += c * s
            k = c * s * (1 - s)
            H[w, w] += k
            H[l_, l_] += k
            H[w, l_] -= k
            H[l_, w] -= k
        step = mp.lu_solve(H[1:, 1:], -g[1:, 0])
        return float(max(abs(v) for v in step))


def heavy_tailed_counts(rng: np.random.Generator, n: int, decades: float) -> np.ndarray:
    """Random counts `10^U(0, decades)` on about 60% of ordered pairs, plus a cycle through every action
    (so the comparison graph is strongly connected and the MLE exists)."""
    W = np.where(rng.random((n, n)) < 0.6, np.floor(10 ** rng.uniform(0, decades, (n, n))), 0.0)
    np.fill_diagonal(W, 0.0)
    cycle = (np.arange(n), (np.arange(n) + 1) % n)
    W[cycle] = np.maximum(W[cycle], 1.0)
    return W


def test_bradley_terry_fit_is_at_the_mle_to_rounding_on_heavy_tailed_counts() -> None:
    """Counts spanning up to 12 decades: the exact fit is within 1e-12 (relative to its size) of the MLE,
    measured by the 50-digit Newton step. (Before the fix: errors up to 1e-3, and on some of these data the
    Newton iterates escaped to offsets ~1e9 and stopped there.)"""
    rng = np.random.default_rng(20)
    for _ in range(12):
        n = int(rng.integers(3, 8))
        W = heavy_tailed_counts(rng, n, float(rng.choice([6.0, 9.0, 12.0])))
        sol = exact_solution("dpo", W, np.full(n, 1 / n), 1.0)
        assert sol.status == "optimal"
        r = sol.offsets  # tau = 1: the MLE itself
        assert mp_newton_step(r, W) < 1e-12 * (1 + np.abs(r).max()), W


# ============================================================================== IPO


@pytest.mark.parametrize(("tau", "rel"), [(1e-4, 1e-12), (1e-5, 5e-12)])
def test_ipo_cycle_with_counts_over_eight_decades(tau: float, rel: float) -> None:
    """a > c x 7e8, b > a x 6, c > b x 3 (uniform pi_ref).

    IPO's minimiser solves `Lap x = b`, `delta = x / (2 tau)` (paper Eq. 17), with pair weights
    `S_ac = 7e8`, `S_ab = 6`, `S_bc = 3` and `b` = wins - losses = (7e8 - 6, 6 - 3, 3 - 7e8). Ground c
    (`x_c = 0`; the loss only sees differences) and drop its row:

        (7e8 + 6) x_a -        6 x_b = 7e8 - 6
               -6 x_a +        9 x_b = 3

    Cramer: det = 9 (7e8 + 6) - 36, x_a = (9 (7e8 - 6) + 18) / det, x_b = ((7e8 + 6) 3 + 6 (7e8 - 6)) / det.
    So `pi_a / pi_b = exp((x_a - x_b) / (2 tau))`, and pi_c / pi_a = exp(-x_a / (2 tau)) underflows to 0.

    The tolerance is the float floor of the offsets themselves: they are ~1/(3 tau) in the canonical gauge,
    represented to ~4e-13 (tau 1e-4) and ~4e-12 (tau 1e-5) absolute. (Before the fix: off by ~1e-6 and ~1e-5.)
    """
    det = 9 * (Fraction(7 * 10**8) + 6) - 36
    x_a = (9 * (Fraction(7 * 10**8) - 6) + 18) / det
    x_b = ((Fraction(7 * 10**8) + 6) * 3 + 6 * (Fraction(7 * 10**8) - 6)) / det
    gap = float(x_a - x_b) / (2 * tau)  # exact rational, rounded once: ~-1.4e-5 / (tau / 1e-4)
    p_a = 1 / (1 + math.exp(-gap))
    W = counts(3, (A, C, 7e8), (B, A, 6.0), (C, B, 3.0))
    pi = exact_solution("ipo", W, np.full(3, 1 / 3), tau).policy
    assert pi[A] == pytest.approx(p_a, rel=rel)
    assert pi[B] == pytest.approx(1 - p_a, rel=rel)
    assert pi[C] == 0.0


def rational_laplacian_solution(W: np.ndarray) -> list[Fraction]:
    """`x` with `Lap x = b` and `x_0 = 0` in exact rational arithmetic (Gauss–Jordan on the grounded
    system; counts are integers). `Lap = sum W (e_w - e_l)(e_w - e_l)^T`, `b = sum W (e_w - e_l)`."""
    n = W.shape[0]
    Wf = [[Fraction(int(W[i, j])) for j in range(n)] for i in range(n)]
    lap = [[Fraction(0)] * n for _ in range(n)]
    b = [Fraction(0)] * n
    for i in range(n):
        for j in range(n):
            if i != j and Wf[i][j]:
                c = Wf[i][j]
                lap[i][i] += c
                lap[j][j] += c
                lap[i][j] -= c
                lap[j][i] -= c
                b[i] += c
                b[j] -= c
    M = [[*lap[i][1:], b[i]] for i in range(1, n)]
    m = n - 1
    for k in range(m):
        p = next(i for i in range(k, m) if M[i][k] != 0)
        M[k], M[p] = M[p], M[k]
        for i in range(m):
            if i != k and M[i][k] != 0:
                f = M[i][k] / M[k][k]
                M[i] = [a - f * c for a, c in zip(M[i], M[k], strict=True)]
    return [Fraction(0)] + [M[i][m] / M[i][i] for i in range(m)]


@pytest.mark.parametrize("sparse", [False, True])
def test_ipo_offsets_match_rational_solutions_on_heavy_tailed_counts(sparse: bool) -> None:
    """Random counts up to 1e12 (dense and sparse paths): `2 tau delta` (= `Lap^+ b`) matches the exact
    rational solution, as differences, to 1e-13. (Before the fix: minimum-norm least squares on the whole
    singular Laplacian lost up to ~4e-6.)"""
    rng = np.random.default_rng(21)
    for _ in range(40):
        n = int(rng.integers(3, 8))
        W = heavy_tailed_counts(rng, n, 12.0)
        exact = rational_laplacian_solution(W)
        x = ipo.offsets(W, 0.5, sparse=sparse)  # tau = 1/2: delta = x
        for i in range(1, n):
            assert x[i] - x[0] == pytest.approx(float(exact[i]), abs=1e-13), W
        assert abs(x.sum()) < 1e-13  # canonical gauge: one component, zero sum


def test_dpo_large_problem_takes_the_sparse_newton_path() -> None:
    """n = 400 (above the sparse threshold): a chain compared both ways plus random extra comparisons and
    20 absent actions. The Bradley–Terry gradient, written out here, vanishes at the fit, relative to the
    size of its terms, and the offsets keep the canonical gauge (zero sum on the component, 0 on absent)."""
    rng = np.random.default_rng(22)
    n, m = 400, 380
    W = np.zeros((n, n))
    W[np.arange(m - 1), np.arange(1, m)] = rng.integers(1, 5, m - 1)
    W[np.arange(1, m), np.arange(m - 1)] = rng.integers(1, 5, m - 1)
    for _ in range(600):
        i, j = rng.integers(0, m, size=2)
        if i != j:
            W[i, j] += 1
    r = exact_solution("dpo", W, np.full(n, 1 / n), 1.0).offsets
    w, l_ = np.nonzero(W)
    flow = W[w, l_] / (1 + np.exp(r[w] - r[l_]))  # W sigma(-(r_w - r_l)): each comparison's gradient term
    g = np.bincount(w, weights=flow, minlength=n) - np.bincount(l_, weights=flow, minlength=n)
    assert np.max(np.abs(g)) < 1e-13 * flow.max()
    assert abs(r[:m].sum()) < 1e-11 and np.all(r[m:] == 0.0)
