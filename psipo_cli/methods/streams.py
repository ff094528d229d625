"""Minibatch streams: which comparisons each step of a lane reads.

The minibatches of seed `k` in context `c` come from
``np.random.default_rng(np.random.SeedSequence([settings.seed, k, c]))``: the *seed index* (and the
context index) select the stream, so that a run's stream does not depend on which other runs share the
call. Every lane of seed `k` and context `c` (any method, any tau) reads the same stream (common random
numbers), and running tau values together or one at a time, or one method or several, gives bit-identical
per-run numbers. A stream is read in blocks of `STREAM_CHUNK` steps of `batch_size` uniforms each, mapped
to comparisons by `searchsorted` on the cumulative comparison probabilities `W[w, l] / sum W` (pairs in
`np.nonzero(W)` order); uniforms are drawn sequentially, so the block size does not change the draws.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from psipo_cli.errors import InputError
from psipo_cli.methods.linalg import pairs_of

STREAM_CHUNK = 512  # steps of minibatch indices drawn at once, outside the step loop


@dataclass(frozen=True, eq=False)
class Comparisons:
    """One context's comparisons as the samplers see them: distinct pairs in `np.nonzero(W)` order."""

    W: np.ndarray
    w: np.ndarray
    l: np.ndarray  # noqa: E741
    p: np.ndarray  # W[w, l] / sum W
    cum: np.ndarray  # cumulative p, for inverse-CDF sampling of minibatch rows


def comparisons(W: np.ndarray, context: str, empty: str = "context has no comparisons") -> Comparisons:
    """The comparisons of `W` (`InputError` naming `context` when there are none, saying `empty`)."""
    w, l_, c = pairs_of(W)
    if c.size == 0 or not c.sum() > 0:
        raise InputError("problem", context, f"{empty}: nothing for a gradient to fit")
    p = c / c.sum()
    return Comparisons(W, w, l_, p, np.cumsum(p))


class MinibatchStreams:
    """The minibatch rows of a set of lanes, drawn `STREAM_CHUNK` steps at a time.

    `groups` lists `(stream, comparisons, lanes)`: the lanes (indices into the block) that read one stream
    `(k, c)` on the same comparisons share one `searchsorted` per chunk.
    """

    def __init__(self, streams: list[tuple[tuple[int, int], Comparisons]], batch_size: int, seed: int) -> None:
        groups: dict[tuple[tuple[int, int], int], list[int]] = {}
        data: dict[int, Comparisons] = {}
        for i, (stream, comparisons_) in enumerate(streams):
            groups.setdefault((stream, id(comparisons_)), []).append(i)
            data[id(comparisons_)] = comparisons_
        self.groups = [(key[0], data[key[1]], np.array(idx)) for key, idx in groups.items()]
        self.streams = sorted({stream for stream, _ in streams})
        self.batch_size, self.seed, self.lanes = batch_size, seed, len(streams)

    def reset(self) -> None:
        """Start every stream from its beginning (each phase reads its streams from step 1)."""
        self.rngs = {s: np.random.default_rng(np.random.SeedSequence([self.seed, *s])) for s in self.streams}

    def rows(self, count: int) -> np.ndarray:
        """The comparisons drawn for the next `count` (<= STREAM_CHUNK) steps: indices into each lane's
        `w`, `l` (inverse CDF of its uniforms over `cum`), shape `(count, lanes, B)`."""
        B = self.batch_size
        # Every stream is read in whole chunks, so what a stream yields never depends on `count`.
        uniforms = {s: rng.random((STREAM_CHUNK, B))[:count] for s, rng in self.rngs.items()}
        rows = np.empty((count, self.lanes, B), dtype=np.intp)
        for stream, data, lanes in self.groups:
            j = np.minimum(np.searchsorted(data.cum, uniforms[stream], side="right"), len(data.w) - 1)
            rows[:, lanes, :] = j[:, None, :]
        return rows

    def draw(self, count: int) -> np.ndarray:
        """The winners and losers of the next `count` (<= STREAM_CHUNK) steps, shape `(count, 2, lanes, B)`."""
        rows = self.rows(count)
        idx = np.empty((count, 2, self.lanes, self.batch_size), dtype=np.intp)
        for _, data, lanes in self.groups:
            j = rows[:, lanes[0], :]  # the lanes of a group read one stream: the same rows
            idx[:, 0, lanes, :] = data.w[j][:, None, :]
            idx[:, 1, lanes, :] = data.l[j][:, None, :]
        return idx
