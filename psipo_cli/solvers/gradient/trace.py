"""What a phase records besides the window sums: the curves on the log step grid, and the spread of the
policy over window B (`RunResult.noise`)."""

from __future__ import annotations

import numpy as np

from psipo_cli.solvers.gradient.blocks import lane_softmax

NOISE_SAMPLES = 256  # at most this many policies sampled in the last window for `RunResult.noise`


def record_grid(steps: int, records: int) -> np.ndarray:
    """The log-spaced steps at which curves are recorded: `0`, `records` points of `geomspace(1, steps)`
    rounded to integers (duplicates dropped), and always `steps`."""
    grid = np.round(np.geomspace(1, steps, records)).astype(int)
    return np.unique(np.r_[0, grid, steps]).astype(int)


class Trace:
    """The policies at the recorded steps `(len(record), L, n)`, and the policy's standard deviation over
    window B `[b_start, b_end)`, sampled every `stride` steps (at most `NOISE_SAMPLES` samples)."""

    def __init__(self, record: np.ndarray, log_pi_ref: np.ndarray, b_start: int, b_end: int, X: np.ndarray) -> None:
        L, n = X.shape
        self.log_pi_ref = log_pi_ref
        self.curves = np.empty((len(record), L, n))
        self.curves[0] = lane_softmax(log_pi_ref, X)
        self.steps = [int(t) for t in record[1:]]
        self.filled = 0
        self.b_start = b_start
        self.stride = -(-(b_end - b_start) // NOISE_SAMPLES)  # ceil: at most NOISE_SAMPLES samples
        self.ref, self.d1, self.d2, self.count = np.zeros((L, n)), np.zeros((L, n)), np.zeros((L, n)), 0

    def next_record(self, T: int) -> int:
        """The next step to record (`T + 1` once all are)."""
        return self.steps[self.filled] if self.filled < len(self.steps) else T + 1

    def observe(self, X: np.ndarray, t: int) -> None:
        """Record the policy at step `t` if `t` is on the grid; sample it if `t` is a noise sample."""
        if self.filled < len(self.steps) and t == self.steps[self.filled]:
            self.filled += 1
            self.curves[self.filled] = lane_softmax(self.log_pi_ref, X)
        if t >= self.b_start and (t - self.b_start) % self.stride == 0:
            pi = lane_softmax(self.log_pi_ref, X)
            if self.count == 0:
                self.ref = pi
            d = pi - self.ref
            self.d1 += d
            self.d2 += d * d
            self.count += 1

    def noise(self) -> np.ndarray:
        """`(L,)`: the largest over actions of the standard deviation of `pi_y` over window B."""
        k = self.count
        return np.sqrt(np.maximum(self.d2 / k - (self.d1 / k) ** 2, 0.0)).max(axis=1)
