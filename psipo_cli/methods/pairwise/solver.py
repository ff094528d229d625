"""The generic exact solver of the `f(tau h)` family: the implied reward `z* = argmin_z sum W f(z_w - z_l)`.

A loss of `tau h` depends on tau only through `z = tau delta`, so `z*` is found once (damped Newton on the
Laplacian-structured Hessian, `linalg.damped_newton`, `linalg.LaplacianSystem`) and every tau is one softmax,
`pi ∝ pi_ref exp(z* / tau)` (paper Prop. 4 for DPO; Eq. 17 for IPO).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from psipo_cli.methods.linalg import (
    LaplacianPattern,
    Pairs,
    as_pairs,
    capped,
    damped_newton,
    mean_pair_loss,
    pairs_of,
    segment_mean,
    softmax_policy,
)
from psipo_cli.methods.solution import OPTIMAL, Solution

if TYPE_CHECKING:
    from psipo_cli.methods.spec import PairLoss


def margin_objective(z: np.ndarray, W: np.ndarray, loss: PairLoss, l2: float = 0.0) -> float:
    """`F(z) = sum W[w,l] f(z_w - z_l) / sum W + (l2 / 2) ||z||^2`, `f = loss.margin`.

    For DPO's `f(z) = softplus(-z)` this is the Bradley–Terry log-loss of paper Eq. 2 (plus a ridge):
    RLHF's reward-model objective (`segment_objective` gives it per context of a dataset).
    """
    w, l_, c = pairs_of(W)
    return float(np.sum(c * loss.margin(z[w] - z[l_])) / c.sum() + 0.5 * l2 * z @ z)


def segment_objective(z: np.ndarray, pairs: Pairs, loss: PairLoss, l2: float = 0.0) -> np.ndarray:
    """`margin_objective` of each segment on its own comparisons and coordinates (0 for a segment without
    comparisons and no ridge): the mean over its comparisons, plus `(l2 / 2)` times its squared norm."""
    mean = segment_mean(pairs, loss.margin(z[pairs.winner] - z[pairs.loser]))
    return mean + 0.5 * l2 * np.bincount(pairs.node_segment, weights=z * z, minlength=pairs.n_segments)


def margin_gradient(z: np.ndarray, W: np.ndarray | Pairs, loss: PairLoss, l2: float = 0.0) -> np.ndarray:
    """Gradient of `margin_objective`: `f'(z_w - z_l) (e_w - e_l)` per comparison, averaged over its segment's
    comparisons, plus `l2 z`."""
    pairs = as_pairs(W)
    w, l_, c = pairs.winner, pairs.loser, pairs.count
    g = c * loss.margin_grad(z[w] - z[l_]) / pairs.totals[pairs.segment]
    n = len(z)
    return np.bincount(w, weights=g, minlength=n) - np.bincount(l_, weights=g, minlength=n) + l2 * z


def implied_reward(W: np.ndarray | Pairs, loss: PairLoss, l2: float = 0.0) -> np.ndarray:
    """`z* = argmin margin_objective(z, W, loss, l2)` by damped Newton steps from `z = 0`.

    The caller guarantees the minimiser exists (`l2 > 0`, a loss that attains its minimum, or no
    separating comparison). The Hessian is the Laplacian of the comparison graph weighted by the curvatures
    `W[w,l] f''(z_w - z_l) / sum W` (plus `l2 I`); without a ridge each step is solved grounded and centred
    on each component (`LaplacianSystem`), so from zero the iterates keep the canonical gauge: zero sum on
    each connected component, zero on actions absent from `W`.

    On `Pairs` of several segments (the contexts of a dataset) the objective is separable, its Hessian
    block-diagonal: one sparse system per Newton step for every segment, and each segment's own line search
    and stopping rule (`damped_newton` with segments), so each gets its own answer as if solved alone.
    """
    pairs = as_pairs(W)
    n, w, l_, c = pairs.n, pairs.winner, pairs.loser, pairs.count
    scale = c / pairs.totals[pairs.segment]
    several = pairs.n_segments > 1
    pattern = LaplacianPattern(w, l_, n)  # every Hessian has these edges; only the curvatures change

    def newton_step(z: np.ndarray, g: np.ndarray) -> np.ndarray:
        system = pattern.system(scale * loss.margin_curv(z[w] - z[l_]), shift=l2)
        step = system.solve(-g)
        return capped(step if l2 > 0 else system.centre(step), w, l_, pairs if several else None)

    return damped_newton(
        np.zeros(n), lambda z: segment_objective(z, pairs, loss, l2), lambda z: margin_gradient(z, pairs, loss, l2),
        newton_step, segments=pairs.node_segment, n_segments=pairs.n_segments,
    )


def tempered(
    z: np.ndarray,
    log_pi_ref: np.ndarray,
    taus: Sequence[float],
    loss_at: Callable[[np.ndarray, float], float],
    unseen: tuple[int, ...],
    closed_form: Callable[[float], str],
    status: str = OPTIMAL,
    detail: str = "",
) -> list[Solution]:
    """The `Solution` for each tau from a tau-independent implied reward `z`: `delta = z / tau`,
    `pi ∝ pi_ref exp(delta)`; `loss_at(delta, tau)` is the method's objective there. `status` and `detail`
    say what kind of point `z` is (`optimal`; one point of a `set`; the best `local` minimum found)."""
    return [
        Solution(
            policy=softmax_policy(log_pi_ref, z / tau),
            status=status,
            loss=loss_at(z / tau, tau),
            offsets=z / tau,
            reward=z,
            detail=detail,
            unseen=unseen,
            closed_form=closed_form(tau),
        )
        for tau in taus
    ]


def mean_loss_at(W: np.ndarray, loss: PairLoss) -> Callable[[np.ndarray, float], float]:
    """`(delta, tau) -> mean_{(w,l)} pair_loss(delta_w - delta_l, tau)` on `W`."""
    return lambda delta, tau: mean_pair_loss(delta, W, loss.pair_loss, tau)
