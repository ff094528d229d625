"""The tabular updates of the online / self-play methods, as pure functions over lanes `(L, n)`.

A lane holds the offsets `X = log pi - log pi_ref` (up to a constant) of one run. Every regularised method
here moves the logits along one *score* (Munos et al., arXiv 2312.00886, §6-7; Calandriello et al., arXiv
2403.08635, §4):

    g = tau X - P m,    m = mix_b(pi) ∝ pi^(1-b) pi_ref^b  (the geometric mixture; b = 0: m = pi),

`(P m)_y = P(y ≻ m)`. Its three uses:

- **mirror descent** (`--optimizer md`): `X <- X - eta g`, i.e. `log pi_{t+1} = (1 - eta tau) log pi_t +
  eta tau log pi_ref + eta P m + const` — Nash-MD's update (arXiv 2312.00886 Eq. 9) and, with `b = 0`, INPO's
  (arXiv 2407.00617) and the self-play OMD step;
- **policy gradient** of `P(pi ≻ m) - tau KL(pi || pi_ref)` (`m` held fixed): `pi (g - pi·g)` is minus its
  gradient in the logits (Nash-MD-PG, TRL's Nash-MD trainer);
- **online IPO** (arXiv 2403.08635 §4): IPO's square loss on pairs drawn from `m` (stop-gradient) labelled by
  `P`; its expected gradient in the logits is `(4 / tau) m (g - m·g)`.

Each vanishes exactly where `g` is constant on the support, i.e. at `pi = T_tau(m)`, `T_tau(q) =
softmax(log pi_ref + P q / tau)`: with `m = mix_b(pi)` that is `pi = T_tau(pi*_{tau / (1 - b)})`, `pi*_t` the
regularised equilibrium at `t` (`stationary_point`). SPPO (arXiv 2405.00675) has no reference and no tau:
multiplicative weights `X <- X + eta P pi`, score `g = -P pi`.
"""

from __future__ import annotations

import numpy as np

from psipo_cli.methods.linalg import log_of, softmax_policy


def mixture(log_pi_ref: np.ndarray, X: np.ndarray, b: np.ndarray) -> np.ndarray:
    """`mix_b(pi) ∝ pi^(1-b) pi_ref^b` of `pi ∝ pi_ref exp(X)`: `∝ pi_ref exp((1 - b) X)` (rows; `b` (L, 1))."""
    return softmax_policy(log_pi_ref, (1.0 - b) * X)


def against(P: np.ndarray, m: np.ndarray) -> np.ndarray:
    """`(P m)_y = sum_y' P[y, y'] m(y')` per lane: `P` (L, n, n), `m` (L, n)."""
    return np.einsum("lij,lj->li", P, m)


def score(X: np.ndarray, P: np.ndarray, m: np.ndarray, tau: np.ndarray, support: np.ndarray) -> np.ndarray:
    """`g = tau X - P m` on the support, 0 off it (module docstring); `tau = 0` rows give SPPO's `-P pi`."""
    return np.where(support, tau * X - against(P, m), 0.0)


def centred(weights: np.ndarray, g: np.ndarray) -> np.ndarray:
    """`w (g - w·g)` per row: minus the logit gradient of a linear objective `w·(-g)` pulled through a softmax
    with weights `w` (the policy for a policy gradient, the pair distribution for online IPO)."""
    return weights * (g - np.sum(weights * g, axis=1, keepdims=True))


def stationary_point(P: np.ndarray, pi_ref: np.ndarray, tau: float, b: float) -> np.ndarray:
    """The stationary point `T_tau(pi*_{tau / (1 - b)})` of a score with mixture `b in [0, 1]`.

    At a stationary point `pi = T_tau(m)` with `m = mix_b(pi)`, so `m ∝ pi_ref^b pi^(1-b) ∝ pi_ref exp((1 - b)
    P m / tau)`: `m` is the equilibrium at temperature `tau / (1 - b)`, and `pi = T_tau(m)`. `b = 1`
    (`m = pi_ref`, the limit `tau / (1 - b) -> inf`) gives `T_tau(pi_ref)`, the IPO optimum with `mu = pi_ref`.
    """
    from psipo_cli.methods.nash.equilibrium import equilibrium, fixed_point_map

    m = pi_ref if b >= 1.0 else equilibrium(P, pi_ref, tau / (1.0 - b))
    return fixed_point_map(P, pi_ref, tau, m)


def residual(P: np.ndarray, pi_ref: np.ndarray, tau: float, b: float, pi: np.ndarray) -> float:
    """`2 tau KL(pi || T_tau(mix_b(pi)))`: zero exactly at the stationary point of mixture `b`; for `b = 0` the
    duality gap of the regularised game (`psipo_cli.methods.game.duality_gap`). Computed with a max-shifted
    log-sum-exp (an action of probability 0 adds 0); infinite when `pi` leaves `supp pi_ref`."""
    support = pi_ref > 0
    if np.any(pi[~support] > 0):
        return float("inf")
    log_ref = log_of(pi_ref)
    offsets = np.where(support, log_of(pi) - np.where(support, log_ref, 0.0), 0.0)
    m = pi_ref if b >= 1.0 else softmax_policy(log_ref, (1.0 - b) * offsets)
    z = log_ref[support] + (P @ m)[support] / tau
    log_t = z - (z.max() + np.log(np.sum(np.exp(z - z.max()))))
    p = pi[support]
    mass = p > 0
    return max(0.0, 2.0 * tau * float(np.sum(p[mass] * (np.log(p[mass]) - log_t[mass]))))


def replicator_residual(P: np.ndarray, pi_ref: np.ndarray, pi: np.ndarray) -> float:
    """`max_{y in supp pi_ref} P(y ≻ pi) - 1/2`: SPPO's distance to a rest point that no action of the
    reference's support can invade (0 exactly at an unregularised equilibrium of that support)."""
    return float(np.max((P @ pi)[pi_ref > 0]) - 0.5)
