"""APO (D'Oosterlinck et al., arXiv 2408.06266; TRL `apo_zero`, `apo_down`), with `x = tau delta`.

- `apo-zero`: `ell = (1 - sigma(x_w)) + sigma(x_l)`, so `phi_y = W_y + (L_y - W_y) sigma(x_y)`: the loss
  lowers every net loser (`L_y > W_y`) to mass 0 and raises every net winner, for every tau; with a single
  net winner the optimum is one-hot on it.
- `apo-down`: `ell = sigma(x_w) + (1 - sigma(x_w - x_l))`. Its infimum is approached only as offsets go to
  `-inf` at rates the loss leaves free, along paths whose limit policies differ (they depend on tau and on the
  start): no exact optimum as an offline tabular objective (status `undefined`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from psipo_cli.methods.actions import ActionTerms, ComparisonLoss, from_terms, sigmoid_slope
from psipo_cli.methods.single_action.family import SingleActionFamily
from psipo_cli.methods.spec import Exact, Method
from psipo_cli.numerics import sigmoid


def zero_win(u: np.ndarray, tau: Any, z0: Any) -> np.ndarray:
    """`1 - sigma(x) = sigma(-x)`."""
    return sigmoid(-tau * u)


def zero_lose(u: np.ndarray, tau: Any, z0: Any) -> np.ndarray:
    """`sigma(x)`."""
    return sigmoid(tau * u)


def zero_win_grad(u: np.ndarray, tau: Any, z0: Any) -> np.ndarray:
    return -tau * sigmoid_slope(tau * u)


def zero_lose_grad(u: np.ndarray, tau: Any, z0: Any) -> np.ndarray:
    return tau * sigmoid_slope(tau * u)


ZERO_LOSS = from_terms(ActionTerms(zero_win, zero_lose, zero_win_grad, zero_lose_grad))


def down_value(uw: np.ndarray, ul: np.ndarray, tau: Any, z0: Any) -> np.ndarray:
    """`sigma(tau u_w) + 1 - sigma(tau (u_w - u_l))`."""
    return sigmoid(tau * uw) + sigmoid(-tau * (uw - ul))


def down_grad(uw: np.ndarray, ul: np.ndarray, tau: Any, z0: Any) -> tuple[np.ndarray, np.ndarray]:
    slope = tau * sigmoid_slope(tau * (uw - ul))
    return tau * sigmoid_slope(tau * uw) - slope, slope


DOWN_LOSS = ComparisonLoss(down_value, down_grad)

APO_ZERO = Method(
    "apo-zero", "Anchored preference optimisation, zero (arXiv 2408.06266)",
    SingleActionFamily(ZERO_LOSS, Exact.SIMPLEX), trl="apo_zero",
    formula="(1 - sigma(tau d_w)) + sigma(tau d_l), d = log(pi / pi_ref)",
)
APO_DOWN = Method(
    "apo-down", "Anchored preference optimisation, down (arXiv 2408.06266)",
    SingleActionFamily(DOWN_LOSS, Exact.NO_OPTIMUM), trl="apo_down",
    formula="sigma(tau d_w) + (1 - sigma(tau (d_w - d_l))), d = log(pi / pi_ref)",
)
