"""The Nash equilibrium of the KL-regularised preference game, exactly (Munos et al., Nash learning from human
feedback, arXiv 2312.00886; Calandriello et al., arXiv 2403.08635).

The game `f(pi, pi') = P(pi ≻ pi') - tau KL(pi || pi_ref) + tau KL(pi' || pi_ref)` is symmetric, constant-sum
and strictly concave-convex, so its equilibrium is unique and symmetric, `(pi*_tau, pi*_tau)`. The best
response to `pi` is `T_tau(pi) = softmax(log pi_ref + P pi / tau)`, and `pi*_tau` is its fixed point: the IPO
optimum whose behaviour policy is `pi*_tau` itself. Its support is `supp pi_ref`.

Plain iteration of `T_tau` is not a solver: `T_tau` is a contraction on the whole simplex only when
`tau > range(P - 1/2) / 2`, and at `pi*` its Jacobian `S(pi*) (P - 1/2) / tau` (`S = diag(pi) - pi pi^T`) has
purely imaginary eigenvalues, so once their modulus `rho` exceeds 1 the iteration moves away from `pi*` and
cycles. Newton's method on the logits does not have that problem: `F(theta) = theta - log pi_ref - P
softmax(theta) / tau` vanishes exactly at `theta* = log pi_ref + P pi* / tau` (F fixes the additive gauge of
`theta`, since `F(theta + c) = F(theta) + c`), and its Jacobian `I - (P - 1/2) S(theta) / tau` has eigenvalues
`1 - i omega / tau` with `omega` real (`S^{1/2} (P - 1/2) S^{1/2}` is skew-symmetric), of modulus at least 1:
it is never singular. Newton is started where `T_tau` contracts and `tau` is halved with warm starts
(continuation), with a backtracking line search on `||F||`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from psipo_cli.methods.game import duality_gap
from psipo_cli.numerics import softmax
from psipo_cli.schema import LIMIT, OPTIMAL

#: The requested accuracy of the fixed-point equation `F(theta) = 0` (max-norm, in logits).
TOLERANCE = 1e-12
#: Below this tau the logits (of size `1 / tau`) lose the digits the equation needs: the equilibrium is then
#: reported as its `tau -> 0` limit (the maximal lottery the regularisation selects), status `limit`.
TAU_MIN = 1e-9
NEWTON_ITERATIONS = 100  # per continuation level; quadratic convergence needs a handful from a warm start
HALVINGS_MAX = 60  # a continuation level that cannot be reached is approached in geometric sub-steps


@dataclass(frozen=True)
class Certificate:
    """How well a policy solves the regularised game.

    Attributes
    ----------
    gap : float
        The duality gap `2 tau KL(pi || T_tau(pi))` (`psipo_cli.methods.game.duality_gap`); it bounds
        `KL(pi || pi*_tau) <= gap / (2 tau)`.
    residual : float
        `||pi - T_tau(pi)||_1`, the fixed-point residual.
    rho : float
        The spectral radius of the Jacobian of `T_tau` at `pi` (on the simplex's tangent space). At `pi*` its
        eigenvalues are `± i omega / tau` and 0: undamped iteration `pi <- T_tau(pi)` diverges from `pi*` when
        `rho > 1`, and the damped `(1 - a) pi + a T_tau(pi)` converges locally only for `a < 2 / (1 + rho^2)`.
    """

    gap: float
    residual: float
    rho: float


@dataclass(frozen=True)
class Equilibrium:
    """The regularised Nash equilibrium and how it was found.

    Attributes
    ----------
    policy : array (n,)
        `pi*_tau` (zero off `supp pi_ref`).
    tau : float
    status : str
        `optimal` (`||F||_inf` at the tolerance or at the rounding floor of logits of size `1 / tau`), or
        `limit` (`tau < TAU_MIN`: the `tau -> 0` limit, see `limit_policy`).
    certificate : Certificate
    newton_residual : float
        `||F(theta)||_inf` at the returned logits.
    levels : int
        The continuation levels (values of tau) solved on the way.
    iterations : int
        Newton iterations over all levels.
    """

    policy: np.ndarray
    tau: float
    status: str
    certificate: Certificate
    newton_residual: float
    levels: int
    iterations: int


def fixed_point_map(P: np.ndarray, pi_ref: np.ndarray, tau: float, pi: np.ndarray) -> np.ndarray:
    """`T_tau(pi) = softmax(log pi_ref + P pi / tau)`: the best response to `pi` in the regularised game (the
    maximiser of `pi'^T P pi - tau KL(pi' || pi_ref)`); zero off `supp pi_ref`."""
    P, pi_ref, pi = (np.asarray(a, dtype=float) for a in (P, pi_ref, pi))
    z = np.full(pi_ref.shape, -np.inf)
    support = pi_ref > 0
    z[support] = np.log(pi_ref[support]) + (P @ pi)[support] / tau
    return softmax(z)


def certificate(P: np.ndarray, pi_ref: np.ndarray, tau: float, pi: np.ndarray) -> Certificate:
    """The duality gap, fixed-point residual and Jacobian spectral radius of `T_tau` at `pi` (`Certificate`).

    The Jacobian of `T_tau` at `pi` is `S(T(pi)) P / tau`, `S(q) = diag(q) - q q^T`; on tangent vectors of the
    simplex `P` may be replaced by `A = P - 1/2` (the constant part maps them to 0). Its spectral radius is
    taken over `supp pi_ref` (the map is constant off it).
    """
    P, pi_ref, pi = (np.asarray(a, dtype=float) for a in (P, pi_ref, pi))
    image = fixed_point_map(P, pi_ref, tau, pi)
    support = pi_ref > 0
    q = image[support]
    S = np.diag(q) - np.outer(q, q)
    A = P[np.ix_(support, support)] - 0.5
    rho = float(np.max(np.abs(np.linalg.eigvals(S @ A)))) / tau
    return Certificate(
        gap=duality_gap(pi, P, pi_ref, tau), residual=float(np.sum(np.abs(pi - image))), rho=rho
    )


def equilibrium(P: np.ndarray, pi_ref: np.ndarray, tau: float) -> np.ndarray:
    """The regularised Nash equilibrium `pi*_tau` (`solve_equilibrium(...).policy`)."""
    return solve_equilibrium(P, pi_ref, tau).policy


def solve_equilibrium(P: np.ndarray, pi_ref: np.ndarray, tau: float) -> Equilibrium:
    """`pi*_tau`, the unique fixed point of `T_tau(pi) = softmax(log pi_ref + P pi / tau)`, with its certificate.

    Parameters
    ----------
    P : array (n, n)
        Preferences, `P[y, y'] = P(y ≻ y')`, `P + P^T = 1`.
    pi_ref : array (n,)
        The reference policy; the equilibrium's support is its support.
    tau : float
        The KL weight, `> 0`.

    Notes
    -----
    Newton on `F(theta) = theta - log pi_ref - P softmax(theta) / tau` over `supp pi_ref` (see the module
    docstring). Continuation: the first level is `tau_0 = max(tau, range(A))`, twice the contraction threshold
    `range(A) / 2`, started from `theta = log pi_ref + P pi_ref / tau_0` (one application of `T`); each next
    level halves tau down to the requested one, warm-started by one application of `T` to the previous
    equilibrium. A level whose Newton line search stalls is approached in smaller geometric steps.
    """
    P, pi_ref = np.asarray(P, dtype=float), np.asarray(pi_ref, dtype=float)
    if not (np.isfinite(tau) and tau > 0):
        raise ValueError(f"tau must be positive and finite, got {tau}")
    support = pi_ref > 0
    if tau < TAU_MIN:
        from psipo_cli.methods.nash.lottery import maximal_lottery

        pi = np.zeros_like(pi_ref)
        pi[support] = maximal_lottery(P[np.ix_(support, support)], pi_ref[support])
        return Equilibrium(pi, tau, LIMIT, certificate(P, pi_ref, tau, pi), float("nan"), 0, 0)
    # `A = P - 1/2` in place of `P`: the same equilibrium (`P pi = A pi + 1/2` on the simplex), logits shifted by
    # `1 / (2 tau)`, so those of the equilibrium's support stay of order 1 and keep their digits at small tau.
    A = P[np.ix_(support, support)] - 0.5
    log_ref = np.log(pi_ref[support])
    spread = float(A.max() - A.min())
    levels, iterations = 0, 0
    current = max(tau, spread)
    theta = log_ref + A @ pi_ref[support] / current
    while True:
        theta, residual, used, ok = _newton(theta, A, log_ref, current)
        iterations += used
        if not ok:
            raise ArithmeticError(f"Newton stalled at tau = {current:g} (||F|| = {residual:.3g})")
        levels += 1
        if current == tau:
            break
        target = max(tau, current / 2.0)
        theta, current, used = _reach(theta, A, log_ref, current, target)
        iterations += used
    pi = np.zeros_like(pi_ref)
    pi[support] = softmax(theta)
    return Equilibrium(pi, tau, OPTIMAL, certificate(P, pi_ref, tau, pi), residual, levels, iterations)


def _reach(theta: np.ndarray, A: np.ndarray, log_ref: np.ndarray, current: float, target: float
           ) -> tuple[np.ndarray, float, int]:
    """Warm start for the level `target` from the solution at `current`: one application of `T`, and if that
    start is too far for Newton, intermediate levels geometrically between the two."""
    used = 0
    for _ in range(HALVINGS_MAX):
        start = log_ref + A @ softmax(theta) / target
        solved, _, n, ok = _newton(start, A, log_ref, target)
        used += n
        if ok:
            # `solved` is the solution at `target`; the caller's Newton call then confirms it in one step.
            return solved, target, used
        target = np.sqrt(current * target)
    raise ArithmeticError(f"continuation could not leave tau = {current:g}")


def _newton(theta: np.ndarray, A: np.ndarray, log_ref: np.ndarray, tau: float) -> tuple[np.ndarray, float, int, bool]:
    """Newton's method with backtracking on `||F||_2` for `F(theta) = theta - log_ref - A softmax(theta) / tau`.

    Returns the logits, `||F||_inf`, the iterations used, and whether `||F||_inf` reached the rounding floor of
    the equation (a few ulps of the largest logit and of `1 / tau`), or stopped decreasing within `TOLERANCE`.
    """
    def residual(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pi = softmax(t)
        return t - log_ref - A @ pi / tau, pi

    eye = np.eye(len(theta))
    F, pi = residual(theta)
    norm = float(np.linalg.norm(F))
    for k in range(NEWTON_ITERATIONS):
        # Rounding floor of F: a few ulps of the logits and of the terms `A pi / tau`. Newton is run down to it
        # (one step past 1e-12 costs nothing and gains the last digits).
        floor = 16.0 * np.finfo(float).eps * (np.max(np.abs(theta)) + 1.0 / tau)
        if np.max(np.abs(F)) <= floor:
            return theta, float(np.max(np.abs(F))), k, True
        S = np.diag(pi) - np.outer(pi, pi)
        step = np.linalg.solve(eye - A @ S / tau, -F)
        t = 1.0
        while t > 1e-12:
            trial = theta + t * step
            F_trial, pi_trial = residual(trial)
            norm_trial = float(np.linalg.norm(F_trial))
            if np.isfinite(norm_trial) and norm_trial <= (1.0 - 1e-4 * t) * norm:
                break
            t /= 2.0
        else:
            # No decrease along the Newton direction: rounding noise near the floor (accepted within the
            # tolerance), or a start too far away (the caller takes a smaller continuation step).
            return theta, float(np.max(np.abs(F))), k, bool(np.max(np.abs(F)) <= max(TOLERANCE, 64.0 * floor))
        theta, F, pi, norm = trial, F_trial, pi_trial, norm_trial
    return theta, float(np.max(np.abs(F))), NEWTON_ITERATIONS, bool(np.max(np.abs(F)) <= max(TOLERANCE, 64.0 * floor))


__all__ = ["Certificate", "Equilibrium", "certificate", "equilibrium", "fixed_point_map", "solve_equilibrium"]
