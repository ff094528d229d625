"""Bradley–Terry fits on a win-count matrix, and their limit when the data separate the actions.

Shared by DPO (paper Eq. 4, Prop. 4: its minimiser is the Bradley–Terry MLE divided by tau) and RLHF's
reward model (paper Eq. 2 with a ridge term). NOTES, 'The limit when DPO has no minimiser', is the recipe.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from psipo_cli.objectives.pairwise import ComparisonGraph, pairs_of, softmax_policy

TIE_TOL = 1e-7  # max-margin values closer than this are the same level (the QP is solved to ~1e-12)
PATH_TOL = 1e-9  # ridge-path policies closer than this have converged (NOTES step 4)


def logistic_objective(r: np.ndarray, W: np.ndarray, scale: float = 1.0, l2: float = 0.0) -> float:
    """`F(r) = sum W[w,l] softplus(-scale (r_w - r_l)) / sum W + (l2 / 2) ||r||^2`."""
    w, l_, c = pairs_of(W)
    return float(np.sum(c * np.logaddexp(0.0, -scale * (r[w] - r[l_]))) / c.sum() + 0.5 * l2 * r @ r)


def logistic_gradient(r: np.ndarray, W: np.ndarray, scale: float = 1.0, l2: float = 0.0) -> np.ndarray:
    """Gradient of `logistic_objective`: `-scale sigma(-scale h) (e_w - e_l)` per comparison, plus `l2 r`."""
    w, l_, c = pairs_of(W)
    g = -scale * c * expit(-scale * (r[w] - r[l_])) / c.sum()
    n = len(r)
    return np.bincount(w, weights=g, minlength=n) - np.bincount(l_, weights=g, minlength=n) + l2 * r


def fit_logistic(
    W: np.ndarray,
    scale: float = 1.0,
    l2: float = 0.0,
    x0: np.ndarray | None = None,
    gtol: float | None = None,
    max_iter: int = 500,
) -> np.ndarray:
    """Minimise `logistic_objective` by damped Newton steps.

    With `l2 = 0` the caller guarantees the minimiser exists (no separating comparison). Steps are
    minimum-norm solutions of the Newton system, so starting from zero the iterates keep the canonical
    gauge: zero sum on each connected component, zero on actions absent from `W`.
    """
    n = W.shape[0]
    w, l_, c = pairs_of(W)
    N = c.sum()
    r = np.zeros(n) if x0 is None else np.array(x0, dtype=float)
    if gtol is None:
        # The informative gradient terms are O(l2 |r|): the tolerance must sit well below them.
        gtol = 1e-12 if l2 == 0 else min(1e-12, 1e-6 * l2)
    f = logistic_objective(r, W, scale, l2)
    for _ in range(max_iter):
        g = logistic_gradient(r, W, scale, l2)
        if np.max(np.abs(g)) < gtol:
            break
        s = expit(-scale * (r[w] - r[l_]))
        curv = scale**2 * c * s * (1.0 - s) / N
        H = l2 * np.eye(n)
        np.add.at(H, (w, w), curv)
        np.add.at(H, (l_, l_), curv)
        np.add.at(H, (w, l_), -curv)
        np.add.at(H, (l_, w), -curv)
        step = np.linalg.lstsq(H, -g, rcond=None)[0]
        slope = g @ step
        g_norm = np.linalg.norm(g)
        t = 1.0
        while True:
            candidate = r + t * step
            f_new = logistic_objective(candidate, W, scale, l2)
            # Armijo on F, or a smaller gradient: at tiny l2 the decrease of F can fall below the
            # resolution of F itself while the gradient still shrinks quadratically.
            if f_new <= f + 1e-4 * t * slope or np.linalg.norm(
                logistic_gradient(candidate, W, scale, l2)
            ) < (1.0 - 1e-4 * t) * g_norm:
                break
            t *= 0.5
            if t < 1e-12:  # no progress left at machine precision: we are at the minimum
                return r
        r, f = candidate, f_new
    return r


def max_margin_direction(W: np.ndarray, graph: ComparisonGraph) -> np.ndarray:
    """Minimum-norm `u` with `u_w - u_l >= 1` on separating comparisons and `u` constant on each SCC.

    The direction in which the ridge path (`l2 -> 0+`) and plain gradient descent send the offsets
    (Rosset et al. 2004; Soudry et al. 2018). Absent actions get `u = 0`.
    """
    from scipy.optimize import minimize

    n = W.shape[0]
    comps = np.unique(graph.strong[graph.active])
    index = {k: i for i, k in enumerate(comps)}
    size = np.array([np.sum((graph.strong == k) & graph.active) for k in comps], dtype=float)
    edges = sorted({(index[graph.strong[a]], index[graph.strong[b]]) for a, b in zip(*np.nonzero(graph.separating))})
    A = np.zeros((len(edges), len(comps)))
    for row, (i, j) in enumerate(edges):
        A[row, i], A[row, j] = 1.0, -1.0
    result = minimize(
        lambda v: float(v @ (size * v)),
        np.zeros(len(comps)),
        jac=lambda v: 2 * size * v,
        constraints=[{"type": "ineq", "fun": lambda v: A @ v - 1.0, "jac": lambda v: A}],
        method="SLSQP",
        options={"ftol": 1e-15, "maxiter": 1000},
    )
    v = _polish_active_set(result.x, A, size)
    u = np.zeros(n)
    for k, i in index.items():
        u[(graph.strong == k) & graph.active] = v[i]
    return u


def _polish_active_set(v: np.ndarray, A: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Solve the QP exactly on the active set SLSQP found: `v = D^-1 A_s^T alpha`, `A_s v = 1`."""
    active = (A @ v - 1.0) < 1e-6
    if not active.any():
        return v
    As = A[active]
    M = As @ (As / size).T
    alpha = np.linalg.lstsq(M, np.ones(As.shape[0]), rcond=None)[0]
    exact = (As / size).T @ alpha
    feasible = np.all(A @ exact >= 1.0 - 1e-10) and np.all(alpha >= -1e-10)
    return exact if feasible else v


def separated_limit(
    W: np.ndarray, log_pi_ref: np.ndarray, tau: float, graph: ComparisonGraph
) -> tuple[np.ndarray, float, str]:
    """Limit policy, infimum of the loss, and a note, when the logistic loss on `W` has no minimiser.

    Every minimising sequence followed here (ridge path `l2 -> 0+`, gradient descent) sends the rewards to
    `log(1/l2) u + finite part` (NOTES step 3). The policy `pi ∝ pi_ref exp(r / tau)` therefore puts all its
    mass on `S = argmax u`, whatever `tau`; inside `S` the finite part is the MLE of the comparisons within
    each strongly connected component. Returns the policy, the infimum of the mean logistic loss (the
    separating comparisons contribute 0, the others their within-component MLE loss) and a note.
    """
    n = W.shape[0]
    internal = np.where(graph.separating, 0.0, W)
    r_internal = fit_logistic(internal) if internal.any() else np.zeros(n)
    _, _, c_all = pairs_of(W)
    w, l_, c = pairs_of(internal)
    infimum = float(np.sum(c * np.logaddexp(0.0, -(r_internal[w] - r_internal[l_]))) / c_all.sum())

    u = max_margin_direction(W, graph)
    # The mass goes to the fastest-growing offsets among the actions pi_ref supports. Absent actions stay
    # at u = 0; an action with pi_ref = 0 may lead u (population counts from a wider mu) but gets nothing.
    support = np.isfinite(log_pi_ref)
    top = support & (u >= u[support].max() - TIE_TOL)
    comps = np.unique(graph.strong[top])
    policy = np.zeros(n)
    if len(comps) == 1:
        policy[top] = softmax_policy(log_pi_ref[top], r_internal[top] / tau)
        note = ""
    else:
        policy[top], note = _ridge_path_split(W, log_pi_ref, tau, top, u)
    losers = [i for i in range(n) if graph.active[i] and not top[i]]
    return policy, infimum, note if note else f"{len(losers)} of the compared actions get probability 0"


def _ridge_path_split(
    W: np.ndarray, log_pi_ref: np.ndarray, tau: float, top: np.ndarray, u: np.ndarray
) -> tuple[np.ndarray, str]:
    """Mass split inside `top` when it holds several SCCs: the ridge solution at decreasing `l2` (NOTES 4).

    The split can drift very slowly along the path (terms in `log log(1/l2)` differ between components);
    when it has not settled to 1e-9 by `l2 = 1e-12` the note says so, with the last change.
    """
    r = fit_logistic(W, l2=1e-2)
    previous = softmax_policy(log_pi_ref[top], r[top] / tau)
    change = np.inf
    for k in range(3, 13):
        # Warm start one decade further along the path: r grows like log(1/l2) u.
        r = fit_logistic(W, l2=10.0**-k, x0=r + np.log(10.0) * u)
        current = softmax_policy(log_pi_ref[top], r[top] / tau)
        change = float(np.max(np.abs(current - previous)))
        previous = current
        if change < PATH_TOL:
            return current, f"tie between components resolved on the ridge path (l2 = 1e-{k})"
    return previous, (
        f"tie between components: split taken from the ridge path at l2 = 1e-12, still drifting "
        f"(last change {change:.1e})"
    )
