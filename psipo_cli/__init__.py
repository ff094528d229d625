"""psipo: what RLHF, DPO, IPO and PsiPO converge to on tabular preference problems (arXiv 2310.12036).

The Python API, for notebooks and scripts::

    from psipo_cli import solve, GradientSettings
    frames = solve("paper-d1", ["dpo", "ipo"], [0.1, 1.0], solver="both", steps=2000, seeds=3)
    frames.policy, frames.metrics, frames.curves          # tidy pandas frames

`solve` is `psipo_cli.api.solve` itself (``help(psipo_cli.solve)`` shows its signature and docstring). The
names below are imported on first use (PEP 562), so that ``import psipo_cli`` — and the `psipo` command,
which imports this package — stays free of numpy, scipy and pandas until they are needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from psipo_cli.errors import InputError, OutputError

if TYPE_CHECKING:  # for type checkers and IDEs; at run time these come from `__getattr__`
    from psipo_cli.api import Frames, solve, tau_grid
    from psipo_cli.config.settings import GradientSettings
    from psipo_cli.methods import METHODS
    from psipo_cli.problem import PRESETS, Problem, get_problem, load_problem
    from psipo_cli.solvers.runs import MethodSpec, method_spec

__version__ = "0.1.0"

#: Public name -> the module that defines it (imported lazily by `__getattr__`).
_LAZY: dict[str, str] = {
    "solve": "psipo_cli.api",
    "Frames": "psipo_cli.api",
    "tau_grid": "psipo_cli.api",
    "GradientSettings": "psipo_cli.config.settings",
    "MethodSpec": "psipo_cli.solvers.runs",
    "method_spec": "psipo_cli.solvers.runs",
    "METHODS": "psipo_cli.methods",
    "Problem": "psipo_cli.problem",
    "PRESETS": "psipo_cli.problem",
    "get_problem": "psipo_cli.problem",
    "load_problem": "psipo_cli.problem",
}

# Spelled out (not `[*_LAZY]`) so that linters and IDEs see the lazily imported names as exported.
__all__ = [
    "METHODS", "PRESETS", "Frames", "GradientSettings", "InputError", "MethodSpec", "OutputError", "Problem",
    "__version__", "get_problem", "load_problem", "method_spec", "solve", "tau_grid",
]


def __getattr__(name: str) -> Any:
    """Import a public name on first access (PEP 562) and cache it in the module."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*__all__, *(k for k in globals() if k.startswith("__"))})
