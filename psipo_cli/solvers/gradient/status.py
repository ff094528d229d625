"""The status rule of a gradient run: `converged`, `running` or `stalled` (the README's "Gradient status").

The gradient norm alone cannot tell "still moving" from "converged": on separable data Adam keeps
moving the DPO offsets by about `lr` per step when the gradient is 1e-9, and with minibatches the IPO
iterate jitters around its optimum forever. A stage is `converged` iff

1. its *averaged* iterate has stopped moving. Centre the offsets on `supp pi_ref` (a constant added to
   every offset changes no policy, and Adam does not keep their sum fixed) and average them over two
   windows of 10% of the steps each: B, the last 10%, and A, the 10% that end 40% before the end. The
   stage is still moving if, for some action, the window mean moved from A to B by more than `ztol` (9)
   times the iterate's jitter (its standard deviation within the windows, pooled) *and* by more than
   `xtol` (1e-4) in reward units (`tau * delta`, since `delta* = r / tau`; RLHF's reward stage is in
   reward units already). A steady trend moves about 14 jitters between windows 4 window-lengths
   apart (a linear ramp: 4 w over a within-window sd of w / sqrt(12)); stationary minibatch noise
   averages out in each window. Measured at the defaults (30 seeds x tau in {0.1, 0.5, 1, 2}): IPO on
   paper-d1/d3 at most 1.6 jitters; any method on data with a minimiser (cycle, bt-finite) at most 6.3;
   DPO on separable data (Adam or SGD, paper-d1/d3, separable bt-finite datasets) 12.7 to 19;
2. for deterministic stages (full batch, and every KL stage), in addition, the inf-norm of the exact
   gradient at the final iterate is at most `gtol` (1e-6).

With a decaying schedule the windows are read on the optimiser's own clock `elapsed(t)` and the jitter is
taken about each window's linear trend (`WindowStats`).

Stalled
-------
Rules 1 and 2 read "nothing moves" as "arrived". That is wrong when the optimiser *cannot* move: at
tau = 1e-160 IPO's gradient is ~1/tau, its square overflows Adam's second moment and the steps vanish;
at tau = 1e-10 Adam travels at most a few `lr` per step while the optimum is `1/(3 tau)` away, and the
`xtol` floor (in reward units, `tau * delta`) hides a move of 100 offsets. A stage is `stalled` (which
outranks `running` and `converged`) when at its reported point `x` the exact gradient `g` is not
finite, or `|g|_inf / tau > gtol` (the gradient in reward units, as `xtol`: DPO's gradient is of order
`tau`) and the distance still to go is beyond the optimiser's reach:

- the distance is a Newton step with the secant curvature of the path from the start `x_0 = 0`:
  `kappa = |<g - g_0, c>| / |c|^2` (`c` = `x` centred on `supp pi_ref`, `g_0` the gradient at `x_0`),
  `d = |g|_2 / kappa` (exact for a quadratic such as IPO along the optimum's direction); `kappa = 0`
  (the gradient did not change at all: every step was 0 or below the iterate's rounding) is `d = inf`;
- Adam moves a coordinate by at most `C lr_t` per step, `C = (1 - b1) / sqrt((1 - b2) (1 - b1^2 / b2))`
  (Cauchy–Schwarz on its two moving averages; 7.27 at the defaults), so in the whole run by at most
  `R = C sqrt(|supp pi_ref|) sum_t lr_t` in 2-norm: stalled when `d > STALL_FACTOR R` (100: more than
  a hundred times the steps would be needed even at top speed);
- SGD's steps scale with the gradient: linearised, the run shrinks the distance by `exp(-kappa sum lr_t)`;
  stalled when `kappa sum_t lr_t < 1 / STALL_FACTOR`.

A KL stage (RLHF's policy stage, ΨPO) whose rules 1 and 2 hold is `stalled` too when its policy is more than
`TRAP_TV` in total variation from the stage's closed-form optimum `pi_ref exp(r / tau)` (`kl_trapped`): its
gradient carries a factor `pi_y`, so it vanishes at an action the policy barely reaches (a `pi_ref` of
1e-24) however much the objective would gain there.

DPO on separable data at the paper's tau is not `stalled` (its gradient is ~1e-9 by the end: `d` is tiny;
the optimum is at infinity and rule 1 says `running`), nor is a converged run (`|g| / tau <= gtol`, or `d`
of the order of its jitter). At a tiny tau DPO's loss is linear over any reachable range (it needs
`tau h ~ 1` to bend): below tau ~ 4e-6 at the paper's settings it is `stalled` too. So gradient runs are
meaningless when the loss's scale in the offsets — `1/(2 tau)` for IPO's target margin, `1/tau` for DPO's
sigmoid, `r / tau` for the KL-regularised methods — exceeds what `lr * steps` can travel, and the status
says so instead of `converged`. A lane whose gradient at the start
is not finite (IPO below tau ~ 3e-309, where `1/(2 tau)` overflows) is held at `x_0` rather than filled
with NaN.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from psipo_cli.config.schedules import elapsed
from psipo_cli.config.settings import GradientSettings
from psipo_cli.methods.linalg import log_of, softmax_policy

STALL_FACTOR = 100.0  # `stalled`: still to go > this many times what the whole run can travel
TRAP_TV = 0.01  # `stalled`: a KL stage whose gradient vanished this far (total variation) from its optimum
WINDOW = 0.1  # fraction of the steps in each of the two averaging windows of the status rule


def windows(limit: np.ndarray, settings: GradientSettings) -> tuple[np.ndarray, np.ndarray]:
    """Per lane, the two averaging windows of the status rule over the iterates `x_0 .. x_T`, as step ranges
    `[start, end)`, each of shape `(2, L)` (row 0 window A, row 1 window B).

    On the clock `u(t) = T elapsed(t) / elapsed(T)` (`schedules.elapsed`; `u(t) = t` for the constant
    schedule), with `w = max(1, floor(WINDOW T))`: B holds the iterates with `u > T - w` (the last 10% of
    the optimisation time) and A those with `u` in `[T - 5w + 1, T - 4w + 1)` (the 10% that end 40% before
    the end; clipped to start at `x_0` in runs of fewer than 5 steps). The gap of `3w` between them lets a
    trend show as a move of about 4 window lengths, whereas stationary jitter averages out in each window.
    With a decaying schedule the windows hold more steps towards the end, where each step moves less.
    """
    T = limit.astype(np.int64)
    w = np.maximum(1, np.floor(WINDOW * limit).astype(np.int64))
    a_lo = np.maximum(0, T - 5 * w + 1)
    thresholds = np.stack([a_lo, a_lo + w, T - w + 1])
    if settings.lr_schedule == "constant" or settings.lr_final == 1.0:
        cut = thresholds
    else:
        # The first step whose clock reaches each threshold (u increases): bisection on integer steps.
        total = elapsed(settings.lr_schedule, T, T, settings.lr_final)
        lo, hi = np.zeros_like(thresholds), np.broadcast_to(T, thresholds.shape).copy()
        while np.any(lo < hi):
            mid = (lo + hi) // 2
            reached = T * elapsed(settings.lr_schedule, mid, T, settings.lr_final) / total >= thresholds - 1e-9
            hi = np.where(reached, mid, hi)
            lo = np.where(reached, lo, mid + 1)
        cut = lo
    starts = np.stack([cut[0], cut[2]])
    ends = np.stack([np.maximum(cut[1], cut[0] + 1), T + 1])
    return starts, ends


def intervals(starts: np.ndarray, ends: np.ndarray) -> list[tuple[int, int]]:
    """The union of the step ranges `[starts, ends)` of every lane, as sorted disjoint ranges."""
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted({(int(a), int(b)) for a, b in zip(starts.ravel(), ends.ravel(), strict=True)}):
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return merged


class WindowStats:
    """Sums over the two windows of the centred iterate, for rule 1 (memory O(L n) whatever the steps).

    Sums of `(c - ref)` and `(c - ref)^2` per window, `c` the centred iterate and `ref` its value at the
    start of the window (shifting by `ref` avoids cancellation when the iterate is far from 0). With a
    decaying step, also the sums of `u (c - ref)`, `u` and `u^2`, `u` the clock since the window's start,
    for the jitter about each window's linear trend.
    """

    def __init__(self, limit: np.ndarray, support: np.ndarray, settings: GradientSettings) -> None:
        L, n = support.shape
        self.limit, self.support = limit, support
        self.T = int(limit.max())
        self.starts, self.ends = windows(limit, settings)
        self.centre = support / support.sum(axis=1, keepdims=True)
        self.partial = not bool(support.all())
        self.ref, self.s1, self.s2 = np.zeros((2, L, n)), np.zeros((2, L, n)), np.zeros((2, L, n))
        self.schedule, self.final = settings.lr_schedule, settings.lr_final
        self.detrend = not (self.schedule == "constant" or self.final == 1.0)
        self.s3 = np.zeros((2, L, n)) if self.detrend else None
        self.su, self.suu = np.zeros((2, L)), np.zeros((2, L))
        self.origin = elapsed(self.schedule, self.starts, limit[None, :], self.final) if self.detrend else None
        self.average = np.zeros((L, n))
        self.uniform = bool(np.all(limit == self.T))
        self.first = int(self.starts[0, 0]), int(self.starts[1, 0])  # the windows' first steps (uniform lanes)
        self.accumulate = self._uniform if self.uniform else self._per_lane

    def _centred(self, X: np.ndarray) -> np.ndarray:
        c = X - np.sum(X * self.centre, axis=1, keepdims=True)
        return c * self.support if self.partial else c

    def _uniform(self, X: np.ndarray, t: int) -> None:
        """Every lane has the same windows: per step, at most one window to update, no masks."""
        a0, b0 = self.first
        k = 1 if t >= b0 else 0
        c = self._centred(X)
        if t == (b0 if k else a0):
            self.ref[k] = c
        c -= self.ref[k]
        self.s1[k] += c
        if self.detrend:
            u = float(elapsed(self.schedule, t, self.T, self.final)) - float(self.origin[k, 0])
            self.s3[k] += u * c
            self.su[k] += u
            self.suu[k] += u * u
        c *= c
        self.s2[k] += c
        if k == 1:
            self.average += X

    def _per_lane(self, X: np.ndarray, t: int) -> None:
        """Lanes with their own number of steps (RLHF's rm_steps): masked updates."""
        c = self._centred(X)
        begin = self.starts == t
        if begin.any():
            self.ref[begin] = np.broadcast_to(c, self.ref.shape)[begin]
        inside = ((self.starts <= t) & (t < self.ends))[:, :, None]
        d = (c - self.ref) * inside
        self.s1 += d
        self.s2 += d * d
        if self.detrend:
            u = (elapsed(self.schedule, t, self.limit, self.final)[None, :] - self.origin) * inside[:, :, 0]
            self.s3 += u[:, :, None] * d
            self.su += u
            self.suu += u * u
        self.average += X * inside[1]

    def result(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`(moved, jitter, mean of window B)`, each `(L, n)`: how far the window mean moved from A to B,
        the pooled within-window standard deviation (about the trend, with a decaying step), and B's mean."""
        width = (self.ends - self.starts)[:, :, None]
        means = self.s1 / width
        variances = self.s2 / width - means**2
        if self.detrend:
            mean_u = self.su / width[:, :, 0]
            var_u = (self.suu / width[:, :, 0] - mean_u**2)[:, :, None]
            cov = self.s3 / width - means * mean_u[:, :, None]
            variances -= np.divide(cov**2, var_u, out=np.zeros_like(cov), where=var_u > 0)
        variances = np.maximum(variances, 0.0)
        moved = np.abs(means[1] + self.ref[1] - means[0] - self.ref[0])
        jitter = np.sqrt(0.5 * (variances[0] + variances[1]))
        return moved, jitter, self.average / width[1]


def moving(moved: np.ndarray, jitter: np.ndarray, scale: float, settings: GradientSettings) -> tuple[bool, str]:
    """Status rule 1 for one lane: is its averaged iterate still moving? Returns the verdict and a clause.

    Still moving iff for some action the window mean moved by more than `ztol` times the jitter within
    the windows *and* by more than `xtol` in reward units (`scale` = tau for policy offsets, whose natural
    unit is `1 / tau`; 1 for RLHF rewards).
    """
    excess = (moved > settings.ztol * jitter) & (scale * moved > settings.xtol)
    if not excess.any():
        return False, ""
    y = int(np.argmax(np.where(excess, moved, -np.inf)))
    versus = f"{moved[y] / jitter[y]:.3g}x its jitter" if jitter[y] > 0 else "no jitter"
    return True, f"still moving (mean moved {scale * moved[y]:.2g} in reward units, {versus})"


def reasons(what: str, moving: bool, why: str, gnorm: float | None, settings: GradientSettings) -> list[str]:
    """Why a stage is still running (empty: converged).

    `gnorm` (rule 2, deterministic stages only, else None) is the exact gradient's inf-norm at the final
    iterate — for Adam, the smaller of that and its value at the mean iterate of the last window; with
    averaging, at the averaged point the run reports (whatever the optimiser). On a
    deterministic objective Adam with a constant step ends in a small oscillation around the optimum
    instead of converging pointwise (the final gradient stalls around 1e-5..1e-4 on `cycle` with RLHF);
    its steps are bounded by a few `lr` per coordinate, so that oscillation is lr-scale jitter around the
    point the average finds. SGD is tested at its final iterate only: an SGD 2-cycle (a step at the
    edge of stability) has an optimal average but is not converged.
    """
    out = [f"{what} {why}"] if moving else []
    if gnorm is not None and not gnorm <= settings.gtol:
        out.append(f"{what}: gradient norm {gnorm:.2g} > gtol {settings.gtol:g}")
    return out


def adam_reach(b1: float, b2: float) -> float:
    """The most Adam moves one coordinate per unit of learning rate: `|m_t| / sqrt(v_t)` is at most
    `(1 - b1) / sqrt((1 - b2) (1 - b1^2 / b2))` (Cauchy–Schwarz on the two moving averages; 7.3 at
    the defaults; the bias corrections' early transient is ignored); `inf` when `b1^2 >= b2`."""
    ratio = b1 * b1 / b2 if b2 > 0 else (0.0 if b1 == 0 else math.inf)
    return (1.0 - b1) / math.sqrt((1.0 - b2) * (1.0 - ratio)) if ratio < 1 else math.inf


def stalled(
    gradient: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    g: np.ndarray,
    support: np.ndarray,
    spent: float,
    scale: float,
    settings: GradientSettings,
) -> str:
    """The stall rule for one stage: why it is stalled, or "".

    The distance still to go is a Newton step with the secant curvature of the path from the start
    `x_0 = 0`: `kappa = |<g - g_0, c>| / |c|^2` (`c` = `x` centred on `supp pi_ref`), `d = |g|_2 / kappa`.
    Adam moves a coordinate by at most `adam_reach` lr per step, so in the whole run by at most
    `R = adam_reach sqrt(|supp pi_ref|) sum_t lr_t`: stalled when `d > STALL_FACTOR R`. SGD's steps scale
    with the gradient: linearised, the run shrinks the distance by `exp(-kappa sum lr_t)`; stalled when
    `kappa sum_t lr_t < 1 / STALL_FACTOR`.

    `x` is the reported point and `g` the exact gradient there, `spent` the stage's summed learning rate,
    `scale` the unit of rule 1 (tau for offsets, 1 for rewards).
    """
    with np.errstate(all="ignore"):
        g0 = gradient(np.zeros_like(x))
    if not (np.isfinite(g).all() and np.isfinite(g0).all()):
        return "the exact gradient is not finite, so no step can follow it"
    gmax = float(np.max(np.abs(g)))
    if not gmax / scale > settings.gtol:
        return ""
    c = x[support] - x[support].mean()  # the path start -> end, in the gauge of the status rule
    size = float(c @ c)
    curvature = abs(float((g - g0)[support] @ c)) / size if size > 0 else 0.0
    if not curvature > 0:
        why = "the steps could not move the offsets measurably"
        if settings.optimizer == "adam" and gmax > math.sqrt(np.finfo(float).max):
            why = "its square overflows Adam's second moment, so the steps vanish"
        return f"the exact gradient ({gmax:.2g}) did not change along the run: {why}"
    distance = float(np.linalg.norm(g[support])) / curvature  # a Newton step with the secant curvature
    if settings.optimizer == "adam":
        per_step = adam_reach(settings.b1, settings.b2)
        reach = per_step * spent * math.sqrt(int(support.sum()))
        if distance > STALL_FACTOR * reach:
            return (
                f"about {distance:.2g} still to go in the offsets (gradient {gmax:.2g} / curvature "
                f"{curvature:.2g}), {distance / reach:.2g} times the {reach:.2g} that Adam can travel in the "
                f"whole run (at most {per_step:.3g} lr per step and coordinate)"
            )
    elif curvature * spent < 1.0 / STALL_FACTOR:
        return (
            f"the steps shrink the distance to a stationary point by a factor of only "
            f"exp(-{curvature * spent:.2g}) over the whole run (curvature {curvature:.2g} x summed lr "
            f"{spent:.2g})"
        )
    return ""


def kl_trapped(x: np.ndarray, reward: np.ndarray, pi_ref: np.ndarray, tau: float, actions: Sequence[str]) -> str:
    """Why a KL stage whose rules 1 and 2 hold is nonetheless `stalled`, or "".

    The gradient of `E_pi r - tau KL(pi || pi_ref)` in the offsets is `pi_y (q_y - E_pi q)` (`kl.kl_gradient`):
    it vanishes where the policy has almost no mass even when `q_y` is far above the mean, e.g. from a
    `pi_ref` of 1e-24 on the best action, and then no optimiser moves (Adam's steps are `g / (sqrt(v) +
    eps)` with `g` ~ 1e-24). The stage's optimum is known in closed form, `pi* ∝ pi_ref exp(r / tau)`
    (paper Eq. 4); the stage is trapped when the reported policy is more than `TRAP_TV` from it in total
    variation.
    """
    with np.errstate(all="ignore"):
        log_ref = log_of(pi_ref)
        pi, best = softmax_policy(log_ref, x), softmax_policy(log_ref, np.where(pi_ref > 0, reward / tau, 0.0))
    if not (np.isfinite(best).all() and np.isfinite(pi).all()):
        return ""
    tv = 0.5 * float(np.abs(pi - best).sum())
    if not tv > TRAP_TV:
        return ""
    y = int(np.argmax(best - pi))
    return (f"the exact gradient vanished {tv:.2g} (total variation) from the stage's optimum pi_ref exp(r / tau): "
            f"{actions[y]} has probability {pi[y]:.2g} where the optimum gives it {best[y]:.2g}, and the gradient "
            f"in the offsets carries a factor pi, so the steps vanish there")
