"""When robust DPO (rDPO, Chowdhury et al. 2024, arXiv 2403.00409; TRL `robust`) is bounded below, and where
its gradient flow goes when it is not (`Exact.INFLOW`).

rDPO's loss per comparison is `[(1-eps) l(tau h) - eps l(-tau h)] / (1 - 2 eps)` with `l(x) = -log sigma(x)`,
i.e. `f(x) = -log sigma(x) - c x` with `c = eps / (1 - 2 eps)`: DPO on the de-noised counts
`W' = ((1-eps) W - eps W^T) / (1 - 2 eps)`, whose entries may be negative. The loss is convex, and its
recession function (the slope at infinity along a direction `v` of the implied reward) is
`R(v) = sum W[w,l] r(v_w - v_l) / sum W` with `r(y) = max(-c y, -(1 + c) y)`. On the indicator of a set `S`
of actions, `R(1_S) (1 - 2 eps) sum W = (1 - eps) L_S - eps W_S`, `L_S` the comparisons `S` loses to the rest,
`W_S` those it wins: `(1 - 2 eps)` times the net inflow of the de-noised counts into `S`. `R` is the Lovász
extension of that set function (a symmetric cut plus a modular term, so submodular), hence:

- the loss is bounded below, and attained, iff every non-empty proper subset of each connected component
  has positive inflow (`R > 0` off the gauge directions);
- otherwise it goes to -inf along `1_S` for an `S` of negative inflow, which `worst_subset` finds as a level
  set of the linear program `min R(v)` over `0 <= v <= 1` (scipy.optimize.linprog, HiGHS).

Gradient flow on an unbounded convex function leaves along `-g*`, `g*` the point of least norm in the closure
of the range of its gradient (Pazy 1971, "Asymptotic behavior of contractions in Hilbert space"). Here that
closure is the zonotope `{sum_e W_e s_e (e_w - e_l) / sum W : -(1 + c) <= s_e <= -c}` (the domain of the
conjugate), so `g*` is a bounded least-squares problem (`flow_velocity`, scipy.optimize.lsq_linear).
"""

from __future__ import annotations

import numpy as np

from psipo_cli.errors import InputError
from psipo_cli.methods.linalg import LaplacianSystem, pairs_of
from psipo_cli.methods.pairwise.solver import implied_reward
from psipo_cli.methods.spec import ImpliedReward, PairLoss
from psipo_cli.schema import OPTIMAL, UNBOUNDED


def inflow(W: np.ndarray, eps: float, S: np.ndarray) -> float:
    """Net inflow of the de-noised counts `((1-eps) W - eps W^T) / (1 - 2 eps)` into the set `S` (a mask):
    `((1 - eps) L_S - eps W_S) / (1 - 2 eps)`, `L_S = sum_{w not in S, l in S} W`, `W_S` the reverse."""
    L = float(W[np.ix_(~S, S)].sum())
    won = float(W[np.ix_(S, ~S)].sum())
    return ((1.0 - eps) * L - eps * won) / (1.0 - 2.0 * eps)


def worst_subset(W: np.ndarray, eps: float) -> tuple[np.ndarray, float]:
    """The proper subset of actions (inside one connected component of the comparison graph) with the least
    de-noised inflow, and that inflow.

    Minimises the Lovász extension `R(v)` (module docstring) over `0 <= v <= 1` by linear programming, with
    one variable `t_e >= max(-eps y_e, -(1-eps) y_e)`, `y_e = v_w - v_l`, per recorded comparison; the
    minimum of a submodular function is attained at a level set of any minimiser of its extension. A subset
    that is proper must separate some action `j` from the first action `k` of its component, so the programs
    are solved with `v_k = 1, v_j = 0` and with `v_k = 0, v_j = 1` for every other `j` of the component, and
    every level set of each solution is tried. (The whole component has inflow 0 and is no witness: it is
    the gauge.)
    """
    from scipy.optimize import linprog

    n = W.shape[0]
    w, l_, c = pairs_of(W)
    E = len(c)
    # Rows: -eps (v_w - v_l) - t <= 0 and -(1 - eps) (v_w - v_l) - t <= 0.
    A = np.zeros((2 * E, n + E))
    rows = np.arange(E)
    for k, slope in enumerate((eps, 1.0 - eps)):
        A[k * E + rows, w] -= slope
        A[k * E + rows, l_] += slope
        A[k * E + rows, n + rows] = -1.0
    cost = np.concatenate([np.zeros(n), c])
    labels = LaplacianSystem(w, l_, c, n).labels
    active = np.zeros(n, dtype=bool)
    active[w] = active[l_] = True
    best, best_flux = np.zeros(n, dtype=bool), np.inf
    for component in np.unique(labels[active]):
        members = np.flatnonzero(active & (labels == component))
        first = members[0]
        for j in members[1:]:
            for top, bottom in ((first, j), (j, first)):
                bounds = [(0.0, 1.0)] * n + [(None, None)] * E
                bounds[top], bounds[bottom] = (1.0, 1.0), (0.0, 0.0)
                res = linprog(cost, A_ub=A, b_ub=np.zeros(2 * E), bounds=bounds, method="highs")
                v = res.x[:n]
                for level in np.unique(v[members]):
                    S = (v >= level) & (labels == component) & active
                    if S.sum() == len(members):
                        continue
                    flux = inflow(W, eps, S)
                    if flux < best_flux:
                        best, best_flux = S, flux
    return best, best_flux


def flow_velocity(W: np.ndarray, eps: float) -> np.ndarray:
    """`-g*`: the asymptotic velocity of gradient flow in the implied reward `z` (module docstring), for the
    mean loss `sum W f(z_w - z_l) / sum W`; 0 where the loss is bounded below."""
    from scipy.optimize import lsq_linear

    n = W.shape[0]
    w, l_, c = pairs_of(W)
    cc = eps / (1.0 - 2.0 * eps)
    M = np.zeros((n, len(c)))
    M[w, np.arange(len(c))] = c / c.sum()
    M[l_, np.arange(len(c))] -= c / c.sum()
    s = lsq_linear(M, np.zeros(n), bounds=(-(1.0 + cc), -cc), method="bvls", tol=1e-14).x
    return -(M @ s)


def rdpo_minimisers(W: np.ndarray, loss: PairLoss, eps: float) -> ImpliedReward:
    """rDPO's exact answer in `z`: the minimiser (damped Newton) when every subset has positive de-noised
    inflow; otherwise `unbounded`, with the subset that shows it and gradient flow's velocity."""
    S, flux = worst_subset(W, eps)
    scale = 1e-12 * float(W.sum())
    if flux > scale:
        return ImpliedReward(implied_reward(W, loss), OPTIMAL)
    if flux >= -scale:
        # On the boundary (measure zero in eps) the loss is bounded below but its infimum is not attained, and
        # the limit of minimising sequences depends on lower-order terms this solver does not resolve.
        raise InputError(
            "--label-smoothing", eps, f"rdpo: the de-noised inflow into a subset of actions ({S.sum()} of them) is "
            "exactly 0 at this eps: the loss is bounded but has no minimiser and no limit psipo resolves; "
            "move eps off this boundary",
        )
    velocity = flow_velocity(W, eps)
    detail = (
        f"the loss is unbounded below (it goes to -inf): the de-noised counts ((1-eps) W - eps W^T) / (1 - 2 eps) "
        f"(eps = {eps:g}) have net inflow {flux:.6g} < 0 into {{{{{{0}}}}}} (they win more than (1-eps)/eps = "
        f"{(1 - eps) / eps:.6g} times as often as they lose to the rest), so raising their log(pi/pi_ref) "
        "together lowers the loss without bound; gradient flow grows the offsets linearly in time and its "
        "policy moves all the mass to the actions with the fastest growth"
    )
    return ImpliedReward(velocity, UNBOUNDED, detail, -np.inf, (tuple(np.flatnonzero(S).tolist()),))
