"""The exact minimiser of a sum of one function per action over the simplex, certified by a Lagrange multiplier.

Losses of single actions (NCA, BCO, SPPO-hard, APO-zero, KTO at a fixed `z0`) give, per context,
`L(delta) = sum_y phi_y(delta_y)`, `phi_y = a_y win + b_y lose` (`a_y`, `b_y`: the action's wins and losses
over the number of comparisons), subject to `sum_y pi_ref(y) e^{delta_y} = 1`. In masses `m_y = pi(y)` it is
`min sum_y psi_y(m_y)` over the simplex, `psi_y(m) = phi_y(log(m / pi_ref(y)))`, which is not convex in
general.

The solver uses Lagrangian duality, which needs no convexity to certify: for every multiplier `nu`,
`D(nu) = nu + sum_y min_{0 <= m <= 1} (psi_y(m) - nu m) <= min L`. Each inner problem is one-dimensional and
is solved globally (its stationary points are the crossings of `nu_y(d) = phi_y'(d) e^{-d} / pi_ref(y)` with
`nu`, found on a grid and refined by bisection, compared with the ends `m = 0` and `m = 1`). Its minimiser
`m_y(nu)` is non-decreasing in `nu`, so `sum_y m_y(nu) = 1` is solved by bisection on `nu`. Where the sum
hits 1, the point minimises the Lagrangian and is feasible: `D(nu) = L(m)`, a certificate of global
optimality (status `optimal`; an action at mass exactly 0 is an optimum on the simplex's boundary, a limit
of the softmax). Where the sum jumps over 1 there is a duality gap: either the jumping actions are
indifferent (their `psi` is constant: the minimisers form a set) or the problem is genuinely non-convex and
the reported point is the best of a documented multi-start local search (status `local`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from psipo_cli.methods.actions import ActionTerms
from psipo_cli.schema import LOCAL, OPTIMAL, SET

TINY_MASS = 1e-300  # masses below this are 0 for the grid (the grid's left end, in offsets)
GRID_WIDE = 1500  # points spread uniformly in delta over [log(TINY_MASS / pi_ref), -log pi_ref]
GRID_NEAR = 1500  # points uniform in tau (delta - z0) over [-GRID_SPAN, GRID_SPAN], where the terms bend
GRID_SPAN = 60.0
BISECTIONS = 200  # at most; both bisections stop once the bracket stops shrinking
JUMP = 1e-9  # a change of the total mass larger than this between adjacent multipliers is a jump


@dataclass(frozen=True)
class SimplexAnswer:
    """The minimiser on the simplex: masses, status, the value `sum_y phi_y`, and how it was certified."""

    masses: np.ndarray
    status: str
    value: float
    detail: str
    multiplier: float


@dataclass(frozen=True)
class Separable:
    """`phi_y(d) = a_y win(d) + b_y lose(d)` on `supp pi_ref` (terms of other actions are left out: their
    offsets are free and do not move the policy)."""

    terms: ActionTerms
    a: np.ndarray
    b: np.ndarray
    pi_ref: np.ndarray
    tau: float
    z0: float = 0.0

    def phi(self, d: np.ndarray, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        """`phi_y(d)` for the actions `rows` (d broadcasting as `(actions, points)` or `(actions,)`)."""
        a, b = self._weights(rows, d)
        with np.errstate(invalid="ignore", over="ignore"):
            win = np.where(a > 0, a * self.terms.win(d, self.tau, self.z0), 0.0)
            lose = np.where(b > 0, b * self.terms.lose(d, self.tau, self.z0), 0.0)
        return win + lose

    def dphi(self, d: np.ndarray, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        """`phi_y'(d)`."""
        a, b = self._weights(rows, d)
        with np.errstate(invalid="ignore", over="ignore"):
            win = np.where(a > 0, a * self.terms.win_grad(d, self.tau, self.z0), 0.0)
            lose = np.where(b > 0, b * self.terms.lose_grad(d, self.tau, self.z0), 0.0)
        return win + lose

    def _weights(self, rows: np.ndarray | slice, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a, b = self.a[rows], self.b[rows]
        if np.ndim(d) == 2:
            return a[:, None], b[:, None]
        return a, b

    def value(self, m: np.ndarray) -> float:
        """`sum_y psi_y(m_y)` over `supp pi_ref` (`m_y = 0` is the limit `delta_y -> -inf`)."""
        with np.errstate(divide="ignore"):
            d = np.log(m) - np.log(self.pi_ref)
        return float(np.sum(self.phi(d)))


def solve_simplex(problem: Separable) -> SimplexAnswer:
    """The minimiser of `sum_y psi_y(m_y)` over the simplex on `supp pi_ref` (module docstring)."""
    c = problem.pi_ref
    n = len(c)
    if n == 1:
        return SimplexAnswer(np.ones(1), OPTIMAL, problem.value(np.ones(1)), "", 0.0)
    lagrangian = _Lagrangian(problem)
    rising, falling = lagrangian.monotone()
    if falling.any() and rising.any():
        # Mass moved from an action whose loss never falls with its mass to one whose loss never rises never
        # increases the sum: the former have mass 0 at an optimum, and the rest is solved without them.
        keep = ~rising
        # (pi_ref restricted, not renormalised: the offsets stay log(m / pi_ref); nothing needs sum pi_ref = 1)
        sub = solve_simplex(Separable(problem.terms, problem.a[keep], problem.b[keep], c[keep], problem.tau,
                                      problem.z0))
        m = np.zeros(n)
        m[keep] = sub.masses
        detail = (f"{int(rising.sum())} action(s) whose loss never falls with their mass give it to one whose loss "
                  "never rises (probability 0, by monotonicity)")
        return SimplexAnswer(m, sub.status, problem.value(m), "; ".join(x for x in (sub.detail, detail) if x),
                             sub.multiplier)
    lo, hi = lagrangian.bracket()
    s_lo, s_hi = lagrangian.total(lo), lagrangian.total(hi)
    for _ in range(BISECTIONS):
        mid = np.sinh(0.5 * (np.arcsinh(lo) + np.arcsinh(hi)))
        if not lo < mid < hi:
            break
        s_mid = lagrangian.total(mid)
        if s_mid < 1.0:
            lo, s_lo = mid, s_mid
        else:
            hi, s_hi = mid, s_mid
    m_lo, m_hi = lagrangian.masses(lo), lagrangian.masses(hi)
    if s_hi - s_lo <= JUMP:
        m = m_hi if abs(s_hi - 1.0) <= abs(s_lo - 1.0) else m_lo
        m = m / m.sum()
        detail = (
            f"certified globally optimal on the simplex by the Lagrange multiplier nu = {hi:.6g}: the point "
            "minimises every action's sum_y [psi_y(m_y) - nu m_y] and sums to 1"
        )
        return SimplexAnswer(m, OPTIMAL, problem.value(m), detail, float(hi))
    jumping = np.flatnonzero(m_hi - m_lo > JUMP)
    if lagrangian.indifferent[jumping].all():
        # The jumping actions' loss does not depend on their mass: any split of the remaining mass is optimal.
        m = m_lo.copy()
        m[jumping] = 0.0
        m[jumping] = (1.0 - m.sum()) * c[jumping] / c[jumping].sum()
        detail = (
            f"a set of minimisers: the loss does not depend on the masses of {len(jumping)} action(s), which share "
            f"the remaining mass {float(m[jumping].sum()):.6g} in any split; the one reported splits it in proportion "
            "to pi_ref"
        )
        return SimplexAnswer(m, SET, problem.value(m), detail, float(hi))
    return _local_search(problem, m_lo, m_hi, float(hi))


class _Lagrangian:
    """The per-action global minimisers `m_y(nu)` of `psi_y(m) - nu m` on `[0, 1]`."""

    def __init__(self, problem: Separable) -> None:
        self.problem = problem
        c, tau = problem.pi_ref, problem.tau
        self.d_hi = -np.log(c)  # m = 1
        d_lo = np.log(TINY_MASS) - np.log(c)
        wide = np.linspace(0.0, 1.0, GRID_WIDE)[None, :] * (self.d_hi - d_lo)[:, None] + d_lo[:, None]
        near = problem.z0 + np.linspace(-GRID_SPAN, GRID_SPAN, GRID_NEAR)[None, :] / tau
        self.grid = np.sort(np.clip(np.concatenate([wide, np.broadcast_to(near, wide.shape)], axis=1),
                                    d_lo[:, None], self.d_hi[:, None]), axis=1)
        slope = problem.dphi(self.grid)
        scale = np.max(np.abs(slope), axis=1)
        self.indifferent = scale <= 1e-13 * tau * (problem.a + problem.b + 1e-300)
        with np.errstate(over="ignore"):
            self.nu_grid = np.clip(slope * np.exp(-self.grid) / c[:, None], -1e300, 1e300)
        self.nu_grid[self.indifferent] = 0.0
        # psi_y(0), the limit delta -> -inf; where it is infinite (an action that wins), the grid's left end
        # (mass TINY_MASS, reported as 0) instead: below every multiplier on the grid the minimiser of
        # psi_y - nu m lies there, not at m = 1 (which would make the total mass exceed 1 at the bracket's low
        # end and the bisection "certify" a point of the wrong total).
        at_zero = problem.phi(np.full(len(c), -np.inf))
        self.at_zero = np.where(np.isfinite(at_zero), at_zero, problem.phi(self.grid[:, 0]))
        self.at_one = problem.phi(self.d_hi)

    def monotone(self) -> tuple[np.ndarray, np.ndarray]:
        """Actions whose `phi'` is >= 0 on the whole grid (their `psi` never falls with the mass) and, among the
        others, those whose `phi'` is <= 0 on it (their `psi` never rises)."""
        slope = self.problem.dphi(self.grid)
        rising = np.all(slope >= 0, axis=1)  # the indifferent ones included
        falling = np.all(slope <= 0, axis=1) & ~rising
        return rising, falling

    def bracket(self) -> tuple[float, float]:
        """Multipliers below and above every crossing: the total mass is <= 1 at the first, >= 1 at the
        second (every action at mass 1)."""
        low, high = float(np.min(self.nu_grid)), float(np.max(self.nu_grid))
        return low - 1.0 - abs(low), high + 1.0 + abs(high)

    def masses(self, nu: float) -> np.ndarray:
        """`m_y(nu)`: of the candidates `m = 0`, `m = 1` and the local minima of `psi_y - nu m` (where
        `nu_y(d) - nu` turns from negative to positive), the one of least value."""
        p, c = self.problem, self.problem.pi_ref
        n = len(c)
        sign = self.nu_grid - nu
        rows, cols = np.nonzero((sign[:, :-1] < 0) & (sign[:, 1:] >= 0))
        best = np.where(self.at_one - nu <= self.at_zero, 1.0, 0.0)
        value = np.minimum(self.at_one - nu, self.at_zero)
        if len(rows):
            left, right = self.grid[rows, cols], self.grid[rows, cols + 1]
            for _ in range(BISECTIONS):
                mid = 0.5 * (left + right)
                if not np.any((left < mid) & (mid < right)):
                    break
                below = p.dphi(mid, rows) * np.exp(-mid) / c[rows] - nu < 0
                left, right = np.where(below, mid, left), np.where(below, right, mid)
            d = 0.5 * (left + right)
            mass = c[rows] * np.exp(d)
            q = p.phi(d, rows) - nu * mass
            order = np.lexsort((q, rows))  # per action, its best local minimum first
            first = np.ones(len(order), dtype=bool)
            first[1:] = rows[order][1:] != rows[order][:-1]
            r, qq, mm = rows[order][first], q[order][first], mass[order][first]
            better = qq < value[r]
            best[r[better]], value[r[better]] = mm[better], qq[better]
        # Indifferent actions: psi constant, so the whole interval for nu = 0 (the caller splits it).
        best[self.indifferent] = 1.0 if nu > 0 else 0.0
        return best[:n]

    def total(self, nu: float) -> float:
        return float(np.sum(self.masses(nu)))


def _local_search(problem: Separable, m_lo: np.ndarray, m_hi: np.ndarray, nu: float) -> SimplexAnswer:
    """No multiplier certifies a point: the best of local minimisations (L-BFGS in the logits) from pi_ref,
    the uniform policy, the two Lagrangian points either side of the jump and every vertex (0.98 on one
    action)."""
    from scipy.optimize import minimize

    c = problem.pi_ref
    n = len(c)
    log_c = np.log(c)

    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        z = x + log_c
        lse = np.max(z) + np.log(np.sum(np.exp(z - np.max(z))))
        d, pi = x - lse, np.exp(z - lse)
        g = problem.dphi(d)
        return float(np.sum(problem.phi(d))), g - pi * g.sum()

    starts = [c / c.sum(), np.full(n, 1.0 / n), m_lo / max(m_lo.sum(), 1e-300), m_hi / m_hi.sum()]
    starts += [np.where(np.arange(n) == k, 0.98, 0.02 / (n - 1)) for k in range(n)]
    best_m, best_value = c, np.inf
    for start in starts:
        x0 = np.log(np.maximum(start, 1e-12)) - log_c
        result = minimize(objective, x0, jac=True, method="L-BFGS-B", options={"maxiter": 5000, "gtol": 1e-12,
                                                                                   "ftol": 1e-15})
        z = result.x + log_c
        m = np.exp(z - np.max(z))
        m /= m.sum()
        value = problem.value(m)
        if value < best_value:
            best_m, best_value = m, value
    detail = (
        "not convex here: no Lagrange multiplier certifies a global optimum (the Lagrangian's minimisers jump "
        f"over total mass 1 at nu = {nu:.6g}); the policy is the best of {len(starts)} local minimisations "
        "(L-BFGS in the logits from pi_ref, the uniform policy, the Lagrangian points either side of the jump "
        "and every vertex)"
    )
    return SimplexAnswer(best_m, LOCAL, best_value, detail, nu)
