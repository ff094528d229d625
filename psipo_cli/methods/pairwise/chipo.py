"""χPO (Huang et al. 2024, arXiv 2407.13399, Eq. 9), tabular:
`-log sigmoid(clip(tau phi(pi_w / pi_ref_w) - tau phi(pi_l / pi_ref_l), -2 R, 2 R))`, `phi(u) = u + log u`.

Without a clip (`r_max` unset) the potential `tau phi(e^delta)` is fitted by DPO's logistic loss: the exact
answer is the Bradley–Terry MLE mapped through Lambert W, `pi(y) = pi_ref(y) W0(exp((z*_y + c) / tau))`
(`linked`). With a clip the loss is flat beyond the clip and the minimisers form a set (`linked.clipped_solutions`).
"""

from __future__ import annotations

from functools import cache

import numpy as np

from psipo_cli.methods.pairwise.linked import CHI, LINKED, LinkedLoss
from psipo_cli.methods.spec import Method


@cache
def loss_of(r_max: float | None) -> LinkedLoss:
    """χPO's loss with the clip `r_max` (None: no clip)."""
    return LinkedLoss(CHI, np.inf if r_max is None else float(r_max))


CHIPO = Method(
    "chipo", "χPO: DPO's logistic loss on the potential tau (u + log u), u = pi / pi_ref (arXiv 2407.13399)", LINKED,
    options=("r_max",), loss_of=loss_of,
    formula="-log sigma(clip(tau (phi(u_w) - phi(u_l)), -2 r_max, 2 r_max)), phi(u) = u + log u, u = pi / pi_ref",
)
