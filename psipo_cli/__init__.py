"""psipo: what RLHF, DPO, IPO and PsiPO converge to on tabular preference problems.

`psipo_cli.solve(problem, method, tau, solver="exact", **options)` returns tidy pandas frames; the `psipo`
command wraps it. Heavy libraries are imported lazily so that the CLI starts fast.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "solve"]


def solve(*args: Any, **kwargs: Any) -> Any:
    """See `psipo_cli.api.solve`."""
    from psipo_cli.api import solve as _solve

    return _solve(*args, **kwargs)
