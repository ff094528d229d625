"""The checks every input boundary shares: integers, reals, ranges, choices (written once).

Each check takes the key to name in the error, the value, and its bounds, and either returns the value
(as a Python `int`, `float` or `str`) or raises `InputError(key, value, reason)` with one of the reasons
below — the same words whether the value came from a flag, an experiment file, a sweep grid or a keyword
of `psipo_cli.solve`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

from psipo_cli.errors import InputError

#: Step indices enter Adam's bias corrections and the schedules as doubles: exact up to 2**53.
MAX_STEPS = 2**53


def is_integer(value: Any) -> bool:
    """An integer that is not a bool (numpy integers included)."""
    return isinstance(value, Integral) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """A real number that is not a bool (numpy scalars included; may be inf or NaN)."""
    return isinstance(value, Real) and not isinstance(value, bool)


def integer(key: str, value: Any, minimum: int = 1, maximum: int | None = None) -> int:
    """`value` as an `int` in `[minimum, maximum]`; `minimum` 1 is "positive", 0 "non-negative"."""
    if not is_integer(value) or value < minimum:
        word = {0: "non-negative", 1: "positive"}.get(minimum, f"at least {minimum}:")
        raise InputError(key, value, f"must be a {word} integer")
    if maximum is not None and value > maximum:
        raise InputError(key, value, _at_most(maximum))
    return int(value)


def _at_most(maximum: int) -> str:
    return f"must be at most 2**53 = {MAX_STEPS} (not representable)" if maximum == MAX_STEPS else (
        f"must be at most {maximum}")


@dataclass(frozen=True)
class Interval:
    """A range of reals, `(lo, hi)` with open or closed ends; `lo = 0, hi = inf` open is "positive"."""

    lo: float = -math.inf
    hi: float = math.inf
    lo_open: bool = True
    hi_open: bool = True

    def __contains__(self, value: float) -> bool:
        above = value > self.lo if self.lo_open else value >= self.lo
        below = value < self.hi if self.hi_open else value <= self.hi
        return above and below

    def reason(self) -> str:
        """The error message: "must be a positive finite number", "must lie in [0, 1)", ..."""
        if math.isinf(self.hi) and self.lo == 0:
            return f"must be a {'positive' if self.lo_open else 'non-negative'} finite number"
        if math.isinf(self.hi) and math.isinf(self.lo):
            return "must be a finite number"
        left, right = "(" if self.lo_open else "[", ")" if self.hi_open else "]"
        return f"must lie in {left}{self.lo:g}, {self.hi:g}{right}"


POSITIVE = Interval(0.0)
NON_NEGATIVE = Interval(0.0, lo_open=False)
FRACTION = Interval(0.0, 1.0, lo_open=False)  # [0, 1): b1, b2, average_start, ema_decay
PROBABILITY_FRACTION = Interval(0.0, 1.0, hi_open=False)  # (0, 1]: lr_final


def real(key: str, value: Any, interval: Interval = POSITIVE) -> float:
    """`value` as a finite `float` inside `interval`."""
    if not is_real(value) or not math.isfinite(value) or value not in interval:
        raise InputError(key, value, interval.reason())
    return float(value)


def choice(key: str, value: Any, choices: tuple[str, ...]) -> str:
    """`value`, one of `choices`."""
    if not isinstance(value, str) or value not in choices:
        raise InputError(key, value, f"must be one of {', '.join(choices)}")
    return value


def positive_taus(key: str, values: list[Any]) -> list[float]:
    """Each tau a positive finite number (`InputError` naming the first that is not)."""
    out = []
    for v in values:
        if not is_real(v) or not math.isfinite(v) or v <= 0:
            raise InputError(key, v, "tau must be a positive finite number")
        out.append(float(v))
    return out
