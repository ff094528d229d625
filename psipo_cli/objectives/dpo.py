"""DPO on a dataset (paper Eq. 4): `L(delta) = mean_{(w,l)} -log sigmoid(tau (delta_w - delta_l))`."""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from psipo_cli.objectives.bradley_terry import fit_logistic, separated_limit
from psipo_cli.objectives.pairwise import comparison_graph, log_of, mean_pair_loss, softmax_policy
from psipo_cli.objectives.solution import DIVERGED, OPTIMAL, Solution


def pair_loss(h: np.ndarray, tau: float) -> np.ndarray:
    """`-log sigmoid(tau h)`, computed as `logaddexp(0, -tau h)`."""
    return np.logaddexp(0.0, -tau * np.asarray(h))


def pair_grad(h: np.ndarray, tau: float) -> np.ndarray:
    """`d/dh -log sigmoid(tau h) = -tau sigmoid(-tau h)` (NOTES, per-pair gradients)."""
    return -tau * expit(-tau * np.asarray(h))


def solve(W: np.ndarray, pi_ref: np.ndarray, tau: float) -> Solution:
    """Exact DPO: the minimiser `delta = r_hat / tau` (Prop. 4), or the limit when none exists.

    The minimiser exists iff every comparison lies inside a strongly connected component of the graph
    winner -> loser (DESIGN §2.2). Otherwise `status = "diverged"` and the policy is the limit of the
    ridge path, which puts probability 0 on every component that loses to another, for every `tau`.
    """
    log_pi_ref = log_of(pi_ref)
    graph = comparison_graph(W)
    if graph.has_minimiser:
        # Minimise the DPO loss directly in delta (scale tau), rather than dividing the BT MLE by tau:
        # the RLHF solver takes the other route, and the tests compare the two (Prop. 4).
        delta = fit_logistic(W, scale=tau)
        return Solution(
            policy=softmax_policy(log_pi_ref, delta),
            status=OPTIMAL,
            loss=mean_pair_loss(delta, W, pair_loss, tau),
            offsets=delta,
        )
    policy, infimum, note = separated_limit(W, log_pi_ref, tau, graph)
    return Solution(policy=policy, status=DIVERGED, loss=infimum, detail=note)
