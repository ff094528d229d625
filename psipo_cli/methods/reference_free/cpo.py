"""CPO (Xu et al., arXiv 2401.08417; TRL `CPOTrainer`, `loss_type="sigmoid"`): with `theta = log pi`,
`ell = -log sigma(tau (theta_w - theta_l)) - alpha theta_w`. No reference policy. Convex in the logits
(a loss of differences plus `alpha` times the winner's log-softmax)."""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np

from psipo_cli.methods.actions import ComparisonLoss, softplus
from psipo_cli.methods.reference_free.family import ReferenceFreeFamily
from psipo_cli.methods.spec import Exact, Method
from psipo_cli.numerics import sigmoid


@cache
def loss_of(cpo_alpha: float) -> ComparisonLoss:
    """CPO's loss with NLL weight `alpha` (one object per value)."""
    alpha = float(cpo_alpha)

    def value(uw: np.ndarray, ul: np.ndarray, tau: Any, z0: Any) -> np.ndarray:
        return softplus(-tau * (uw - ul)) - alpha * uw

    def grad(uw: np.ndarray, ul: np.ndarray, tau: Any, z0: Any) -> tuple[np.ndarray, np.ndarray]:
        slope = tau * sigmoid(-tau * (uw - ul))  # 0 where the loser has probability 0 (u_l = -inf)
        return -slope - alpha, slope

    return ComparisonLoss(value, grad, reference_free=True)


CPO = Method(
    "cpo", "Contrastive preference optimisation, reference-free, with NLL (arXiv 2401.08417)",
    ReferenceFreeFamily(loss_of, Exact.CONVEX), options=("cpo_alpha",),
    formula="-log sigma(tau (log pi_w - log pi_l)) - alpha log pi_w",
)
