"""Losses minimal on a half-line (`Exact.SET`): the hinge `max(0, 1 - x)` (SLiC, arXiv 2305.10425; RSO,
arXiv 2309.06657; TRL `hinge`) and GPO's truncated quadratic `max(0, 1 - x)^2` (arXiv 2402.05749).

Their minimisers in the implied reward `z` form a polyhedron, unbounded whenever a comparison separates two
strongly connected components (its margin can grow for free once it is at least 1). The exact answer reports
the point that gradient flow from pi_ref (`z = 0`) reaches, computed exactly:

- hinge (`hinge_flow`): the sub-gradient flow `z' = -(least-norm sub-gradient)` of a polyhedral function is
  piecewise constant in velocity (Brézis 1973, "Opérateurs maximaux monotones", Thm 3.1: the flow follows
  the least-norm element); each velocity is a bounded least-squares problem over the multipliers of the
  comparisons at their kink (scipy.optimize.lsq_linear, BVLS), held until a margin reaches 1; the flow stops
  at a minimiser after finitely many pieces;
- truncated quadratic (`quadratic_flow`): on each piece (a fixed set of comparisons with margin below 1) the
  flow is linear, `z(t) = z_inf + exp(-2 H t) (z_0 - z_inf)`, solved through the eigenvectors of `H`; a
  piece ends when a margin crosses 1 (found by bracketing and Brent's method); the last piece's `z_inf` is the
  limit.

`describe_set` then solves linear programs (scipy.optimize.linprog) over the set of minimisers for the range
of every compared margin `z_w - z_l`: where every range is a point the optimum is unique (`optimal`),
otherwise the detail lists the free margins (`set`). Discrete gradient steps (Adam, a constant step) stop
somewhere else in the set: the report says so.
"""

from __future__ import annotations

import numpy as np

from psipo_cli.methods.linalg import pairs_of
from psipo_cli.methods.spec import ImpliedReward
from psipo_cli.schema import OPTIMAL, SET

MARGIN_TOL = 1e-10  # a margin within this of 1 is at the kink
RANGE_TOL = 1e-8  # a margin whose range over the minimisers is below this is fixed


def _incidence(W: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Recorded comparisons `(w, l)`, their weights `q = W / sum W`, and rows `A_e = e_w - e_l`."""
    w, l_, c = pairs_of(W)
    A = np.zeros((len(c), W.shape[0]))
    A[np.arange(len(c)), w] = 1.0
    A[np.arange(len(c)), l_] -= 1.0
    return w, l_, c / c.sum(), A


def hinge_flow(W: np.ndarray) -> np.ndarray:
    """The point the sub-gradient flow of `F(z) = sum W max(0, 1 - (z_w - z_l)) / sum W` from `z = 0` reaches.

    At `z` the sub-gradients are `-sum_{x_e < 1} q_e A_e - sum_{x_e = 1} lambda_e q_e A_e`, `lambda in [0, 1]`
    (`x = A z`); the flow moves along minus the least-norm one until a comparison's margin reaches 1.
    """
    from scipy.optimize import lsq_linear

    _, _, q, A = _incidence(W)
    z = np.zeros(W.shape[0])
    for _ in range(4 * len(q) + 10):  # each piece brings a margin to 1: finitely many pieces
        x = A @ z
        kink = np.abs(x - 1.0) <= MARGIN_TOL
        active = (x < 1.0) & ~kink
        g = -(A[active].T @ q[active])
        if kink.any():
            K = -(A[kink].T * q[kink])
            g = g + K @ lsq_linear(K, -g, bounds=(0.0, 1.0), method="bvls", tol=1e-15).x
        if np.max(np.abs(g), initial=0.0) <= 1e-14:
            break
        v = -g
        av = A @ v
        rising = active & (av > 1e-14)
        falling = (x > 1.0) & ~kink & (av < -1e-14)
        times = np.concatenate([(1.0 - x[rising]) / av[rising], (x[falling] - 1.0) / -av[falling]])
        if len(times) == 0:
            break  # cannot happen for a loss bounded below: a zero least-norm sub-gradient stops first
        z = z + float(times.min()) * v
    return z


def quadratic_flow(W: np.ndarray) -> np.ndarray:
    """The limit of gradient flow of `F(z) = sum W max(0, 1 - (z_w - z_l))^2 / sum W` from `z = 0`.

    On a piece with active comparisons `a` (margin below 1), `grad F = 2 (H z - b)`, `H = A_a^T Q A_a`,
    `b = A_a^T q_a`: in the eigenbasis of `H` each coordinate relaxes exponentially to `b / lambda` (null
    directions stay put), so the piece is exact; it ends when a margin crosses 1.
    """
    from scipy.optimize import brentq

    _, _, q, A = _incidence(W)
    z = np.zeros(W.shape[0])
    active = np.ones(len(q), dtype=bool)
    fresh = np.zeros(len(q), dtype=bool)  # just switched: its crossing at t = 0 is the one already taken
    for _ in range(4 * len(q) + 10):
        H = A[active].T @ (q[active, None] * A[active])
        lam, V = np.linalg.eigh(H)
        positive = lam > 1e-12 * max(float(lam.max(initial=0.0)), 1e-300)
        y0 = V.T @ z
        y_inf = np.where(positive, (V.T @ (A[active].T @ q[active])) / np.where(positive, lam, 1.0), y0)
        rate = np.where(positive, 2.0 * lam, 0.0)

        def margins(t: float, V: np.ndarray = V, y0: np.ndarray = y0, y_inf: np.ndarray = y_inf,
                    rate: np.ndarray = rate) -> np.ndarray:
            return A @ (V @ (y_inf + (y0 - y_inf) * np.exp(-rate * t)))

        x_inf = A @ (V @ y_inf)
        will_cross = np.where(active, x_inf > 1.0 + MARGIN_TOL, x_inf < 1.0 - MARGIN_TOL)
        if not will_cross.any():
            return V @ y_inf
        slowest = float(rate[positive].min()) if positive.any() else 1.0
        grid = np.concatenate([[0.0], np.geomspace(1e-9 / slowest, 50.0 / slowest, 600)])
        side = np.array([margins(t) - 1.0 for t in grid])  # (times, comparisons)
        first, which = np.inf, -1
        for e in np.flatnonzero(will_cross):
            start = 1 if fresh[e] else 0
            signs = np.sign(side[start:, e]) if active[e] else -np.sign(side[start:, e])
            crossed = np.flatnonzero(signs >= 0)  # first grid time at or past the kink
            if len(crossed) == 0:
                continue
            k = start + int(crossed[0])
            t = grid[k] if k == 0 else brentq(lambda s, e=e: margins(s)[e] - 1.0, grid[k - 1], grid[k], xtol=1e-15)
            if t < first:
                first, which = t, e
        if which < 0:
            return V @ y_inf
        z = V @ (y_inf + (y0 - y_inf) * np.exp(-rate * first))
        active[which] = ~active[which]
        fresh[:] = False
        fresh[which] = True
    return z


def _pairs(W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The compared pairs `(i, j)`, `i < j`."""
    S = W + W.T
    i, j = np.nonzero(np.triu(S, 1))
    return i, j


def margin_ranges(
    W: np.ndarray, A_ub: np.ndarray, b_ub: np.ndarray, A_eq: np.ndarray | None, b_eq: np.ndarray | None,
    extra: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`[min, max]` of `z_i - z_j` on each compared pair over a polyhedron in `(z, extra variables)`."""
    from scipy.optimize import linprog

    n = W.shape[0]
    i, j = _pairs(W)
    lo, hi = np.empty(len(i)), np.empty(len(i))
    bounds = [(None, None)] * (n + extra)
    for k in range(len(i)):
        c = np.zeros(n + extra)
        c[i[k]], c[j[k]] = 1.0, -1.0
        for sign, out in ((1.0, lo), (-1.0, hi)):
            res = linprog(sign * c, A_ub=A_ub, b_ub=b_ub, A_eq=A_eq, b_eq=b_eq, bounds=bounds, method="highs")
            out[k] = sign * res.fun if res.status == 0 else (-np.inf if sign > 0 else np.inf)
    return i, j, lo, hi


def hinge_set(W: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The minimisers of the mean hinge loss as margin ranges: the minimum `F*` by linear programming
    (`min q . t` over `t >= 0`, `t >= 1 - A z`), then the ranges over `{(z, t) : those, q . t <= F*}`."""
    from scipy.optimize import linprog

    n = W.shape[0]
    _, _, q, A = _incidence(W)
    E = len(q)
    A_ub = np.block([[-A, -np.eye(E)], [np.zeros((E, n)), -np.eye(E)]])
    b_ub = np.concatenate([-np.ones(E), np.zeros(E)])
    res = linprog(np.concatenate([np.zeros(n), q]), A_ub=A_ub, b_ub=b_ub, bounds=[(None, None)] * (n + E),
                  method="highs")
    best = float(res.fun)
    optimal = np.vstack([A_ub, np.concatenate([np.zeros(n), q])])
    return margin_ranges(W, optimal, np.append(b_ub, best + 1e-12 * (1.0 + best)), None, None, E)


def quadratic_set(W: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The minimisers of the mean truncated-quadratic loss, given one minimiser `z`, as margin ranges.

    Over the minimisers each comparison's piece keeps its slope (the loss is a sum of convex functions of the
    margins): a margin where its piece is strictly convex (a pair compared both ways, or a margin below 1)
    is fixed; a margin at or above 1 of a pair compared one way only can take any value `>= 1`.
    """
    i, j = _pairs(W)
    both = (W[i, j] > 0) & (W[j, i] > 0)
    n = W.shape[0]
    x = z[i] - z[j]
    rows = np.zeros((len(i), n))
    rows[np.arange(len(i)), i] = 1.0
    rows[np.arange(len(i)), j] -= 1.0
    # Orient each one-way pair winner first: free where its margin is at least 1.
    sign = np.where(W[i, j] > 0, 1.0, -1.0)
    free = ~both & (sign * x >= 1.0 - MARGIN_TOL)
    A_eq, b_eq = rows[~free], x[~free]
    A_ub, b_ub = -(sign[free, None] * rows[free]), -np.ones(int(free.sum()))
    return margin_ranges(W, A_ub if free.any() else None, b_ub if free.any() else None, A_eq, b_eq, 0)


def describe_set(
    z: np.ndarray, ranges: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], flow: str
) -> ImpliedReward:
    """`optimal` when every compared margin is fixed over the minimisers, else `set` with the free margins
    named (through `ImpliedReward.named`) and the point reported."""
    i, j, lo, hi = ranges
    size = np.where(np.isfinite(lo), np.abs(lo), 0.0) + np.where(np.isfinite(hi), np.abs(hi), 0.0)
    free = (hi - lo) > RANGE_TOL * (1.0 + size)  # an infinite end is free whichever way the pair is listed
    if not free.any():
        return ImpliedReward(z, OPTIMAL)
    named: list[tuple[int, ...]] = []
    parts = []
    for k in np.flatnonzero(free):
        a, b, low, high = i[k], j[k], lo[k], hi[k]
        if not np.isfinite(low) and np.isfinite(high):  # bounded above only: write the reverse margin
            a, b, low, high = b, a, -high, -low
        low, high = (float(np.where(abs(v) < RANGE_TOL, 0.0, v)) for v in (low, high))  # LP rounding
        interval = f"[{low:.6g}, inf)" if not np.isfinite(high) else f"[{low:.6g}, {high:.6g}]"
        slot = len(named)
        named += [(int(a),), (int(b),)]
        parts.append(f"r_{{{slot}}} - r_{{{slot + 1}}} in {interval} (reported {z[a] - z[b]:.6g})")
    unbounded = any(not np.isfinite(v) for v in (*lo[free], *hi[free]))
    detail = (
        "the minimisers form a set (a polyhedron" + (", unbounded" if unbounded else "") + "): over it the "
        "implied-reward margins r = tau log(pi/pi_ref) " + "; ".join(parts) + " are free, every other "
        f"compared margin is fixed; reported: the point {flow} from pi_ref reaches (discrete gradient steps "
        "can stop elsewhere in the set)"
    )
    return ImpliedReward(z, SET, detail, named=tuple(named))


def hinge_minimisers(W: np.ndarray) -> ImpliedReward:
    """The hinge loss's exact answer: sub-gradient flow's end point, and the set it lies in."""
    return describe_set(hinge_flow(W), hinge_set(W), "sub-gradient flow")


def quadratic_minimisers(W: np.ndarray) -> ImpliedReward:
    """The truncated quadratic's exact answer: gradient flow's limit, and the set it lies in."""
    z = quadratic_flow(W)
    return describe_set(z, quadratic_set(W, z), "gradient flow")
