"""Which ranking each objective induces on a non-transitive preference model — the social-choice reading of
RLHF, IPO and Nash learning (Azar et al., arXiv 2310.12036 §4; Munos et al., arXiv 2312.00886 §3; Fishburn
1984 for maximal lotteries):

- RLHF / DPO rank by the Bradley–Terry reward fitted to the comparisons `W = mu(w) mu(l) P[w, l]` (the
  reward RLHF's reward model converges to on the population, and DPO's implied reward);
- IPO ranks by `P(y ≻ mu)`, the Borda-like score its optimum tempers (paper Eq. 6 with `Psi = identity`);
- Nash learning, as `tau -> 0`, plays the maximal lottery (`psipo_cli.methods.nash.lottery`).

A model is called **non-transitive** here when its majority relation (`y` over `y'` when `P[y, y'] > 1/2`) has
a cycle: then no ranking agrees with every majority, so no Bradley–Terry model — whose majorities follow the
order of its rewards — reproduces even the signs of `P - 1/2`. Models whose majorities are transitive but whose
probabilities are not Bradley–Terry (a weaker failure) are not flagged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from psipo_cli.methods.linalg import comparison_graph
from psipo_cli.methods.nash.lottery import condorcet_winner, maximal_lottery


@dataclass(frozen=True)
class SocialChoice:
    """The three objectives' scores on one preference model (indices into the actions of `supp pi_ref`).

    Attributes
    ----------
    actions : int array (k,)
        The actions compared (`supp pi_ref`).
    cycles : tuple of tuples of int
        The strongly connected components of the majority relation with more than one action (non-empty:
        the model is non-transitive).
    bradley_terry : array (k,) or None
        The fitted Bradley–Terry reward (zero mean); None when it is infinite (a comparison separates two
        strongly connected components of the comparison graph, the case where DPO diverges).
    borda : array (k,)
        `P(y ≻ mu)` with `mu` renormalised on the actions compared.
    lottery : array (k,)
        The maximal lottery on them (the `tau -> 0` limit of the regularised equilibrium; when the maximal
        lotteries form a set, the one closest to `pi_ref` in KL, the one that limit selects).
    condorcet : int or None
        The Condorcet winner (position in `actions`): it can exist on a non-transitive model, whose cycle is
        then among the other actions, and it gets the whole lottery.
    """

    actions: np.ndarray
    cycles: tuple[tuple[int, ...], ...]
    bradley_terry: np.ndarray | None
    borda: np.ndarray
    lottery: np.ndarray
    condorcet: int | None


def majority_cycles(P: np.ndarray) -> tuple[tuple[int, ...], ...]:
    """The strongly connected components of size > 1 of the majority digraph `y -> y'` iff `P[y, y'] > 1/2`
    (empty iff the majority relation is acyclic)."""
    strong = comparison_graph((np.asarray(P, float) > 0.5).astype(float)).strong
    groups = [tuple(int(i) for i in np.flatnonzero(strong == s)) for s in np.unique(strong)]
    return tuple(g for g in groups if len(g) > 1)


def social_choice(P: np.ndarray, mu: np.ndarray, pi_ref: np.ndarray) -> SocialChoice | None:
    """The rankings of RLHF/DPO, IPO and Nash on `P` restricted to `supp pi_ref`, or None when the restricted
    model is transitive (see the module docstring)."""
    from psipo_cli.methods.pairwise import dpo
    from psipo_cli.methods.pairwise.solver import implied_reward

    keep = np.flatnonzero(np.asarray(pi_ref) > 0)
    Q = np.asarray(P, float)[np.ix_(keep, keep)]
    cycles = majority_cycles(Q)
    if not cycles:
        return None
    weights = np.asarray(mu, float)[keep]
    if weights.sum() <= 0:
        weights = np.ones(len(keep))
    weights = weights / weights.sum()
    W = np.outer(weights, weights) * Q
    np.fill_diagonal(W, 0.0)
    reward = None
    if comparison_graph(W).has_minimiser:
        reward = implied_reward(W, dpo.LOSS)
        reward = reward - reward.mean()
    lottery = maximal_lottery(Q, np.asarray(pi_ref, float)[keep])
    return SocialChoice(keep, cycles, reward, Q @ weights, lottery, condorcet_winner(Q))


__all__ = ["SocialChoice", "majority_cycles", "social_choice"]
