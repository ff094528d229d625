"""tau values as every input gives them: a number, a list, or a grid `{min, max, num, log = true}`."""

from __future__ import annotations

from typing import Any

from psipo_cli.config.validate import positive_taus
from psipo_cli.errors import InputError

#: `run` and `compare` without `--tau`, and sweep grids without `tau`.
DEFAULT_TAUS = (0.1, 0.5, 1.0, 2.0)


def tau_values(raw: Any, key: str = "--tau") -> list[float]:
    """A tau list: numbers, or `{min, max, num, log = true}` for a grid (log- or linearly spaced)."""
    if isinstance(raw, dict):
        try:
            lo, hi, num = float(raw["min"]), float(raw["max"]), int(raw["num"])
        except (KeyError, TypeError, ValueError):
            raise InputError(key, raw, "a grid is {min, max, num, log = true}") from None
        if num < 1 or lo <= 0 or hi < lo:
            raise InputError(key, raw, "needs 0 < min <= max and num >= 1")
        if num == 1:
            return [lo]
        if raw.get("log", True):
            return [lo * (hi / lo) ** (i / (num - 1)) for i in range(num)]
        return [lo + (hi - lo) * i / (num - 1) for i in range(num)]
    values = raw if isinstance(raw, list) else [raw]
    if not values:
        raise InputError(key, raw, "give at least one value")
    return positive_taus(key, values)
