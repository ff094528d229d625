"""The generic exact solver of the `f(tau h)` family: the implied reward `z* = argmin_z sum W f(z_w - z_l)`.

A loss of `tau h` depends on tau only through `z = tau delta`, so `z*` is found once (damped Newton on the
Laplacian-structured Hessian, `linalg.damped_newton`, `linalg.LaplacianSystem`) and every tau is one softmax,
`pi ∝ pi_ref exp(z* / tau)` (paper Prop. 4 for DPO; Eq. 17 for IPO).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from psipo_cli.methods.linalg import LaplacianSystem, capped, damped_newton, mean_pair_loss, pairs_of, softmax_policy
from psipo_cli.methods.solution import OPTIMAL, Solution

if TYPE_CHECKING:
    from psipo_cli.methods.spec import PairLoss


def margin_objective(z: np.ndarray, W: np.ndarray, loss: PairLoss, l2: float = 0.0) -> float:
    """`F(z) = sum W[w,l] f(z_w - z_l) / sum W + (l2 / 2) ||z||^2`, `f = loss.margin`.

    For DPO's `f(z) = softplus(-z)` this is the Bradley–Terry log-loss of paper Eq. 2 (plus a ridge):
    RLHF's reward-model objective.
    """
    w, l_, c = pairs_of(W)
    return float(np.sum(c * loss.margin(z[w] - z[l_])) / c.sum() + 0.5 * l2 * z @ z)


def margin_gradient(z: np.ndarray, W: np.ndarray, loss: PairLoss, l2: float = 0.0) -> np.ndarray:
    """Gradient of `margin_objective`: `f'(z_w - z_l) (e_w - e_l)` per comparison, averaged, plus `l2 z`."""
    w, l_, c = pairs_of(W)
    g = c * loss.margin_grad(z[w] - z[l_]) / c.sum()
    n = len(z)
    return np.bincount(w, weights=g, minlength=n) - np.bincount(l_, weights=g, minlength=n) + l2 * z


def implied_reward(W: np.ndarray, loss: PairLoss, l2: float = 0.0) -> np.ndarray:
    """`z* = argmin margin_objective(z, W, loss, l2)` by damped Newton steps from `z = 0`.

    The caller guarantees the minimiser exists (`l2 > 0`, a loss that attains its minimum, or no
    separating comparison). The Hessian is the Laplacian of the comparison graph weighted by the curvatures
    `W[w,l] f''(z_w - z_l) / sum W` (plus `l2 I`); without a ridge each step is solved grounded and centred
    on each component (`LaplacianSystem`), so from zero the iterates keep the canonical gauge: zero sum on
    each connected component, zero on actions absent from `W`.
    """
    n = W.shape[0]
    w, l_, c = pairs_of(W)

    def newton_step(z: np.ndarray, g: np.ndarray) -> np.ndarray:
        system = LaplacianSystem(w, l_, c * loss.margin_curv(z[w] - z[l_]) / c.sum(), n, shift=l2)
        step = system.solve(-g)
        return capped(step if l2 > 0 else system.centre(step), w, l_)

    return damped_newton(
        np.zeros(n), lambda z: margin_objective(z, W, loss, l2), lambda z: margin_gradient(z, W, loss, l2), newton_step
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
