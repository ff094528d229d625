"""DPO (paper Eq. 4): `L(delta) = mean_{(w,l)} -log sigmoid(tau (delta_w - delta_l))`.

Its minimiser is the Bradley–Terry MLE divided by tau (paper Prop. 4), when one exists: when a comparison
separates two strongly connected components of the comparison graph, the exact answer is the limit of the
ridge path (`Exact.SEPARATED_LIMIT`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from psipo_cli.methods.linalg import forest_pairs
from psipo_cli.methods.pairwise.family import PAIRWISE
from psipo_cli.methods.spec import Exact, Method, PairLoss
from psipo_cli.numerics import sigmoid


def pair_loss(h: np.ndarray, tau: Any) -> np.ndarray:
    """`-log sigmoid(tau h)`, computed as `logaddexp(0, -tau h)`."""
    return np.logaddexp(0.0, -tau * np.asarray(h))


def pair_grad(h: np.ndarray, tau: Any) -> np.ndarray:
    """`d/dh -log sigmoid(tau h) = -tau sigmoid(-tau h)`."""
    return -tau * sigmoid(-tau * np.asarray(h))


def margin(z: np.ndarray) -> np.ndarray:
    """`f(z) = -log sigmoid(z) = softplus(-z)`: `pair_loss(h, tau) = f(tau h)`."""
    return np.logaddexp(0.0, -z)


def margin_grad(z: np.ndarray) -> np.ndarray:
    """`f'(z) = -sigmoid(-z)`."""
    return -sigmoid(-z)


def margin_curv(z: np.ndarray) -> np.ndarray:
    """`f''(z) = s (1 - s)`, `s = sigmoid(-z)`."""
    s = sigmoid(-z)
    return s * (1.0 - s)


def closed_form(W: np.ndarray) -> Callable[[float], str]:
    """The Bradley–Terry MLE's closed form when the compared pairs form a forest (and it exists).

    Each pair's term `W[x,y] softplus(-h) + W[y,x] softplus(h)` of the log-loss is then minimised on its
    own: `sigma(h) = W[x,y] / (W[x,y] + W[y,x])`, i.e. `h = log(W[x,y] / W[y,x])`.
    """
    sentence = "" if forest_pairs(W) is None else (
        "closed form (the compared pairs form a forest, so the objective splits into one term per pair): "
        "r_x - r_y = tau (delta_x - delta_y) = log(W[x,y] / W[y,x]) on each compared pair"
    )
    return lambda tau: sentence


LOSS = PairLoss(pair_loss, pair_grad, margin, margin_grad, margin_curv, Exact.SEPARATED_LIMIT, closed_form=closed_form)

BRADLEY_TERRY_TWIN = "`psipo --psi logit` (paper Prop. 1, under Bradley–Terry preferences)"

DPO = Method(
    "dpo", "Direct preference optimisation (paper Eq. 4)", PAIRWISE, trl="sigmoid", twin=BRADLEY_TERRY_TWIN, loss=LOSS,
    formula="-log sigma(tau h)",
)
