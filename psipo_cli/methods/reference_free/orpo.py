"""ORPO (Hong et al., arXiv 2403.07691; TRL `ORPOTrainer`, whose `beta` is `lambda`):
`ell = -log pi(w) - lambda log sigma(log odds(w) - log odds(l))`, `odds(y) = pi(y) / (1 - pi(y))`. No reference
policy and no tau. Not convex (the odds-ratio term)."""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np

from psipo_cli.methods.actions import ComparisonLoss, softplus
from psipo_cli.methods.reference_free.family import ReferenceFreeFamily
from psipo_cli.methods.spec import Exact, Method
from psipo_cli.numerics import sigmoid

#: `1 - p` is floored here: where `p` rounds to 1 (every other action below about 1e-16) the odds' log and its
#: derivative stay finite (`1 / (1 - p)` at most 2^53) instead of infinite; below the floor `1 - p` is not
#: representable next to `p` anyway.
REST_FLOOR = 2.0**-53


def rest(u: np.ndarray) -> np.ndarray:
    """`1 - p` at `u = log p`, floored at `REST_FLOOR`."""
    return np.maximum(-np.expm1(u), REST_FLOOR)


def log_odds(u: np.ndarray) -> np.ndarray:
    """`log(p / (1 - p))` at `u = log p` (`-inf` at `p = 0`)."""
    return u - np.log(rest(u))


def inverse_rest(u: np.ndarray) -> np.ndarray:
    """`d log odds / du = 1 / (1 - p)`."""
    return 1.0 / rest(u)


@cache
def loss_of(orpo_lambda: float) -> ComparisonLoss:
    """ORPO's loss with odds-ratio weight `lambda` (one object per value)."""
    lam = float(orpo_lambda)

    def value(uw: np.ndarray, ul: np.ndarray, tau: Any, z0: Any) -> np.ndarray:
        margin = log_odds(uw) - log_odds(ul)  # +inf where the loser has probability 0
        return -uw + lam * softplus(-margin)

    def grad(uw: np.ndarray, ul: np.ndarray, tau: Any, z0: Any) -> tuple[np.ndarray, np.ndarray]:
        slope = lam * sigmoid(-(log_odds(uw) - log_odds(ul)))
        return -1.0 - slope * inverse_rest(uw), slope * inverse_rest(ul)

    return ComparisonLoss(value, grad, reference_free=True)


ORPO = Method(
    "orpo", "Odds-ratio preference optimisation, reference-free, with NLL (arXiv 2403.07691); no tau",
    ReferenceFreeFamily(loss_of, Exact.LOCAL, tau_scaled=False), options=("orpo_lambda",),
    formula="-log pi_w - lambda log sigma(log odds_w - log odds_l), odds = pi / (1 - pi)",
)
