"""IPO (paper Eq. 17): `L(delta) = mean_{(w,l)} (delta_w - delta_l - 1/(2 tau))^2`.

Always attained (`Exact.ATTAINED`); the implied reward `z* = tau delta = Lap^+ b / 2` has a closed form (a
Laplacian solve, `implied_reward`) that overrides the generic solver.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from psipo_cli.methods.linalg import LaplacianSystem, Pairs, as_pairs, forest_pairs
from psipo_cli.methods.pairwise.family import PAIRWISE
from psipo_cli.methods.spec import Exact, Method, PairLoss


def pair_loss(h: np.ndarray, tau: Any) -> np.ndarray:
    """`(h - 1/(2 tau))^2`; `inf` when that overflows (tau below ~1e-154): the metrics then leave the loss
    empty and say why."""
    with np.errstate(over="ignore"):
        return (np.asarray(h) - 0.5 / tau) ** 2


def pair_grad(h: np.ndarray, tau: Any) -> np.ndarray:
    """`2 (h - 1/(2 tau))`."""
    return 2.0 * (np.asarray(h) - 0.5 / tau)


def margin(z: np.ndarray) -> np.ndarray:
    """`f(z) = (z - 1/2)^2`: `pair_loss(h, tau) = f(tau h) / tau^2`."""
    return (z - 0.5) ** 2


def margin_grad(z: np.ndarray) -> np.ndarray:
    """`f'(z) = 2 (z - 1/2)`."""
    return 2.0 * (z - 0.5)


def margin_curv(z: np.ndarray) -> np.ndarray:
    """`f''(z) = 2`."""
    return np.full(np.shape(z), 2.0)


def implied_reward(W: np.ndarray | Pairs, sparse: bool | None = None) -> np.ndarray:
    """`z* = Lap^+ b / 2`, the implied reward `tau delta` (the same for every tau; see `offsets`).

    On `Pairs` of several segments (a dataset's contexts) `Lap` is block-diagonal: one solve for all, each
    segment's block its own context's normal equations."""
    pairs = as_pairs(W)
    w, l_, c, n = pairs.winner, pairs.loser, pairs.count, pairs.n
    system = LaplacianSystem(w, l_, c, n, sparse=sparse)
    x = system.solve(np.bincount(w, weights=c, minlength=n) - np.bincount(l_, weights=c, minlength=n))
    x = x + system.solve(_residual(pairs, x))
    return system.centre(x) / 2.0


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
    return implied_reward(W, sparse) / tau


def _residual(pairs: Pairs, x: np.ndarray) -> np.ndarray:
    """`b - Lap x`, accurate to rounding of the flows even when `Lap x` and `b` are huge and nearly equal.

    Per compared pair `i < j` with `C = W[i,j] + W[j,i]` and `T = W[i,j] - W[j,i]`, the flow is
    `T - C (x_i - x_j)`. `x_i - x_j` (Knuth's two-sum) and `C` times its leading part (Dekker's two-product)
    are formed exactly, so the cancellation between `T` and `C (x_i - x_j)` loses nothing; the node residual
    is the signed sum of its flows.
    """
    n, w, l_, c = pairs.n, pairs.winner, pairs.loser, pairs.count
    lo, hi = np.minimum(w, l_), np.maximum(w, l_)
    keys, where = np.unique(lo * n + hi, return_inverse=True)
    i, j = keys // n, keys % n
    C = np.bincount(where, weights=c, minlength=len(keys))
    T = np.bincount(where, weights=np.where(w == lo, c, -c), minlength=len(keys))
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
        each = f"{c:.6g} comparison{'' if c == 1 else 's'} per pair"
        return lambda tau: (
            f"closed form (a complete order on the {k} compared actions, {each}): "
            f"delta_y = (k - 1 - 2 rank_y) / (2 k tau), so neighbours differ by 1/(k tau) = {1.0 / (k * tau):.6g} "
            "in log(pi / pi_ref)"
        )
    if forest_pairs(W) is not None:
        return lambda tau: (
            "closed form (the compared pairs form a forest, so the objective splits into one term per pair): "
            "delta_x - delta_y = (W[x,y] - W[y,x]) / (2 tau (W[x,y] + W[y,x])) on each compared pair"
        )
    return lambda tau: ""


LOSS = PairLoss(
    pair_loss, pair_grad, margin, margin_grad, margin_curv, Exact.ATTAINED, implied_reward=implied_reward,
    closed_form=closed_form,
)

IPO = Method(
    "ipo", "Identity preference optimisation (paper Eq. 17)", PAIRWISE, trl="ipo",
    twin="`psipo --psi identity` (paper Theorem 2)", loss=LOSS,
)
