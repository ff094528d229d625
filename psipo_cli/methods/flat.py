"""Exact answers on every context of a dataset at once: its comparisons as `Pairs` whose segments are contexts.

The objectives of paper Eqs. 2-4, 6 and 17 on a dataset are sums over contexts, each over its own actions,
so each context's optimum is the per-context one (`Method.solve_exact` on its win counts). Here they are
computed for all contexts together: one block-diagonal sparse system per Newton step, segment-wise
softmaxes and sums (`numpy` reductions over the contexts' action ranges), and the divergence limit solved
once per distinct comparison pattern. Memory is O(actions + comparisons); no Python loop runs over contexts
or comparisons (only over the distinct patterns of the contexts that diverge).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from psipo_cli.methods.linalg import Pairs, comparison_graph, strong_components
from psipo_cli.methods.spec import Exact, PairLoss
from psipo_cli.numerics import segment_logsumexp
from psipo_cli.schema import DIVERGED, OPTIMAL


@dataclass(frozen=True, eq=False)
class FlatInputs:
    """Every context of a dataset as one method input.

    Attributes
    ----------
    pairs : Pairs
        The comparisons; segment `c` is context `c`, whose actions are ``offsets[c]:offsets[c + 1]``.
    offsets : int (m + 1,)
    log_pi_ref : float (n,)
        Finite (`pi_ref > 0` on every action), normalised within each context.
    context_ids, action_ids : names for messages.
    """

    pairs: Pairs
    offsets: np.ndarray
    log_pi_ref: np.ndarray
    context_ids: tuple[str, ...]
    action_ids: tuple[str, ...]

    @property
    def n_contexts(self) -> int:
        return len(self.offsets) - 1

    def span(self, c: int) -> slice:
        return slice(int(self.offsets[c]), int(self.offsets[c + 1]))


@dataclass(frozen=True, eq=False)
class FlatAnswer:
    """A method's exact answer on every context for each tau (`T` taus, `n` actions, `m` contexts).

    policy : float (T, n); status : str (T, m); loss : float (T, m); reward : float (n,), NaN where the implied
    reward is not finite (the fields of `solvers.dataset.DatasetSolution`, which documents them).
    """

    policy: np.ndarray
    status: np.ndarray
    loss: np.ndarray
    reward: np.ndarray


def segment_softmax(logits: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """`exp(logits) / sum exp(logits)` within each segment of the last axis (`-inf` entries get exactly 0; each
    segment needs a finite entry)."""
    sizes = np.diff(offsets)
    norm = np.stack([np.repeat(segment_logsumexp(row, offsets), sizes) for row in np.atleast_2d(logits)])
    return np.exp(np.atleast_2d(logits) - norm).reshape(np.shape(logits))


def separated(pairs: Pairs) -> np.ndarray:
    """bool (m,): segments with a comparison that separates two strongly connected components of the
    comparison graph (winner -> loser), where a logistic-tailed loss has no minimiser (`Exact.SEPARATED_LIMIT`).

    One strong-components pass over the whole graph: it is block-diagonal (no comparison joins two segments),
    so its components are each segment's own.
    """
    strong = strong_components(pairs.winner, pairs.loser, pairs.n)
    across = strong[pairs.winner] != strong[pairs.loser]
    return np.bincount(pairs.segment[across], minlength=pairs.n_segments) > 0


def pair_loss_flat(
    loss: PairLoss, flat: FlatInputs, taus: Sequence[float], value: Callable[[np.ndarray, float], np.ndarray],
    reward: np.ndarray | None = None,
) -> FlatAnswer:
    """The exact answer of a pairwise loss of `tau h` (`PairLoss`) on every context, for each tau: the
    minimiser `delta = z* / tau` where it exists (`optimal`), else the ridge path's limit (`diverged`).

    `value(z, tau)` is the method's objective on each context at the implied reward `z` (shape (m,)); `reward`
    a precomputed `z*` on every context (the reward model with a ridge), else it is found here:
    `loss.implied_reward` when the loss has a closed form, else the generic damped Newton solve, on the
    contexts that attain their minimum, all at once.
    """
    from psipo_cli.methods.pairwise.solver import implied_reward

    pairs, m = flat.pairs, flat.n_contexts
    diverged = separated(pairs) if (reward is None and loss.exact is Exact.SEPARATED_LIMIT) else np.zeros(m, bool)
    if reward is None:
        attained = pairs.subset(~diverged[pairs.segment])
        reward = loss.implied_reward(attained) if loss.implied_reward is not None else implied_reward(attained, loss)
    at_limit = diverged[pairs.node_segment]
    winners, limit_offsets, infimum = separated_limits(flat, diverged, loss)
    T = len(taus)
    logits = np.empty((T, pairs.n))
    values = np.empty((T, m))
    z = np.where(at_limit, 0.0, reward)
    for t, tau in enumerate(taus):
        logits[t] = np.where(at_limit, np.where(winners, flat.log_pi_ref + limit_offsets / tau, -np.inf),
                             flat.log_pi_ref + z / tau)
        values[t] = np.where(diverged, infimum, value(z, tau))
    status = np.where(diverged, DIVERGED, OPTIMAL)[None, :].repeat(T, axis=0)
    return FlatAnswer(segment_softmax(logits, flat.offsets), status, values, np.where(at_limit, np.nan, z))


def separated_limits(
    flat: FlatInputs, diverged: np.ndarray, loss: PairLoss
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The divergence limit (`_limit.separated_limit`) of every context in `diverged`, solved once per
    distinct comparison pattern.

    A context's limit — which actions keep mass, their finite offsets, the infimum of the loss — depends on
    its win counts alone, not on `pi_ref` (which only enters the final softmax, `pi_ref > 0` on every action of
    a dataset). Contexts with the same number of actions and the same comparisons (local indices and counts)
    share one solve; real datasets with few completions per prompt have few distinct patterns.

    Returns `winners` (bool (n,)), `offsets` (float (n,), the finite offsets on the winners) and `infimum`
    (float (m,)); contexts not in `diverged` get False, 0 and 0.
    """
    from psipo_cli.methods.pairwise._limit import separated_limit

    pairs, offsets = flat.pairs, flat.offsets
    winners, out_offsets, infimum = np.zeros(pairs.n, bool), np.zeros(pairs.n), np.zeros(flat.n_contexts)
    chosen = diverged[pairs.segment]
    ctx, base = pairs.segment[chosen], offsets[pairs.segment[chosen]]
    w, l_, c = pairs.winner[chosen] - base, pairs.loser[chosen] - base, pairs.count[chosen]
    order = np.lexsort((l_, w, ctx))
    ctx, w, l_, c = ctx[order], w[order], l_[order], c[order]
    contexts = np.flatnonzero(diverged)
    sizes = np.diff(offsets)[contexts]
    counts = np.bincount(ctx, minlength=flat.n_contexts)[contexts]
    starts = np.searchsorted(ctx, contexts)
    # Group by (actions, comparisons); inside a group each context's sorted comparisons are one row.
    for size, k in np.unique(np.column_stack([sizes, counts]), axis=0):
        members = contexts[(sizes == size) & (counts == k)]
        rows = starts[(sizes == size) & (counts == k)][:, None] + np.arange(k)
        table = np.concatenate([w[rows], l_[rows], c[rows]], axis=1)
        first, which = distinct_rows(table)
        solved_winners = np.zeros((len(first), size), bool)
        solved_offsets = np.zeros((len(first), size))
        solved_infimum = np.zeros(len(first))
        for p in range(len(first)):
            at = rows[first[p]]  # sorted by (winner, loser): the order `Pairs.of` gives a matrix
            one = Pairs(w[at], l_[at], c[at], int(size), np.zeros(size, dtype=np.int64), 1)
            limit = separated_limit(one, np.full(size, -np.log(size)), comparison_graph(one), loss)
            solved_winners[p], solved_offsets[p], solved_infimum[p] = limit.winners, limit.offsets, limit.infimum
        where = offsets[members][:, None] + np.arange(size)
        winners[where], out_offsets[where] = solved_winners[which], solved_offsets[which]
        infimum[members] = solved_infimum[which]
    return winners, np.where(winners, out_offsets, 0.0), infimum


def distinct_rows(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`(first, which)`: the index of one row of each distinct row of `table`, and the distinct row of every
    row (`table[first[which]] == table`). Sorting the rows lexicographically and comparing neighbours costs
    O(rows x width log rows), where `np.unique(axis=0)` builds a structured type with one field per column."""
    if len(table) == 1:  # one row (a large context alone in its group): nothing to sort over its width
        return np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64)
    order = np.lexsort(table.T[::-1])
    ranked = table[order]
    new = np.r_[True, np.any(ranked[1:] != ranked[:-1], axis=1)]
    which = np.empty(len(table), dtype=np.int64)
    which[order] = np.cumsum(new) - 1
    return order[new], which
