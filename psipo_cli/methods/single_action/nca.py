"""NCA (Chen et al., arXiv 2402.05369; TRL `nca_pair`): with `x = tau delta`,
`ell = -log sigma(x_w) - 1/2 log sigma(-x_w) - 1/2 log sigma(-x_l)`.

Per action, `phi_y = W_y win + L_y lose` is minimised without the normalisation at
`sigma(tau delta_y) = 2 W_y / (3 W_y + L_y)`; the normalisation then binds (the family's exact solver). An
action that never wins has `phi_y' = tau L_y sigma(x) / 2 > 0`, and its mass goes to 0 for every `tau < 1`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from psipo_cli.methods.actions import ActionTerms, from_terms, softplus
from psipo_cli.methods.single_action.family import SingleActionFamily
from psipo_cli.methods.spec import Exact, Method
from psipo_cli.numerics import sigmoid


def win(u: np.ndarray, tau: Any, z0: Any) -> np.ndarray:
    """`-log sigma(x) - 1/2 log sigma(-x) = softplus(-x) + softplus(x) / 2`, `x = tau u`."""
    x = tau * u
    return softplus(-x) + 0.5 * softplus(x)


def lose(u: np.ndarray, tau: Any, z0: Any) -> np.ndarray:
    """`-1/2 log sigma(-x) = softplus(x) / 2`."""
    return 0.5 * softplus(tau * u)


def win_grad(u: np.ndarray, tau: Any, z0: Any) -> np.ndarray:
    """`tau (-sigma(-x) + sigma(x) / 2)`."""
    x = tau * u
    return tau * (0.5 * sigmoid(x) - sigmoid(-x))


def lose_grad(u: np.ndarray, tau: Any, z0: Any) -> np.ndarray:
    """`tau sigma(x) / 2`."""
    return 0.5 * tau * sigmoid(tau * u)


LOSS = from_terms(ActionTerms(win, lose, win_grad, lose_grad))

NCA = Method(
    "nca", "Noise-contrastive alignment, pairwise (arXiv 2402.05369)", SingleActionFamily(LOSS, Exact.SIMPLEX),
    trl="nca_pair",
    formula="-log sigma(tau d_w) - 1/2 log sigma(-tau d_w) - 1/2 log sigma(-tau d_l), d = log(pi / pi_ref)",
)
