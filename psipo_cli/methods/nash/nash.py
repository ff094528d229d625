"""`nash`: the Nash equilibrium `pi*_tau` of the KL-regularised preference game (Munos et al., Nash learning
from human feedback, arXiv 2312.00886, Eq. 4), the fixed point of `T_tau(pi) = softmax(log pi_ref + P pi / tau)`
(`psipo_cli.methods.nash.equilibrium`), with its certificate in the detail."""

from __future__ import annotations

import numpy as np

from psipo_cli.methods.nash.equilibrium import solve_equilibrium
from psipo_cli.methods.nash.family import GAME
from psipo_cli.methods.solution import Solution
from psipo_cli.methods.spec import Method
from psipo_cli.schema import LIMIT


def solve(P: np.ndarray, pi_ref: np.ndarray, tau: float) -> Solution:
    """`pi*_tau` as a `Solution`: `loss` is its duality gap (the objective the equilibrium minimises, 0 at it),
    `reward` is `P(y ≻ pi*_tau)` (the equilibrium tempers it: `pi* ∝ pi_ref exp(P pi* / tau)`), and the detail
    gives the certificate (gap, fixed-point residual `||pi - T(pi)||_1`, spectral radius `rho` of `T`'s
    Jacobian; plain iteration of `T` diverges from `pi*` when `rho > 1`)."""
    e = solve_equilibrium(P, pi_ref, tau)
    c = e.certificate
    support = pi_ref > 0
    reward = np.where(support, np.asarray(P, float) @ e.policy, 0.0)
    if e.status == LIMIT:
        how = "tau below the precision of the fixed-point equation: its tau -> 0 limit, the maximal lottery"
    else:
        how = f"Newton with continuation in tau ({e.levels} levels, {e.iterations} steps)"
    cycles = "; plain iteration of T diverges (rho > 1)" if c.rho > 1 else ""
    detail = f"{how}: gap {c.gap:.3g}, fixed-point residual {c.residual:.3g}, rho {c.rho:.3g}{cycles}"
    return Solution(policy=e.policy, status=e.status, loss=c.gap, offsets=reward / tau, detail=detail, reward=reward)


NASH = Method(
    "nash",
    "Nash equilibrium of the KL-regularised preference game (Munos et al., arXiv 2312.00886)",
    GAME,
)
