"""The block of comparison losses of single actions' values (`psipo_cli.methods.actions`): NCA, BCO, SPPO-hard,
APO, KTO (offsets) and CPO, ORPO (log-probabilities).

Per step and lane: `pi ∝ pi_ref e^x` and `u` (the offsets `x - logsumexp(log pi_ref + x)`, or `log pi`), one
gather of `u` at the step's winners and losers, the loss's partial derivatives, one scatter-add into `g = dL/du`,
and the normalisation's term, `dL/dx = g - pi sum(g)`. KTO's reference point `z0 = max(0, KL(pi || pi_ref))` is
computed from each lane's current policy and held fixed in its gradient. Minibatches are the rows of the shared
streams (`streams.MinibatchStreams`): a lane's numbers do not depend on which other lanes share the call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from psipo_cli.methods.actions import ComparisonLoss, term_mask
from psipo_cli.methods.streams import Comparisons, MinibatchStreams


@dataclass(eq=False)
class ActionLane:
    """A lane: a comparison loss at `tau` on `data`, minibatch `stream` (None: full batch)."""

    loss: ComparisonLoss
    tau: float
    data: Comparisons
    stream: tuple[int, int] | None
    log_pi_ref: np.ndarray


class ActionBlock:
    """Lanes `[start, start + L)` of comparison losses (`ActionLane`), built by `LanePlan.block_lane`."""

    def __init__(self, lanes: list[ActionLane], start: int, n: int, settings: Any) -> None:
        self.lanes, self.start, self.stop, self.n = lanes, start, start + len(lanes), n
        L = len(lanes)
        self.tau = np.array([[lane.tau] for lane in lanes])
        self.log_pi_ref = np.stack([lane.log_pi_ref for lane in lanes])
        self.support = np.isfinite(self.log_pi_ref)
        self.reference_free = np.array([[lane.loss.reference_free] for lane in lanes])
        self.uses_kl = np.array([lane.loss.uses_kl for lane in lanes])
        self.mask = np.stack([term_mask(lane.loss, lane.log_pi_ref) for lane in lanes])
        self.segments: list[tuple[int, int, ComparisonLoss]] = []
        for i, lane in enumerate(lanes):
            if self.segments and self.segments[-1][2] is lane.loss:
                self.segments[-1] = (self.segments[-1][0], i + 1, lane.loss)
            else:
                self.segments.append((i, i + 1, lane.loss))
        P = max(len(lane.data.w) for lane in lanes)
        # Every lane's comparisons padded to P with its first comparison at weight 0 (a valid pair: its
        # values are finite, and it adds exactly 0).
        self.winners = np.zeros((L, P), dtype=np.intp)
        self.losers = np.zeros((L, P), dtype=np.intp)
        self.full_weights = np.zeros((L, P))
        for i, lane in enumerate(lanes):
            k = len(lane.data.w)
            self.winners[i], self.losers[i] = lane.data.w[0], lane.data.l[0]
            self.winners[i, :k], self.losers[i, :k], self.full_weights[i, :k] = lane.data.w, lane.data.l, lane.data.p
        self.batch_size = settings.batch_size
        self.constant = self.batch_size == 0
        if not self.constant:
            self.streams = MinibatchStreams([(lane.stream, lane.data) for lane in lanes], self.batch_size,
                                            settings.seed)
        self.base = (np.arange(L) * n)[:, None]

    def dead_rows(self) -> list[int]:
        return []  # every loss is finite with a finite gradient at pi_ref

    def reset_streams(self) -> None:
        if not self.constant:
            self.streams.reset()

    def prepare(self, count: int) -> None:
        """Minibatch rows of the next `count` steps (indices into each lane's comparisons)."""
        if not self.constant:
            self.rows = self.streams.rows(count)

    def gradient(self, X: np.ndarray, i: int) -> np.ndarray:
        Xb = X[self.start : self.stop]
        Z = self.log_pi_ref + Xb
        lse = np.max(Z, axis=1, keepdims=True)
        lse = lse + np.log(np.sum(np.exp(Z - lse), axis=1, keepdims=True))
        pi = np.exp(Z - lse)
        U = np.where(self.reference_free, Z - lse, Xb - lse)
        z0 = np.zeros((len(self.lanes), 1))
        if self.uses_kl.any():
            delta = np.where(self.support & (pi > 0), Xb - lse, 0.0)
            z0[:, 0] = np.where(self.uses_kl, np.maximum(0.0, np.sum(pi * delta, axis=1)), 0.0)
        if self.constant:
            w, l_, weights = self.winners, self.losers, self.full_weights
        else:
            rows = self.rows[i]
            w = np.take_along_axis(self.winners, rows, axis=1)
            l_ = np.take_along_axis(self.losers, rows, axis=1)
            weights = 1.0 / self.batch_size
        uw, ul = np.take_along_axis(U, w, axis=1), np.take_along_axis(U, l_, axis=1)
        gw, gl = np.empty_like(uw), np.empty_like(ul)
        for a, b, loss in self.segments:
            gw[a:b], gl[a:b] = loss.grad(uw[a:b], ul[a:b], self.tau[a:b], z0[a:b])
        size = len(self.lanes) * self.n
        g = np.bincount((w + self.base).ravel(), (gw * weights).ravel(), size) + np.bincount(
            (l_ + self.base).ravel(), (gl * weights).ravel(), size
        )
        g = g.reshape(len(self.lanes), self.n) * self.mask
        return g - pi * np.sum(g, axis=1, keepdims=True)
