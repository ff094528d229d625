"""RLHF on a dataset (paper Eqs. 2-3): a Bradley–Terry reward model, then KL-regularised maximisation.

Stage 1: `r = argmin mean_{(w,l)} -log sigmoid(r_w - r_l) + (rm_l2 / 2) ||r||^2` (the mean, so `rm_l2` means
the same in the exact and the gradient solver, whatever the dataset size): DPO's loss at `tau = 1`.
Stage 2: `pi ∝ pi_ref exp(r / tau)`, the maximiser of `E_pi r - tau KL(pi || pi_ref)` (paper Eq. 3).
With `rm_l2 = 0` it equals DPO (paper Prop. 4), divergence included.
"""

from __future__ import annotations

import numpy as np

from psipo_cli.methods.pairwise import dpo
from psipo_cli.methods.pairwise.solver import margin_gradient, margin_objective
from psipo_cli.methods.reward_model.family import REWARD_MODEL
from psipo_cli.methods.spec import Method


def reward_objective(r: np.ndarray, W: np.ndarray, l2: float = 0.0) -> float:
    """Stage 1's objective `mean_{(w,l)} softplus(-(r_w - r_l)) + (l2 / 2) ||r||^2` (paper Eq. 2, a ridge)."""
    return margin_objective(r, W, RLHF.loss, l2)


def reward_gradient(r: np.ndarray, W: np.ndarray, l2: float = 0.0) -> np.ndarray:
    """Gradient of `reward_objective`."""
    return margin_gradient(r, W, RLHF.loss, l2)


RLHF = Method(
    "rlhf",
    "Bradley-Terry reward model (ridge rm_l2), then KL-regularised policy (paper Eqs. 2-3)",
    REWARD_MODEL,
    options=("rm_l2", "rm_steps"),
    twin=dpo.BRADLEY_TERRY_TWIN,
    loss=dpo.LOSS,
    formula="-log sigma(r_w - r_l) + (rm_l2 / 2) ||r||^2, then pi ∝ pi_ref exp(r / tau)",
)
