"""The KL-regularised preference game and its certificates (Munos et al., Nash learning from human feedback,
arXiv 2312.00886; Calandriello et al., arXiv 2403.08635).

The game between two policies is `f(pi, pi') = P(pi ≻ pi') - tau KL(pi || pi_ref) + tau KL(pi' || pi_ref)`,
`P(pi ≻ pi') = pi^T P pi'`. It is symmetric and constant-sum (`f(pi, pi') + f(pi', pi) = 1`, since
`P + P^T = 1`), strictly concave-convex for `tau > 0`, so its equilibrium `(pi*, pi*)` is unique, of value 1/2.
`duality_gap` certifies how far any policy is from it; `exploitability` is its unregularised (`tau = 0`) part.
"""

from __future__ import annotations

import numpy as np


def duality_gap(pi: np.ndarray, P: np.ndarray, pi_ref: np.ndarray, tau: float) -> float:
    """The duality gap of `pi` in the regularised preference game.

    `Gap(pi) = max_pi' f(pi', pi) - min_pi' f(pi, pi') = 2 max_pi' f(pi', pi) - 1` (constant sum), and the best
    response to `pi` is `T(pi) ∝ pi_ref exp(P pi / tau)`, so
    `Gap(pi) = 2 [tau log sum_y pi_ref(y) exp((P pi)_y / tau) + tau KL(pi || pi_ref)] - 1
             = 2 tau KL(pi || T(pi))`  (using `pi^T P pi = 1/2`).
    It is `>= 0`, zero exactly at the equilibrium, and bounds `KL(pi || pi*) <= Gap / (2 tau)`.

    Computed as `2 tau KL(pi || T(pi))` with `log T` from a max-shifted log-sum-exp, which keeps the gap
    accurate down to rounding (the first form subtracts two numbers near 1/2); a rounding error below 0 is
    reported as 0. Infinite when `pi` puts mass outside `supp pi_ref`.
    """
    pi = np.asarray(pi, dtype=float)
    support = np.asarray(pi_ref) > 0
    if np.any(pi[~support] > 0):
        return float("inf")
    z = np.full(pi.shape, -np.inf)
    z[support] = np.log(pi_ref[support]) + (P @ pi)[support] / tau
    top = z[support].max()
    log_t = z - (top + np.log(np.sum(np.exp(z[support] - top))))
    mass = pi > 0
    kl = float(np.sum(pi[mass] * (np.log(pi[mass]) - log_t[mass])))
    return max(0.0, 2.0 * tau * kl)


def exploitability(pi: np.ndarray, P: np.ndarray) -> float:
    """`max_y P(y ≻ pi) - 1/2`: how much the best single action beats `pi` (tau-free; 0 exactly at an
    unregularised equilibrium, a maximal lottery)."""
    return float(np.max(P @ np.asarray(pi, dtype=float)) - 0.5)


__all__ = ["duality_gap", "exploitability"]
