"""Optimisers (Adam, SGD) with learning-rate schedules, and the Polyak / EMA average of the iterates.

Adam follows optax's convention: `t` from 1, `m = (1 - b1) g + b1 m`, `v = (1 - b2) g^2 + b2 v`, update
`m_hat / (sqrt(v_hat) + eps)` with bias-corrected moments; SGD is `X -= lr_t G`. The step-`t` rate is
`lr_t = lr s(t)` (`schedules.factor` over the lane's own number of steps).

`average` reports the policy of averaged offsets, `softmax(log pi_ref + xbar)` (offsets, not
probabilities, are averaged: the loss is convex in them for DPO and IPO), over the iterates
`t0 <= t <= T`, `t0 = floor(average_start T) + 1`: `polyak` the uniform mean, `ema` the weights
`(1 - ema_decay) ema_decay^(T - t)` divided by their sum `1 - ema_decay^(T - t0 + 1)`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from psipo_cli.config.schedules import factor
from psipo_cli.config.settings import GradientSettings


class Optimiser:
    """The update of every lane at step `t`; lane `i` stops moving after `limit[i]` steps."""

    def __init__(self, settings: GradientSettings, limit: np.ndarray, shape: tuple[int, int]) -> None:
        self.adam = settings.optimizer == "adam"
        self.lr, self.b1, self.b2, self.eps = settings.lr, settings.b1, settings.b2, settings.adam_eps
        self.c1, self.c2 = 1.0 - self.b1, 1.0 - self.b2
        # The moments as one (2, L, n) array `[m | v]`, so that the steps both take (the decay, the sum, the
        # bias correction) are one numpy call each: the same operations on each entry, fewer calls.
        self.moments = np.zeros((2, *shape))
        self.m, self.v = self.moments[0], self.moments[1]
        self.step_buffer = np.zeros(shape)
        self.scratch = np.zeros((2, *shape))
        self.T = int(limit.max())
        self.frozen = None if bool(np.all(limit == self.T)) else limit  # per-lane stopping (RLHF's rm_steps)
        self.schedule, self.final = settings.lr_schedule, settings.lr_final
        self.constant = self.schedule == "constant" or self.final == 1.0

    def stepper(self) -> Callable[[np.ndarray, int], np.ndarray]:
        """`step(G, t)`: the step `X_t = X_{t-1} - step` for the gradient `G` at step `t` (a buffer, reused).

        A closure over local names, in place, one numpy call per operation: it runs once per step for
        every lane at once, so attribute look-ups would be a measurable share of a small problem's time.
        """
        step, moments, scratch = self.step_buffer, self.moments, self.scratch
        new_m, new_v = scratch[0], scratch[1]  # (1-b1) g and (1-b2) g^2, then m_hat and v_hat
        adam, lr, b1, b2, c1, c2, eps = self.adam, self.lr, self.b1, self.b2, self.c1, self.c2, self.eps
        frozen, constant, schedule, final, T = self.frozen, self.constant, self.schedule, self.final, self.T
        decay = np.array([b1, b2]).reshape(2, 1, 1)
        correction = np.ones((2, 1, 1))

        def update(G: np.ndarray, t: int) -> np.ndarray:
            if adam:
                # optax: m = (1-b1) g + b1 m; v = (1-b2) g^2 + b2 v; update = m_hat / (sqrt(v_hat) + eps)
                np.multiply(moments, decay, out=moments)
                np.multiply(G, c1, out=new_m)
                np.multiply(G, G, out=new_v)
                np.multiply(new_v, c2, out=new_v)
                np.add(moments, scratch, out=moments)
                correction[0], correction[1] = 1.0 - b1**t, 1.0 - b2**t
                np.divide(moments, correction, out=scratch)  # m_hat, v_hat
                np.sqrt(new_v, out=new_v)
                np.add(new_v, eps, out=new_v)
                np.divide(new_m, new_v, out=step)
                direction = step
            else:
                direction = G
            if frozen is None:
                np.multiply(direction, lr if constant else lr * factor(schedule, t, T, final), out=step)
            elif constant:
                np.multiply(direction, lr, out=step)
                np.multiply(step, (t <= frozen)[:, None], out=step)  # lanes past their own limit stay put
            else:
                rates = lr * factor(schedule, t, frozen, final) * (t <= frozen)
                np.multiply(direction, rates[:, None], out=step)
            return step

        return update


class Averager:
    """The Polyak or EMA average of the iterates `t0 <= t <= limit` of each lane (module docstring).

    Polyak sums per chunk, then into a total (two-level summation keeps the rounding of a long sum at
    O((chunk + T / chunk) eps)); EMA is a recursion. `first` is the first step to `add` (T + 1: none).
    """

    def __init__(self, settings: GradientSettings, limit: np.ndarray, shape: tuple[int, int]) -> None:
        self.kind, self.beta, self.limit = settings.average, settings.ema_decay, limit
        self.on = self.kind != "none"
        self.t0 = np.floor(settings.average_start * limit).astype(np.int64) + 1
        self.uniform = bool(np.all(limit == limit.max()))
        self.first = (int(self.t0[0]) if self.uniform else int(self.t0.min())) if self.on else int(limit.max()) + 1
        self.total = np.zeros(shape) if self.on else None
        self.chunk = np.zeros(shape) if self.on else None
        self.scratch = np.zeros(shape)

    def add(self, X: np.ndarray, t: int) -> None:
        """Add the iterate `X` of step `t >= first`."""
        if self.uniform:
            if self.kind == "polyak":
                self.chunk += X
            else:
                self.chunk *= self.beta
                np.multiply(X, 1.0 - self.beta, out=self.scratch)
                self.chunk += self.scratch
            return
        active = ((self.t0 <= t) & (t <= self.limit))[:, None]
        if self.kind == "polyak":
            self.chunk += X * active
        else:
            self.chunk[...] = np.where(active, self.beta * self.chunk + (1.0 - self.beta) * X, self.chunk)

    def flush(self) -> None:
        """End of a chunk: move the Polyak chunk sum into the total."""
        if self.kind == "polyak":
            self.total += self.chunk
            self.chunk[...] = 0.0

    def result(self) -> np.ndarray | None:
        """The averaged offsets `(L, n)`, or None without averaging."""
        if not self.on:
            return None
        taken = (self.limit - self.t0 + 1)[:, None]  # iterates averaged per lane
        # EMA: `chunk` is the running `e_t = beta e_{t-1} + (1 - beta) x_t` from `e_{t0-1} = 0`; its weights
        # sum to `1 - beta ** taken`, divided out (as Adam's bias correction).
        return self.total / taken if self.kind == "polyak" else self.chunk / (1.0 - self.beta**taken)
