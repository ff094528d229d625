"""Benchmark: the paper's Figure-1 workload through the vectorised engine vs a plain per-run loop.

Workload (paper §5.4, Figure 1): DPO and IPO × tau in {0.1, 0.5, 1, 2} × 10 seeds × 18,000 Adam steps
(lr 0.01, b1 0.9, b2 0.999, eps 1e-8), minibatch 9 with replacement, on `paper-d1`: 80 runs, 1.44 M steps.

- engine: `psipo_cli.solvers.gradient.run_gradient`, all 80 runs as lanes of one array.
- baseline: the same algorithm written out below, one run at a time, per-step numpy on a length-3
  vector, reading the same streams (`SeedSequence([root, k, 0])`, `STREAM_CHUNK` x 9 uniforms at a time,
  inverse CDF over the comparisons) and recording the same curve grid.

Both must give the same final policies and curves (allclose, atol 1e-9); the script prints both wall
times and the ratio. Run: `python benchmarks/fig1_engine.py` (about half a minute, mostly the baseline).
Timing is never part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from psipo_cli.config.settings import GradientSettings
from psipo_cli.methods import get_method
from psipo_cli.methods.linalg import pairs_of
from psipo_cli.problem import preset
from psipo_cli.solvers.gradient import STREAM_CHUNK, record_grid, run_gradient
from psipo_cli.solvers.runs import method_spec

METHODS = ("dpo", "ipo")
TAUS = (0.1, 0.5, 1.0, 2.0)


def baseline_run(
    W: np.ndarray, pi_ref: np.ndarray, method: str, tau: float, k: int, settings: GradientSettings
) -> np.ndarray:
    """One run of minibatch Adam on the mean pair loss (docs/maths.md §3), step by step. Returns the curve (T, n)."""
    pair_grad = get_method(method).pair_grad
    w, l_, counts = pairs_of(W)
    cum = np.cumsum(counts / counts.sum())
    n, B = len(pi_ref), settings.batch_size
    b1, b2, eps, lr = settings.b1, settings.b2, settings.adam_eps, settings.lr
    rng = np.random.default_rng(np.random.SeedSequence([settings.seed, k, 0]))
    grid = record_grid(settings.steps, settings.records)
    log_pi_ref = np.log(pi_ref)
    curve = np.empty((len(grid), n))
    row = 0

    def record(delta: np.ndarray) -> None:
        nonlocal row
        z = log_pi_ref + delta
        e = np.exp(z - z.max())
        curve[row] = e / e.sum()
        row += 1

    delta = np.zeros(n)
    m = np.zeros(n)
    v = np.zeros(n)
    record(delta)
    rows_w = rows_l = np.empty((0, B), dtype=int)
    for t in range(1, settings.steps + 1):
        i = (t - 1) % STREAM_CHUNK
        if i == 0:  # the next chunk of the stream, mapped to comparisons by inverse CDF
            j = np.minimum(np.searchsorted(cum, rng.random((STREAM_CHUNK, B)), side="right"), len(w) - 1)
            rows_w, rows_l = w[j], l_[j]
        bw, bl = rows_w[i], rows_l[i]
        g = pair_grad(delta[bw] - delta[bl], tau)
        g /= B  # the minibatch mean
        grad = np.bincount(bw, g, n) - np.bincount(bl, g, n)
        m = b1 * m + (1.0 - b1) * grad
        v = b2 * v + (1.0 - b2) * (grad * grad)
        delta = delta - (m / (1.0 - b1**t)) / (np.sqrt(v / (1.0 - b2**t)) + eps) * lr  # optax's order
        if row < len(grid) and grid[row] == t:
            record(delta)
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="engine repetitions (best time is reported)")
    args = parser.parse_args()

    problem = preset("paper-d1")
    settings = GradientSettings()  # the paper's defaults
    specs = [method_spec(m) for m in METHODS]
    runs_total = len(METHODS) * len(TAUS) * settings.seeds

    engine_times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        steps, runs = run_gradient(problem, specs, list(TAUS), settings, "dataset")
        engine_times.append(time.perf_counter() - start)
    engine = min(engine_times)

    ctx = problem.contexts[0]
    start = time.perf_counter()
    baseline_curves = {
        (method, tau, k): baseline_run(np.asarray(ctx.wins), np.asarray(ctx.pi_ref), method, tau, k, settings)
        for method in METHODS
        for tau in TAUS
        for k in range(settings.seeds)
    }
    baseline = time.perf_counter() - start

    worst = 0.0
    for r in runs:
        expected = baseline_curves[r.method, r.tau, r.seed]
        np.testing.assert_allclose(r.curve, expected, rtol=0, atol=1e-9)
        np.testing.assert_allclose(r.policy, expected[-1], rtol=0, atol=1e-9)
        worst = max(worst, float(np.max(np.abs(r.curve - expected))))

    print(
        f"workload: {runs_total} runs x {settings.steps} steps (batch {settings.batch_size}, Adam lr "
        f"{settings.lr}) on paper-d1, {len(steps)} recorded steps per curve"
    )
    print(
        f"machine:  {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"python {platform.python_version()}, numpy {np.__version__}"
    )
    print(f"engine:   {engine:.2f} s (best of {args.repeat}: {', '.join(f'{t:.2f}' for t in engine_times)})")
    print(f"baseline: {baseline:.2f} s (per-run loop)")
    print(f"speed-up: {baseline / engine:.1f}x")
    print(f"agreement: max |curve difference| = {worst:.1e} (required <= 1e-9)")
    for method in METHODS:
        for tau in TAUS:
            members = [r for r in runs if r.method == method and r.tau == tau]
            mean = np.mean([r.policy for r in members], axis=0)
            statuses = "/".join(sorted({r.status for r in members}))
            print(f"  {method} tau={tau:<4g} seed-mean policy {np.round(mean, 4)}  status {statuses}")


if __name__ == "__main__":
    main()
