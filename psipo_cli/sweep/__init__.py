"""Sweeps: `psipo sweep CONFIG` over grids of problems × dataset sizes × methods × tau.

One concept per module, in the order the data flows:

- `grid`: read and validate the TOML grid into a resolved, JSON-safe `SweepGrid` (and its hash);
- `plan`: cells, groups of cells that share one `api.solve` call, chunks of a group, shards;
- `compute`: what a worker does with one chunk (solve, lay the rows out as CSV text);
- `executors`: where chunks run (in process, a process pool, a Dask cluster);
- `store`: the sweep directory on disk (created up front, chunk files written atomically);
- `merge`: shards (or any directories of the same sweep) combined into one;
- `figures`: metric vs tau (and vs `n`) from `results.csv` alone;
- `runner`: the orchestration behind `psipo sweep`.

Nothing here imports numpy, pandas or matplotlib at module level: the CLI must start fast, and pool
workers must be able to pin their BLAS threads before numpy is imported.
"""

from __future__ import annotations
