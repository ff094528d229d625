"""Settings of the gradient engine (`GradientSettings`) and their validation constants."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from psipo_cli.errors import InputError
from psipo_cli.solvers.gradient.schedules import SCHEDULES

OPTIMIZERS = ("adam", "sgd")
AVERAGES = ("none", "polyak", "ema")
MAX_STEPS = 2**53


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
        Optimiser steps (of the policy stage, for RLHF), at most 2**53. Default 18000.
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
    lr_schedule : str
        `constant` (default, the paper's), `inverse-time`, `cosine` or `exponential`: the step-`t` learning
        rate is `lr * s(t)` with `s` of `psipo_cli.solvers.schedules` over each stage's own steps.
    lr_final : float
        The decaying schedules' final learning rate as a fraction of `lr`, in `(0, 1]` (1 = constant).
        Default 0.01.
    average : str
        `none` (default), `polyak` or `ema`: report the policy of the averaged offsets instead of the last
        iterate (module docstring, "Schedules and averaging"). The curves stay the raw iterate.
    average_start : float
        Averaging uses the iterates after the first `average_start` fraction of each stage's steps, in
        `[0, 1)`. Default 0.5.
    ema_decay : float
        `ema`: the weight of step `t` is proportional to `ema_decay ** (T - t)`, in `[0, 1)`. Default 0.999.
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
    lr_schedule: str = "constant"
    lr_final: float = 0.01
    average: str = "none"
    average_start: float = 0.5
    ema_decay: float = 0.999

    def __post_init__(self) -> None:
        positive_ints = {"--steps": self.steps, "--seeds": self.seeds, "--records": self.records}
        for flag, value in positive_ints.items():
            if not _is_int(value) or value < 1:
                raise InputError(flag, value, "must be a positive integer")
        for flag, value in {"--steps": self.steps, "--rm-steps": self.rm_steps}.items():
            if _is_int(value) and value > MAX_STEPS:
                # Step indices enter Adam's bias corrections and the schedules as doubles: exact up to 2**53.
                raise InputError(flag, value, f"must be at most 2**53 = {MAX_STEPS} (not representable)")
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
        for flag, value in {
            "--b1": self.b1, "--b2": self.b2, "--average-start": self.average_start, "--ema-decay": self.ema_decay
        }.items():
            if not _is_real(value) or not 0 <= value < 1:
                raise InputError(flag, value, "must lie in [0, 1)")
        if self.lr_schedule not in SCHEDULES:
            raise InputError("--lr-schedule", self.lr_schedule, f"must be one of {', '.join(SCHEDULES)}")
        if not _is_real(self.lr_final) or not 0 < self.lr_final <= 1:
            raise InputError("--lr-final", self.lr_final, "must lie in (0, 1]")
        if self.average not in AVERAGES:
            raise InputError("--average", self.average, f"must be one of {', '.join(AVERAGES)}")
        _check_eps(self.eps)


def _check_eps(eps: Any) -> float:
    if not _is_real(eps) or not 0 < eps < 0.5:
        raise InputError("--eps", eps, "must lie in (0, 0.5)")
    return float(eps)
