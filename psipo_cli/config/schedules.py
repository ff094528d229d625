"""Learning-rate schedules of the gradient engine, as pure functions of the step index.

A schedule multiplies the base learning rate `lr` by a factor `s(t)`, `t = 1 .. T` the step of a stage
of `T` steps, with `s(0) = 1` and `s(T) = gamma` (`lr_final`, the final learning rate as a fraction of
`lr`, `0 < gamma <= 1`; `gamma = 1` is the constant schedule whatever its name):

- ``constant``:      `s(t) = 1` (the paper's §5.4 setting);
- ``inverse-time``:  `s(t) = 1 / (1 + k t / T)`, `k = 1 / gamma - 1` (Robbins–Monro-type `1/t` decay after
  a horizon of `T / k` steps, where the rate has halved);
- ``cosine``:        `s(t) = gamma + (1 - gamma) (1 + cos(pi t / T)) / 2`;
- ``exponential``:   `s(t) = gamma ** (t / T)`.

`elapsed(t) = integral_0^t s(u) du` is the optimisation time (in units of `lr` steps) elapsed after
step `t`: gradient flow's clock, `sum_{u <= t} s(u)` up to less than one step. The status rule places
its windows on this clock, so that a decaying step reads as a slower clock rather than as convergence.
"""

from __future__ import annotations

import math

import numpy as np

from psipo_cli.config.choices import SCHEDULES

__all__ = ["SCHEDULES", "elapsed", "factor"]


def factor(name: str, t: float | np.ndarray, horizon: float | np.ndarray, final: float) -> float | np.ndarray:
    """`s(t)` of the schedule `name` over a stage of `horizon` steps (module docstring)."""
    if name == "constant" or final == 1.0:
        return np.ones_like(t, dtype=float) if isinstance(t, np.ndarray) else 1.0
    x = t / horizon
    if name == "inverse-time":
        return 1.0 / (1.0 + (1.0 / final - 1.0) * x)
    if name == "cosine":
        return final + (1.0 - final) * 0.5 * (1.0 + np.cos(np.pi * x))
    if name == "exponential":
        return final**x
    raise ValueError(f"unknown schedule {name!r}")


def elapsed(name: str, t: np.ndarray, horizon: np.ndarray, final: float) -> np.ndarray:
    """`integral_0^t s(u) du` in closed form (steps at the full rate `lr`); `t` and `horizon` arrays."""
    t = np.asarray(t, float)
    T = np.asarray(horizon, float)
    if name == "constant" or final == 1.0:
        return t
    if name == "inverse-time":
        k = 1.0 / final - 1.0
        return T / k * np.log1p(k * t / T)
    if name == "cosine":
        return final * t + (1.0 - final) * 0.5 * (t + T / np.pi * np.sin(np.pi * t / T))
    if name == "exponential":
        return T * (1.0 - final ** (t / T)) / -math.log(final)
    raise ValueError(f"unknown schedule {name!r}")
