"""EXO, pairwise (Ji et al. 2024, arXiv 2402.00856, Eq. 16; TRL `loss_type="exo_pair"`).

Per comparison, with `x = tau h` and label smoothing `eps` (> 0):
`f(x) = KL(Bern(sigma(x)) || Bern(1 - eps)) = s log(s / (1 - eps)) + (1 - s) log((1 - s) / eps)`, `s = sigma(x)`.
`f'(x) = s (1 - s) (x - logit(1 - eps))`: the only finite stationary point is `x = logit(1 - eps)`, where
`f = 0`, and `f` is bounded (`-log(1 - eps)` at `+inf`, `-log eps` at `-inf`). The dataset loss is not convex
(`f'' < 0` far from the minimum); it always attains its minimum (capping every gap between sorted implied
rewards at `logit(1 - eps)` lowers no comparison's loss, so a minimiser lies in a bounded box), and on graphs
with cycles the minimiser can break the data's symmetry and be non-unique. The exact answer is the best
point of the multi-start search (`multistart`, status `local`). One pair with win fraction `p`:
`a f'(x) = b f'(-x)` gives `z* = (2 p - 1) logit(1 - eps)`.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from psipo_cli.errors import InputError
from psipo_cli.methods.pairwise.family import PAIRWISE
from psipo_cli.methods.pairwise.gpo import tau_loss
from psipo_cli.methods.pairwise.multistart import multistart
from psipo_cli.methods.spec import Exact, ImpliedReward, Method, PairLoss
from psipo_cli.numerics import sigmoid

DEFAULT_EPS = 1e-3  # TRL's exo_pair replaces label_smoothing = 0 by 1e-3


def _log_sigmoid(x: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -x)


@cache
def loss_of(label_smoothing: float) -> PairLoss:
    """EXO's `PairLoss` at label smoothing `eps` (`InputError` unless `0 < eps < 1/2`: at 0 the loss is
    infinite on every finite margin's wrong side, at 1/2 it no longer prefers the winner)."""
    eps = float(label_smoothing)
    if not 0.0 < eps < 0.5:
        raise InputError("--label-smoothing", label_smoothing, "exo needs 0 < label smoothing < 0.5")
    target = float(np.log1p(-eps) - np.log(eps))  # logit(1 - eps), the minimiser of f
    log_keep, log_flip = float(np.log1p(-eps)), float(np.log(eps))

    def margin(z: np.ndarray) -> np.ndarray:
        """`f(z) = s (log s - log(1 - eps)) + (1 - s) (log(1 - s) - log eps)`, `s = sigma(z)`, in log-sigmoids."""
        z = np.asarray(z, float)
        return sigmoid(z) * (_log_sigmoid(z) - log_keep) + sigmoid(-z) * (_log_sigmoid(-z) - log_flip)

    def margin_grad(z: np.ndarray) -> np.ndarray:
        """`f'(z) = s (1 - s) (z - logit(1 - eps))`."""
        z = np.asarray(z, float)
        return sigmoid(z) * sigmoid(-z) * (z - target)

    def margin_curv(z: np.ndarray) -> np.ndarray:
        """`f''(z) = s (1 - s) ((1 - 2 s)(z - logit(1 - eps)) + 1)`."""
        z = np.asarray(z, float)
        s = sigmoid(z)
        return s * sigmoid(-z) * ((1.0 - 2.0 * s) * (z - target) + 1.0)

    def minimisers(W: np.ndarray) -> ImpliedReward:
        return multistart(W, loss).answer()

    loss = tau_loss(margin, margin_grad, margin_curv, Exact.LOCAL, minimisers=minimisers)
    return loss


EXO = Method(
    "exo", "EXO, pairwise: KL(Bern(sigma(tau h)) || Bern(1 - eps)) (arXiv 2402.00856)", PAIRWISE,
    options=("label_smoothing",), defaults=(("label_smoothing", DEFAULT_EPS),), trl="exo_pair",
    loss_of=loss_of, formula="KL(Bern(sigma(tau h)) || Bern(1 - eps))",
)
