"""RLHF on a dataset (paper Eqs. 2-3): a Bradley–Terry reward model, then KL-regularised maximisation.

Stage 1: `r = argmin mean_{(w,l)} -log sigmoid(r_w - r_l) + (rm_l2 / 2) ||r||^2` (the mean, so `rm_l2` means
the same in the exact and the gradient solver, whatever the dataset size).
Stage 2: `pi ∝ pi_ref exp(r / tau)`, the maximiser of `E_pi r - tau KL(pi || pi_ref)` (paper Eq. 3).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from psipo_cli.objectives import dpo
from psipo_cli.objectives.bradley_terry import fit_logistic, logistic_objective, separated_limit
from psipo_cli.objectives.pairwise import comparison_graph, log_of, softmax_policy, unseen_actions
from psipo_cli.objectives.solution import OPTIMAL, Solution

# The reward model's per-comparison loss is DPO's with tau = 1.
reward_pair_loss = dpo.pair_loss
reward_pair_grad = dpo.pair_grad


def solve_taus(W: np.ndarray, pi_ref: np.ndarray, taus: Sequence[float], rm_l2: float = 0.0) -> list[Solution]:
    """Exact two-stage RLHF for each tau; the reward model is fitted once. With `rm_l2 = 0` it equals DPO
    (Prop. 4), divergence included.

    `loss` is the reward model's objective (its infimum when it has no minimiser); `reward` its fit. With a
    ridge the reward of an action in no comparison is 0 by the ridge term, not left undetermined.
    """
    log_pi_ref = log_of(pi_ref)
    unseen = unseen_actions(W, pi_ref) if rm_l2 == 0.0 else ()
    if rm_l2 == 0.0:
        graph = comparison_graph(W)
        if not graph.has_minimiser:
            limit = separated_limit(W, log_pi_ref, graph)
            return [limit.solution(log_pi_ref, tau, unseen) for tau in taus]
    reward = fit_logistic(W, l2=rm_l2)
    loss = logistic_objective(reward, W, l2=rm_l2)
    closed = dpo.forest_closed_form(W) if rm_l2 == 0.0 else ""
    return [
        Solution(
            policy=softmax_policy(log_pi_ref, reward / tau),
            status=OPTIMAL,
            loss=loss,
            offsets=reward / tau,
            reward=reward,
            unseen=unseen,
            closed_form=closed,
        )
        for tau in taus
    ]


def solve(W: np.ndarray, pi_ref: np.ndarray, tau: float, rm_l2: float = 0.0) -> Solution:
    """Exact two-stage RLHF for one tau (see `solve_taus`)."""
    return solve_taus(W, pi_ref, [tau], rm_l2)[0]
