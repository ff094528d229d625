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


def _sig(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _single(per_comparison: Callable[[np.ndarray, np.ndarray], np.ndarray], win_only: bool = False) -> Callable:
    """A loss of single actions' offsets `d = log(pi / pi_ref)`, the mean over the comparisons of
    `per_comparison(d_w, d_l)`, written as `(win term of w) + (lose term of l)` and restricted to the actions in
    supp pi_ref (their terms only: those of other actions do not depend on the policy)."""

    def loss(delta: np.ndarray, *, W: np.ndarray, tau: float, pi_ref: np.ndarray, **_: object) -> float:
        pi = _policy(delta, pi_ref)
        on = pi_ref > 0
        d = np.where(on, np.log(np.where(on, pi, 1.0)) - np.log(np.where(on, pi_ref, 1.0)), 0.0)
        w, l_, c = _comparisons(W)
        win, lose = per_comparison(d, tau)
        return float(np.sum(c * (np.where(on[w], win[w], 0.0) + np.where(on[l_], lose[l_], 0.0))) / c.sum())

    return loss


# TRL's loss branches, with `x = tau d` (tau is TRL's beta): nca_pair, bco_pair, sppo_hard, apo_zero.
nca = _single(lambda d, tau: (-np.log(_sig(tau * d)) - 0.5 * np.log(_sig(-tau * d)), -0.5 * np.log(_sig(-tau * d))))
bco = _single(lambda d, tau: (-np.log(_sig(tau * d)), -np.log(_sig(-tau * d))))
sppo_hard = _single(lambda d, tau: ((d - 0.5 / tau) ** 2, (d + 0.5 / tau) ** 2))
apo_zero = _single(lambda d, tau: (1.0 - _sig(tau * d), _sig(tau * d)))


def kto(delta: np.ndarray, *, W: np.ndarray, tau: float, pi_ref: np.ndarray, z0: float | None = None,
        **_: object) -> float:
    """KTO (arXiv 2402.01306) on paired data, weights 1: `1 - sigma(tau (d_w - z0)) + 1 - sigma(tau (z0 - d_l))`,
    `z0 = max(0, KL(pi || pi_ref))` unless given (the gradient holds it fixed)."""
    pi = _policy(delta, pi_ref)
    m = pi > 0
    z = max(0.0, float(np.sum(pi[m] * np.log(pi[m] / pi_ref[m])))) if z0 is None else z0
    return _single(lambda d, tau: (1.0 - _sig(tau * (d - z)), 1.0 - _sig(tau * (z - d))))(
        delta, W=W, tau=tau, pi_ref=pi_ref)


def apo_down(delta: np.ndarray, *, W: np.ndarray, tau: float, pi_ref: np.ndarray, **_: object) -> float:
    """TRL apo_down: `sigma(tau d_w) + 1 - sigma(tau (d_w - d_l))`."""
    pi = _policy(delta, pi_ref)
    d = np.log(pi / pi_ref)
    w, l_, c = _comparisons(W)
    return float(np.sum(c * (_sig(tau * d[w]) + 1.0 - _sig(tau * (d[w] - d[l_])))) / c.sum())


def cpo(delta: np.ndarray, *, W: np.ndarray, tau: float, pi_ref: np.ndarray, cpo_alpha: float = 1.0,
        **_: object) -> float:
    """CPO (arXiv 2401.08417): `-log sigma(tau (log pi_w - log pi_l)) - alpha log pi_w`."""
    lp = np.log(_policy(delta, pi_ref))
    w, l_, c = _comparisons(W)
    return float(np.sum(c * (np.log1p(np.exp(-tau * (lp[w] - lp[l_]))) - cpo_alpha * lp[w])) / c.sum())


def orpo(delta: np.ndarray, *, W: np.ndarray, pi_ref: np.ndarray, orpo_lambda: float = 0.1, **_: object) -> float:
    """ORPO (arXiv 2403.07691): `-log pi_w - lambda log sigma(log odds_w - log odds_l)`, odds = p / (1 - p)."""
    p = _policy(delta, pi_ref)
    w, l_, c = _comparisons(W)
    odds = np.log(p / (1.0 - p))
    return float(np.sum(c * (-np.log(p[w]) - orpo_lambda * np.log(_sig(odds[w] - odds[l_])))) / c.sum())


def _mean_of(f: Callable[[np.ndarray], np.ndarray], W: np.ndarray, delta: np.ndarray, tau: float) -> float:
    w, l_, c = _comparisons(W)
    return float(np.sum(c * f(tau * (delta[w] - delta[l_]))) / c.sum())


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def cdpo(delta: np.ndarray, *, W: np.ndarray, tau: float, label_smoothing: float = 0.1, **_: object) -> float:
    """cDPO (Mitchell 2023): `mean -(1 - e) log sigmoid(tau h) - e log sigmoid(-tau h)`."""
    e = label_smoothing
    return _mean_of(lambda x: (1 - e) * _softplus(-x) + e * _softplus(x), W, delta, tau)


def rdpo(delta: np.ndarray, *, W: np.ndarray, tau: float, label_smoothing: float = 0.1, **_: object) -> float:
    """rDPO (arXiv 2403.00409): `mean [(1 - e) (-log sigmoid(tau h)) - e (-log sigmoid(-tau h))] / (1 - 2 e)`."""
    e = label_smoothing
    return _mean_of(lambda x: ((1 - e) * _softplus(-x) - e * _softplus(x)) / (1 - 2 * e), W, delta, tau)


def hinge(delta: np.ndarray, *, W: np.ndarray, tau: float, **_: object) -> float:
    """SLiC / RSO hinge (arXiv 2305.10425, 2309.06657): `mean max(0, 1 - tau h)`."""
    return _mean_of(lambda x: np.maximum(0.0, 1.0 - x), W, delta, tau)


GPO_F: dict[str, Callable[[np.ndarray], np.ndarray]] = {  # GPO (arXiv 2402.05749), Table 1
    "logistic": lambda x: _softplus(-x),
    "exponential": lambda x: np.exp(-x),
    "squared": lambda x: (x - 1.0) ** 2,
    "truncated-quadratic": lambda x: np.maximum(0.0, 1.0 - x) ** 2,
    "savage": lambda x: 1.0 / (1.0 + np.exp(x)) ** 2,
    "hinge": lambda x: np.maximum(0.0, 1.0 - x),
}


def gpo(delta: np.ndarray, *, W: np.ndarray, tau: float, gpo_f: str = "logistic", **_: object) -> float:
    """GPO: `mean f(tau h)` for the chosen `f`."""
    return _mean_of(GPO_F[gpo_f], W, delta, tau)


def _mean(W: np.ndarray, loss_of_pair: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> float:
    w, l_, c = _comparisons(W)
    return float(np.sum(c * loss_of_pair(w, l_)) / c.sum())


def exo(delta: np.ndarray, *, W: np.ndarray, tau: float, label_smoothing: float = 1e-3, **_: object) -> float:
    """EXO (arXiv 2402.00856 Eq. 16; TRL exo_pair): `sigma(x) (log sigma(x) - log(1 - eps)) + sigma(-x)
    (log sigma(-x) - log eps)`, `x = tau h`."""
    eps = label_smoothing

    def f(w: np.ndarray, l_: np.ndarray) -> np.ndarray:
        x = tau * (delta[w] - delta[l_])
        s = 1.0 / (1.0 + np.exp(-x))
        return s * (-_softplus(-x) - np.log(1 - eps)) + (1 - s) * (-_softplus(x) - np.log(eps))

    return _mean(W, f)


def discopop(delta: np.ndarray, *, W: np.ndarray, tau: float, discopop_tau: float = 0.05, **_: object) -> float:
    """DiscoPOP (arXiv 2406.08414 Eq. 5; TRL discopop): `(1 - m) softplus(-x) + m e^-x`, `m = sigma(x / t)`."""

    def f(w: np.ndarray, l_: np.ndarray) -> np.ndarray:
        x = tau * (delta[w] - delta[l_])
        m = 1.0 / (1.0 + np.exp(-x / discopop_tau))
        return (1 - m) * _softplus(-x) + m * np.exp(-x)

    return _mean(W, f)


def simpo(delta: np.ndarray, *, W: np.ndarray, tau: float, pi_ref: np.ndarray, gamma: float = 0.5,
          **_: object) -> float:
    """SimPO (arXiv 2405.14734 Eq. 6, one token per action): `-log sigma(tau (log pi_w - log pi_l) - gamma)`."""
    log_pi = np.log(_policy(delta, pi_ref))
    return _mean(W, lambda w, l_: _softplus(-(tau * (log_pi[w] - log_pi[l_]) - gamma)))


def _potential(score: Callable[[np.ndarray], np.ndarray]) -> Callable[..., float]:
    """`-log sigma(tau (score(d_w) - score(d_l)))`, `d = log(pi / pi_ref)` of the normalised policy."""

    def objective(delta: np.ndarray, *, W: np.ndarray, tau: float, pi_ref: np.ndarray, **_: object) -> float:
        d = np.log(_policy(delta, pi_ref) / np.where(pi_ref > 0, pi_ref, 1.0))
        s = score(d)
        return _mean(W, lambda w, l_: _softplus(-tau * (s[w] - s[l_])))

    return objective


#: χPO (arXiv 2407.13399 Eq. 9, no clip): `phi(u) = u + log u`, `u = pi / pi_ref`.
chipo = _potential(lambda d: np.exp(d) + d)
#: f-DPO's default, TRL's forward KL score `-e^-delta` (`(e^-d_l - e^-d_w)` in TRL's logits).
fdpo = _potential(lambda d: -np.exp(-d))


REFERENCE: dict[str, Callable[..., float]] = {
    "dpo": dpo, "ipo": ipo, "rlhf": rlhf, "psipo": psipo, "cdpo": cdpo, "rdpo": rdpo, "hinge": hinge, "gpo": gpo,
    "exo": exo, "discopop": discopop, "simpo": simpo, "chipo": chipo, "fdpo": fdpo, "nash": nash,
    "nca": nca, "bco": bco, "sppo-hard": sppo_hard, "apo-zero": apo_zero, "apo-down": apo_down, "kto": kto,
    "cpo": cpo, "orpo": orpo,
    "online-ipo": stationarity(0.0), "inpo": stationarity(0.0), "egpo": stationarity(0.0),
    "ipo-md": stationarity(0.125), "nash-md-pg": stationarity(0.5),
    # Nash-MD without --mixture: the mixture is eta tau, eta the default learning rate 0.01.
    "nash-md": stationarity(lambda tau: 0.01 * tau), "sppo": sppo,
}
