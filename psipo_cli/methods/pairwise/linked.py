"""Logistic losses on a transformed potential (χPO, f-DPO): `-log sigmoid(tau (psi(delta_w) - psi(delta_l)))`.

The policy enters through the score `psi(delta)` of each action's offset `delta = log(pi / pi_ref)`, not
through `h = delta_w - delta_l`, so the normalisation `sum pi_ref e^delta = 1` does not drop out and the
gradient engine needs its own block (`LinkBlock`). In the potential `g_y = tau psi(delta_y)` the loss is
DPO's logistic loss of `g_w - g_l` (paper Eq. 4 with `tau h` replaced by `g_w - g_l`), so its minimiser is
the Bradley–Terry MLE `z*` (paper Prop. 4) up to a constant: `g = z* + c`, and every tau is one map

    pi*(y) = pi_ref(y) exp(psi^-1((z*_y + c) / tau)),   c normalising,

where `c` is unique because the map is increasing in `c`, and lies where `(z* + c) / tau` stays in the range
of `psi` (`normalised_offsets`). Data with a separating comparison have no minimiser: the limit keeps DPO's
structure (`_limit.separated_limit`: the same winning components and finite parts of `z`) mapped through
`psi^-1` on the winners (the losers get 0 for every tau). Links:

- χPO (Huang et al. 2024, arXiv 2407.13399): `psi(delta) = phi(e^delta)`, `phi(u) = u + log u`, whose inverse
  is `log W0(e^v) = v - omega(v)` (Lambert W through the Wright omega function, exact in floating point for
  every `v`); `psi` covers the reals, so no action reaches mass 0 at finite `z`. Optionally the difference is
  clipped to `[-2 r_max, 2 r_max]` (χPO's `clip_{2R}`; `clipped_solutions`).
- f-DPO (Wang et al. 2023, arXiv 2309.16240; TRL `f_divergence_type`): forward KL `psi = -e^-delta`, the
  alpha-divergence `psi = -e^(-alpha delta) / alpha` (TRL's `f_alpha_divergence_coef` = alpha; forward KL is
  alpha = 1), Jensen–Shannon `psi = log sigmoid(delta)` (TRL: `logits - (softplus(delta_w) - softplus(delta_l))`).
  Their ranges are bounded above by 0. TRL caps the exponent at the dtype's range; here it is exact.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from psipo_cli.methods.linalg import comparison_graph, log_of, pairs_of, unseen_actions
from psipo_cli.methods.solution import DIVERGED, LOCAL, OPTIMAL, Solution
from psipo_cli.methods.spec import Exact, Method
from psipo_cli.numerics import sigmoid

Fn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Link:
    """A score `psi(delta)` (increasing), its derivative and inverse, and whether its range is `(-inf, 0)`."""

    name: str
    score: Fn
    score_grad: Fn
    inverse: Fn
    bounded: bool


def _chipo_inverse(v: np.ndarray) -> np.ndarray:
    """`delta` with `e^delta + delta = v`: `e^delta = W0(e^v) = omega(v)`, and `delta = v - omega(v)`
    (from `omega e^omega = e^v`), which has no `log 0` where `omega(v)` underflows."""
    from scipy.special import wrightomega

    v = np.asarray(v, float)
    return v - np.real(wrightomega(v))


CHI = Link("chi", lambda d: np.exp(d) + d, lambda d: np.exp(d) + 1.0, _chipo_inverse, bounded=False)


@cache
def alpha_link(alpha: float) -> Link:
    """`psi(delta) = -e^(-alpha delta) / alpha`, inverse `delta = -log(-alpha v) / alpha` (`v < 0`)."""
    a = float(alpha)
    return Link(
        f"alpha={a:g}",
        lambda d: -np.exp(-a * d) / a,
        lambda d: np.exp(-a * d),
        lambda v: -np.log(-a * np.asarray(v, float)) / a,
        bounded=True,
    )


JS = Link(
    "js",
    lambda d: -np.logaddexp(0.0, -np.asarray(d, float)),
    lambda d: sigmoid(-np.asarray(d, float)),
    lambda v: np.asarray(v, float) - np.log(-np.expm1(np.asarray(v, float))),  # logit(e^v)
    bounded=True,
)


@dataclass(frozen=True)
class LinkedLoss:
    """`-log sigmoid(clip(tau (psi(delta_w) - psi(delta_l)), -2 r_max, 2 r_max))` (no clip: `r_max = inf`)."""

    link: Link
    r_max: float = np.inf


    @property
    def exact(self) -> Exact:
        """`SEPARATED_LIMIT` without a clip (DPO's problem in the potential), `LOCAL` with one."""
        return Exact.SEPARATED_LIMIT if np.isinf(self.r_max) else Exact.LOCAL

    def margin(self, x: np.ndarray) -> np.ndarray:
        """The loss of a potential difference `x`: `softplus(-clip(x))`."""
        return np.logaddexp(0.0, -np.clip(x, -2.0 * self.r_max, 2.0 * self.r_max))

    def margin_grad(self, x: np.ndarray) -> np.ndarray:
        """Its derivative: `-sigma(-x)` inside the clip, 0 outside."""
        inside = np.abs(x) < 2.0 * self.r_max
        return np.where(inside, -sigmoid(-np.asarray(x, float)), 0.0)


def potential_offsets(X: np.ndarray, log_pi_ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise `(delta, pi)` of logits offsets `X` (`pi ∝ pi_ref e^X`): `delta = log(pi / pi_ref) = X - log Z`,
    0 off `supp pi_ref` (where the loss never reads it)."""
    Z = log_pi_ref + X
    top = np.max(Z, axis=-1, keepdims=True)
    log_norm = top + np.log(np.sum(np.exp(Z - top), axis=-1, keepdims=True))
    support = np.isfinite(log_pi_ref)
    return np.where(support, X - log_norm, 0.0), np.exp(Z - log_norm)


def linked_loss(X: np.ndarray, log_pi_ref: np.ndarray, W: np.ndarray, loss: LinkedLoss, tau: float) -> float:
    """The mean loss over the comparisons of `W` at logits offsets `X` (one lane)."""
    delta, _ = potential_offsets(X, log_pi_ref)
    s = tau * loss.link.score(delta)
    w, l_, c = pairs_of(W)
    return float(np.sum(c * loss.margin(s[w] - s[l_])) / c.sum())


def linked_grad(X: np.ndarray, log_pi_ref: np.ndarray, W: np.ndarray, loss: LinkedLoss, tau: float) -> np.ndarray:
    """Gradient of `linked_loss` in `X`: `g = d/d delta` is `tau f'(x) psi'(delta)` scattered to the winner
    (minus to the loser), and `delta = X - log Z` gives `dL/dX = g - pi sum(g)`."""
    delta, pi = potential_offsets(X, log_pi_ref)
    s = tau * loss.link.score(delta)
    w, l_, c = pairs_of(W)
    d = tau * c * loss.margin_grad(s[w] - s[l_]) / c.sum()
    n = len(X)
    g = (np.bincount(w, weights=d, minlength=n) - np.bincount(l_, weights=d, minlength=n)) * loss.link.score_grad(delta)
    g = np.where(np.isfinite(log_pi_ref), g, 0.0)
    return g - pi * g.sum()


def normalised_offsets(z: np.ndarray, log_pi_ref: np.ndarray, on: np.ndarray, link: Link, tau: float) -> np.ndarray:
    """`delta_y = psi^-1((z_y + c) / tau)` on the actions `on` (within `supp pi_ref`), `c` the unique constant
    with `sum_on pi_ref e^delta = 1`; `-inf` elsewhere.

    Brackets (`top` = the largest `z` on `on`): for χPO `psi^-1(v) <= 0` iff `v <= psi(0) = 1`, so `c = tau - max z`
    gives a sum `<= 1` and `c = tau - min z` one `>= 1`. For a range `(-inf, 0)`, `c = -max z - tau e^s`: `s =
    log(-psi(0))` gives a sum `<= 1`, `s = log(-psi(-log pi_ref(top)))` one `>= 1` (the top action alone).
    The root of the log of the sum is found by Brent's method to rounding.
    """
    a = z[on] / tau
    lp = log_pi_ref[on]
    top = int(np.argmax(a))

    def log_mass(delta: np.ndarray) -> float:
        x = lp + delta
        m = x.max()
        return float(m + np.log(np.sum(np.exp(x - m))))

    if link.bounded:
        def shifted(s: float) -> np.ndarray:
            return link.inverse(a - a[top] - np.exp(s))

        lo = float(np.log(-link.score(np.array(-lp[top]))))
        hi = float(np.log(-link.score(np.array(0.0))))
        delta_on = shifted(_root(lambda s: log_mass(shifted(s)), lo, hi))
    else:
        lo, hi = 1.0 - a.max(), 1.0 - a.min()
        delta_on = link.inverse(a + _root(lambda c: log_mass(link.inverse(a + c)), lo, hi))
    delta = np.full(len(z), -np.inf)
    delta[on] = delta_on - log_mass(delta_on)  # the root to rounding; renormalised exactly
    return delta


def _root(f: Callable[[float], float], lo: float, hi: float) -> float:
    """The root of the monotone `f` between the brackets `lo`, `hi` of `normalised_offsets` (Brent's method).
    In exact arithmetic `f` changes sign between them; in floating point an end can be the root to rounding
    (all actions tied: the sum is exactly 1 at a bracket), and then that end is the answer."""
    from scipy.optimize import brentq

    f_lo, f_hi = f(lo), f(hi)
    if f_lo == 0.0 or f_hi == 0.0 or (f_lo > 0) == (f_hi > 0):
        return lo if abs(f_lo) <= abs(f_hi) else hi
    return float(brentq(f, lo, hi, xtol=1e-15, rtol=1e-15))


def _solution(delta: np.ndarray, log_pi_ref: np.ndarray, status: str, loss: float, **kw: Any) -> Solution:
    policy = np.exp(np.where(np.isfinite(delta), log_pi_ref + delta, -np.inf))
    finite = bool(np.all(np.isfinite(delta[np.isfinite(log_pi_ref)])))
    offsets = np.where(np.isfinite(log_pi_ref), delta, 0.0) if finite else None
    return Solution(policy=policy / policy.sum(), status=status, loss=loss, offsets=offsets, **kw)


def solve_linked(loss: LinkedLoss, W: np.ndarray, pi_ref: np.ndarray, taus: Sequence[float]) -> list[Solution]:
    """Exact answer for each tau (module docstring); with a clip, `clipped_solutions`."""
    from psipo_cli.methods.pairwise._limit import separated_limit
    from psipo_cli.methods.pairwise.dpo import LOSS as LOGISTIC
    from psipo_cli.methods.pairwise.solver import implied_reward

    W = np.asarray(W, float)
    log_pi_ref = log_of(pi_ref)
    unseen = unseen_actions(W, pi_ref)
    support = np.isfinite(log_pi_ref)
    if np.isfinite(loss.r_max):
        return clipped_solutions(loss, W, log_pi_ref, taus, unseen)
    graph = comparison_graph(W)
    if not graph.has_minimiser:
        limit = separated_limit(W, log_pi_ref, graph, LOGISTIC)
        note = f"{limit.note}; the limit of DPO's potential (its winners and finite part) mapped through psi^-1"
        return [
            _solution(
                normalised_offsets(limit.offsets, log_pi_ref, limit.winners & support, loss.link, tau), log_pi_ref,
                DIVERGED, limit.infimum, detail=note, unseen=unseen, components=limit.components, losing=limit.losing,
            )
            for tau in taus
        ]
    z = implied_reward(W, LOGISTIC)
    w, l_, c = pairs_of(W)
    value = float(np.sum(c * loss.margin(z[w] - z[l_])) / c.sum())
    out = []
    for tau in taus:
        delta = normalised_offsets(z, log_pi_ref, support, loss.link, tau)
        out.append(_solution(delta, log_pi_ref, OPTIMAL, value, unseen=unseen, reward=tau * delta))
    return out


def clipped_solutions(
    loss: LinkedLoss, W: np.ndarray, log_pi_ref: np.ndarray, taus: Sequence[float], unseen: tuple[int, ...]
) -> list[Solution]:
    """With a clip (`r_max`): `softplus(-clip(x, -2R, 2R))` is flat beyond both ends (lowest for `x >= 2R`,
    highest for `x <= -2R`), so it is not convex in the potential either and the minimisers form a set
    (a comparison beyond `2R` may move freely as long as it stays there). The potential `z` is the best point
    of the multi-start search (`multistart`) on the clipped loss (status `local`), mapped through `psi^-1`
    as without a clip; the detail says that the minimisers form a set."""
    from psipo_cli.methods.pairwise.gpo import tau_loss
    from psipo_cli.methods.pairwise.multistart import multistart

    bound = 2.0 * loss.r_max

    def curv(x: np.ndarray) -> np.ndarray:
        s = sigmoid(-np.asarray(x, float))
        return np.where(np.abs(x) < bound, s * (1.0 - s), 0.0)

    search = multistart(W, tau_loss(loss.margin, loss.margin_grad, curv, Exact.LOCAL))
    w, l_, _ = pairs_of(W)
    beyond = int(np.sum(np.abs(search.z[w] - search.z[l_]) >= bound))
    note = (
        f"{search.note()}; the clip makes the loss flat beyond +-2 r_max = {bound:g}: the minimisers form a set "
        f"({beyond} of the {len(w)} compared pairs are at or beyond the clip here and may move along it)"
    )
    support = np.isfinite(log_pi_ref)
    return [
        _solution(normalised_offsets(search.z, log_pi_ref, support, loss.link, tau), log_pi_ref, LOCAL,
                  search.value, detail=note, unseen=unseen)
        for tau in taus
    ]


class LinkFamily:
    """Logistic losses on a transformed potential `tau psi(delta)` (χPO, f-DPO): exact through the
    Bradley–Terry MLE and `psi^-1`, gradient runs in `LinkBlock` lanes."""

    name = "pairwise-link"
    on_comparisons = True
    reward_stage = False
    exact = None

    def solve_exact(
        self, method: Method, inputs: Any, taus: Sequence[float], options: dict[str, Any]
    ) -> list[Solution]:
        loss = method.loss_at(options)
        assert isinstance(loss, LinkedLoss)
        return solve_linked(loss, inputs.W, inputs.pi_ref, taus)

    def gradient_lanes(self, method: Method, plan: Any, tau: float, options: dict[str, Any]) -> Any:
        """One `LinkBlock` lane per run (`plan.block_lane`)."""
        from psipo_cli.methods.pairwise.link_block import LinkBlock, LinkLane

        loss = method.loss_at(options)
        lane = LinkLane(loss, tau, plan.comparisons(), plan.stream, plan.log_pi_ref)
        return plan.block_lane("link", LinkBlock, (tau, loss), lane), loss

    def gradient_report(self, method: Method, run: Any, report: Any) -> float:
        """The mean loss at the reported offsets; one stage, its exact gradient `linked_grad`."""
        W, tau, loss = np.asarray(run.inputs.W, float), run.tau, run.extra
        log_pi_ref = log_of(np.asarray(run.inputs.pi_ref, float))
        report.stage("offsets", lambda x: linked_grad(x, log_pi_ref, W, loss, tau), run.lane, tau)
        return linked_loss(report.point(run.lane), log_pi_ref, W, loss, tau)


LINKED = LinkFamily()
