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


def log_odds(u: np.ndarray) -> np.ndarray:
    """`log(p / (1 - p))` at `u = log p` (`-inf` at `p = 0`, `+inf` at `p = 1`)."""
    with np.errstate(divide="ignore"):
        return u - np.log(-np.expm1(u))


def inverse_rest(u: np.ndarray) -> np.ndarray:
    """`d log odds / du = 1 / (1 - p)`."""
    with np.errstate(divide="ignore"):
        return 1.0 / -np.expm1(u)


@cache
def loss_of(orpo_lambda: float) -> ComparisonLoss:
    """ORPO's loss with odds-ratio weight `lambda` (one object per value)."""
    lam = float(orpo_lambda)

    def value(uw: np.ndarray, ul: np.ndarray, tau: Any, z0: Any) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            margin = np.nan_to_num(log_odds(uw) - log_odds(ul), nan=np.inf)  # +inf - (+inf): one-hot, no loser
        return -uw + lam * softplus(-margin)

    def grad(uw: np.ndarray, ul: np.ndarray, tau: Any, z0: Any) -> tuple[np.ndarray, np.ndarray]:
        with np.errstate(invalid="ignore"):
            margin = np.nan_to_num(log_odds(uw) - log_odds(ul), nan=np.inf)
            slope = lam * sigmoid(-margin)
            gw = np.where(slope > 0, slope * inverse_rest(uw), 0.0)
            gl = np.where(slope > 0, slope * inverse_rest(ul), 0.0)
        return -1.0 - gw, gl

    return ComparisonLoss(value, grad, reference_free=True)


ORPO = Method(
    "orpo", "Odds-ratio preference optimisation, reference-free, with NLL (arXiv 2403.07691); no tau",
    ReferenceFreeFamily(loss_of, Exact.LOCAL_SEARCH, tau_scaled=False), options=("orpo_lambda",),
)
