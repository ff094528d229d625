"""The result of an exact solver for one context."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OPTIMAL = "optimal"  # the objective attains its optimum; `policy` is it (first-order conditions hold)
DIVERGED = "diverged"  # no minimiser on the data: `policy` is the limit of every minimising sequence chosen
LIMIT = "limit"  # the population objective is infinite (Psi(0) or Psi(1) infinite): `policy` is the eps -> 0 limit


@dataclass(frozen=True)
class Solution:
    """An exact solution for one context.

    Attributes
    ----------
    policy : array (n,)
        The optimal (or limit) policy.
    status : str
        `optimal`, `diverged` or `limit` (see the constants above).
    loss : float
        The method's own objective at the solution, or its infimum when `status` is not `optimal`.
    offsets : array (n,) or None
        `delta = log(pi / pi_ref)` in the canonical gauge when the optimum is attained.
    detail : str
        A sentence on how the limit was resolved, when it had to be.
    reward : array (n,) or None
        The implied reward the policy tempers, `pi ∝ pi_ref exp(reward / tau)` in the canonical gauge
        (RLHF's fitted reward, `tau * delta` for DPO and IPO, `g(y)` for PsiPO); None where it is not finite.
    """

    policy: np.ndarray
    status: str
    loss: float
    offsets: np.ndarray | None = None
    detail: str = ""
    reward: np.ndarray | None = None
