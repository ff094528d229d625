"""A method as the user writes it: a name, or a table `{method, label?, options...}` (experiment files, sweep
grids, and dicts given to `psipo_cli.solve`), validated against the registry and turned into a `MethodSpec`.

One validation for every entry point, so that a method table means the same thing in a file and in Python.
"""

from __future__ import annotations

from typing import Any

from psipo_cli.errors import InputError, did_you_mean
from psipo_cli.methods import METHODS, get_method
from psipo_cli.solvers.runs import MethodSpec, method_spec

#: Every option some registered method accepts (`Method.options`), in registry order.
METHOD_OPTIONS: tuple[str, ...] = tuple(dict.fromkeys(o for m in METHODS.values() for o in m.options))
#: The keys a method table may hold.
METHOD_KEYS: tuple[str, ...] = ("method", "label", *METHOD_OPTIONS)


def method_entry(raw: Any, key: str = "methods") -> dict[str, Any]:
    """A method as a table `{method, label?, options...}` (a bare name is `{method: name}`).

    Raises `InputError` (keyed `key.option`) for a table without `method`, an unknown key, or an option
    that the method does not take (`Method.options` in the registry). Values are checked later, by the
    solvers (`check_options`, `GradientSettings`).
    """
    entry = {"method": raw} if isinstance(raw, str) else raw
    if not isinstance(entry, dict) or "method" not in entry:
        raise InputError(key, raw, "each method is a name or a table {method = NAME, ...}")
    bad = sorted(set(entry) - set(METHOD_KEYS), key=str)
    if bad:
        k = bad[0]
        raise InputError(f"{key}.{k}", entry[k], f"unknown method option{did_you_mean(k, METHOD_KEYS)} "
                                                 f"(keys: {', '.join(METHOD_KEYS)})")
    method = get_method(str(entry["method"]))
    for option in sorted(set(entry) - {"method", "label"}):
        if option not in method.options:
            raise InputError(f"{key}.{option}", entry[option], f"not an option of {method.name}")
    return dict(entry)


def entry_spec(entry: dict[str, Any]) -> MethodSpec:
    """The `MethodSpec` of a validated method table (options left at `None` are dropped)."""
    options = {k: v for k, v in entry.items() if k not in ("method", "label")}
    return method_spec(str(entry["method"]), str(entry.get("label") or ""), **options)
