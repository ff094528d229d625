"""IPO on a dataset (paper Eq. 17): `L(delta) = mean_{(w,l)} (delta_w - delta_l - 1/(2 tau))^2`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from psipo_cli.objectives.pairwise import (
    comparison_graph,
    laplacian,
    log_of,
    mean_pair_loss,
    softmax_policy,
)
from psipo_cli.objectives.solution import OPTIMAL, Solution

SPARSE_FROM = 300  # actions; below this a dense least-squares solve is faster


def pair_loss(h: np.ndarray, tau: float) -> np.ndarray:
    """`(h - 1/(2 tau))^2`; `inf` when that overflows (tau below ~1e-154): the metrics then leave the loss
    empty and say why."""
    with np.errstate(over="ignore"):
        return (np.asarray(h) - 0.5 / tau) ** 2


def pair_grad(h: np.ndarray, tau: float) -> np.ndarray:
    """`2 (h - 1/(2 tau))` (NOTES, per-pair gradients)."""
    return 2.0 * (np.asarray(h) - 0.5 / tau)


def offsets(W: np.ndarray, tau: float) -> np.ndarray:
    """Canonical minimiser `delta = Lap^+ b / (2 tau)` (DESIGN §2.3).

    Setting the gradient `2 (Lap delta - b / (2 tau))` to zero gives `Lap delta = b / (2 tau)`; the
    minimum-norm solution is orthogonal to the component indicators, i.e. the canonical gauge.
    """
    lap, b = laplacian(W)
    if W.shape[0] < SPARSE_FROM:
        return np.linalg.lstsq(lap, b, rcond=None)[0] / (2.0 * tau)
    return _sparse_offsets(W, lap, b) / (2.0 * tau)


def _sparse_offsets(W: np.ndarray, lap: np.ndarray, b: np.ndarray) -> np.ndarray:
    """`Lap^+ b` for large graphs: on each component, ground one node, solve sparsely, re-centre."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.linalg import spsolve

    graph = comparison_graph(W)
    x = np.zeros(W.shape[0])
    for k in np.unique(graph.weak[graph.active]):
        members = np.flatnonzero((graph.weak == k) & graph.active)
        if len(members) < 2:
            continue
        sub = csr_matrix(lap[np.ix_(members[1:], members[1:])])
        y = np.zeros(len(members))
        y[1:] = spsolve(sub, b[members[1:]])
        x[members] = y - y.mean()
    return x


def solve_taus(W: np.ndarray, pi_ref: np.ndarray, taus: Sequence[float]) -> list[Solution]:
    """Exact IPO for each tau: always attained (`status = "optimal"`). `Lap^+ b` is solved once."""
    unit = offsets(W, 0.5)  # Lap^+ b: the offsets at tau = 1/2; delta scales like 1 / (2 tau)
    log_pi_ref = log_of(pi_ref)
    return [
        Solution(
            policy=softmax_policy(log_pi_ref, unit / (2.0 * tau)),
            status=OPTIMAL,
            loss=mean_pair_loss(unit / (2.0 * tau), W, pair_loss, tau),
            offsets=unit / (2.0 * tau),
        )
        for tau in taus
    ]


def solve(W: np.ndarray, pi_ref: np.ndarray, tau: float) -> Solution:
    """Exact IPO for one tau (see `solve_taus`)."""
    return solve_taus(W, pi_ref, [tau])[0]
