"""Losses of a comparison's two actions' own values, shared by the `single-action` and `reference-free`
families and by their gradient block (`psipo_cli.methods.single_action.block`).

A comparison `(w, l)` costs `ell(u_w, u_l)`, where `u` is the offset `delta = log(pi / pi_ref)` (NCA, BCO,
SPPO-hard, APO, KTO) or the log-probability `log pi` itself (CPO, ORPO: no reference). Unlike a loss of
`h = delta_w - delta_l`, such a loss is not invariant to a common shift of `u`, so the normalisation
`sum_y pi(y) = 1` binds: in the logits `x` (`log pi = x - logsumexp(x)`) the gradient is
`dL/dx = g - pi sum(g)`, `g = dL/du`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from psipo_cli.numerics import sigmoid

#: `(u, tau, z0) -> array`: a term of one action (`z0` is KTO's reference point, 0 for the others).
TermFn = Callable[[np.ndarray, Any, Any], np.ndarray]
#: `(u_w, u_l, tau, z0) -> array`: a comparison's loss.
PairValueFn = Callable[[np.ndarray, np.ndarray, Any, Any], np.ndarray]
#: `(u_w, u_l, tau, z0) -> (d/du_w, d/du_l)`.
PairGradFn = Callable[[np.ndarray, np.ndarray, Any, Any], tuple[np.ndarray, np.ndarray]]


def softplus(x: np.ndarray) -> np.ndarray:
    """`log(1 + e^x)`, exact at ±inf."""
    return np.logaddexp(0.0, x)


def sigmoid_slope(x: np.ndarray) -> np.ndarray:
    """`sigma'(x) = sigma(x) sigma(-x)` (0 at ±inf)."""
    return sigmoid(x) * sigmoid(-x)


@dataclass(frozen=True)
class ActionTerms:
    """`ell(u_w, u_l) = win(u_w) + lose(u_l)` (the loss is a sum of a function of the
    winner's offset and one of the loser's, as in NCA, BCO, SPPO-hard, APO-zero and KTO).

    The dataset loss is then `sum_y [W_y win(delta_y) + L_y lose(delta_y)] / sum W`, with `W_y` the wins and
    `L_y` the losses of action `y`: a sum of one function per action, which the exact solver minimises on
    the simplex.
    """

    win: TermFn
    lose: TermFn
    win_grad: TermFn
    lose_grad: TermFn


@dataclass(frozen=True)
class ComparisonLoss:
    """A loss of a comparison's two actions' values `u` (offsets, or log-probabilities: `reference_free`).

    Attributes
    ----------
    value, grad : callable
        `ell(u_w, u_l, tau, z0)` and its partial derivatives; `tau` and `z0` broadcast (one per lane).
    reference_free : bool
        `u = log pi` (CPO, ORPO) rather than `u = log(pi / pi_ref)`.
    uses_kl : bool
        `z0 = max(0, KL(pi || pi_ref))` of the current policy, held fixed in the gradient (KTO); else 0.
    terms : ActionTerms or None
        The split into one term per action, when the loss has one (what the single-action exact solver uses).
    """

    value: PairValueFn
    grad: PairGradFn
    reference_free: bool = False
    uses_kl: bool = False
    terms: ActionTerms | None = None


def from_terms(terms: ActionTerms, uses_kl: bool = False) -> ComparisonLoss:
    """The comparison loss `win(u_w) + lose(u_l)` of per-action terms."""
    return ComparisonLoss(
        value=lambda uw, ul, tau, z0: terms.win(uw, tau, z0) + terms.lose(ul, tau, z0),
        grad=lambda uw, ul, tau, z0: (terms.win_grad(uw, tau, z0), terms.lose_grad(ul, tau, z0)),
        uses_kl=uses_kl,
        terms=terms,
    )


def comparison_loss(u: np.ndarray, W: np.ndarray, loss: ComparisonLoss, tau: float, z0: float = 0.0) -> float:
    """`sum_{w,l} W[w,l] ell(u_w, u_l) / sum W` (pairs of `np.nonzero(W)`, the diagonal included)."""
    w, l_ = np.nonzero(W)
    c = W[w, l_]
    with np.errstate(invalid="ignore"):
        values = loss.value(u[w], u[l_], tau, z0)
    return float(np.sum(c * np.where(c > 0, values, 0.0)) / c.sum())


def comparison_grad_u(u: np.ndarray, W: np.ndarray, loss: ComparisonLoss, tau: float, z0: float = 0.0) -> np.ndarray:
    """`dL/du` of `comparison_loss`: each comparison adds `d ell/du_w` to `w` and `d ell/du_l` to `l`."""
    w, l_ = np.nonzero(W)
    c = W[w, l_] / W[w, l_].sum()
    gw, gl = loss.grad(u[w], u[l_], tau, z0)
    n = len(u)
    return np.bincount(w, weights=c * gw, minlength=n) + np.bincount(l_, weights=c * gl, minlength=n)


def values_of(x: np.ndarray, log_pi_ref: np.ndarray, reference_free: bool) -> tuple[np.ndarray, np.ndarray]:
    """`(pi, u)` at the offsets `x` (`pi ∝ pi_ref e^x`): `u = log pi` (`reference_free`) or
    `u = log(pi / pi_ref) = x - logsumexp(log pi_ref + x)` (finite also off `supp pi_ref`, where the offset is a
    free parameter that the policy does not see)."""
    z = log_pi_ref + x
    top = np.max(z)
    lse = top + np.log(np.sum(np.exp(z - top)))
    pi = np.exp(z - lse)
    return pi, (z - lse) if reference_free else (x - lse)


def offsets_gradient(
    x: np.ndarray, W: np.ndarray, loss: ComparisonLoss, tau: float, log_pi_ref: np.ndarray
) -> np.ndarray:
    """The exact gradient in the offsets `x` of `comparison_loss` at `pi ∝ pi_ref e^x`: `g - pi sum(g)`,
    `g = dL/du` (the normalisation's term), with KTO's `z0 = max(0, KL(pi || pi_ref))` held fixed."""
    pi, u = values_of(x, log_pi_ref, loss.reference_free)
    z0 = kl_point(pi, x, log_pi_ref) if loss.uses_kl else 0.0
    g = comparison_grad_u(u, W, loss, tau, z0) * term_mask(loss, log_pi_ref)
    return g - pi * np.sum(g)


def term_mask(loss: ComparisonLoss, log_pi_ref: np.ndarray) -> np.ndarray:
    """1 where an action's terms count, 0 elsewhere: a loss of single actions' offsets leaves out the terms
    of actions outside `supp pi_ref` (they have probability 0 whatever their offset, a free parameter, so
    their terms are constants the policy cannot change)."""
    if loss.terms is None or loss.reference_free:
        return np.ones(len(log_pi_ref))
    return np.isfinite(log_pi_ref).astype(float)


def action_weights(W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`(a, b)`: each action's wins `W_y = sum_l W[y, l]` and losses `L_y = sum_w W[w, y]` over `sum W`."""
    total = W.sum()
    return W.sum(axis=1) / total, W.sum(axis=0) / total


def terms_value(u: np.ndarray, W: np.ndarray, terms: ActionTerms, tau: float, z0: float, keep: np.ndarray) -> float:
    """`sum_y keep_y [a_y win(u_y) + b_y lose(u_y)]` (`action_weights`): the dataset loss of per-action terms
    (`u_y = -inf` is the limit of an action at mass 0)."""
    a, b = action_weights(W)
    with np.errstate(invalid="ignore", over="ignore"):
        win = np.where(a > 0, a * terms.win(u, tau, z0), 0.0)
        lose = np.where(b > 0, b * terms.lose(u, tau, z0), 0.0)
    return float(np.sum(np.where(keep > 0, win + lose, 0.0)))


def offsets_loss(x: np.ndarray, W: np.ndarray, loss: ComparisonLoss, tau: float, log_pi_ref: np.ndarray) -> float:
    """`comparison_loss` at `pi ∝ pi_ref e^x` (KTO: at `z0 = max(0, KL(pi || pi_ref))`)."""
    pi, u = values_of(x, log_pi_ref, loss.reference_free)
    z0 = kl_point(pi, x, log_pi_ref) if loss.uses_kl else 0.0
    if loss.terms is not None and not loss.reference_free:
        return terms_value(u, W, loss.terms, tau, z0, term_mask(loss, log_pi_ref))
    return comparison_loss(u, W, loss, tau, z0)


def kl_point(pi: np.ndarray, x: np.ndarray, log_pi_ref: np.ndarray) -> float:
    """KTO's reference point `z0 = max(0, KL(pi || pi_ref))` (`log(pi / pi_ref) = x - logsumexp`)."""
    support = np.isfinite(log_pi_ref) & (pi > 0)
    z = log_pi_ref[support] + x[support]
    top = np.max(z)
    log_ratio = x[support] - (top + np.log(np.sum(np.exp(z - top))))
    return max(0.0, float(np.sum(pi[support] * log_ratio)))
