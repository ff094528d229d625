"""Memory and time of a gradient-engine call, estimated before any work, and the guard that refuses what
would not fit in the machine's available memory.

The engine's memory does not grow with the number of steps: per lane it holds O(n) state (iterate,
gradient, Adam moments, the status windows' sums, the averages), the minibatch indices of one stream
chunk, and the curves on the fixed log-spaced grid (`GradientSettings.records` points). So the estimate is

    memory ~ 8 bytes x [ STATE_ARRAYS L n                       (state, all lanes)
                         + 2 R L n + CURVE_ROW_BYTES / 8 R G n  (curves in the engine, per run, in the table)
                         + C K (2 L + 3 S) + 8 L K ]            (C steps of minibatch indices, one step)

with `L` lanes (method spec x tau x seed x context, plus RLHF's reward-model lanes), `n` actions, `R` curve
points, `G` reported groups (spec x tau x context), `S` minibatch streams (seed x context) and `K` rows per
step (the batch size, or the distinct compared pairs for the full batch), `C` the stream chunk. The time is

    seconds ~ steps x (SECONDS_PER_STEP + SECONDS_PER_ELEMENT L (n + 2 K)),

both constants measured once on a 2-core AMD EPYC VM (Python 3.11, numpy 2.4): the engine's per-step
overhead and its cost per lane-element (`benchmarks/resources_model.py` re-measures them).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from psipo_cli.errors import InputError

STATE_ARRAYS = 32  # (L, n) float arrays alive at once in the step loop, temporaries included
CURVE_ROW_BYTES = 200  # one row of the curves table (step, method, tau, context, action, mean, lo, hi)
SECONDS_PER_STEP = 1.3e-5
SECONDS_PER_ELEMENT = 2e-8


@dataclass(frozen=True)
class Resources:
    """The estimate of one engine call (module docstring); `available` is None when it is unknown."""

    lanes: int
    n: int
    steps: int
    memory: float  # bytes
    seconds: float
    available: float | None  # bytes

    def request(self) -> str:
        return f"{self.lanes} lanes x {self.n} actions x {self.steps} steps"

    def line(self) -> str:
        limit = "unknown" if self.available is None else _bytes(self.available)
        return (
            f"about {_bytes(self.memory)} of memory and {_duration(self.seconds)} (estimate), available memory "
            f"{limit}"
        )


def available_memory() -> float | None:
    """Bytes the machine can give a new allocation without swapping: `MemAvailable` of /proc/meminfo
    (Linux), else the free physical pages (`os.sysconf`), else None (unknown: nothing is refused)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024.0
    except OSError:
        pass
    try:
        return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def estimate(
    lanes: int, reward_lanes: int, n: int, rows: int, streams: int, groups: int, records: int, steps: int,
    reward_steps: int, chunk: int, grid: int,
) -> Resources:
    """The memory and time of a call (module docstring): `lanes` policy lanes, `reward_lanes` RLHF
    reward-model lanes, `rows` = K, `records` curve points, `steps` and `reward_steps` per phase, `chunk`
    steps of minibatch indices drawn at once (0 for the full batch), `grid` the requested curve points."""
    every = lanes + reward_lanes
    memory = 8.0 * (
        STATE_ARRAYS * every * n
        + 2.0 * records * lanes * n
        + CURVE_ROW_BYTES / 8.0 * records * groups * n
        + chunk * rows * (2.0 * every + 3.0 * streams)
        + 8.0 * every * rows
        + grid
    )
    seconds = sum(
        t * (SECONDS_PER_STEP + SECONDS_PER_ELEMENT * count * (n + 2 * rows))
        for t, count in ((steps, lanes), (reward_steps, reward_lanes))
        if count
    )
    return Resources(every, n, steps + (reward_steps if reward_lanes else 0), memory, seconds, available_memory())


def check(resources: Resources) -> Resources:
    """Refuse (InputError, exit 2) a call whose memory estimate exceeds the available memory."""
    if resources.available is not None and resources.memory > resources.available:
        raise InputError(
            "gradient run", resources.request(),
            f"does not fit in memory: {resources.line()}; use fewer seeds, tau values, methods, contexts or "
            "actions, or a smaller --batch-size",
        )
    return resources


def _bytes(value: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if value < 1000 or unit == "PB":
            return f"{value:.3g} {unit}"
        value /= 1000.0
    return f"{value:.3g} PB"  # pragma: no cover


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.2g} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.2g} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.2g} h"
    years = seconds / (365.25 * 86400)
    return f"{seconds / 86400:.2g} days" if years < 1 else f"{years:.2g} years"


def rows_bound(problem: Any, objective: str, batch_size: int) -> int:
    """`K`, the rows a lane reads per step: the batch size, or for the full batch the largest number of
    compared pairs of a context (sampled data: at most `sample.n`; population: pairs in `supp mu`)."""
    if batch_size > 0:
        return batch_size
    n = problem.n_actions
    best = 1
    for ctx in problem.contexts:
        if objective == "dataset" and ctx.sample is not None:
            k = min(ctx.sample.n, n * (n - 1))
        elif objective == "dataset" and ctx.wins is not None:
            k = int((ctx.wins > 0).sum())
        else:
            m = int((ctx.mu > 0).sum())
            k = m * (m - 1)
        best = max(best, k)
    return best
