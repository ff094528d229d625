"""BCO (Jung et al., arXiv 2404.04656; TRL `bco_pair` as its loss branch computes it, without the running
mean): with `x = tau delta`, `ell = -log sigma(x_w) - log sigma(-x_l)`.

Per action the minimiser without the normalisation is `sigma(tau delta_y) = W_y / (W_y + L_y)`; an action
that never wins has `phi_y' = tau L_y sigma(x) > 0`, and its mass goes to 0 for every tau.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from psipo_cli.methods.actions import ActionTerms, from_terms, softplus
from psipo_cli.methods.single_action.family import SingleActionFamily
from psipo_cli.methods.spec import Exact, Method
from psipo_cli.numerics import sigmoid


def win(u: np.ndarray, tau: Any, z0: Any) -> np.ndarray:
    """`-log sigma(x) = softplus(-x)`, `x = tau u`."""
    return softplus(-tau * u)


def lose(u: np.ndarray, tau: Any, z0: Any) -> np.ndarray:
    """`-log sigma(-x) = softplus(x)`."""
    return softplus(tau * u)


def win_grad(u: np.ndarray, tau: Any, z0: Any) -> np.ndarray:
    """`-tau sigma(-x)`."""
    return -tau * sigmoid(-tau * u)


def lose_grad(u: np.ndarray, tau: Any, z0: Any) -> np.ndarray:
    """`tau sigma(x)`."""
    return tau * sigmoid(tau * u)


LOSS = from_terms(ActionTerms(win, lose, win_grad, lose_grad))

BCO = Method(
    "bco", "Binary classifier optimisation, paired (arXiv 2404.04656)", SingleActionFamily(LOSS, Exact.SIMPLEX),
    trl="bco_pair",
    formula="-log sigma(tau d_w) - log sigma(-tau d_l), d = log(pi / pi_ref)",
)
