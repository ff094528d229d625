"""IPO on a dataset (paper Eq. 17): `L(delta) = mean_{(w,l)} (delta_w - delta_l - 1/(2 tau))^2`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from psipo_cli.objectives.pairwise import (
    LaplacianSystem,
    forest_pairs,
    laplacian_rhs,
    log_of,
    mean_pair_loss,
    pairs_of,
    softmax_policy,
    unseen_actions,
)
from psipo_cli.objectives.solution import OPTIMAL, Solution


def pair_loss(h: np.ndarray, tau: float) -> np.ndarray:
    """`(h - 1/(2 tau))^2`; `inf` when that overflows (tau below ~1e-154): the metrics then leave the loss
    empty and say why."""
    with np.errstate(over="ignore"):
        return (np.asarray(h) - 0.5 / tau) ** 2


def pair_grad(h: np.ndarray, tau: float) -> np.ndarray:
    """`2 (h - 1/(2 tau))` (NOTES, per-pair gradients)."""
    return 2.0 * (np.asarray(h) - 0.5 / tau)


def offsets(W: np.ndarray, tau: float, sparse: bool | None = None) -> np.ndarray:
    """Canonical minimiser `delta = Lap^+ b / (2 tau)` (paper Eq. 17).

    Setting the gradient `2 (Lap delta - b / (2 tau))` to zero gives `Lap delta = b / (2 tau)`, with
    `Lap = sum W (e_w - e_l)(e_w - e_l)^T` and `b = sum W (e_w - e_l)`. It is solved grounded, one node per
    connected component (`LaplacianSystem`), refined once, and put in the canonical gauge: zero sum on each
    component, zero on absent actions — the minimum-norm solution `Lap^+ b`.

    The refinement is one Newton step on the loss from the first solve, whose gradient (the residual
    `b - Lap x`) is computed pair by pair in compensated arithmetic (`_residual`). Counts spanning many
    decades make `Lap` ill-conditioned (condition ~ largest / smallest count), and `1 / (2 tau)` then
    amplifies what the solve leaves in the offsets: this keeps them at the rounding of their own size.
    """
    w, l_, c = pairs_of(W)
    system = LaplacianSystem(w, l_, c, W.shape[0], sparse=sparse)
    x = system.solve(laplacian_rhs(W))
    x = x + system.solve(_residual(W, x))
    return system.centre(x) / (2.0 * tau)


def _residual(W: np.ndarray, x: np.ndarray) -> np.ndarray:
    """`b - Lap x`, accurate to rounding of the flows even when `Lap x` and `b` are huge and nearly equal.

    Per compared pair `i < j` with `C = W[i,j] + W[j,i]` and `T = W[i,j] - W[j,i]`, the flow is
    `T - C (x_i - x_j)`. `x_i - x_j` (Knuth's two-sum) and `C` times its leading part (Dekker's two-product)
    are formed exactly, so the cancellation between `T` and `C (x_i - x_j)` loses nothing; the node residual
    is the signed sum of its flows.
    """
    n = W.shape[0]
    S = W + W.T
    i, j = np.nonzero(np.triu(S, 1))
    C, T = S[i, j], W[i, j] - W[j, i]
    d, d_err = _two_sum(x[i], -x[j])
    p, p_err = _two_product(C, d)
    flow = (T - p) - (p_err + C * d_err)
    return np.bincount(i, weights=flow, minlength=n) - np.bincount(j, weights=flow, minlength=n)


def _two_sum(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`(s, e)` with `s = fl(a + b)` and `s + e = a + b` exactly (Knuth)."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def _two_product(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`(p, e)` with `p = fl(a b)` and `p + e = a b` exactly (Dekker's splitting, no FMA needed)."""
    p = a * b
    a_hi, a_lo = _split(a)
    b_hi, b_lo = _split(b)
    return p, ((a_hi * b_hi - p) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo


def _split(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Veltkamp's split of a double into two 26-bit halves, `a = hi + lo`."""
    t = 134217729.0 * a  # 2^27 + 1
    hi = t - (t - a)
    return hi, a - hi


def solve_taus(W: np.ndarray, pi_ref: np.ndarray, taus: Sequence[float]) -> list[Solution]:
    """Exact IPO for each tau: always attained (`status = "optimal"`). `Lap^+ b` is solved once.

    The implied reward `tau * delta = Lap^+ b / 2` does not depend on tau.
    """
    unit = offsets(W, 0.5)  # Lap^+ b: the offsets at tau = 1/2; delta scales like 1 / (2 tau)
    log_pi_ref = log_of(pi_ref)
    unseen = unseen_actions(W, pi_ref)
    closed = closed_form(W)
    return [
        Solution(
            policy=softmax_policy(log_pi_ref, unit / (2.0 * tau)),
            status=OPTIMAL,
            loss=mean_pair_loss(unit / (2.0 * tau), W, pair_loss, tau),
            offsets=unit / (2.0 * tau),
            reward=unit / 2.0,
            unseen=unseen,
            closed_form=closed(tau),
        )
        for tau in taus
    ]


def closed_form(W: np.ndarray) -> Callable[[float], str]:
    """IPO's closed form on this `W` as a sentence for each tau, when a precondition holds (checked here).

    - A complete total order on the `k` compared actions, `c` comparisons on every pair (winner above):
      `Lap = c (k I - 1 1^T)` and `b_y = c (k - 1 - 2 rank_y)` (rank 0 on top), so on sum-zero vectors
      `delta = b / (2 tau c k)`: `delta_y = (k - 1 - 2 rank_y) / (2 k tau)`, neighbours `1 / (k tau)` apart.
    - The compared pairs form a forest: each pair's residuals are zeroed on their own,
      `W[x,y] (h - 1/(2 tau)) + W[y,x] (h + 1/(2 tau)) = 0`, so `h = (W[x,y] - W[y,x]) / (2 tau (W[x,y] + W[y,x]))`.

    Otherwise the sentence is empty.
    """
    active = np.flatnonzero((W.sum(axis=0) + W.sum(axis=1)) > 0)
    k = len(active)
    by_wins = active[np.argsort(-(W[active] > 0).sum(axis=1), kind="stable")]
    ordered = W[np.ix_(by_wins, by_wins)]
    above = np.triu(np.ones((k, k), dtype=bool), 1)
    c = ordered.max(initial=0.0)
    if k >= 2 and np.array_equal(ordered > 0, above) and np.allclose(ordered[above], c, rtol=1e-12, atol=0.0):
        return lambda tau: (
            f"closed form (a complete order on the {k} compared actions, {c:.6g} comparisons per pair): "
            f"delta_y = (k - 1 - 2 rank_y) / (2 k tau), so neighbours differ by 1/(k tau) = {1.0 / (k * tau):.6g} "
            "in log(pi / pi_ref)"
        )
    if forest_pairs(W) is not None:
        return lambda tau: (
            "closed form (the compared pairs form a forest, so the objective splits into one term per pair): "
            "delta_x - delta_y = (W[x,y] - W[y,x]) / (2 tau (W[x,y] + W[y,x])) on each compared pair"
        )
    return lambda tau: ""


def solve(W: np.ndarray, pi_ref: np.ndarray, tau: float) -> Solution:
    """Exact IPO for one tau (see `solve_taus`)."""
    return solve_taus(W, pi_ref, [tau])[0]
