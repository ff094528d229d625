"""DPO on a dataset (paper Eq. 4): `L(delta) = mean_{(w,l)} -log sigmoid(tau (delta_w - delta_l))`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from psipo_cli.numerics import sigmoid
from psipo_cli.objectives.bradley_terry import fit_logistic, separated_limit
from psipo_cli.objectives.pairwise import comparison_graph, log_of, mean_pair_loss, softmax_policy
from psipo_cli.objectives.solution import DIVERGED, OPTIMAL, Solution


def pair_loss(h: np.ndarray, tau: float) -> np.ndarray:
    """`-log sigmoid(tau h)`, computed as `logaddexp(0, -tau h)`."""
    return np.logaddexp(0.0, -tau * np.asarray(h))


def pair_grad(h: np.ndarray, tau: float) -> np.ndarray:
    """`d/dh -log sigmoid(tau h) = -tau sigmoid(-tau h)` (NOTES, per-pair gradients)."""
    return -tau * sigmoid(-tau * np.asarray(h))


def solve_taus(W: np.ndarray, pi_ref: np.ndarray, taus: Sequence[float]) -> list[Solution]:
    """Exact DPO for each tau: the minimiser `delta = r_hat / tau` (Prop. 4), or the limit when none exists.

    The minimiser exists iff every comparison lies inside a strongly connected component of the graph
    winner -> loser (DESIGN §2.2); then `r_hat` is the Bradley–Terry MLE, fitted once for all tau.
    Otherwise `status = "diverged"` and the policy is the limit of the ridge path, which puts probability 0
    on every component that loses to another, for every `tau`.
    """
    log_pi_ref = log_of(pi_ref)
    graph = comparison_graph(W)
    if graph.has_minimiser:
        r_hat = fit_logistic(W)
        return [
            Solution(
                policy=softmax_policy(log_pi_ref, r_hat / tau),
                status=OPTIMAL,
                loss=mean_pair_loss(r_hat / tau, W, pair_loss, tau),
                offsets=r_hat / tau,
            )
            for tau in taus
        ]
    limit = separated_limit(W, log_pi_ref, graph)
    return [
        Solution(policy=limit.policy(log_pi_ref, tau), status=DIVERGED, loss=limit.infimum, detail=limit.note)
        for tau in taus
    ]


def solve(W: np.ndarray, pi_ref: np.ndarray, tau: float) -> Solution:
    """Exact DPO for one tau (see `solve_taus`)."""
    return solve_taus(W, pi_ref, [tau])[0]
