"""Robust DPO (rDPO; Chowdhury, Kini & Natarajan 2024, arXiv 2403.00409; TRL `robust`):
`[(1 - eps) l(tau h) - eps l(-tau h)] / (1 - 2 eps)`, `l(x) = -log sigma(x)`, i.e.
`-log sigma(tau h) - eps / (1 - 2 eps) tau h`.

An unbiased estimate of DPO's loss under label flips at rate `eps`: under `P = eps + (1 - 2 eps) P_BT(r)` its
population minimiser is `r` itself. On data it is DPO on the de-noised counts
`((1 - eps) W - eps W^T) / (1 - 2 eps)`, which can be negative: one comparison with `p = a / (a + b)` has
`sigma(z*) = (p - eps) / (1 - 2 eps)`, finite iff `eps < p < 1 - eps`, and the loss is unbounded below
otherwise — every deterministic pair, for any `eps > 0` (`Exact.INFLOW`, `flux.rdpo_minimisers`). `eps = 0`
is DPO.
"""

from __future__ import annotations

import functools
from dataclasses import replace

import numpy as np

from psipo_cli.methods.pairwise import dpo
from psipo_cli.methods.pairwise.family import PAIRWISE
from psipo_cli.methods.pairwise.flux import rdpo_minimisers
from psipo_cli.methods.pairwise.gpo import tau_loss
from psipo_cli.methods.spec import Exact, Method, PairLoss
from psipo_cli.numerics import sigmoid


@functools.cache
def rdpo_loss(label_smoothing: float) -> PairLoss:
    """rDPO's loss at `eps = label_smoothing` (DPO's own at 0)."""
    eps = float(label_smoothing)
    if eps == 0.0:
        return dpo.LOSS
    c = eps / (1.0 - 2.0 * eps)

    def f(x: np.ndarray) -> np.ndarray:
        return np.logaddexp(0.0, -x) - c * x

    def df(x: np.ndarray) -> np.ndarray:
        return -sigmoid(-x) - c

    base = tau_loss(f, df, dpo.margin_curv, Exact.INFLOW)
    return replace(base, minimisers=lambda W: rdpo_minimisers(W, base, eps))


RDPO = Method(
    "rdpo", "Robust DPO: unbiased under label flips at rate eps (arXiv 2403.00409)", PAIRWISE,
    options=("label_smoothing",), trl="robust", loss_of=rdpo_loss,
    formula="[(1 - eps) (-log sigma(tau h)) - eps (-log sigma(-tau h))] / (1 - 2 eps)",
)
