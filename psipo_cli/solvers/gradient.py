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
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from psipo_cli.errors import InputError
from psipo_cli.objectives import Method, get_method
from psipo_cli.objectives.bradley_terry import logistic_gradient, logistic_objective
from psipo_cli.objectives.kl import kl_gradient, regularised_value
from psipo_cli.objectives.pairwise import PairFn, log_of, mean_pair_grad, mean_pair_loss, pairs_of
from psipo_cli.objectives.psi import evaluate_psi, resolve_psi
from psipo_cli.problem import Problem, realise
from psipo_cli.solvers.inputs import DATASET, method_inputs
from psipo_cli.solvers.runs import GRADIENT, MethodSpec, RunResult

OPTIMIZERS = ("adam", "sgd")
CONVERGED = "converged"
RUNNING = "running"
STREAM_CHUNK = 512  # steps of minibatch indices drawn at once, outside the step loop
WINDOW = 0.1  # fraction of the steps in each of the two averaging windows of the status rule
PROGRESS_EVERY = STREAM_CHUNK  # steps between progress callbacks


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


@dataclass(frozen=True)
class GradientSettings:
    """Settings of the gradient engine; the defaults are the paper's §5.4 values (DESIGN §3).

    Attributes
    ----------
    steps : int
        Optimiser steps (of the policy stage, for RLHF). Default 18000.
    lr : float
        Learning rate (Adam and SGD). Default 0.01.
    batch_size : int
        Comparisons per minibatch, drawn with replacement with probability `W[w, l] / sum W`; `0` = full
        batch, the exact expected gradient. Default 9.
    optimizer : str
        `adam` (optax's convention, NOTES) or `sgd`.
    seeds : int
        Runs per (method, tau, context), each with its own minibatch stream (and dataset when the problem
        samples one). Default 10.
    seed : int
        Root seed of the streams `SeedSequence([seed, k, c])`.
    b1, b2, adam_eps : float
        Adam's decay rates and `eps` (added to `sqrt(v_hat)`).
    rm_steps : int or None
        Steps of RLHF's reward-model stage (early stopping); `None` = `steps`. A spec's `rm_steps` option
        overrides it.
    eps : float
        ΨPO: where `Psi(P)` is infinite, `P` is clipped to `[eps, 1 - eps]` (DESIGN §2.1). A spec's `eps`
        option overrides it.
    records : int
        Points of the log-spaced step grid of the curves (step 0 and the last step are always included).
    ztol : float
        Status rule 1: a window mean that moved by more than `ztol` times the iterate's jitter (and more
        than `xtol`) means "still moving". Default 9 (measured: trends 12.7-19, stationary noise <= 6.3).
    xtol : float
        Status rule 1: moves below `xtol` in reward units (`tau * offsets`; rewards for RLHF's reward
        stage) never count as moving. Default 1e-4.
    gtol : float
        Status rule 2, deterministic stages (full batch, KL stages): largest inf-norm of the exact gradient
        at the final iterate. Default 1e-6.
    """

    steps: int = 18000
    lr: float = 0.01
    batch_size: int = 9
    optimizer: str = "adam"
    seeds: int = 10
    seed: int = 0
    b1: float = 0.9
    b2: float = 0.999
    adam_eps: float = 1e-8
    rm_steps: int | None = None
    eps: float = 1e-6
    records: int = 60
    ztol: float = 9.0
    xtol: float = 1e-4
    gtol: float = 1e-6

    def __post_init__(self) -> None:
        positive_ints = {"--steps": self.steps, "--seeds": self.seeds, "--records": self.records}
        for flag, value in positive_ints.items():
            if not _is_int(value) or value < 1:
                raise InputError(flag, value, "must be a positive integer")
        for flag, value in {"--batch-size": self.batch_size, "--seed": self.seed}.items():
            if not _is_int(value) or value < 0:
                raise InputError(flag, value, "must be a non-negative integer")
        if self.rm_steps is not None and (not _is_int(self.rm_steps) or self.rm_steps < 1):
            raise InputError("--rm-steps", self.rm_steps, "must be a positive integer")
        if self.optimizer not in OPTIMIZERS:
            raise InputError("--optimizer", self.optimizer, f"must be one of {', '.join(OPTIMIZERS)}")
        positive = {
            "--lr": self.lr,
            "--adam-eps": self.adam_eps,
            "--ztol": self.ztol,
            "--xtol": self.xtol,
            "--gtol": self.gtol,
        }
        for flag, value in positive.items():
            if not _is_real(value) or not math.isfinite(value) or value <= 0:
                raise InputError(flag, value, "must be a positive finite number")
        for flag, value in {"--b1": self.b1, "--b2": self.b2}.items():
            if not _is_real(value) or not 0 <= value < 1:
                raise InputError(flag, value, "must lie in [0, 1)")
        _check_eps(self.eps)


def _check_eps(eps: Any) -> float:
    if not _is_real(eps) or not 0 < eps < 0.5:
        raise InputError("--eps", eps, "must lie in (0, 0.5)")
    return float(eps)


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


def _windows(limit: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per lane, the two averaging windows of the status rule over the iterates `x_0 .. x_T`.

    Each holds `w = max(1, floor(WINDOW T))` iterates: B = `x_{T-w+1} .. x_T` (the last 10% of the steps)
    and A = `x_{T-5w+1} .. x_{T-4w}` (the 10% that end 40% of the steps before the end; clipped to start
    at `x_0` in runs of fewer than 5 steps). The gap of `3w` between them lets a trend show as a move of
    about 4 window lengths, whereas stationary jitter averages out in each window.
    """
    w = np.maximum(1, np.floor(WINDOW * limit).astype(int))
    a0 = np.maximum(0, limit - 5 * w + 1)
    return a0, limit - w + 1, w


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
    SGD `X -= lr G`. Records `lane_softmax(log_pi_ref, X)` at the steps in `record`, and accumulates the
    window statistics of the status rule on the offsets centred on `support` (adding a constant to all
    offsets of a lane changes nothing, and Adam, unlike SGD, does not keep their sum fixed).
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
    a0, b0, w = _windows(limit)
    centre = support / support.sum(axis=1, keepdims=True)
    # Sums of (c - ref) and (c - ref)^2 per window, c the centred iterate and ref its value at the start
    # of the window (shifting by ref avoids cancellation when the iterate is far from 0).
    ref = np.zeros((2, L, n))
    s1 = np.zeros((2, L, n))
    s2 = np.zeros((2, L, n))
    average = np.zeros((L, n))
    starts = np.stack([a0, b0])
    ends = np.stack([a0 + w, limit + 1])
    partial = not bool(support.all())

    def centred() -> np.ndarray:
        c = X - np.sum(X * centre, axis=1, keepdims=True)
        return c * support if partial else c

    if frozen is None:
        # Every lane has the same windows: per step, at most one window to update, no masks.
        window_of = [-1] * (T + 1)
        for k in (0, 1):
            for t in range(int(starts[k, 0]), int(ends[k, 0])):
                window_of[t] = k

        def accumulate(t: int) -> None:
            k = window_of[t]
            c = centred()
            if t == starts[k, 0]:
                ref[k] = c
            c -= ref[k]
            s1[k] += c
            c *= c
            s2[k] += c
            if k == 1:
                average[...] += X

    else:
        window_of = [-1] * (T + 1)
        for lo, hi in {(int(x), int(y)) for x, y in zip(starts.ravel(), ends.ravel(), strict=True)}:
            window_of[lo:hi] = [0] * (hi - lo)

        def accumulate(t: int) -> None:
            c = centred()
            begin = starts == t
            if begin.any():
                ref[begin] = np.broadcast_to(c, ref.shape)[begin]
            inside = ((starts <= t) & (t < ends))[:, :, None]
            d = (c - ref) * inside
            s1[...] += d
            s2[...] += d * d
            average[...] += X * inside[1]

    rec_at = [-1] * (T + 1)
    curves = None
    if record is not None:
        assert log_pi_ref is not None
        for row, t in enumerate(record):
            rec_at[int(t)] = row
        curves = np.empty((len(record), L, n))
        curves[0] = lane_softmax(log_pi_ref, X)
    if window_of[0] >= 0:
        accumulate(0)
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
                    step *= lr
                else:
                    np.multiply(G, lr, out=step)
                if frozen is not None:
                    step *= (t <= frozen)[:, None]  # lanes past their own limit stay put
                X -= step
                if window_of[t] >= 0:
                    accumulate(t)
                if rec_at[t] >= 0:
                    curves[rec_at[t]] = lane_softmax(log_pi_ref, X)
        if not np.all(np.isfinite(X)):
            raise InputError("--lr", settings.lr, "the iterates overflowed: use a smaller learning rate")
        progress(count)
    width = w[None, :, None]
    means = s1 / width
    variances = np.maximum(s2 / width - means**2, 0.0)
    moved = np.abs(means[1] + ref[1] - means[0] - ref[0])
    jitter = np.sqrt(0.5 * (variances[0] + variances[1]))
    return _PhaseResult(X, moved, jitter, average / w[:, None], curves)


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
        rewards = stage1.X

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


def _result(
    run: _Run,
    phase: _PhaseResult,
    stage1: _PhaseResult | None,
    kl_lanes: list[_KLLane],
    n_pair: int,
    settings: GradientSettings,
) -> RunResult:
    """One run's `RunResult`: final policy, curve, the method's own loss and exact gradient, status."""
    method = get_method(run.spec.method)
    stochastic = settings.batch_size > 0
    row = run.lane if method.gradient == "pairwise" else n_pair + run.lane
    delta = phase.X[row]
    curve = np.ascontiguousarray(phase.curves[:, row, :])
    policy = curve[-1].copy()
    pi_ref = np.asarray(run.inputs.pi_ref, float)
    moving, why = _moving(phase.moved[row], phase.jitter[row], run.tau, settings)
    # Rule 2 point(s): the final iterate, and for Adam also the mean iterate of the last window (_reasons).
    adam = settings.optimizer == "adam"
    average = phase.average[row] if adam else delta
    reasons = []
    if method.gradient == "pairwise":
        W = np.asarray(run.inputs.W, float)
        loss = mean_pair_loss(delta, W, method.pair_loss, run.tau)
        grad = _inf_norm(lambda x: mean_pair_grad(x, W, method.pair_grad, run.tau))
        gnorm = grad(delta)
        g_norm = None if stochastic else min(gnorm, grad(average))
        reasons += _reasons("offsets", moving, why, g_norm, settings)
    elif method.gradient == "reward_then_policy":
        assert stage1 is not None
        W = np.asarray(run.inputs.W, float)
        one = kl_lanes[run.lane].stage1
        r = stage1.X[one]
        l2 = run.extra["rm_l2"]
        loss = logistic_objective(r, W, l2=l2)
        grad = _inf_norm(lambda x: logistic_gradient(x, W, l2=l2))
        gnorm = grad(r)
        r_moving, r_why = _moving(stage1.moved[one], stage1.jitter[one], 1.0, settings)
        r_norm = None if stochastic else min(gnorm, grad(stage1.average[one] if adam else r))
        reasons += _reasons("reward model", r_moving, r_why, r_norm, settings)
        # The policy stage is deterministic whatever the batch size: rule 2 applies.
        kl = _inf_norm(lambda x: kl_gradient(x, r, pi_ref, run.tau))
        reasons += _reasons("policy stage", moving, why, min(kl(delta), kl(average)), settings)
    else:
        g = run.extra["g"]
        loss = -regularised_value(policy, g, pi_ref, run.tau)
        grad = _inf_norm(lambda x: kl_gradient(x, g, pi_ref, run.tau))
        gnorm = grad(delta)
        reasons += _reasons("offsets", moving, why, min(gnorm, grad(average)), settings)
    notes = [run.extra["note"]] if run.extra.get("note") else []
    return RunResult(
        label=run.spec.label,
        method=run.spec.method,
        tau=run.tau,
        solver=GRADIENT,
        seed=run.seed,
        context=run.context,
        policy=policy,
        status=RUNNING if reasons else CONVERGED,
        loss=float(loss),
        detail="; ".join(notes + reasons),
        grad_norm=gnorm,
        curve=curve,
    )


def _inf_norm(gradient: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], float]:
    return lambda x: float(np.max(np.abs(gradient(x))))


def _reasons(what: str, moving: bool, why: str, gnorm: float | None, settings: GradientSettings) -> list[str]:
    """Why a stage is still running (empty: converged).

    `gnorm` (rule 2, deterministic stages only, else None) is the exact gradient's inf-norm at the final
    iterate — for Adam, the smaller of that and its value at the mean iterate of the last window. On a
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
    """The spec's options with the settings as defaults, validated (keys named as CLI flags)."""
    rm_l2 = spec.option("rm_l2", 0.0)
    if rm_l2 is None:
        rm_l2 = 0.0
    if not _is_real(rm_l2) or not math.isfinite(rm_l2) or rm_l2 < 0:
        raise InputError("--rm-l2", rm_l2, "must be a non-negative finite number")
    rm_steps = spec.option("rm_steps", None)
    if rm_steps is None:
        rm_steps = settings.rm_steps if settings.rm_steps is not None else settings.steps
    if not _is_int(rm_steps) or rm_steps < 1:
        raise InputError("--rm-steps", rm_steps, "must be a positive integer")
    eps = spec.option("eps", None)
    eps = settings.eps if eps is None else _check_eps(eps)
    psi = spec.option("psi", "logit") or "logit"
    return {"rm_l2": float(rm_l2), "rm_steps": int(rm_steps), "eps": float(eps), "psi": str(psi)}
