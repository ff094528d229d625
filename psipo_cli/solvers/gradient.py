"""The vectorised gradient engine (DESIGN §3; NOTES 'Per-pair gradients' and 'Adam').

Every run of a call — method spec × tau × seed × context — is one *lane*: a row of the parameter array
`X` of shape `(lanes, n)` holding the offsets `delta = logits - log pi_ref` (Adam/SGD on the offsets is
Adam/SGD on the logits: they differ by a constant). All lanes advance together; inside the step loop
there is no Python loop over runs or pairs, only over the (at most two) lane *blocks*:

- a **pairwise block** (DPO, IPO, and stage 1 of RLHF — the Bradley–Terry reward model, which is DPO's
  loss with `tau = 1` plus the ridge term `rm_l2 r`): each step gathers `h = X[lane, w] - X[lane, l]`
  for the lane's comparisons, applies the method's `pair_grad` (one call per method, on a slice of
  lanes) and scatter-adds `f'(h) (e_w - e_l)` with `np.bincount` on flattened `lane * n + action`
  indices;
- a **KL block** (stage 2 of RLHF and population ΨPO): the deterministic gradient of
  `J = E_pi r - tau KL(pi || pi_ref)`, `dJ/dtheta = pi (q - E_pi q)`, `q = r - tau delta` (NOTES).

Random streams
--------------
The minibatches of seed `k` in context `c` come from
``np.random.default_rng(np.random.SeedSequence([settings.seed, k, c]))``. DESIGN §3 writes
`SeedSequence([root_seed, run_index])`; we use the *seed index* (and the context index) as the run index,
so that a run's stream does not depend on which other runs share the call: every lane of seed `k` and
context `c` (any method, any tau) reads the same stream (common random numbers), and running tau values
together or one at a time, or one method or several, gives bit-identical per-run numbers (tested). The
stream is read in blocks of `STREAM_CHUNK` steps of `batch_size` uniforms each, mapped to comparisons by
`searchsorted` on the cumulative comparison probabilities `W[w, l] / sum W` (pairs in `np.nonzero(W)`
order); uniforms are drawn sequentially, so the block size does not change the draws either. RLHF's
reward stage reads the stream from its start, as DPO's run of the same seed does. Deterministic lanes
(full batch, KL block) read no stream; identical deterministic lanes (e.g. the seeds of a problem whose
data are not sampled) are computed once and reported once per seed.

Contexts are independent lanes with their own streams. Because the context index enters the seed
sequence, context `c` of a multi-context problem reproduces a one-context problem only for `c = 0`
(the same holds for sampled datasets, `problem.model.draw_wins`); a context's results never depend on
the other contexts.

Status (DESIGN §3)
------------------
The gradient norm alone cannot tell "still moving" from "converged": on separable data Adam keeps
moving the DPO offsets by about `lr` per step when the gradient is 1e-9, and with minibatches the IPO
iterate jitters around its optimum forever (its final-iterate gradient never gets small). A run is
`converged` iff

1. its *averaged* iterate has stopped moving. Centre the offsets on `supp pi_ref` (a constant added to
   every offset changes no policy, and Adam does not keep their sum fixed) and average them over two
   windows of 10% of the steps each: B, the last 10%, and A, the 10% that end 40% before the end. The
   run is still moving if, for some action, the window mean moved from A to B by more than `ztol` (9)
   times the iterate's jitter (its standard deviation within the windows, pooled) *and* by more than
   `xtol` (1e-4) in reward units (`tau * delta`, since `delta* = r / tau`; RLHF's reward stage is in
   reward units already). A steady trend moves about 14 jitters between windows 4 window-lengths
   apart (a linear ramp: 4 w over a within-window sd of w / sqrt(12)); stationary minibatch noise
   averages out in each window. Measured at the defaults (30 seeds x tau in {0.1, 0.5, 1, 2}): IPO on
   paper-d1/d3 at most 1.6 jitters; any method on data with a minimiser (cycle, bt-finite) at most 6.3;
   DPO on separable data (Adam or SGD, paper-d1/d3, separable bt-finite datasets) 12.7 to 19. The
   `xtol` floor only decides between smooth, essentially stopped iterates (deterministic runs at their
   optimum);
2. for deterministic stages (full batch, and every KL stage), in addition, the inf-norm of the exact
   gradient at the final iterate is at most `gtol` (1e-6).

RLHF is `converged` when both stages are (its reward stage by rule 1, plus rule 2 when full batch; its
policy stage by rules 1 and 2). Otherwise the run is `running` and `detail` says which test failed.
Limits of the rule: it works in log-probability space, so an action whose probability is already
~1e-5 but whose log-probability still creeps counts as moving (that is also how DPO's divergence on
separable data shows); and noise that mixes more slowly than a window (e.g. SGD on DPO at a tiny tau)
can look like a trend and give `running`, which is then literally true: the iterate has not settled.

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

DPO on separable data at the paper's tau is not `stalled` (its gradient is ~1e-9 by the end: `d` is tiny;
the optimum is at infinity and rule 1 says `running`), nor is a converged run (`|g| / tau <= gtol`, or `d`
of the order of its jitter). At a tiny tau DPO's loss is linear over any reachable range (it needs
`tau h ~ 1` to bend): below tau ~ 4e-6 at the paper's settings it is `stalled` too. So gradient runs are
meaningless when the loss's scale in the offsets — `1/(2 tau)` for IPO's target margin, `1/tau` for DPO's
sigmoid, `r / tau` for the KL-regularised methods — exceeds what `lr * steps` can travel, and the status
says so instead of `converged`. A lane whose gradient at the start
is not finite (IPO below tau ~ 3e-309, where `1/(2 tau)` overflows) is held at `x_0` rather than filled
with NaN.

Schedules and averaging
-----------------------
`lr_schedule` multiplies `lr` by `s(t)` (`psipo_cli.solvers.schedules`: constant, inverse-time, cosine,
exponential; each stage of `T` steps runs its own schedule from `s(0) = 1` to `s(T) = lr_final`). The
status rule reads a decaying step on the optimiser's own clock `elapsed(t) = integral_0^t s`: the windows
A and B are the iterates whose clock lies in the same fractions of `elapsed(T)` as above (with the constant
schedule exactly the step windows), so that a decaying step reads as a slower clock, not as arrival; and
the jitter of each window is its standard deviation about the window's least-squares linear trend on that
clock, so that the smooth (accelerating or decelerating) trend of a diverging run is not mistaken for
noise. Measured with the decaying schedules (10 seeds x tau in {0.1, 0.5, 1, 2}, `lr_final` 0.01): DPO on
separable paper-d1/d3 data 32 to 2500 jitters (`running`), IPO on paper-d1/d3 at most 3.6 with cosine and
exponential (`converged`); on `cycle` (a minimiser at 0) up to 19, so a few of those runs read
`running`; inverse-time, which spends most of its steps at a tiny rate, leaves a slowly mixing random walk
that rule 1 reports as `running` in a quarter of the IPO runs (literally true, as above).

`average` reports the policy of averaged offsets, `softmax(log pi_ref + xbar)` (offsets, not
probabilities, are averaged: the loss is convex in them for DPO and IPO), over the iterates
`t0 <= t <= T`, `t0 = floor(average_start T) + 1`: `polyak` the uniform mean, `ema` the weights
`(1 - ema_decay) ema_decay^(T - t)` divided by their sum `1 - ema_decay^(T - t0 + 1)`. RLHF averages
both stages (its policy stage uses the averaged reward model). The curves stay the raw iterate. Rule 1
reads the raw iterate's windows (which are averages already); rules 2 and the stall rule, `loss` and
`grad_norm` are evaluated at the reported (averaged) point.

`RunResult.noise` is the largest over actions of the standard deviation of `pi_y` of the raw iterate
over window B (sampled at most `NOISE_SAMPLES` times, evenly): for a converged minibatch run its
minibatch noise floor; for deterministic lanes the optimiser's own oscillation (~0 at convergence); for a
still-moving run it includes the drift within the window.

Resources
---------
Memory does not grow with the number of steps: the windows, the averages and the record grid are decided
by arithmetic on the step index, the curves are on the fixed log grid. `run_gradient` first estimates the
memory and time of the call (`estimate_resources`, `psipo_cli.solvers.resources`) and refuses with an
`InputError` a call that would not fit in the available memory; `steps` above 2**53 are not
representable.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from psipo_cli.config.settings import GradientSettings, check_option
from psipo_cli.errors import InputError
from psipo_cli.objectives import Method, get_method
from psipo_cli.objectives.bradley_terry import logistic_gradient, logistic_objective
from psipo_cli.objectives.kl import kl_gradient, regularised_value
from psipo_cli.objectives.pairwise import PairFn, log_of, mean_pair_grad, mean_pair_loss, pairs_of
from psipo_cli.objectives.psi import evaluate_psi, resolve_psi
from psipo_cli.problem import Problem, realise
from psipo_cli.schema import CONVERGED, RUNNING, STALLED
from psipo_cli.solvers.inputs import DATASET, method_inputs
from psipo_cli.solvers.resources import Resources, estimate, rows_bound
from psipo_cli.solvers.resources import check as check_resources
from psipo_cli.solvers.runs import GRADIENT, MethodSpec, RunResult
from psipo_cli.solvers.schedules import elapsed, factor

STALL_FACTOR = 100.0  # `stalled`: still to go > this many times what the whole run can travel
NOISE_SAMPLES = 256  # at most this many policies sampled in the last window for `RunResult.noise`
STREAM_CHUNK = 512  # steps of minibatch indices drawn at once, outside the step loop
WINDOW = 0.1  # fraction of the steps in each of the two averaging windows of the status rule
PROGRESS_EVERY = STREAM_CHUNK  # steps between progress callbacks


def record_grid(steps: int, records: int) -> np.ndarray:
    """The log-spaced steps at which curves are recorded: `0`, `records` points of `geomspace(1, steps)`
    rounded to integers (duplicates dropped), and always `steps`."""
    grid = np.round(np.geomspace(1, steps, records)).astype(int)
    return np.unique(np.r_[0, grid, steps]).astype(int)


# --------------------------------------------------------------------------------------------------------
# Policies and targets
# --------------------------------------------------------------------------------------------------------


def lane_softmax(log_pi_ref: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Row-wise `pi ∝ pi_ref exp(X)` for `(lanes, n)` arrays, max-shifted (NOTES, stable numerics).

    `log_pi_ref = -inf` gives probability exactly 0.
    """
    Z = log_pi_ref + X
    Z = Z - Z.max(axis=1, keepdims=True)
    E = np.exp(Z)
    return E / E.sum(axis=1, keepdims=True)


def psipo_target(
    P: np.ndarray, mu: np.ndarray, pi_ref: np.ndarray, psi_name: str, eps: float
) -> tuple[np.ndarray, str]:
    """`g(y) = sum_{y'} mu(y') Psi(P[y, y'])` with `P` clipped to `[eps, 1 - eps]` where `Psi(P)` is infinite.

    Only the entries where `Psi` is infinite are clipped, so a finite problem is solved exactly as posed.
    Columns outside `supp mu` do not enter (`0 * Psi` is 0 even where `Psi` is infinite, as in the exact
    solver). Returns `g` and a note for the run's `detail` (empty when nothing relevant was clipped).
    """
    psi = resolve_psi(psi_name)
    values = evaluate_psi(psi, P, psi_name)
    infinite = np.isinf(values)
    note = ""
    if infinite.any():
        P_used = np.where(infinite, np.clip(P, eps, 1.0 - eps), P)
        values = evaluate_psi(psi, P_used, psi_name)
        if np.isinf(values).any():
            raise InputError("--eps", eps, f"Psi {psi_name!r} is still infinite on P clipped to [eps, 1-eps]")
        if infinite[np.ix_(pi_ref > 0, mu > 0)].any():
            note = f"P clipped to [{eps:g}, 1 - {eps:g}] where Psi(P) is infinite"
    weights = np.where(mu > 0, mu, 0.0)
    g = np.where(weights[None, :] > 0, values, 0.0) @ weights
    return np.where(pi_ref > 0, g, 0.0), note


# --------------------------------------------------------------------------------------------------------
# Lanes
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Pairs:
    """One context's comparisons as the samplers see them: distinct pairs in `np.nonzero(W)` order."""

    W: np.ndarray
    w: np.ndarray
    l: np.ndarray  # noqa: E741
    p: np.ndarray  # W[w, l] / sum W
    cum: np.ndarray  # cumulative p, for inverse-CDF sampling of minibatch rows


def _pairs(W: np.ndarray, context: str) -> _Pairs:
    w, l_, c = pairs_of(W)
    if c.size == 0 or not c.sum() > 0:
        raise InputError("problem", context, "context has no comparisons: nothing for a gradient to fit")
    p = c / c.sum()
    return _Pairs(W, w, l_, p, np.cumsum(p))


@dataclass(eq=False)
class _PairLane:
    """A lane of the pairwise block: a pairwise method, or RLHF's reward stage (`tau = 1`, `l2 = rm_l2`)."""

    method: Method
    tau: float
    l2: float
    data: _Pairs
    stream: tuple[int, int] | None  # (seed k, context c), None for the full batch
    limit: int  # steps this lane takes (RLHF's rm_steps; the phase length otherwise)
    log_pi_ref: np.ndarray


@dataclass(eq=False)
class _KLLane:
    """A lane of the KL block: ascent on `E_pi r - tau KL(pi || pi_ref)` for a fixed `r`."""

    tau: float
    reward: np.ndarray | None  # None: RLHF, filled from the reward stage before phase 2
    log_pi_ref: np.ndarray
    stage1: int = -1  # RLHF: index of the reward-stage lane


class _PairBlock:
    """Pairwise lanes `[start, start + L)` of `X`: per step one gather, the `f'` calls, one scatter-add.

    A step's comparisons are stored as one flat index array `[winners | losers]` of `lane * n + action`
    indices (`2 L K` entries, `K` = batch size, or the padded number of distinct pairs for the full
    batch), so that `h` is one gather and the gradient `sum f'(h) (e_w - e_l)` is one `np.bincount` with
    weights `[g | -g]`. Each lane's contributions keep their order whatever other lanes are present, so a
    lane's numbers do not depend on the batch. Minibatch indices are drawn `STREAM_CHUNK` steps at a time.
    """

    def __init__(self, lanes: list[_PairLane], start: int, n: int, batch_size: int, seed: int) -> None:
        self.lanes = lanes
        self.start, self.stop, self.n = start, start + len(lanes), n
        L = len(lanes)
        self.size = L * n
        self.tau = np.array([lane.tau for lane in lanes])[:, None]
        self.l2 = np.array([lane.l2 for lane in lanes])[:, None]
        self.has_l2 = bool(np.any(self.l2 > 0))
        # Lanes are created spec by spec, so each method's lanes are contiguous: one pair_grad call each.
        self.segments: list[tuple[int, int, PairFn]] = []
        for i, lane in enumerate(lanes):
            fn = lane.method.pair_grad
            assert fn is not None
            if self.segments and self.segments[-1][2] is fn:
                self.segments[-1] = (self.segments[-1][0], i + 1, fn)
            else:
                self.segments.append((i, i + 1, fn))
        self.batch_size = batch_size
        self.base = (np.arange(L) * n)[None, :, None]  # broadcast over (side, lane, row)
        if batch_size == 0:
            K = max(len(lane.data.w) for lane in lanes)
            idx = np.zeros((2, L, K), dtype=np.intp)
            weights = np.zeros((L, K))  # padding: a (0, 0) "pair" of weight 0 adds exactly 0
            for i, lane in enumerate(lanes):
                k = len(lane.data.w)
                idx[0, i, :k], idx[1, i, :k], weights[i, :k] = lane.data.w, lane.data.l, lane.data.p
            self.idx = (idx + self.base).reshape(1, -1)
            self.weights: np.ndarray | None = weights
            self.constant = True
        else:
            K = batch_size
            self.weights = None
            self.constant = False
            self.streams = sorted({lane.stream for lane in lanes if lane.stream is not None})
            # Lanes reading the same stream on the same data share one searchsorted per chunk.
            groups: dict[tuple[tuple[int, int], int], list[int]] = {}
            for i, lane in enumerate(lanes):
                assert lane.stream is not None
                groups.setdefault((lane.stream, id(lane.data)), []).append(i)
            self.groups = [(key[0], lanes[idx[0]].data, np.array(idx)) for key, idx in groups.items()]
            self.seed = seed
        self.shape = (L, K)
        self.half = L * K
        self.weights_buffer = np.zeros(2 * L * K)  # [g | -g]

    def dead_rows(self) -> list[int]:
        """Rows of `X` whose gradient at the start is not finite (IPO's `1/(2 tau)` overflows below tau ~
        3e-309): they are held at 0 instead of poisoning the iterate, and reported `stalled`."""
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            return [
                self.start + i
                for i, lane in enumerate(self.lanes)
                if not np.isfinite(lane.method.pair_grad(np.zeros(1), lane.tau)).all()
            ]

    def reset_streams(self) -> None:
        """Start every stream from its beginning (each phase reads its streams from step 1)."""
        if not self.constant:
            self.rngs = {s: np.random.default_rng(np.random.SeedSequence([self.seed, *s])) for s in self.streams}

    def prepare(self, count: int) -> None:
        """Draw the minibatch indices of the next `count` (<= STREAM_CHUNK) steps, all lanes at once."""
        if self.constant:
            return
        B, L = self.batch_size, len(self.lanes)
        # Every stream is read in whole chunks, so what a stream yields never depends on `count`.
        uniforms = {s: rng.random((STREAM_CHUNK, B))[:count] for s, rng in self.rngs.items()}
        idx = np.empty((count, 2, L, B), dtype=np.intp)
        for stream, data, lanes in self.groups:
            j = np.minimum(np.searchsorted(data.cum, uniforms[stream], side="right"), len(data.w) - 1)
            idx[:, 0, lanes, :] = data.w[j][:, None, :]
            idx[:, 1, lanes, :] = data.l[j][:, None, :]
        idx += self.base
        self.idx = idx.reshape(count, 2 * L * B)

    def gradient(self, X: np.ndarray, i: int) -> np.ndarray:
        """The block's gradient `(L, n)` at the `i`-th step of the current chunk."""
        Xb = X[self.start : self.stop]
        idx = self.idx[0 if self.constant else i]
        x = Xb.ravel()[idx]  # ravel: a view of the block's rows of the C-contiguous X
        h = (x[: self.half] - x[self.half :]).reshape(self.shape)
        buffer = self.weights_buffer
        g = buffer[: self.half].reshape(self.shape)
        for a, b, fn in self.segments:
            g[a:b] = fn(h[a:b], self.tau[a:b])
        if self.weights is None:
            g /= self.batch_size  # the mean over the minibatch (NOTES)
        else:
            g *= self.weights
        np.negative(buffer[: self.half], out=buffer[self.half :])
        grad = np.bincount(idx, buffer, self.size).reshape(len(self.lanes), self.n)
        if self.has_l2:
            grad += self.l2 * Xb
        return grad


class _KLBlock:
    """KL lanes `[start, start + len(lanes))`: the exact gradient of `-J` (deterministic, no stream)."""

    def __init__(self, lanes: list[_KLLane], start: int) -> None:
        self.lanes = lanes
        self.start, self.stop = start, start + len(lanes)
        self.tau = np.array([lane.tau for lane in lanes])[:, None]
        self.log_pi_ref = np.stack([lane.log_pi_ref for lane in lanes])
        self.support = np.isfinite(self.log_pi_ref)

    def set_rewards(self, rewards: np.ndarray) -> None:
        self.reward = np.where(self.support, rewards, 0.0)

    def dead_rows(self) -> list[int]:
        return []  # rewards and targets are finite: so is the gradient

    def reset_streams(self) -> None:
        pass

    def prepare(self, count: int) -> None:
        pass

    def gradient(self, X: np.ndarray, i: int) -> np.ndarray:
        """The block's gradient `(L, n)` of `-J` (the same at every step `i` of a chunk)."""
        Xb = X[self.start : self.stop]
        Z = self.log_pi_ref + Xb
        Z -= Z.max(axis=1, keepdims=True)
        pi = np.exp(Z)
        pi /= pi.sum(axis=1, keepdims=True)
        q = np.where(self.support, self.reward - self.tau * Xb, 0.0)
        q -= np.sum(pi * q, axis=1, keepdims=True)
        q *= pi
        return np.negative(q, out=q)


@dataclass
class _PhaseResult:
    X: np.ndarray  # final offsets (L, n)
    moved: np.ndarray  # (L, n) |mean over window B - mean over window A| of the centred iterate
    jitter: np.ndarray  # (L, n) pooled standard deviation of the centred iterate within the two windows
    average: np.ndarray  # (L, n) mean of the (uncentred) iterate over window B
    curves: np.ndarray | None  # (T, L, n) policies at the recorded steps
    averaged: np.ndarray | None  # (L, n) the Polyak / EMA average of the offsets; None without averaging
    noise: np.ndarray | None  # (L,) largest standard deviation of pi_y over window B (policy phase only)
    elapsed: np.ndarray  # (L,) the stage's summed learning rate `sum_t lr_t` (its optimisation time)


def _windows(limit: np.ndarray, settings: GradientSettings) -> tuple[np.ndarray, np.ndarray]:
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


def _intervals(starts: np.ndarray, ends: np.ndarray) -> list[tuple[int, int]]:
    """The union of the step ranges `[starts, ends)` of every lane, as sorted disjoint ranges."""
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted({(int(a), int(b)) for a, b in zip(starts.ravel(), ends.ravel(), strict=True)}):
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return merged


def _optimise(
    blocks: list[_PairBlock | _KLBlock],
    L: int,
    n: int,
    limit: np.ndarray,
    support: np.ndarray,
    settings: GradientSettings,
    record: np.ndarray | None,
    log_pi_ref: np.ndarray | None,
    progress: Callable[[int], None],
) -> _PhaseResult:
    """Run the optimiser on every lane from `X = 0` for `max(limit)` steps (lane `i` stops after `limit[i]`).

    Adam as in NOTES (optax: `t` from 1, bias-corrected moments, `eps` added to `sqrt(v_hat)`), or plain
    SGD `X -= lr_t G`, `lr_t = lr s(t)` (`schedules.factor` over the lane's own `limit`). Records
    `lane_softmax(log_pi_ref, X)` at the steps in `record`, accumulates the window statistics of the status
    rule on the offsets centred on `support` (adding a constant to all offsets of a lane changes nothing,
    and Adam, unlike SGD, does not keep their sum fixed), the Polyak / EMA average, and (policy phase) the
    spread of the policy over window B. Memory is O(L n) plus the curves, whatever the number of steps:
    which step falls in which window is decided by arithmetic on the step index.
    """
    T = int(limit.max())
    X = np.zeros((L, n))
    G = np.zeros((L, n))
    adam = settings.optimizer == "adam"
    lr, b1, b2, eps = settings.lr, settings.b1, settings.b2, settings.adam_eps
    c1, c2 = 1.0 - b1, 1.0 - b2
    m = np.zeros((L, n))
    v = np.zeros((L, n))
    step = np.zeros((L, n))
    scratch = np.zeros((L, n))
    frozen = None if bool(np.all(limit == T)) else limit  # per-lane stopping (RLHF's rm_steps)
    schedule, final = settings.lr_schedule, settings.lr_final
    constant = schedule == "constant" or final == 1.0
    dead_rows = [row for block in blocks for row in block.dead_rows()]  # no finite gradient: held at 0
    starts, ends = _windows(limit, settings)
    centre = support / support.sum(axis=1, keepdims=True)
    # Sums of (c - ref) and (c - ref)^2 per window, c the centred iterate and ref its value at the start
    # of the window (shifting by ref avoids cancellation when the iterate is far from 0).
    ref = np.zeros((2, L, n))
    s1 = np.zeros((2, L, n))
    s2 = np.zeros((2, L, n))
    # A decaying step: the jitter is taken about each window's linear trend on the clock `elapsed(t)` (module
    # docstring), from the sums of u (c - ref), u and u^2, u the clock since the window's start.
    detrend = not constant
    s3 = np.zeros((2, L, n)) if detrend else None
    su = np.zeros((2, L))
    suu = np.zeros((2, L))
    origin = elapsed(schedule, starts, limit[None, :], final) if detrend else None
    average = np.zeros((L, n))
    partial = not bool(support.all())

    def centred() -> np.ndarray:
        c = X - np.sum(X * centre, axis=1, keepdims=True)
        return c * support if partial else c

    # Averaging (module docstring): iterates t0 <= t <= limit. Polyak sums per chunk, then into `avg_total`
    # (two-level summation keeps the rounding of a long sum at O((chunk + T / chunk) eps)); EMA is a
    # recursion held in `avg_chunk`.
    averaging = settings.average != "none"
    t0 = np.floor(settings.average_start * limit).astype(np.int64) + 1
    avg_total = np.zeros((L, n)) if averaging else None
    avg_chunk = np.zeros((L, n)) if averaging else None
    beta = settings.ema_decay

    if frozen is None:
        # Every lane has the same windows: per step, at most one window to update, no masks.
        a0, b0 = int(starts[0, 0]), int(starts[1, 0])
        t_avg = int(t0[0])

        def accumulate(t: int) -> None:
            k = 1 if t >= b0 else 0
            c = centred()
            if t == (b0 if k else a0):
                ref[k] = c
            c -= ref[k]
            s1[k] += c
            if detrend:
                u = float(elapsed(schedule, t, T, final)) - float(origin[k, 0])
                s3[k] += u * c
                su[k] += u
                suu[k] += u * u
            c *= c
            s2[k] += c
            if k == 1:
                average[...] += X

        def accumulate_average(t: int) -> None:
            if settings.average == "polyak":
                avg_chunk[...] += X
            else:
                avg_chunk[...] *= beta
                np.multiply(X, 1.0 - beta, out=scratch)
                avg_chunk[...] += scratch

    else:
        t_avg = int(t0.min())

        def accumulate(t: int) -> None:
            c = centred()
            begin = starts == t
            if begin.any():
                ref[begin] = np.broadcast_to(c, ref.shape)[begin]
            inside = ((starts <= t) & (t < ends))[:, :, None]
            d = (c - ref) * inside
            s1[...] += d
            s2[...] += d * d
            if detrend:
                u = (elapsed(schedule, t, limit, final)[None, :] - origin) * inside[:, :, 0]
                s3[...] += u[:, :, None] * d
                su[...] += u
                suu[...] += u * u
            average[...] += X * inside[1]

        def accumulate_average(t: int) -> None:
            active = ((t0 <= t) & (t <= limit))[:, None]
            if settings.average == "polyak":
                avg_chunk[...] += X * active
            else:
                avg_chunk[...] = np.where(active, beta * avg_chunk + (1.0 - beta) * X, avg_chunk)

    windows = _intervals(starts, ends)
    windows.append((T + 1, T + 2))  # sentinel
    records = [] if record is None else [int(t) for t in record[1:]]
    records.append(T + 1)  # sentinel
    curves = None
    noise_sums: list[Any] | None = None
    b_start, stride = T + 1, 1
    if record is not None:
        assert log_pi_ref is not None and frozen is None
        curves = np.empty((len(record), L, n))
        curves[0] = lane_softmax(log_pi_ref, X)
        # RunResult.noise: pi over window B, sampled every `stride` steps (at most NOISE_SAMPLES samples).
        b_start, b_count = int(starts[1, 0]), int(ends[1, 0] - starts[1, 0])
        stride = -(-b_count // NOISE_SAMPLES)  # ceil: at most NOISE_SAMPLES samples
        noise_sums = [np.zeros((L, n)), np.zeros((L, n)), np.zeros((L, n)), 0]  # ref, sum d, sum d^2, count
    # Everything but the step itself happens at "events": per step, one comparison with the next one.
    state = {"window": 0, "record": 0}

    def event(t: int) -> int:
        """Do what step `t` calls for (window sums, average, curve point, noise sample); the next event."""
        while t >= windows[state["window"]][1]:
            state["window"] += 1
        lo = windows[state["window"]][0]
        if t >= lo:
            accumulate(t)
        if averaging and t >= t_avg:
            accumulate_average(t)
        if t == records[state["record"]]:
            state["record"] += 1
            curves[state["record"]] = lane_softmax(log_pi_ref, X)
        if noise_sums is not None and t >= b_start and (t - b_start) % stride == 0:
            _sample_policy(noise_sums, lane_softmax(log_pi_ref, X))
        if t + 1 >= lo or (averaging and t + 1 >= t_avg):
            return t + 1
        return min(lo, records[state["record"]], t_avg if averaging else T + 1)

    if windows[0][0] == 0:
        accumulate(0)
    upcoming = 1  # the first step is an event: `event` finds the next one
    single = blocks[0] if len(blocks) == 1 else None
    for block in blocks:
        block.reset_streams()
    t = 0
    while t < T:
        count = min(STREAM_CHUNK, T - t)
        for block in blocks:
            block.prepare(count)
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is checked once per chunk below
            for i in range(count):
                t += 1
                if single is not None:
                    G = single.gradient(X, i)
                else:
                    for block in blocks:
                        G[block.start : block.stop] = block.gradient(X, i)
                if dead_rows:
                    G[dead_rows] = 0.0
                if adam:
                    # optax: m = (1-b1) g + b1 m; v = (1-b2) g^2 + b2 v; update = m_hat / (sqrt(v_hat) + eps)
                    m *= b1
                    np.multiply(G, c1, out=scratch)
                    m += scratch
                    v *= b2
                    np.multiply(G, G, out=scratch)
                    scratch *= c2
                    v += scratch
                    np.divide(v, 1.0 - b2**t, out=scratch)
                    np.sqrt(scratch, out=scratch)
                    scratch += eps
                    np.divide(m, 1.0 - b1**t, out=step)
                    step /= scratch
                    rate_to = step
                else:
                    rate_to = G
                if frozen is None:
                    np.multiply(rate_to, lr if constant else lr * factor(schedule, t, T, final), out=step)
                elif constant:
                    np.multiply(rate_to, lr, out=step)
                    step *= (t <= frozen)[:, None]  # lanes past their own limit stay put
                else:
                    rates = lr * factor(schedule, t, frozen, final) * (t <= frozen)
                    np.multiply(rate_to, rates[:, None], out=step)
                X -= step
                if t >= upcoming:
                    upcoming = event(t)
        if not np.all(np.isfinite(X)):
            raise InputError("--lr", settings.lr, "the iterates overflowed: use a smaller learning rate")
        if settings.average == "polyak":
            avg_total += avg_chunk
            avg_chunk[...] = 0.0
        progress(count)
    width = (ends - starts)[:, :, None]
    means = s1 / width
    variances = s2 / width - means**2
    if detrend:
        mean_u = su / width[:, :, 0]
        var_u = (suu / width[:, :, 0] - mean_u**2)[:, :, None]
        cov = s3 / width - means * mean_u[:, :, None]
        variances -= np.divide(cov**2, var_u, out=np.zeros_like(cov), where=var_u > 0)
    variances = np.maximum(variances, 0.0)
    moved = np.abs(means[1] + ref[1] - means[0] - ref[0])
    jitter = np.sqrt(0.5 * (variances[0] + variances[1]))
    averaged = None
    if averaging:
        taken = (limit - t0 + 1)[:, None]  # iterates averaged per lane
        # EMA: avg_chunk is the running `e_t = beta e_{t-1} + (1 - beta) x_t` from `e_{t0-1} = 0`; its weights
        # sum to `1 - beta ** taken`, divided out (as Adam's bias correction).
        averaged = avg_total / taken if settings.average == "polyak" else avg_chunk / (1.0 - beta**taken)
    noise = None
    if noise_sums is not None:
        _, d1, d2, k = noise_sums
        noise = np.sqrt(np.maximum(d2 / k - (d1 / k) ** 2, 0.0)).max(axis=1)
    spent = lr * elapsed(schedule, limit, limit, final)
    return _PhaseResult(X, moved, jitter, average / width[1], curves, averaged, noise, spent)


def _sample_policy(sums: list[Any], pi: np.ndarray) -> None:
    """Add one sample of the policy to the window-B sums `[ref, sum (pi - ref), sum (pi - ref)^2, count]`."""
    if sums[3] == 0:
        sums[0] = pi
    d = pi - sums[0]
    sums[1] += d
    sums[2] += d * d
    sums[3] += 1


def _moving(moved: np.ndarray, jitter: np.ndarray, scale: float, settings: GradientSettings) -> tuple[bool, str]:
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


# --------------------------------------------------------------------------------------------------------
# The engine
# --------------------------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Run:
    spec: MethodSpec
    tau: float
    seed: int
    context: int
    lane: int  # index into pair lanes (pairwise) or KL lanes (rlhf stage 2, psipo)
    inputs: Any
    extra: dict[str, Any]


def run_gradient(
    problem: Problem,
    specs: list[MethodSpec],
    taus: list[float],
    settings: GradientSettings,
    objective: str,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, list[RunResult]]:
    """Run every spec × tau × seed × context by gradient descent, all lanes together (DESIGN §3).

    Parameters
    ----------
    problem : Problem
        Seed `k` trains on `realise(problem, k)` (its own dataset when the problem samples one).
    specs, taus : the methods (with options) and KL coefficients.
    settings : GradientSettings
    objective : `dataset` or `population` (`solvers.inputs.resolve_objective`), the same objective as the
        exact solver (`solvers.inputs.method_inputs`).
    progress : callable(done, total), optional
        Called every `PROGRESS_EVERY` steps and at the end; `total` counts the steps of both RLHF stages.

    Returns
    -------
    steps : int array
        The recorded step grid (`record_grid`): starts at 0, ends at `settings.steps`.
    runs : list of RunResult
        One per (spec, tau, seed `k`, context `c`), in that nesting order, `solver = "gradient"`. `policy`
        is the final policy; `curve` the policy at each recorded step, shape `(len(steps), n)` (RLHF: its
        policy stage). `loss` is the method's own objective at the final iterate — dpo/ipo the mean pair
        loss on `W`; rlhf the reward model's `mean BT loss + rm_l2/2 ||r||^2`; psipo `-J(pi)` on the
        clipped `P` — and `grad_norm` the inf-norm of its exact (full-batch) gradient there. `status` is
        `converged` or `running` (module docstring).

    Notes
    -----
    - Pairwise methods minimise the mean per-comparison loss `f(delta_w - delta_l; tau)` (NOTES); a step
      draws `batch_size` rows with replacement, row `(w, l)` with probability `W[w, l] / sum W`.
    - RLHF: stage 1 fits `r` (from 0) on the same minibatches with the Bradley–Terry loss plus
      `rm_l2 r` for `rm_steps` steps; stage 2 ascends the exact `J = E_pi r - tau KL(pi || pi_ref)` from
      `pi_ref` for `steps` steps with a fresh optimiser state. The reward stage does not depend on tau and
      is run once per (spec, seed, context).
    - ΨPO ascends the same `J` with `r = g`, `g(y) = sum_y' mu(y') Psi(P[y, y'])`, `P` clipped where
      `Psi(P)` is infinite (`psipo_target`).
    - Actions with `pi_ref = 0` keep probability 0 (their logit is `-inf`).
    """
    check_resources(estimate_resources(problem, specs, taus, settings, objective))
    n = problem.n_actions
    stochastic = settings.batch_size > 0
    realised: dict[int, Problem] = {}
    pairs_cache: dict[tuple[int | None, int], _Pairs] = {}
    pools: dict[str, list[Any]] = {"pair": [], "reward": [], "kl": []}
    index: dict[tuple, int] = {}
    runs: list[_Run] = []

    def add(pool: str, key: tuple, lane: Any) -> int:
        """The lane's index in its pool; an identical lane (same key) is computed once."""
        if (pool, *key) not in index:
            index[(pool, *key)] = len(pools[pool])
            pools[pool].append(lane)
        return index[(pool, *key)]

    for s, spec in enumerate(specs):
        method = get_method(spec.method)
        options = _spec_options(spec, settings)
        for tau in taus:
            for k in range(settings.seeds):
                for c in range(len(problem.contexts)):
                    # Data: dataset k where the context samples its data (DATASET objective), else shared.
                    sampled = objective == DATASET and problem.contexts[c].sample is not None
                    data_key = k if sampled else None
                    if data_key not in realised:
                        realised[data_key] = realise(problem, k) if sampled else problem
                    ctx = realised[data_key].contexts[c]
                    inputs = method_inputs(ctx, method, objective, problem.actions)
                    lpr = log_of(np.asarray(inputs.pi_ref, float))
                    stream = (k, c) if stochastic else None
                    extra: dict[str, Any] = {}
                    if method.gradient in ("pairwise", "reward_then_policy"):
                        # Every "wins" method sees the same W of a context (solvers.inputs).
                        if (data_key, c) not in pairs_cache:
                            pairs_cache[data_key, c] = _pairs(np.asarray(inputs.W, float), ctx.name)
                        data = pairs_cache[data_key, c]
                    if method.gradient == "pairwise":
                        lane_pair = _PairLane(method, tau, 0.0, data, stream, settings.steps, lpr)
                        idx = add("pair", (s, tau, data_key, c, stream), lane_pair)
                    elif method.gradient == "reward_then_policy":
                        lane_reward = _PairLane(method, 1.0, options["rm_l2"], data, stream, options["rm_steps"], lpr)
                        one = add("reward", (s, data_key, c, stream), lane_reward)
                        idx = add("kl", ("rlhf", s, tau, one), _KLLane(tau, None, lpr, one))
                        extra = {"rm_l2": options["rm_l2"]}
                    elif method.gradient == "policy":
                        g, note = psipo_target(
                            np.asarray(inputs.P, float),
                            np.asarray(inputs.mu, float),
                            np.asarray(inputs.pi_ref, float),
                            options["psi"],
                            options["eps"],
                        )
                        idx = add("kl", ("psipo", s, tau, data_key, c), _KLLane(tau, g, lpr))
                        extra = {"g": g, "note": note}
                    else:
                        raise InputError("method", spec.method, f"unknown gradient kind {method.gradient!r}")
                    runs.append(_Run(spec, tau, k, c, idx, inputs, extra))
    pair_lanes: list[_PairLane] = pools["pair"]
    stage1_lanes: list[_PairLane] = pools["reward"]
    kl_lanes: list[_KLLane] = pools["kl"]

    steps_grid = record_grid(settings.steps, settings.records)
    phase1 = max((lane.limit for lane in stage1_lanes), default=0)
    total = phase1 + settings.steps
    done = 0

    def advance(count: int) -> None:
        nonlocal done
        done += count
        if progress is not None:
            progress(done, total)

    # Phase 1: RLHF reward models (each lane stops at its own rm_steps).
    rewards = np.zeros((0, n))
    stage1: _PhaseResult | None = None
    if stage1_lanes:
        block = _PairBlock(stage1_lanes, 0, n, settings.batch_size, settings.seed)
        limit = np.array([lane.limit for lane in stage1_lanes])
        support = np.stack([np.isfinite(lane.log_pi_ref) for lane in stage1_lanes])
        stage1 = _optimise([block], len(stage1_lanes), n, limit, support, settings, None, None, advance)
        rewards = stage1.X if stage1.averaged is None else stage1.averaged

    # Phase 2: every policy lane (pairwise block, then KL block), `steps` steps, curves recorded.
    blocks: list[_PairBlock | _KLBlock] = []
    if pair_lanes:
        blocks.append(_PairBlock(pair_lanes, 0, n, settings.batch_size, settings.seed))
    if kl_lanes:
        kl_block = _KLBlock(kl_lanes, len(pair_lanes))
        kl_block.set_rewards(
            np.stack([rewards[lane.stage1] if lane.reward is None else lane.reward for lane in kl_lanes])
        )
        blocks.append(kl_block)
    L = len(pair_lanes) + len(kl_lanes)
    log_pi_ref = np.stack([lane.log_pi_ref for lane in [*pair_lanes, *kl_lanes]])
    support = np.isfinite(log_pi_ref)
    limit = np.full(L, settings.steps)
    phase = _optimise(blocks, L, n, limit, support, settings, steps_grid, log_pi_ref, advance)
    assert phase.curves is not None
    return steps_grid, [_result(run, phase, stage1, kl_lanes, len(pair_lanes), settings) for run in runs]


def estimate_resources(
    problem: Problem, specs: list[MethodSpec], taus: list[float], settings: GradientSettings, objective: str
) -> Resources:
    """Memory and time of `run_gradient(problem, specs, taus, settings, objective)`, before any work
    (`solvers.resources`; lane counts are upper bounds: identical deterministic lanes are merged later)."""
    kinds = [get_method(spec.method).gradient for spec in specs]
    contexts, seeds = len(problem.contexts), settings.seeds
    per_spec = len(taus) * seeds * contexts
    reward_specs = [spec for spec, kind in zip(specs, kinds, strict=True) if kind == "reward_then_policy"]
    return estimate(
        lanes=len(specs) * per_spec,
        reward_lanes=len(reward_specs) * seeds * contexts,
        n=problem.n_actions,
        rows=rows_bound(problem, objective, settings.batch_size),
        streams=seeds * contexts,
        groups=len(specs) * len(taus) * contexts,
        records=min(settings.records + 2, settings.steps + 1),
        steps=settings.steps,
        reward_steps=max((_spec_options(spec, settings)["rm_steps"] for spec in reward_specs), default=0),
        chunk=STREAM_CHUNK if settings.batch_size > 0 else 0,
        grid=settings.records,
    )


def _result(
    run: _Run,
    phase: _PhaseResult,
    stage1: _PhaseResult | None,
    kl_lanes: list[_KLLane],
    n_pair: int,
    settings: GradientSettings,
) -> RunResult:
    """One run's `RunResult`: reported policy, curve, the method's own loss and exact gradient, status."""
    method = get_method(run.spec.method)
    stochastic = settings.batch_size > 0
    row = run.lane if method.gradient == "pairwise" else n_pair + run.lane
    curve = np.ascontiguousarray(phase.curves[:, row, :])
    pi_ref = np.asarray(run.inputs.pi_ref, float)
    support = pi_ref > 0
    delta = _point(phase, row)
    policy = curve[-1].copy() if phase.averaged is None else lane_softmax(log_of(pi_ref)[None], delta[None])[0]
    stalls: list[str] = []
    reasons: list[str] = []
    with np.errstate(over="ignore", invalid="ignore"):  # non-finite values are reported, not warned about
        if method.gradient == "pairwise":
            W = np.asarray(run.inputs.W, float)
            loss = mean_pair_loss(delta, W, method.pair_loss, run.tau)
            grad = lambda x: mean_pair_grad(x, W, method.pair_grad, run.tau)  # noqa: E731
            gnorm = _stage("offsets", grad, phase, row, run.tau, support, not stochastic, settings, stalls, reasons)
        elif method.gradient == "reward_then_policy":
            assert stage1 is not None
            W = np.asarray(run.inputs.W, float)
            one = kl_lanes[run.lane].stage1
            r = _point(stage1, one)
            l2 = run.extra["rm_l2"]
            loss = logistic_objective(r, W, l2=l2)
            reward = lambda x: logistic_gradient(x, W, l2=l2)  # noqa: E731
            gnorm = _stage("reward model", reward, stage1, one, 1.0, support, not stochastic, settings, stalls, reasons)
            # The policy stage is deterministic whatever the batch size: rule 2 applies.
            kl = lambda x: kl_gradient(x, r, pi_ref, run.tau)  # noqa: E731
            _stage("policy stage", kl, phase, row, run.tau, support, True, settings, stalls, reasons)
        else:
            g = run.extra["g"]
            loss = -regularised_value(policy, g, pi_ref, run.tau)
            target = lambda x: kl_gradient(x, g, pi_ref, run.tau)  # noqa: E731
            gnorm = _stage("offsets", target, phase, row, run.tau, support, True, settings, stalls, reasons)
    notes = [run.extra["note"]] if run.extra.get("note") else []
    return RunResult(
        label=run.spec.label,
        method=run.spec.method,
        tau=run.tau,
        solver=GRADIENT,
        seed=run.seed,
        context=run.context,
        policy=policy,
        status=STALLED if stalls else RUNNING if reasons else CONVERGED,
        loss=float(loss),
        detail="; ".join(notes + stalls + reasons),
        grad_norm=gnorm,
        curve=curve,
        noise=float(phase.noise[row]) if phase.noise is not None else float("nan"),
    )


def _point(phase: _PhaseResult, row: int) -> np.ndarray:
    """The offsets a stage reports: its Polyak / EMA average with averaging, else the last iterate."""
    return phase.X[row] if phase.averaged is None else phase.averaged[row]


def _stage(
    what: str,
    gradient: Callable[[np.ndarray], np.ndarray],
    phase: _PhaseResult,
    row: int,
    scale: float,
    support: np.ndarray,
    deterministic: bool,
    settings: GradientSettings,
    stalls: list[str],
    reasons: list[str],
) -> float:
    """Apply the status rules to one stage (appending to `stalls` and `reasons`); return the inf-norm of
    its exact gradient at the reported point.

    Rule 2's point (deterministic stages) is the reported point, and for Adam without averaging also the
    mean iterate of the last window (`_reasons`).
    """
    x = _point(phase, row)
    g = gradient(x)
    gnorm = float(np.max(np.abs(g)))
    moving, why = _moving(phase.moved[row], phase.jitter[row], scale, settings)
    rule2 = None
    if deterministic:
        rule2 = gnorm
        if settings.optimizer == "adam" and phase.averaged is None:
            rule2 = min(gnorm, float(np.max(np.abs(gradient(phase.average[row])))))
    reasons += _reasons(what, moving, why, rule2, settings)
    stall = _stalled(gradient, x, g, support, float(phase.elapsed[row]), scale, settings)
    if stall:
        stalls.append(f"{what} stalled: {stall}")
    return gnorm


def _adam_reach(b1: float, b2: float) -> float:
    """The most Adam moves one coordinate per unit of learning rate: `|m_t| / sqrt(v_t)` is at most
    `(1 - b1) / sqrt((1 - b2) (1 - b1^2 / b2))` (Cauchy–Schwarz on the two moving averages; 7.3 at
    the defaults; the bias corrections' early transient is ignored); `inf` when `b1^2 >= b2`."""
    ratio = b1 * b1 / b2 if b2 > 0 else (0.0 if b1 == 0 else math.inf)
    return (1.0 - b1) / math.sqrt((1.0 - b2) * (1.0 - ratio)) if ratio < 1 else math.inf


def _stalled(
    gradient: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    g: np.ndarray,
    support: np.ndarray,
    spent: float,
    scale: float,
    settings: GradientSettings,
) -> str:
    """The stall rule (module docstring) for one stage: why it is stalled, or "".

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
        per_step = _adam_reach(settings.b1, settings.b2)
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


def _reasons(what: str, moving: bool, why: str, gnorm: float | None, settings: GradientSettings) -> list[str]:
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
    reasons = [f"{what} {why}"] if moving else []
    if gnorm is not None and not gnorm <= settings.gtol:
        reasons.append(f"{what}: gradient norm {gnorm:.2g} > gtol {settings.gtol:g}")
    return reasons


def _spec_options(spec: MethodSpec, settings: GradientSettings) -> dict[str, Any]:
    """The spec's options with the settings as defaults, validated from their declarations
    (`psipo_cli.config.settings`; keys named as CLI flags)."""
    given = {k: spec.option(k) for k in ("rm_l2", "rm_steps", "eps", "psi")}
    options = {k: None if v is None else check_option(k, v) for k, v in given.items()}
    rm_steps = options["rm_steps"]
    if rm_steps is None:
        rm_steps = settings.rm_steps if settings.rm_steps is not None else settings.steps
    return {
        "rm_l2": float(options["rm_l2"] or 0.0),
        "rm_steps": int(rm_steps),
        "eps": float(settings.eps if options["eps"] is None else options["eps"]),
        "psi": str(options["psi"] or "logit"),
    }
