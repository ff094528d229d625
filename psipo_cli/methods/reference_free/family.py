"""The driver of the `reference-free` family (CPO, ORPO): losses of the log-probabilities `log pi` themselves,
minimised over the logits.

Both losses push an action that never wins towards 0 (its pairwise term decreases as its mass does, and the
winner's negative log-likelihood gains the mass), so their optimum on the simplex has exactly the actions that
win at least once (within `supp pi_ref`, the policy's support) as its support; the minimiser over that face is
found in the logits (L-BFGS with the analytic gradient, then Newton steps to rounding level). `pi_ref` enters
only through its support: a comparison whose winner lies outside it has an infinite loss the policy cannot
change and is left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from psipo_cli.methods.actions import ComparisonLoss, offsets_gradient, offsets_loss
from psipo_cli.methods.single_action.family import ActionLanes
from psipo_cli.methods.solution import Solution
from psipo_cli.methods.spec import Exact, Method
from psipo_cli.schema import LOCAL, OPTIMAL, SET

GTOL = 1e-13  # L-BFGS's projected-gradient tolerance in the logits
POLISH_STEPS = 8  # Newton steps after L-BFGS (each must shrink the gradient)
POLISH_H = 1e-5  # step of the central differences of the gradient


class ReferenceFreeFamily(ActionLanes):
    """A loss of `log pi` plus the winner's negative log-likelihood; one instance per method."""

    name = "reference-free"
    on_comparisons = True
    reward_stage = False
    no_counts = "every comparison is won by an action outside supp pi_ref, and the loss leaves those out"

    def __init__(self, loss_of: Any, exact: Exact, tau_scaled: bool = True) -> None:
        self._loss_of, self.exact, self.tau_scaled = loss_of, exact, tau_scaled

    def loss_at(self, method: Method, options: dict[str, Any]) -> ComparisonLoss:
        return self._loss_of(**method.option_values(options))

    def counts(self, W: np.ndarray, pi_ref: np.ndarray) -> np.ndarray:
        """`W` without the comparisons won by an action outside `supp pi_ref`."""
        return np.asarray(W, float) * (pi_ref > 0)[:, None]

    def solve_exact(
        self, method: Method, inputs: Any, taus: Sequence[float], options: dict[str, Any]
    ) -> list[Solution]:
        """Per tau: the minimiser on the face of the actions that win; convex (CPO) one start, certified by its
        vanishing gradient; not convex (ORPO) the best of several starts (status `local`)."""
        loss = self.loss_at(method, options)
        pi_ref = np.asarray(inputs.pi_ref, float)
        W = self.counts(inputs.W, pi_ref)
        winners = (W.sum(axis=1) > 0) & (pi_ref > 0)
        dropped = int(np.count_nonzero(np.asarray(inputs.W, float).sum(axis=1) > W.sum(axis=1)))
        notes = [] if self.tau_scaled else ["tau is ignored: the loss has no tau (its knob is orpo_lambda)"]
        if dropped:
            notes.append(f"comparisons won by {dropped} action(s) outside supp pi_ref are left out (their loss "
                         "is infinite whatever the policy)")
        if not winners.any():  # every comparison left out: the loss left is the same for every policy
            detail = "; ".join([
                "no comparison is won by an action in supp pi_ref, so every comparison is left out and the loss "
                "(0, a sum over none) is the same for every policy: reported is pi_ref (a gradient run has nothing "
                "to fit and is refused)", *notes])
            return [Solution(policy=pi_ref.copy(), status=SET, loss=0.0, detail=detail) for _ in taus]
        losers = int(np.count_nonzero((pi_ref > 0) & ~winners))
        if losers:
            notes.append(f"{losers} action(s) that never win at probability exactly 0 (an optimum on the boundary "
                         "of the simplex; a limit of the softmax)")
        return [self._solve(loss, W, pi_ref, winners, float(tau), notes) for tau in taus]

    def _solve(
        self, loss: ComparisonLoss, W: np.ndarray, pi_ref: np.ndarray, winners: np.ndarray, tau: float,
        notes: list[str],
    ) -> Solution:
        from scipy.optimize import minimize

        n = len(pi_ref)
        with np.errstate(divide="ignore"):
            log_face = np.where(winners, np.log(np.where(winners, pi_ref, 1.0)), -np.inf)
        k = int(winners.sum())
        convex = self.exact is Exact.CONVEX
        if k == 1:  # one-hot on the only winner: every term at its least value, 0
            policy = winners.astype(float)
            return Solution(policy=policy, status=OPTIMAL, loss=offsets_loss(np.zeros(n), W, loss, tau, log_face),
                            detail="; ".join(["one action wins: the optimum is one-hot on it", *notes]))
        starts = [np.zeros(n)]
        if not convex:
            frequency = np.where(winners, W.sum(axis=1), 0.0)
            starts += [np.where(winners, np.log(np.maximum(frequency, 1e-300)) - log_face, 0.0),
                       np.where(winners, -log_face, 0.0)]
            starts += [np.where(np.arange(n) == y, 4.0, 0.0) for y in np.flatnonzero(winners)]
        best, best_value = np.zeros(n), np.inf
        for x0 in starts:
            result = minimize(lambda x: offsets_loss(x, W, loss, tau, log_face), x0, method="L-BFGS-B",
                              jac=lambda x: offsets_gradient(x, W, loss, tau, log_face),
                              options={"maxiter": 20000, "gtol": GTOL, "ftol": 1e-16, "maxcor": 30})
            x = _polish(result.x, W, loss, tau, log_face, winners)
            value = offsets_loss(x, W, loss, tau, log_face)
            if value < best_value:
                best, best_value = x, value
        z = log_face + best
        policy = np.exp(z - np.max(z))
        policy /= policy.sum()
        gradient = float(np.max(np.abs(offsets_gradient(best, W, loss, tau, log_face))))
        if convex:
            status = OPTIMAL
            head = (f"convex in the logits: the stationary point (gradient inf-norm {gradient:.2g}) is the global "
                    "minimum, unique")
        else:
            status = LOCAL
            head = (f"not convex (the odds-ratio term): the best of {len(starts)} local minimisations (L-BFGS in "
                    "the logits, then Newton steps, from the uniform policy on the winners, pi_ref on them, their win "
                    "frequencies and each winner holding most of the mass)")
        offsets = None if k < int(np.count_nonzero(pi_ref)) else np.where(pi_ref > 0, best, 0.0)
        return Solution(policy=policy, status=status, loss=best_value, offsets=offsets,
                        detail="; ".join([head, *notes]))


def _polish(x: np.ndarray, W: np.ndarray, loss: ComparisonLoss, tau: float, log_face: np.ndarray,
            face: np.ndarray) -> np.ndarray:
    """Newton steps on the face's offsets from L-BFGS's point, while they shrink the exact gradient: the
    Hessian by central differences of the analytic gradient (`POLISH_H`), the common shift of the offsets (the
    Hessian's null direction) removed. L-BFGS stops at a gradient of about 1e-9 on badly scaled faces; a few
    such steps bring it to rounding level."""
    idx = np.flatnonzero(face)

    def grad(y: np.ndarray) -> np.ndarray:
        return offsets_gradient(y, W, loss, tau, log_face)[idx]

    g = grad(x)
    for _ in range(POLISH_STEPS):
        if np.max(np.abs(g)) <= 1e-15:
            break
        H = np.empty((len(idx), len(idx)))
        for j, k in enumerate(idx):
            e = np.zeros(len(x))
            e[k] = POLISH_H
            H[:, j] = (grad(x + e) - grad(x - e)) / (2.0 * POLISH_H)
        H = 0.5 * (H + H.T) + np.ones((len(idx), len(idx))) / len(idx)  # the shift direction pinned
        if not np.isfinite(H).all():
            break
        try:
            step = np.linalg.solve(H, g)
        except np.linalg.LinAlgError:  # curvature lost to rounding (extreme pi_ref or tau): keep L-BFGS's point
            break
        trial = x.copy()
        trial[idx] -= step
        g_trial = grad(trial)
        if not np.max(np.abs(g_trial)) < np.max(np.abs(g)):
            break
        x, g = trial, g_trial
    return x
