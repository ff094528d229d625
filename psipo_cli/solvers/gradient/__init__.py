"""The vectorised gradient engine (`engine.run_gradient`), as a package:

- `blocks`: lane blocks behind the `Block` protocol (`PairBlock`, `KLBlock`); a family's own blocks live in
  its package (`psipo_cli.methods.online.block`, ...), on the minibatch streams of `psipo_cli.methods.streams`
  (`SeedSequence([seed, k, c])`, common random numbers);
- `optim`: Adam / SGD with the learning-rate schedules of `psipo_cli.config.schedules`, Polyak / EMA averaging;
- `status`: the status rule (`converged`, `running`, `stalled`);
- `trace`: curves on the log step grid, and the policy's noise over the last window;
- `plan`, `report`: the lanes each method's family asks for, and each run's result;
- `resources`: the memory and time guard.

Public names are imported lazily (PEP 562), so that importing one module of the package (e.g. `trace`)
does not load the whole engine. `GradientSettings` lives in `psipo_cli.config.settings`, the status names in
`psipo_cli.schema`.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY: dict[str, str] = {
    "run_gradient": "engine",
    "estimate_resources": "engine",
    "optimise": "engine",
    "record_grid": "trace",
    "lane_softmax": "blocks",
    "Block": "blocks",
    "PairBlock": "blocks",
    "KLBlock": "blocks",
    "PairLane": "blocks",
    "KLLane": "blocks",
    "comparisons": "psipo_cli.methods.streams",
    "STREAM_CHUNK": "psipo_cli.methods.streams",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    """Import a public name on first access and cache it in the package."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    where = _LAZY[name]
    module = importlib.import_module(where if "." in where else f"{__name__}.{where}")
    value = getattr(module, name)
    globals()[name] = value
    return value
