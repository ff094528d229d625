"""The gradient engine's block for losses on a transformed potential (`linked`: χPO, f-DPO).

Per step, for all lanes at once: the normalised offsets `delta = X - log Z` and the scores `psi(delta)` (one
call per run of consecutive lanes with the same link), one gather of the scores at the step's winners and
losers, `f'` of the clipped differences, one scatter-add (`np.bincount` on `lane * n + action` indices), the
factor `psi'(delta)`, and the normalisation's `- pi sum(g)`: the same numbers as `linked.linked_grad` lane
by lane. Minibatches come from the engine's streams (`MinibatchStreams`), so a lane's numbers do not depend
on which other lanes share the call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from psipo_cli.methods.pairwise.linked import LinkedLoss, potential_offsets
from psipo_cli.methods.streams import Comparisons, MinibatchStreams
from psipo_cli.numerics import sigmoid


@dataclass(eq=False)
class LinkLane:
    """One run's lane: its loss (link and clip), tau, comparisons, minibatch stream and reference."""

    loss: LinkedLoss
    tau: float
    data: Comparisons
    stream: tuple[int, int] | None  # (seed k, context c); None for the full batch
    log_pi_ref: np.ndarray


class LinkBlock:
    """Lanes `[start, start + L)` of `X` on losses of `tau (psi(delta_w) - psi(delta_l))`."""

    def __init__(self, lanes: list[LinkLane], start: int, n: int, settings: Any) -> None:
        self.lanes, self.n = lanes, n
        self.start, self.stop = start, start + len(lanes)
        L = len(lanes)
        self.log_pi_ref = np.stack([lane.log_pi_ref for lane in lanes])
        self.support = np.isfinite(self.log_pi_ref)
        self.tau = np.array([[lane.tau] for lane in lanes])
        self.clip = np.array([[2.0 * lane.loss.r_max] for lane in lanes])
        self.segments: list[tuple[int, int, Any]] = []
        for i, lane in enumerate(lanes):
            if self.segments and self.segments[-1][2] is lane.loss.link:
                self.segments[-1] = (self.segments[-1][0], i + 1, lane.loss.link)
            else:
                self.segments.append((i, i + 1, lane.loss.link))
        self.base = (np.arange(L) * n)[:, None]
        self.batch_size = settings.batch_size
        if self.batch_size == 0:
            K = max(len(lane.data.w) for lane in lanes)
            self.weights = np.zeros((L, K))
            w, l_ = np.zeros((L, K), dtype=np.intp), np.zeros((L, K), dtype=np.intp)
            for i, lane in enumerate(lanes):  # padding: a (0, 0) "pair" of weight 0 adds exactly 0
                k = len(lane.data.w)
                w[i, :k], l_[i, :k], self.weights[i, :k] = lane.data.w, lane.data.l, lane.data.p
            self.fixed = (w + self.base, l_ + self.base)
        else:
            streams = [(lane.stream, lane.data) for lane in lanes]
            self.streams = MinibatchStreams(streams, self.batch_size, settings.seed)
            self.weights = np.full((L, self.batch_size), 1.0 / self.batch_size)

    def dead_rows(self) -> list[int]:
        return []  # the scores and their derivatives are finite at the start (delta = 0)

    def reset_streams(self) -> None:
        if self.batch_size > 0:
            self.streams.reset()

    def prepare(self, count: int) -> None:
        """Draw the minibatch winners and losers of the next `count` steps, all lanes at once."""
        if self.batch_size > 0:
            self.idx = self.streams.draw(count)  # (count, 2, L, B)

    def gradient(self, X: np.ndarray, i: int) -> np.ndarray:
        """The block's gradient `(L, n)` at the `i`-th step of the current chunk."""
        Xb = X[self.start : self.stop]
        delta, pi = potential_offsets(Xb, self.log_pi_ref)
        score, slope = np.empty_like(delta), np.empty_like(delta)
        for a, b, link in self.segments:
            score[a:b], slope[a:b] = link.score(delta[a:b]), link.score_grad(delta[a:b])
        if self.batch_size == 0:
            w, l_ = self.fixed
        else:
            w, l_ = self.idx[i, 0] + self.base, self.idx[i, 1] + self.base
        flat = score.reshape(-1)
        x = self.tau * (flat[w] - flat[l_])
        d = np.where(np.abs(x) < self.clip, -sigmoid(-x), 0.0) * self.tau * self.weights
        size = Xb.size
        g = (np.bincount(w.reshape(-1), d.reshape(-1), size) - np.bincount(l_.reshape(-1), d.reshape(-1), size))
        g = np.where(self.support, g.reshape(Xb.shape) * slope, 0.0)
        return g - pi * g.sum(axis=1, keepdims=True)
