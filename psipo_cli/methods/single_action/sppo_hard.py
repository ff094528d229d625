"""SPPO with hard labels (Wu et al., arXiv 2405.00675; TRL `sppo_hard`):
`ell = (delta_w - 1/(2 tau))^2 + (delta_l + 1/(2 tau))^2`.

Per action the minimiser without the normalisation is `delta_y = (W_y - L_y) / (2 tau (W_y + L_y))`; the loss
is infinite at `delta -> -inf`, so every compared action keeps a positive mass.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from psipo_cli.methods.actions import ActionTerms, from_terms
from psipo_cli.methods.single_action.family import SingleActionFamily
from psipo_cli.methods.spec import Exact, Method


def win(u: np.ndarray, tau: Any, z0: Any) -> np.ndarray:
    """`(u - 1/(2 tau))^2`."""
    return (u - 0.5 / tau) ** 2


def lose(u: np.ndarray, tau: Any, z0: Any) -> np.ndarray:
    """`(u + 1/(2 tau))^2`."""
    return (u + 0.5 / tau) ** 2


def win_grad(u: np.ndarray, tau: Any, z0: Any) -> np.ndarray:
    return 2.0 * (u - 0.5 / tau)


def lose_grad(u: np.ndarray, tau: Any, z0: Any) -> np.ndarray:
    return 2.0 * (u + 0.5 / tau)


LOSS = from_terms(ActionTerms(win, lose, win_grad, lose_grad))

SPPO_HARD = Method(
    "sppo-hard", "Self-play preference optimisation, hard labels (arXiv 2405.00675)",
    SingleActionFamily(LOSS, Exact.SIMPLEX), trl="sppo_hard",
    formula="(d_w - 1 / (2 tau))^2 + (d_l + 1 / (2 tau))^2, d = log(pi / pi_ref)",
)
