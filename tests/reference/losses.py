"""Independent reference implementations, one function per registered method, written from the paper's
definitions (arXiv 2310.12036) with plain numpy: nothing here imports `psipo_cli`.

Each function is the method's objective as a function of the offsets `delta = log(pi / pi_ref)` (up to
the softmax's constant) for one context, to be minimised; `REFERENCE` maps method names to them, so the
conformance suite fails for a registered method without one.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def _comparisons(W: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    w, l_ = np.nonzero(W)
    return w, l_, W[w, l_]


def _policy(delta: np.ndarray, pi_ref: np.ndarray) -> np.ndarray:
    logits = np.where(pi_ref > 0, np.log(np.where(pi_ref > 0, pi_ref, 1.0)) + delta, -np.inf)
    e = np.exp(logits - logits[pi_ref > 0].max())
    return e / e.sum()


def dpo(delta: np.ndarray, *, W: np.ndarray, tau: float, **_: object) -> float:
    """Paper Eq. 4: `mean_{(w,l)} -log sigmoid(tau (delta_w - delta_l))` over the recorded comparisons."""
    w, l_, c = _comparisons(W)
    h = delta[w] - delta[l_]
    return float(np.sum(c * -np.log(1.0 / (1.0 + np.exp(-tau * h)))) / c.sum())


def ipo(delta: np.ndarray, *, W: np.ndarray, tau: float, **_: object) -> float:
    """Paper Eq. 17: `mean_{(w,l)} (delta_w - delta_l - 1 / (2 tau))^2`."""
    w, l_, c = _comparisons(W)
    h = delta[w] - delta[l_]
    return float(np.sum(c * (h - 1.0 / (2.0 * tau)) ** 2) / c.sum())


def rlhf_reward(r: np.ndarray, *, W: np.ndarray, rm_l2: float = 0.0, **_: object) -> float:
    """Paper Eq. 2 with a ridge: `mean_{(w,l)} -log sigmoid(r_w - r_l) + (rm_l2 / 2) ||r||^2`."""
    w, l_, c = _comparisons(W)
    return float(np.sum(c * np.log1p(np.exp(-(r[w] - r[l_])))) / c.sum() + 0.5 * rm_l2 * float(r @ r))


def rlhf(delta: np.ndarray, *, W: np.ndarray, tau: float, pi_ref: np.ndarray, rm_l2: float = 0.0,
         **_: object) -> float:
    """Paper Eqs. 2-3: with `r` the reward model's minimiser (`rlhf_reward`, by scipy), `-(E_pi r - tau KL)`."""
    from scipy.optimize import minimize

    n = W.shape[0]
    r = minimize(lambda x: rlhf_reward(x, W=W, rm_l2=rm_l2), np.zeros(n), method="BFGS", options={"gtol": 1e-12}).x
    pi = _policy(delta, pi_ref)
    m = pi > 0
    return float(-(pi @ r) + tau * np.sum(pi[m] * np.log(pi[m] / pi_ref[m])))


def psipo(delta: np.ndarray, *, P: np.ndarray, mu: np.ndarray, tau: float, pi_ref: np.ndarray,
          psi: str = "logit", **_: object) -> float:
    """Paper Eq. 6: `-(sum_y pi(y) sum_y' mu(y') Psi(P[y, y']) - tau KL(pi || pi_ref))` (finite Psi only)."""
    Psi = {"identity": lambda q: q, "logit": lambda q: np.log(q / (1.0 - q)), "log": np.log}[psi]
    g = Psi(P) @ mu
    pi = _policy(delta, pi_ref)
    m = pi > 0
    return float(-(pi @ g) + tau * np.sum(pi[m] * np.log(pi[m] / pi_ref[m])))


def stationarity(b: float) -> Callable[..., float]:
    """An online method whose opponent is the mixture `m = mix_b(pi) ∝ pi^(1-b) pi_ref^b` (Munos et al., arXiv
    2312.00886; Calandriello et al., arXiv 2403.08635): its expected update vanishes where `pi` is the best
    response `T(m) ∝ pi_ref exp(P m / tau)` to its opponent. The reference is `KL(pi || T(m))`, >= 0 and 0
    exactly there (for `b = 0` half the duality gap over tau). `b` may be a function of tau (Nash-MD)."""

    def residual(delta: np.ndarray, *, P: np.ndarray, tau: float, pi_ref: np.ndarray, **_: object) -> float:
        mixture = b(tau) if callable(b) else b
        pi = _policy(delta, pi_ref)
        m = _policy((1.0 - mixture) * delta, pi_ref)
        best = _policy(P @ m / tau, pi_ref)
        s = pi_ref > 0
        return float(np.sum(pi[s] * np.log(pi[s] / best[s])))

    return residual


def sppo(delta: np.ndarray, *, P: np.ndarray, pi_ref: np.ndarray, **_: object) -> float:
    """SPPO (multiplicative weights, arXiv 2405.00675): `max_y P(y ≻ pi) - 1/2` over `supp pi_ref`, 0 exactly
    at an unregularised equilibrium (its averaged iterates' limit); not differentiable there."""
    pi = _policy(delta, pi_ref)
    return float(np.max((P @ pi)[pi_ref > 0]) - 0.5)


def nash(delta: np.ndarray, *, P: np.ndarray, tau: float, pi_ref: np.ndarray, **_: object) -> float:
    """The duality gap of the KL-regularised preference game (Munos et al., arXiv 2312.00886), minimised (at 0)
    exactly by its Nash equilibrium: `2 max_pi' f(pi', pi) - 1` with `f(pi', pi) = pi'^T P pi -
    tau KL(pi' || pi_ref) + tau KL(pi || pi_ref)` and the inner maximum in closed form,
    `tau log sum_y pi_ref(y) exp((P pi)_y / tau)`."""
    pi = _policy(delta, pi_ref)
    m, s = pi > 0, pi_ref > 0
    z = np.log(pi_ref[s]) + (P @ pi)[s] / tau
    best = tau * (z.max() + np.log(np.sum(np.exp(z - z.max()))))
    return float(2.0 * (best + tau * np.sum(pi[m] * np.log(pi[m] / pi_ref[m]))) - 1.0)


REFERENCE: dict[str, Callable[..., float]] = {
    "dpo": dpo, "ipo": ipo, "rlhf": rlhf, "psipo": psipo, "nash": nash,
    "online-ipo": stationarity(0.0), "inpo": stationarity(0.0), "egpo": stationarity(0.0),
    "ipo-md": stationarity(0.125), "nash-md-pg": stationarity(0.5),
    # Nash-MD without --mixture: the mixture is eta tau, eta the default learning rate 0.01.
    "nash-md": stationarity(lambda tau: 0.01 * tau), "sppo": sppo,
}
