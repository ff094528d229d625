"""Lane blocks: the rows of the parameter array `X` that share one gradient kernel.

Every run of a call is one or more *lanes*: rows of `X` of shape `(lanes, n)` holding the offsets
`delta = logits - log pi_ref` (Adam/SGD on the offsets is Adam/SGD on the logits: they differ by a
constant). A block owns the rows `[start, stop)` and implements the `Block` protocol; the engine calls,
per chunk of steps, `prepare(count)`, then per step `gradient(X, i)`.

- `PairBlock` (DPO, IPO, RLHF's reward model): the mean over a minibatch (or all comparisons) of
  `f'(h) (e_w - e_l)`, `h = X[lane, w] - X[lane, l]`, plus a ridge `l2 X`;
- `KLBlock` (RLHF's policy stage, ΨPO): the exact gradient of `-J`, `J = E_pi r - tau KL(pi || pi_ref)`,
  `dJ/dtheta = pi (q - E_pi q)`, `q = r - tau delta`, for a target `r` fixed during the phase.

A block whose target moves with the policy (a game method: the opponent is the current policy, or a
mixture with `pi_ref`) implements the same protocol: `gradient(X, i)` receives the whole array `X` at
the current step, so it may read the current policy of any lane (its own rows, or those of the lanes it
plays against) and form its target from it at every step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from psipo_cli.methods.spec import PairFn
from psipo_cli.methods.streams import Comparisons, MinibatchStreams


class Block(Protocol):
    """What the engine needs of a block of lanes (rows `[start, stop)` of `X`)."""

    start: int
    stop: int

    def dead_rows(self) -> list[int]:
        """Rows of `X` whose gradient at the start is not finite: held at 0 and reported `stalled`."""
        ...

    def reset_streams(self) -> None:
        """Start the block's random streams from their beginning (once per phase)."""
        ...

    def prepare(self, count: int) -> None:
        """Draw whatever the next `count` steps need (minibatch indices), outside the step loop."""
        ...

    def gradient(self, X: np.ndarray, i: int) -> np.ndarray:
        """The gradient `(stop - start, n)` of the block's rows at the `i`-th step of the current chunk;
        `X` is the whole parameter array at that step (all lanes)."""
        ...


def lane_softmax(log_pi_ref: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Row-wise `pi ∝ pi_ref exp(X)` for `(lanes, n)` arrays, max-shifted.

    `log_pi_ref = -inf` gives probability exactly 0.
    """
    Z = log_pi_ref + X
    Z = Z - Z.max(axis=1, keepdims=True)
    E = np.exp(Z)
    return E / E.sum(axis=1, keepdims=True)


@dataclass(eq=False)
class PairLane:
    """A lane of a pairwise block: a loss `pair_grad` at `tau`, ridge `l2`, on `data`, for `limit` steps."""

    pair_grad: PairFn
    tau: float
    l2: float
    data: Comparisons
    stream: tuple[int, int] | None  # (seed k, context c), None for the full batch
    limit: int  # steps this lane takes (RLHF's rm_steps; the phase length otherwise)
    log_pi_ref: np.ndarray


@dataclass(eq=False)
class KLLane:
    """A lane of the KL block: ascent on `E_pi r - tau KL(pi || pi_ref)` for a fixed `r`."""

    tau: float
    reward: np.ndarray | None  # None: filled from a reward lane (`stage1`) before the policy phase
    log_pi_ref: np.ndarray
    stage1: int = -1  # index of the reward lane whose fit is `r`


class PairBlock:
    """Pairwise lanes `[start, start + L)` of `X`: per step one gather, the `f'` calls, one scatter-add.

    A step's comparisons are stored as one flat index array `[winners | losers]` of `lane * n + action`
    indices (`2 L K` entries, `K` = batch size, or the padded number of distinct pairs for the full
    batch), so that `h` is one gather and the gradient `sum f'(h) (e_w - e_l)` is one `np.bincount` with
    weights `[g | -g]`. Each lane's contributions keep their order whatever other lanes are present, so a
    lane's numbers do not depend on the batch.
    """

    def __init__(self, lanes: list[PairLane], start: int, n: int, batch_size: int, seed: int) -> None:
        self.lanes = lanes
        self.start, self.stop, self.n = start, start + len(lanes), n
        L = len(lanes)
        self.size = L * n
        self.tau = np.array([lane.tau for lane in lanes])[:, None]
        self.l2 = np.array([lane.l2 for lane in lanes])[:, None]
        self.has_l2 = bool(np.any(self.l2 > 0))
        self.segments = _segments(lanes)
        self.batch_size = batch_size
        self.base = (np.arange(L) * n)[None, :, None]  # broadcast over (side, lane, row)
        self.constant = batch_size == 0
        self.weights: np.ndarray | None = None
        if self.constant:
            K = max(len(lane.data.w) for lane in lanes)
            self.idx, self.weights = self._full_batch(K)
        else:
            K = batch_size
            self.streams = MinibatchStreams([(lane.stream, lane.data) for lane in lanes], batch_size, seed)
        self.shape = (L, K)
        self.half = L * K
        self.weights_buffer = np.zeros(2 * L * K)  # [g | -g]
        # Fewer distinct comparisons per lane (P) than minibatch rows: `f'` is evaluated once per lane and
        # comparison, then gathered into the rows (the same numbers: `f'` is elementwise). On the paper's
        # D1 (P = 3, batch 9) that is a third of the `f'` work, the largest part of a step.
        P = max(len(lane.data.w) for lane in lanes)
        self.by_pair = not self.constant and P < batch_size
        if self.by_pair:
            self.pair_idx = self._full_batch(P)[0][0]  # every lane's comparisons, padded with (0, 0) pairs
            self.pair_shape, self.pair_half = (L, P), L * P
            self.pair_base = (np.arange(L) * P)[None, :, None]
        self._X: np.ndarray | None = None

    def _full_batch(self, K: int) -> tuple[np.ndarray, np.ndarray]:
        """Every comparison of every lane, padded to `K` per lane with `(0, 0)` "pairs" of weight 0."""
        L = len(self.lanes)
        idx = np.zeros((2, L, K), dtype=np.intp)
        weights = np.zeros((L, K))  # padding: a (0, 0) "pair" of weight 0 adds exactly 0
        for i, lane in enumerate(self.lanes):
            k = len(lane.data.w)
            idx[0, i, :k], idx[1, i, :k], weights[i, :k] = lane.data.w, lane.data.l, lane.data.p
        return (idx + self.base).reshape(1, -1), weights

    def dead_rows(self) -> list[int]:
        """Rows whose gradient at the start is not finite (IPO's `1/(2 tau)` overflows below tau ~ 3e-309)."""
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            return [
                self.start + i
                for i, lane in enumerate(self.lanes)
                if not np.isfinite(lane.pair_grad(np.zeros(1), lane.tau)).all()
            ]

    def reset_streams(self) -> None:
        if not self.constant:
            self.streams.reset()

    def prepare(self, count: int) -> None:
        """Draw the minibatch indices of the next `count` (<= STREAM_CHUNK) steps, all lanes at once."""
        if self.by_pair:
            # Row r of lane i on comparison j reads `[f' | -f']` at `i P + j` (winner), `L P + i P + j`
            # (loser); its actions are at the same positions of `pair_idx`.
            rows = self.streams.rows(count)
            rows += self.pair_base
            self.rows = np.concatenate([rows, rows + self.pair_half], axis=1).reshape(count, -1)
            self.idx = self.pair_idx[self.rows]
        elif not self.constant:
            idx = self.streams.draw(count)
            idx += self.base
            self.idx = idx.reshape(count, 2 * len(self.lanes) * self.batch_size)

    def gradient(self, X: np.ndarray, i: int) -> np.ndarray:
        """The block's gradient `(L, n)` at the `i`-th step of the current chunk.

        Runs once per step for all lanes on small arrays, so its cost is the number of numpy calls: the
        difference and the scaling write into buffers (`_views`) made once per `X`.
        """
        if X is not self._X:
            self._views(X)
        idx = self.idx[0 if self.constant else i]
        # `[g | -g]` in one call: `f' / B` and `f' / (-B)` (or `f' w` and `f' (-w)`) are `g` and exactly `-g`.
        if self.by_pair:
            x = self._flat[self.pair_idx]  # fancy indexing: faster than `np.take(..., out=)` on small arrays
            np.subtract(x[: self.pair_half], x[self.pair_half :], out=self._hp_flat)
            for h, tau, g, fn in self._pair_calls:
                g[...] = fn(h, tau)
            np.divide(self._fp, self._signed_batch, out=self._pair_g2)  # the mean over the minibatch
            weights = self._pair_g[self.rows[i]]
        else:
            x = self._flat[idx]
            np.subtract(x[: self.half], x[self.half :], out=self._h)
            for h, tau, g, fn in self._calls:
                g[...] = fn(h, tau)
            if self.weights is None:
                np.divide(self._raw, self._signed_batch, out=self._g2)  # the mean over the minibatch
            else:
                np.multiply(self._raw, self._signed_weights, out=self._g2)
            weights = self.weights_buffer
        grad = np.bincount(idx, weights, self.size).reshape(len(self.lanes), self.n)
        if self.has_l2:
            grad += self.l2 * self._Xb
        return grad

    def _views(self, X: np.ndarray) -> None:
        """Buffers and views for `gradient` on the C-contiguous `X` (updated in place by the engine)."""
        self._X = X
        self._Xb = X[self.start : self.stop]
        self._flat = self._Xb.reshape(-1)  # a view: the block's rows are contiguous
        self._h = np.empty(self.half)
        h = self._h.reshape(self.shape)
        self._raw = np.empty(self.shape)  # f' of each row
        self._g2 = self.weights_buffer.reshape(2, *self.shape)  # [g | -g]
        self._signed_batch = np.array([self.batch_size, -self.batch_size], dtype=float).reshape(2, 1, 1)
        if self.weights is not None:
            self._signed_weights = np.stack([self.weights, -self.weights])
        self._calls = [(h[a:b], self.tau[a:b], self._raw[a:b], fn) for a, b, fn in self.segments]
        if self.by_pair:
            self._hp_flat = np.empty(self.pair_half)
            hp = self._hp_flat.reshape(self.pair_shape)
            self._pair_g = np.empty(2 * self.pair_half)  # [f' / B | -f' / B] per lane and comparison
            self._pair_g2 = self._pair_g.reshape(2, *self.pair_shape)
            self._fp = np.empty(self.pair_shape)  # f' per lane and comparison
            self._pair_calls = [(hp[a:b], self.tau[a:b], self._fp[a:b], fn) for a, b, fn in self.segments]


def _segments(lanes: list[PairLane]) -> list[tuple[int, int, PairFn]]:
    """Runs of consecutive lanes with the same `pair_grad`: one call per run (lanes are created spec by
    spec, so each method's lanes are contiguous)."""
    segments: list[tuple[int, int, PairFn]] = []
    for i, lane in enumerate(lanes):
        if segments and segments[-1][2] is lane.pair_grad:
            segments[-1] = (segments[-1][0], i + 1, lane.pair_grad)
        else:
            segments.append((i, i + 1, lane.pair_grad))
    return segments


class KLBlock:
    """KL lanes `[start, start + len(lanes))`: the exact gradient of `-J` (deterministic, no stream)."""

    def __init__(self, lanes: list[KLLane], start: int) -> None:
        self.lanes = lanes
        self.start, self.stop = start, start + len(lanes)
        self.tau = np.array([lane.tau for lane in lanes])[:, None]
        self.log_pi_ref = np.stack([lane.log_pi_ref for lane in lanes])
        self.support = np.isfinite(self.log_pi_ref)

    def set_rewards(self, rewards: np.ndarray) -> None:
        """The targets `r` of the lanes, `(L, n)` (0 off `supp pi_ref`)."""
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
