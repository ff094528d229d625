"""DiscoPOP (Chris Lu et al. 2024, arXiv 2406.08414, Eq. 5; TRL `loss_type="discopop"`).

Per comparison, with `x = tau h` and the modulation temperature `t` (`discopop_tau`, 0.05):
`f(x) = (1 - sigma(x / t)) log(1 + e^-x) + sigma(x / t) e^-x`, a blend of the logistic (DPO) and the
exponential loss. `f > 0` and `f -> 0` only as `x -> +inf` (type A: a minimiser exists iff no comparison
separates two strongly connected components, as DPO), its tail is `e^-x` as the logistic's, and it is not
convex: `f'(0) = (1 - log 2) / (4 t) - 3/4 > 0` for `t < 0.36`, so at `pi_ref` the descent direction lowers the
winner, and gradient descent from `pi_ref` can stop at a wrong-way local minimum (`x < 0` on a
deterministic pair). Where a minimiser exists the exact answer is the best point of a multi-start search
(`multistart`, status `local`); where none exists, DPO's limit (`diverged`), and the detail says where
gradient descent from `pi_ref` stops instead when it stops (`flow.flow_note`).
"""

from __future__ import annotations

from functools import cache

import numpy as np

from psipo_cli.methods.pairwise.family import PAIRWISE
from psipo_cli.methods.pairwise.gpo import tau_loss
from psipo_cli.methods.pairwise.multistart import multistart
from psipo_cli.methods.spec import Exact, ImpliedReward, Method, PairLoss
from psipo_cli.numerics import sigmoid


@cache
def loss_of(discopop_tau: float) -> PairLoss:
    """DiscoPOP's `PairLoss` at modulation temperature `t = discopop_tau` (> 0, validated by its setting)."""
    t = float(discopop_tau)

    def blend(z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`(m, 1 - m, m e^-z)` with `m = sigma(z / t)`; `m e^-z = exp(log sigma(z / t) - z)` has no `0 * inf`."""
        with np.errstate(over="ignore"):
            return sigmoid(z / t), sigmoid(-z / t), np.exp(-np.logaddexp(0.0, -z / t) - z)

    def margin(z: np.ndarray) -> np.ndarray:
        """`f(z) = (1 - m) softplus(-z) + m e^-z`, `m = sigma(z / t)`."""
        z = np.asarray(z, float)
        _, m_bar, me = blend(z)
        return m_bar * np.logaddexp(0.0, -z) + me

    def margin_grad(z: np.ndarray) -> np.ndarray:
        """`f'(z) = m' (e^-z - softplus(-z)) - (1 - m) sigma(-z) - m e^-z`, `m' = m (1 - m) / t`."""
        z = np.asarray(z, float)
        m, m_bar, me = blend(z)
        return m_bar / t * me - m * m_bar / t * np.logaddexp(0.0, -z) - m_bar * sigmoid(-z) - me

    def margin_curv(z: np.ndarray) -> np.ndarray:
        """`f''(z) = m'' (e^-z - softplus(-z)) + 2 m' (sigma(-z) - e^-z) + (1 - m) s (1 - s) + m e^-z`,
        `m'' = m' (1 - 2 m) / t`, `s = sigma(-z)`."""
        z = np.asarray(z, float)
        m, m_bar, me = blend(z)
        s, d1 = sigmoid(-z), m * m_bar / t
        d2 = d1 * (m_bar - m) / t
        return (
            m_bar * (m_bar - m) / t**2 * me - d2 * np.logaddexp(0.0, -z) + 2.0 * d1 * s - 2.0 * m_bar / t * me
            + m_bar * s * (1.0 - s) + me
        )

    def minimisers(W: np.ndarray) -> ImpliedReward:
        return multistart(W, loss).answer()

    loss = tau_loss(margin, margin_grad, margin_curv, Exact.LOCAL, minimisers=minimisers, diverges_when_separated=True)
    return loss


DISCOPOP = Method(
    "discopop", "DiscoPOP: logistic/exponential blend modulated by sigma(tau h / t) (arXiv 2406.08414)", PAIRWISE,
    options=("discopop_tau",), trl="discopop", loss_of=loss_of,
    formula="(1 - sigma(tau h / t)) log(1 + e^(-tau h)) + sigma(tau h / t) e^(-tau h)",
)
