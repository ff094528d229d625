"""Unregularised answers of the preference game: the maximal lottery and the Condorcet winner.

A maximal lottery (Fishburn, Probabilistic social choice based on simple voting comparisons, Rev. Econ. Stud.
51, 1984; Kreweras 1965) is an optimal mixed strategy of the symmetric zero-sum game with payoff matrix
`A = P - 1/2`: a policy `p` with `P(y ≻ p) <= 1/2` for every action `y`, i.e. `A p <= 0`. The game's value is 0,
so one always exists; it is unique when `P` is a tournament on an odd number of actions (Laffond, Laslier and
Le Breton, Games Econ. Behav. 5, 1993) and, more generally, for almost every `P`. It is the `tau -> 0` limit of
the regularised equilibrium `pi*_tau` (Munos et al., arXiv 2312.00886).
"""

from __future__ import annotations

import numpy as np

#: Two maximal lotteries closer than this in every coordinate are the same one (LP round-off).
UNIQUE_TOLERANCE = 1e-9


def maximal_lottery(P: np.ndarray, pi_ref: np.ndarray | None = None) -> np.ndarray:
    """A maximal lottery of `P`: `p` in the simplex with `P p <= 1/2` componentwise.

    Parameters
    ----------
    P : array (n, n)
        Preferences, `P + P^T = 1`.
    pi_ref : array (n,), optional
        Picks one lottery when they form a set (uniform when omitted; must be positive).

    Returns
    -------
    array (n,)
        The unique maximal lottery when there is one (found by `scipy.optimize.linprog`, minimising `v` subject
        to `(P - 1/2) p <= v`). When the maximal lotteries form a set (every coordinate's range over the set is
        found by `2 n` further linear programs), the one closest to `pi_ref` in KL, `argmin KL(p || pi_ref)`
        over the set (a strictly convex program, solved by SLSQP to about 1e-10): the choice the regularised
        equilibrium makes as `tau -> 0` (Tikhonov regularisation of a monotone game selects the regulariser's
        minimiser over its solution set).
    """
    from scipy.optimize import linprog

    P = np.asarray(P, dtype=float)
    n = P.shape[0]
    A = P - 0.5
    # Variables (p, v): minimise v subject to A p - v <= 0, sum p = 1, p >= 0.
    c = np.r_[np.zeros(n), 1.0]
    A_ub = np.c_[A, -np.ones(n)]
    A_eq = np.r_[np.ones(n), 0.0][None, :]
    bounds = [(0.0, None)] * n + [(None, None)]
    first = linprog(c, A_ub=A_ub, b_ub=np.zeros(n), A_eq=A_eq, b_eq=[1.0], bounds=bounds, method="highs")
    p = _clean(first.x[:n])
    lo, hi, centre = _extent(A)
    if np.all(hi - lo <= UNIQUE_TOLERANCE):
        return p
    return _closest(A, np.full(n, 1.0 / n) if pi_ref is None else np.asarray(pi_ref, dtype=float), centre)


def is_unique_lottery(P: np.ndarray) -> bool:
    """Whether `P` has exactly one maximal lottery (every coordinate's range over the set below 1e-9)."""
    lo, hi, _ = _extent(np.asarray(P, dtype=float) - 0.5)
    return bool(np.all(hi - lo <= UNIQUE_TOLERANCE))


def _extent(A: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The smallest and largest value of each coordinate over the maximal lotteries `{p in simplex: A p <= 0}`
    (the game's value is 0), by `2 n` linear programs, and the mean of their solutions (a point of the set)."""
    from scipy.optimize import linprog

    n = A.shape[0]
    lo, hi, centre = np.empty(n), np.empty(n), np.zeros(n)
    for y in range(n):
        for sign, out in ((1.0, lo), (-1.0, hi)):
            cost = np.zeros(n)
            cost[y] = sign
            res = linprog(cost, A_ub=A, b_ub=np.zeros(n), A_eq=np.ones((1, n)), b_eq=[1.0],
                          bounds=[(0.0, None)] * n, method="highs")
            out[y] = res.x[y]
            centre += _clean(res.x) / (2 * n)
    return lo, hi, centre


def condorcet_winner(P: np.ndarray) -> int | None:
    """The action that beats every other one, `P[y, y'] > 1/2` for all `y' != y`, or None. When it exists it is
    the unique maximal lottery (as a point mass)."""
    P = np.asarray(P, dtype=float)
    beats = P > 0.5
    np.fill_diagonal(beats, True)
    winners = np.flatnonzero(beats.all(axis=1))
    return int(winners[0]) if len(winners) else None


def _closest(A: np.ndarray, pi_ref: np.ndarray, start: np.ndarray) -> np.ndarray:
    """`argmin KL(p || pi_ref)` over `{p in simplex: A p <= 0}` by SLSQP from an interior point of the set."""
    from scipy.optimize import minimize

    log_ref = np.log(pi_ref)

    def kl(p: np.ndarray) -> float:
        q = np.maximum(p, 1e-300)
        return float(np.sum(q * (np.log(q) - log_ref)))

    def grad(p: np.ndarray) -> np.ndarray:
        return np.log(np.maximum(p, 1e-300)) - log_ref + 1.0

    res = minimize(kl, start, jac=grad, method="SLSQP", bounds=[(0.0, 1.0)] * len(start),
                   constraints=[{"type": "ineq", "fun": lambda p: -A @ p, "jac": lambda p: -A},
                                {"type": "eq", "fun": lambda p: np.sum(p) - 1.0, "jac": lambda p: np.ones_like(p)}],
                   options={"ftol": 1e-15, "maxiter": 1000})
    return _clean(res.x)


def _clean(p: np.ndarray) -> np.ndarray:
    """LP round-off removed: negative zeros clipped, renormalised."""
    p = np.clip(p, 0.0, None)
    return p / p.sum()


__all__ = ["condorcet_winner", "is_unique_lottery", "maximal_lottery"]
