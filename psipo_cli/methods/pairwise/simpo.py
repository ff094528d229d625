"""SimPO (Meng, Xia & Chen 2024, arXiv 2405.14734, Eq. 6; TRL `CPOTrainer(loss_type="simpo")`), tabular.

`-log sigmoid(tau (log pi_w - log pi_l) - gamma)` with `tau` = SimPO's `beta` and `gamma` its target margin
(`simpo_gamma`; TRL computes `logits = Delta - gamma / beta` and `-log sigmoid(beta logits)`). Every action is
one token, so the length normalisation is 1. The loss does not read `pi_ref`: with the uniform policy on
`supp pi_ref` as reference, `log pi_w - log pi_l = delta_w - delta_l = h`, and the loss is `f(tau h)` with
`f(z) = log(1 + e^(gamma - z))` — a logistic loss shifted by the margin (type A: attained iff no comparison
separates two strongly connected components, as DPO; the tails are `e^gamma e^-z`). `Method.reference_free`
makes both solvers use that reference; the policy is then `pi ∝ exp(z* / tau)` on `supp pi_ref`.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from psipo_cli.methods.pairwise.family import PAIRWISE
from psipo_cli.methods.pairwise.gpo import tau_loss
from psipo_cli.methods.spec import Exact, Method, PairLoss
from psipo_cli.numerics import sigmoid


@cache
def loss_of(gamma: float) -> PairLoss:
    """SimPO's `PairLoss` at target margin `gamma` (>= 0, validated by its setting)."""
    g = float(gamma)

    def margin(z: np.ndarray) -> np.ndarray:
        """`f(z) = softplus(gamma - z)`."""
        return np.logaddexp(0.0, g - np.asarray(z, float))

    def margin_grad(z: np.ndarray) -> np.ndarray:
        """`f'(z) = -sigma(gamma - z)`."""
        return -sigmoid(g - np.asarray(z, float))

    def margin_curv(z: np.ndarray) -> np.ndarray:
        """`f''(z) = s (1 - s)`, `s = sigma(gamma - z)`."""
        s = sigmoid(g - np.asarray(z, float))
        return s * (1.0 - s)

    return tau_loss(margin, margin_grad, margin_curv, Exact.SEPARATED_LIMIT)


SIMPO = Method(
    "simpo", "SimPO, reference-free: -log sigmoid(tau (log pi_w - log pi_l) - gamma) (arXiv 2405.14734)",
    PAIRWISE, options=("gamma",), trl="simpo (CPOTrainer)", loss_of=loss_of, reference_free=True,
    formula="-log sigma(tau (log pi_w - log pi_l) - gamma)",
)
