"""Conservative DPO (cDPO; Mitchell 2023, "A note on DPO with noisy preferences"; TRL `sigmoid` with
`label_smoothing`): `-(1 - eps) log sigma(tau h) - eps log sigma(-tau h)`.

It is DPO on the smoothed counts `(1 - eps) W + eps W^T`, which compare every recorded pair both ways: for
`0 < eps < 1/2` the optimum is always attained (`Exact.ATTAINED`; `eps = 0` is DPO). One comparison won `a`
and lost `b` times (`p = a / (a + b)`): `(1 - eps) a + eps b` wins against `(1 - eps) b + eps a`, so
`z* = logit(eps + (1 - 2 eps) p)`; a deterministic pair stops at `logit(1 - eps)` (2.197 at `eps = 0.1`).
`eps` must lie in `[0, 1/2)` (TRL documents the same range): at 1/2 the smoothed data are tied everywhere,
beyond it every preference is reversed.
"""

from __future__ import annotations

import functools

import numpy as np

from psipo_cli.methods.pairwise import dpo
from psipo_cli.methods.pairwise.family import PAIRWISE
from psipo_cli.methods.pairwise.gpo import tau_loss
from psipo_cli.methods.spec import Exact, Method, PairLoss
from psipo_cli.numerics import sigmoid


@functools.cache
def cdpo_loss(label_smoothing: float) -> PairLoss:
    """cDPO's loss at `eps = label_smoothing` (DPO's own at 0)."""
    eps = float(label_smoothing)
    if eps == 0.0:
        return dpo.LOSS

    def f(x: np.ndarray) -> np.ndarray:
        return (1.0 - eps) * np.logaddexp(0.0, -x) + eps * np.logaddexp(0.0, x)

    def df(x: np.ndarray) -> np.ndarray:
        return -(1.0 - eps) * sigmoid(-x) + eps * sigmoid(x)

    return tau_loss(f, df, dpo.margin_curv, Exact.ATTAINED)


CDPO = Method(
    "cdpo", "Conservative DPO: DPO with label smoothing eps (Mitchell 2023)", PAIRWISE, options=("label_smoothing",),
    trl="sigmoid", loss_of=cdpo_loss,
    formula="-(1 - eps) log sigma(tau h) - eps log sigma(-tau h)",
)
