"""Benchmark of `psipo sweep`: a grid of ~30,000 gradient runs against a per-run loop.

Grid (defaults): rlhf, dpo, ipo × 50 tau (log grid 0.05..5) × 20 seeds × 10 dataset sizes n of the
`bt-finite` problem (Bradley-Terry, 4 actions) = 1,500 cells = 30,000 runs of 2,000 Adam steps, batch 9.

Measured:

1. the sweep, `--jobs 1` and `--jobs N` (default 2), wall time from the call to `results.csv` (process pool
   start-up included; no figures);
2. the *per-run loop* baseline: one `psipo_cli.solve` call per run (one method, one tau, one seed, one n),
   i.e. what a Python loop over runs does (a shell loop over `psipo run` pays ~1 s of interpreter start-up
   per call on top). Running all 30,000 would take ~15 minutes, so a sample of runs spread over the grid is
   timed and the total **extrapolated** (the output says so);
3. the *per-cell loop*: one `psipo_cli.solve` call per cell (all seeds of the cell vectorised) on a sample,
   also extrapolated — and each sampled cell must equal the sweep's row for it **exactly** (the check that
   batching does not change results);
4. the exact-only version of the same grid (`solver = "exact"`; each seed solves its own dataset, so 30,000
   exact solves), and the same with one dataset per cell (`seeds = 1`, 1,500 solves): wall time and the time
   spent inside `api.solve` (summed over chunks, from the manifest).

Usage::

    python benchmarks/sweep_bench.py                 # the full grid (~40 s on 2 cores)
    python benchmarks/sweep_bench.py --quick         # a small grid, to check the script works
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SIZES = [10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000]
METHODS = ["rlhf", "dpo", "ipo"]


def grid_text(taus: int, seeds: int, sizes: list[int], steps: int, solver: str) -> str:
    return "\n".join([
        f'name = "bench-{solver}"',
        f"methods = {json.dumps(METHODS)}",
        f"tau = {{ min = 0.05, max = 5.0, num = {taus}, log = true }}",
        f"seeds = {seeds}",
        'problems = ["bt-finite"]',
        f"n = {json.dumps(sizes)}",
        f'solver = "{solver}"',
        f"steps = {steps}",
        "",
    ])


def timed_sweep(config: Path, out: Path, jobs: int) -> tuple[Path, float]:
    from psipo_cli.sweep.runner import run_sweep

    started = time.perf_counter()
    run_dir = run_sweep(config, jobs=jobs, out=out, quiet=True, plots=False, argv=["sweep_bench"])
    return run_dir, time.perf_counter() - started


def problem_with_n(n: int) -> object:
    """`bt-finite` with `n` comparisons per dataset (through its problem table, as a user would)."""
    from psipo_cli.problem import get_problem
    from psipo_cli.problem.presets import preset_table

    return get_problem({**preset_table("bt-finite"), "sample": {"n": n, "seed": 0}})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--taus", type=int, default=50)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--sizes", type=int, default=len(SIZES), help="how many of the 10 dataset sizes")
    parser.add_argument("--run-sample", type=int, default=60, help="runs timed for the per-run baseline")
    parser.add_argument("--cell-sample", type=int, default=6, help="cells timed (and checked) per-cell")
    parser.add_argument("--quick", action="store_true", help="a small grid (5 tau, 4 seeds, 3 sizes, 300 steps)")
    parser.add_argument("--keep", action="store_true", help="keep the sweep directories (default: delete them)")
    args = parser.parse_args()
    if args.quick:
        args.taus, args.seeds, args.sizes, args.steps, args.run_sample, args.cell_sample = 5, 4, 3, 300, 10, 3

    from psipo_cli import solve
    from psipo_cli.config.settings import GradientSettings
    from psipo_cli.solvers.runs import method_spec

    sizes = SIZES[: args.sizes]
    cells = len(METHODS) * args.taus * len(sizes)
    runs = cells * args.seeds
    print(f"grid: {len(METHODS)} methods x {args.taus} tau x {args.seeds} seeds x {len(sizes)} dataset sizes "
          f"(bt-finite, n = {sizes}); {cells} cells, {runs} gradient runs of {args.steps} Adam steps, batch 9")
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}, "
          f"numpy {np.__version__}")

    work = Path(tempfile.mkdtemp(prefix="psipo-sweep-bench-"))
    config = work / "grid.toml"
    config.write_text(grid_text(args.taus, args.seeds, sizes, args.steps, "gradient"), encoding="utf-8")

    # 1. the sweep
    timings = {}
    result_dir = None
    for jobs in sorted({1, args.jobs}):
        result_dir, seconds = timed_sweep(config, work / f"jobs{jobs}", jobs)
        timings[jobs] = seconds
        print(f"sweep --jobs {jobs}: {seconds:8.2f} s  {cells / seconds:9.1f} cells/s  {runs / seconds:9.0f} runs/s")
    if len(timings) == 2:
        first = next((work / "jobs1").iterdir()) / "results.csv"
        second = next((work / f"jobs{args.jobs}").iterdir()) / "results.csv"
        same = first.read_bytes() == second.read_bytes()
        print(f"results.csv identical for --jobs 1 and --jobs {args.jobs}: {same}")

    # 2. the per-run loop (sampled, extrapolated)
    rng = random.Random(0)
    from psipo_cli.config.taus import tau_values

    taus = tau_values({"min": 0.05, "max": 5.0, "num": args.taus, "log": True})
    problems = {n: problem_with_n(n) for n in sizes}
    solve(problems[sizes[0]], ["dpo"], [1.0], solver="gradient", settings=GradientSettings(steps=10, seeds=1))
    sample = [(rng.choice(METHODS), rng.choice(taus), rng.choice(sizes)) for _ in range(args.run_sample)]
    started = time.perf_counter()
    for method, tau, n in sample:
        solve(problems[n], [method], [tau], solver="gradient",
              settings=GradientSettings(steps=args.steps, seeds=1))
    per_run = (time.perf_counter() - started) / len(sample)
    baseline = per_run * runs
    print(f"per-run loop (psipo_cli.solve per run; {len(sample)} runs timed, {per_run * 1e3:.1f} ms each, "
          f"EXTRAPOLATED to {runs} runs): {baseline:8.1f} s  {cells / baseline:9.2f} cells/s")

    # 3. the per-cell loop (sampled, extrapolated) and the exactness check against the sweep's rows
    assert result_dir is not None
    with open(result_dir / "results.csv", encoding="utf-8", newline="") as handle:
        table = list(csv.DictReader(handle))
    by_cell: dict[tuple[str, str, str], list[dict[str, str]]] = {}
    for row in table:
        by_cell.setdefault((row["method"], row["tau"], row["n"]), []).append(row)
    keys = rng.sample(sorted(by_cell), min(args.cell_sample, len(by_cell)))
    settings = GradientSettings(steps=args.steps, seeds=args.seeds)
    started = time.perf_counter()
    mismatches = 0
    for method, tau, n in keys:
        frames = solve(problems[int(n)], [method_spec(method)], [float(tau)], solver="gradient", settings=settings)
        for row, prob in zip(by_cell[(method, tau, n)], frames.policy["prob"], strict=True):
            mismatches += float(row["prob"]) != float(prob)
    per_cell = (time.perf_counter() - started) / len(keys)
    cell_loop = per_cell * cells
    print(f"per-cell loop (psipo_cli.solve per cell, seeds vectorised; {len(keys)} cells timed, EXTRAPOLATED): "
          f"{cell_loop:8.1f} s  {cells / cell_loop:9.2f} cells/s")
    print(f"sampled cells equal to the sweep's rows exactly: {mismatches == 0} ({mismatches} mismatches)")

    best = timings[args.jobs]
    print(f"speed-up, sweep --jobs {args.jobs} vs per-run loop:  {baseline / best:7.1f}x  (target >= 50x)")
    print(f"speed-up, sweep --jobs 1 vs per-run loop:  {baseline / timings[1]:7.1f}x")
    print(f"speed-up, sweep --jobs {args.jobs} vs per-cell loop: {cell_loop / best:7.1f}x")

    # 4. exact-only version of the same grid
    for seeds in (args.seeds, 1):
        exact_config = work / f"grid-exact-{seeds}.toml"
        exact_config.write_text(grid_text(args.taus, seeds, sizes, args.steps, "exact"), encoding="utf-8")
        exact_dir, exact_wall = timed_sweep(exact_config, work / f"exact-{seeds}", 1)
        manifest = json.loads((exact_dir / "manifest.json").read_text(encoding="utf-8"))
        solver_seconds = manifest["sessions"][-1]["solver_seconds"]
        what = "the same grid" if seeds == args.seeds else "one dataset per cell (seeds = 1)"
        print(f"exact-only, {what} ({cells} cells, {cells * seeds} exact solves, --jobs 1): wall {exact_wall:.2f} s,"
              f" solver time (inside api.solve) {solver_seconds:.2f} s, {cells / exact_wall:.0f} cells/s")
    if args.keep:
        print(f"(sweep directories kept in {work})")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if mismatches == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
