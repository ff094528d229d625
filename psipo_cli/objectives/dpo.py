"""DPO on a dataset (paper Eq. 4): `L(delta) = mean_{(w,l)} -log sigmoid(tau (delta_w - delta_l))`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from psipo_cli.numerics import sigmoid
from psipo_cli.objectives.bradley_terry import fit_logistic, separated_limit
from psipo_cli.objectives.pairwise import (
    comparison_graph,
    forest_pairs,
    log_of,
    mean_pair_loss,
    softmax_policy,
    unseen_actions,
)
from psipo_cli.objectives.solution import OPTIMAL, Solution


def pair_loss(h: np.ndarray, tau: float) -> np.ndarray:
    """`-log sigmoid(tau h)`, computed as `logaddexp(0, -tau h)`."""
    return np.logaddexp(0.0, -tau * np.asarray(h))


def pair_grad(h: np.ndarray, tau: float) -> np.ndarray:
    """`d/dh -log sigmoid(tau h) = -tau sigmoid(-tau h)` (NOTES, per-pair gradients)."""
    return -tau * sigmoid(-tau * np.asarray(h))


def solve_taus(W: np.ndarray, pi_ref: np.ndarray, taus: Sequence[float]) -> list[Solution]:
    """Exact DPO for each tau: the minimiser `delta = r_hat / tau` (Prop. 4), or the limit when none exists.

    The minimiser exists iff every comparison lies inside a strongly connected component of the graph
    winner -> loser; then `r_hat` is the Bradley–Terry MLE, fitted once for all tau, and it is the implied
    reward `tau * delta`. Otherwise `status = "diverged"` and the policy is the limit of the ridge path,
    which puts probability 0 on every component that loses to another, for every `tau`.
    """
    log_pi_ref = log_of(pi_ref)
    graph = comparison_graph(W)
    unseen = unseen_actions(W, pi_ref)
    if not graph.has_minimiser:
        limit = separated_limit(W, log_pi_ref, graph)
        return [limit.solution(log_pi_ref, tau, unseen) for tau in taus]
    r_hat = fit_logistic(W)
    closed = forest_closed_form(W)
    return [
        Solution(
            policy=softmax_policy(log_pi_ref, r_hat / tau),
            status=OPTIMAL,
            loss=mean_pair_loss(r_hat / tau, W, pair_loss, tau),
            offsets=r_hat / tau,
            reward=r_hat,
            unseen=unseen,
            closed_form=closed,
        )
        for tau in taus
    ]


def forest_closed_form(W: np.ndarray) -> str:
    """The Bradley–Terry MLE's closed form when the compared pairs form a forest (and it exists).

    Each pair's term `W[x,y] softplus(-h) + W[y,x] softplus(h)` of the log-loss is then minimised on its
    own: `sigma(h) = W[x,y] / (W[x,y] + W[y,x])`, i.e. `h = log(W[x,y] / W[y,x])`.
    """
    if forest_pairs(W) is None:
        return ""
    return (
        "closed form (the compared pairs form a forest, so the objective splits into one term per pair): "
        "r_x - r_y = tau (delta_x - delta_y) = log(W[x,y] / W[y,x]) on each compared pair"
    )


def solve(W: np.ndarray, pi_ref: np.ndarray, tau: float) -> Solution:
    """Exact DPO for one tau (see `solve_taus`)."""
    return solve_taus(W, pi_ref, [tau])[0]
