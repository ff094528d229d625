"""Cells, groups, chunks and shards: how a grid is cut into units of work.

- A **cell** is (problem, n, method, tau); its seeds are runs *inside* the cell (the policy is their mean
  and 95% interval, as in `psipo run`).
- A **group** is the cells that share a problem, a dataset size and every solver setting (one *variant* of
  the swept gradient settings, `SweepGrid.variants`): they can go through one `api.solve` call, i.e. one
  pass of the vectorised engine. Swept method options are lanes of that call (`SweptMethod`).
- A **chunk** is a rectangular block of a group — some methods × some tau values, at most `chunk_cells`
  cells — and the unit that is scheduled, persisted (`chunks/<id>.csv`) and resumed. The plan depends on
  the grid alone (never on `--jobs`, the executor or the shard), so chunk ids are stable across
  invocations; and because the engine's random streams depend only on (root seed, seed index, context),
  a cell's numbers do not depend on which chunk it landed in.
- A **shard** `i/N` (1-based) takes chunks `i-1, i-1+N, i-1+2N, ...`: round robin, so that expensive
  groups (large `n`, many contexts) spread over the shards.

Chunks are numbered in grid order (problems, then n, then variants, then methods, then tau), and cells inside
a chunk are in grid order too: concatenating chunk files by id gives rows in grid order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from psipo_cli.errors import InputError
from psipo_cli.sweep.grid import SweepGrid


@dataclass(frozen=True)
class Chunk:
    """Methods × tau values of one group.

    Attributes
    ----------
    id : str
        Zero-padded index in the plan (`00042`): the chunk file's name.
    index : int
    problem : int
        Index into `grid.problems`.
    n : int or None
        The dataset size of the group (None: the problem's data are not sampled, or `n` is not swept).
    methods : tuple of int
        Indices into `grid.lanes()` (the methods, swept method options expanded).
    taus : tuple of int
        Indices into `grid.tau`.
    variant : int
        Index into `grid.variants()` (0 when no gradient setting is swept).
    """

    id: str
    index: int
    problem: int
    n: int | None
    methods: tuple[int, ...]
    taus: tuple[int, ...]
    variant: int = 0

    @property
    def cells(self) -> int:
        return len(self.methods) * len(self.taus)

    def describe(self, grid: SweepGrid) -> dict[str, Any]:
        """A JSON summary (recorded in `grid.json`, so that `merge` needs no config file)."""
        lanes = grid.lanes()
        out = {
            "id": self.id,
            "problem": grid.problems[self.problem].key,
            "n": self.n,
            "methods": [lanes[m].spec.label for m in self.methods],
            "tau": [grid.tau[t] for t in self.taus],
        }
        variant = grid.variants()[self.variant]
        return {**out, "settings": variant} if variant else out


def _blocks(count: int, size: int) -> list[range]:
    """`range(count)` cut into `ceil(count / size)` contiguous blocks of nearly equal length."""
    parts = math.ceil(count / size)
    base, extra = divmod(count, parts)
    out, start = [], 0
    for p in range(parts):
        stop = start + base + (1 if p < extra else 0)
        out.append(range(start, stop))
        start = stop
    return out


def plan_chunks(grid: SweepGrid) -> list[Chunk]:
    """Every chunk of the grid, in grid order."""
    M, T, C = len(grid.lanes()), len(grid.tau), grid.chunk_cells
    if M * T <= C:
        rects = [(range(M), range(T))]
    elif T <= C:
        rects = [(block, range(T)) for block in _blocks(M, C // T)]
    else:
        rects = [(range(m, m + 1), block) for m in range(M) for block in _blocks(T, C)]
    chunks: list[Chunk] = []
    for p, entry in enumerate(grid.problems):
        sizes: list[int | None] = list(grid.n) if (entry.sampled and grid.n) else [None]
        for n in sizes:
            for variant in range(len(grid.variants())):
                for methods, taus in rects:
                    index = len(chunks)
                    chunks.append(Chunk(f"{index:05d}", index, p, n, tuple(methods), tuple(taus), variant))
    return chunks


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count` (1-based), as given by `--shard i/N`."""

    index: int
    count: int

    @property
    def label(self) -> str:
        return f"{self.index}/{self.count}"

    def selects(self, chunk: Chunk) -> bool:
        return chunk.index % self.count == self.index - 1

    def to_json(self) -> dict[str, int]:
        return {"index": self.index, "count": self.count}


def parse_shard(text: str | None) -> Shard | None:
    """`"i/N"` → `Shard(i, N)` with `1 <= i <= N`; None stays None."""
    if text is None:
        return None
    parts = text.strip().split("/")
    try:
        index, count = (int(p) for p in parts)
    except ValueError:
        raise InputError("--shard", text, "must be i/N with integers 1 <= i <= N (e.g. 2/4)") from None
    if count < 1 or not 1 <= index <= count:
        raise InputError("--shard", text, "must be i/N with 1 <= i <= N (shards count from 1)")
    return Shard(index, count)


def select(chunks: list[Chunk], shard: Shard | None) -> list[Chunk]:
    """The chunks of `shard` (all of them without one)."""
    return list(chunks) if shard is None else [c for c in chunks if shard.selects(c)]
