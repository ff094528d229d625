"""The Psi registry of ΨPO (paper Eq. 6): non-decreasing maps of a preference probability.

Built-ins: `identity` (IPO), `logit` (RLHF/DPO under Bradley–Terry, Prop. 1) and `log`. A user function is
named `module:function`; it must map an array of probabilities to an array of the same shape.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from types import ModuleType

import numpy as np

from psipo_cli.errors import InputError

PsiFn = Callable[[np.ndarray], np.ndarray]


def identity(q: np.ndarray) -> np.ndarray:
    """`Psi(q) = q` — IPO (paper §5)."""
    return np.asarray(q, dtype=float).copy()


def logit(q: np.ndarray) -> np.ndarray:
    """`Psi(q) = log(q / (1 - q))`, `±inf` at `q ∈ {1, 0}` — RLHF/DPO under Bradley–Terry (Prop. 1)."""
    q = np.asarray(q, dtype=float)
    with np.errstate(divide="ignore"):
        return np.log(q) - np.log1p(-q)


def log(q: np.ndarray) -> np.ndarray:
    """`Psi(q) = log q`, `-inf` at `q = 0`."""
    with np.errstate(divide="ignore"):
        return np.log(np.asarray(q, dtype=float))


BUILTIN: dict[str, PsiFn] = {"identity": identity, "logit": logit, "log": log}


def _import_from_cwd(module_name: str) -> ModuleType:
    """Import `module_name` as `python -m` would: the current directory first on the path.

    The `psipo` console script, unlike `python -m psipo_cli`, does not put the current directory on
    `sys.path`; `--psi mymodule:fn` must find `./mymodule.py` either way. The path is restored after the
    import (the module stays in `sys.modules`)."""
    cwd = os.getcwd()
    added = cwd not in sys.path and "" not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(module_name)
    finally:
        if added:
            sys.path.remove(cwd)


def resolve_psi(name: str) -> PsiFn:
    """A built-in Psi by name, or a user function `module:function` (the only user code psipo runs)."""
    if name in BUILTIN:
        return BUILTIN[name]
    if ":" not in name:
        raise InputError("--psi", name, f"unknown Psi (built-ins: {', '.join(BUILTIN)}; or module:function)")
    module_name, _, attr = name.partition(":")
    try:
        fn = getattr(_import_from_cwd(module_name), attr)
    except ModuleNotFoundError as exc:
        top = module_name.partition(".")[0]
        raise InputError("--psi", name, f"cannot load ({exc}): psipo looks for {top}.py (or the package {top}/) "
                         "in the current directory and on PYTHONPATH; run psipo where the file is, or "
                         "PYTHONPATH=DIR psipo ...") from None
    except (ImportError, AttributeError) as exc:
        raise InputError("--psi", name, f"cannot load ({exc})") from None
    if not callable(fn):
        raise InputError("--psi", name, "is not callable")
    return fn


def evaluate_psi(psi: PsiFn, q: np.ndarray, name: str = "psi") -> np.ndarray:
    """`psi(q)` checked: same shape, no NaN, and non-decreasing on the values it was given."""
    q = np.asarray(q, dtype=float)
    with np.errstate(all="ignore"):
        out = np.asarray(psi(q), dtype=float)
    if out.shape != q.shape:
        raise InputError("--psi", name, f"returned shape {out.shape} for input shape {q.shape}")
    if np.isnan(out).any():
        bad = float(q[np.isnan(out)][0])
        raise InputError("--psi", name, f"returned NaN at q = {bad:g}")
    flat_q, flat_v = q.ravel(), out.ravel()
    order = np.argsort(flat_q, kind="stable")
    with np.errstate(invalid="ignore"):  # inf - inf = nan between equal infinite values: not a decrease
        decreasing = np.diff(flat_v[order]) < -1e-12 * (1 + np.abs(flat_v[order][:-1]))
    if np.any(decreasing):
        raise InputError("--psi", name, "is not non-decreasing")
    return out
