"""The KL-regularised objective of paper Eq. 3 / Eq. 6 for a fixed target `r`, and its gradient."""

from __future__ import annotations

import numpy as np

from psipo_cli.methods.linalg import log_of, softmax_policy


def kl_divergence(pi: np.ndarray, pi_ref: np.ndarray) -> float:
    """`KL(pi || pi_ref) = sum pi log(pi / pi_ref)`, with `0 log 0 = 0` (inf if `pi` leaves `supp pi_ref`)."""
    mass = pi > 0
    if np.any(pi_ref[mass] == 0):
        return float("inf")
    return float(np.sum(pi[mass] * (np.log(pi[mass]) - np.log(pi_ref[mass]))))


def regularised_value(pi: np.ndarray, reward: np.ndarray, pi_ref: np.ndarray, tau: float) -> float:
    """`J(pi) = sum_y pi(y) r(y) - tau KL(pi || pi_ref)` (paper Eq. 3; Eq. 6 with `r = g`)."""
    mass = pi > 0
    return float(np.sum(pi[mass] * reward[mass]) - tau * kl_divergence(pi, pi_ref))


def kl_gradient(delta: np.ndarray, reward: np.ndarray, pi_ref: np.ndarray, tau: float) -> np.ndarray:
    """`dJ/dtheta_z = pi_z (q_z - E_pi q)`, `q = r - tau log(pi / pi_ref)` (paper Eq. 3).

    With `pi ∝ pi_ref exp(delta)`, `log(pi / pi_ref) = delta - log Z`; the constant cancels in
    `q - E_pi q`, so `q = r - tau delta` is used. Its zero is `delta = r / tau + const`.
    """
    pi = softmax_policy(log_of(pi_ref), delta)
    q = np.where(pi_ref > 0, reward - tau * delta, 0.0)
    return pi * (q - pi @ q)
