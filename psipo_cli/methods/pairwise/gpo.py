"""GPO, generalised preference optimisation (Tang et al. 2024, arXiv 2402.05749): `f(tau h)` for a choice of
`f` (`--gpo-f`), one `PairLoss` per function (`gpo_loss`).

| `--gpo-f` | `f(x)` | kind of exact answer |
|---|---|---|
| `logistic` | `log(1 + e^-x)` (DPO's loss itself) | `SEPARATED_LIMIT` |
| `exponential` | `e^-x` | `SEPARATED_LIMIT` (the same exponential tails) |
| `squared` | `(x - 1)^2` (IPO with `tau_IPO = tau / 2`) | `ATTAINED` |
| `truncated-quadratic` | `max(0, 1 - x)^2` | `SET` (`polyhedral.quadratic_minimisers`) |
| `savage` | `1 / (1 + e^x)^2` (not convex) | `LOCAL` (`multistart`), `diverged` where separated |
| `hinge` | `max(0, 1 - x)` (SLiC / RSO, TRL `hinge`) | `SET` (`polyhedral.hinge_minimisers`) |

One comparison won `a` times and lost `b` times (`p = a / (a + b)`) has `z* = logit p`, `logit(p) / 2`,
`2 p - 1`, `2 p - 1`, `logit p`, `sign(2 p - 1)` respectively (setting `a f'(z) = b f'(-z)`; a half-line
`z >= 1` at `p = 1` for the last two, the interval `[-1, 1]` at `p = 1/2` for the hinge).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from psipo_cli.methods.pairwise import dpo
from psipo_cli.methods.pairwise.family import PAIRWISE
from psipo_cli.methods.pairwise.multistart import multistart
from psipo_cli.methods.pairwise.polyhedral import hinge_minimisers, quadratic_minimisers
from psipo_cli.methods.spec import Exact, ImpliedReward, Method, PairLoss
from psipo_cli.numerics import sigmoid

Margin = Callable[[np.ndarray], np.ndarray]


def tau_loss(f: Margin, df: Margin, d2f: Margin, exact: Exact, **extra: Any) -> PairLoss:
    """The `PairLoss` `pair_loss(h, tau) = f(tau h)`, `pair_grad(h, tau) = tau f'(tau h)`, margin `f` (tau a
    float or an array broadcasting with `h`, one value per lane)."""

    def pair_loss(h: np.ndarray, tau: Any) -> np.ndarray:
        return f(tau * np.asarray(h))

    def pair_grad(h: np.ndarray, tau: Any) -> np.ndarray:
        return tau * df(tau * np.asarray(h))

    return PairLoss(pair_loss, pair_grad, f, df, d2f, exact, **extra)


def _exp(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):  # +inf far on the losing side: the line searches reject such points
        return np.exp(-x)


def _savage(x: np.ndarray) -> np.ndarray:
    return sigmoid(-x) ** 2


def _savage_grad(x: np.ndarray) -> np.ndarray:
    s = sigmoid(-x)
    return -2.0 * s**2 * (1.0 - s)


def _savage_curv(x: np.ndarray) -> np.ndarray:
    # d/dx of -2 s^2 (1 - s) with ds/dx = -s (1 - s): 2 s^2 (1 - s) (2 - 3 s).
    s = sigmoid(-x)
    return 2.0 * s**2 * (1.0 - s) * (2.0 - 3.0 * s)


def _hinge_part(x: np.ndarray) -> np.ndarray:
    return np.maximum(0.0, 1.0 - x)


def _savage_minimisers(W: np.ndarray) -> ImpliedReward:
    return multistart(W, SAVAGE).answer()


EXPONENTIAL = tau_loss(_exp, lambda x: -_exp(x), _exp, Exact.SEPARATED_LIMIT)
SQUARED = tau_loss(lambda x: (x - 1.0) ** 2, lambda x: 2.0 * (x - 1.0), lambda x: np.full(np.shape(x), 2.0),
                   Exact.ATTAINED)
TRUNCATED_QUADRATIC = tau_loss(
    lambda x: _hinge_part(x) ** 2, lambda x: -2.0 * _hinge_part(x), lambda x: 2.0 * (np.asarray(x) < 1.0),
    Exact.SET, minimisers=quadratic_minimisers, kinks=(1.0,),
)
SAVAGE = tau_loss(
    _savage, _savage_grad, _savage_curv, Exact.LOCAL, minimisers=_savage_minimisers, diverges_when_separated=True,
    tail_rate=2.0,
)
HINGE = tau_loss(
    _hinge_part, lambda x: -(np.asarray(x) < 1.0).astype(float), lambda x: np.zeros(np.shape(x)), Exact.SET,
    minimisers=hinge_minimisers, kinks=(1.0,),
)
FUNCTIONS: dict[str, PairLoss] = {
    "logistic": dpo.LOSS, "exponential": EXPONENTIAL, "squared": SQUARED, "truncated-quadratic": TRUNCATED_QUADRATIC,
    "savage": SAVAGE, "hinge": HINGE,
}


@functools.cache
def gpo_loss(gpo_f: str) -> PairLoss:
    """The GPO loss for `--gpo-f` (one object per function: lanes with one loss share a kernel call)."""
    return FUNCTIONS[gpo_f]


GPO = Method(
    "gpo", "Generalised preference optimisation f(tau h), f chosen by --gpo-f (arXiv 2402.05749)", PAIRWISE,
    options=("gpo_f",), loss_of=gpo_loss,
    formula="f(tau h), f by --gpo-f (logistic: DPO; squared: IPO at tau / 2)",
)
