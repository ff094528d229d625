"""KTO on paired data (Ethayarajh et al., arXiv 2402.01306; TRL `KTOTrainer`): every comparison's winner is a
desirable example and its loser an undesirable one. With the reference point `z0 = max(0, KL(pi || pi_ref))`
held fixed (TRL detaches it),
`ell = lambda_D (1 - sigma(tau (delta_w - z0))) + lambda_U (1 - sigma(tau (z0 - delta_l)))`.

At a fixed `z0` the loss is a sum of one term per action, `phi_y = lambda_D W_y + (lambda_U L_y - lambda_D W_y)
sigma(tau (delta_y - z0))`; the exact answer is a fixed point `z0 = max(0, KL(pi*(z0) || pi_ref))` of the
minimiser `pi*(z0)`, not a plain minimisation.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np

from psipo_cli.methods.actions import ActionTerms, ComparisonLoss, from_terms, sigmoid_slope
from psipo_cli.methods.single_action.family import SingleActionFamily
from psipo_cli.methods.spec import Exact, Method
from psipo_cli.numerics import sigmoid


@cache
def loss_of(kto_desirable_weight: float, kto_undesirable_weight: float) -> ComparisonLoss:
    """KTO's loss with the weights `lambda_D`, `lambda_U` (one object per pair of weights)."""
    lam_d, lam_u = float(kto_desirable_weight), float(kto_undesirable_weight)

    def win(u: np.ndarray, tau: Any, z0: Any) -> np.ndarray:
        return lam_d * sigmoid(-tau * (u - z0))

    def lose(u: np.ndarray, tau: Any, z0: Any) -> np.ndarray:
        return lam_u * sigmoid(tau * (u - z0))  # 1 - sigma(tau (z0 - u))

    def win_grad(u: np.ndarray, tau: Any, z0: Any) -> np.ndarray:
        return -lam_d * tau * sigmoid_slope(tau * (u - z0))

    def lose_grad(u: np.ndarray, tau: Any, z0: Any) -> np.ndarray:
        return lam_u * tau * sigmoid_slope(tau * (u - z0))

    return from_terms(ActionTerms(win, lose, win_grad, lose_grad), uses_kl=True)


KTO = Method(
    "kto", "Kahneman–Tversky optimisation on paired data (arXiv 2402.01306)",
    SingleActionFamily(loss_of, Exact.FIXED_POINT), options=("kto_desirable_weight", "kto_undesirable_weight"),
    formula=(
        "l_D (1 - sigma(tau (d_w - z0))) + l_U (1 - sigma(tau (z0 - d_l))), z0 = max(0, KL(pi || pi_ref)) held "
        "fixed"
    ),
)
