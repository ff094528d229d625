"""Measure the two constants of the engine's time model (`psipo_cli.solvers.gradient.resources`).

    seconds ~ steps x (SECONDS_PER_STEP + SECONDS_PER_ELEMENT x lanes x (n + 2 K))

Times `run_gradient` (IPO, Adam, minibatches of K = 9 on paper-d1, n = 3) at a few lane counts, fits the
per-step intercept and the per-lane-element slope by least squares, and prints them next to the constants
the estimate uses, with the estimate's ratio to the measured time. Not a test: timing is machine-dependent.

    python benchmarks/resources_model.py [--steps 4000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from psipo_cli.config.settings import GradientSettings
from psipo_cli.problem import preset
from psipo_cli.solvers.gradient import estimate_resources, resources, run_gradient
from psipo_cli.solvers.runs import method_spec


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    problem, specs = preset("paper-d1"), [method_spec("ipo")]
    n, K = problem.n_actions, 9
    rows = []
    for seeds in (1, 25, 100, 400):
        taus = [1.0]
        settings = GradientSettings(steps=args.steps, seeds=seeds)
        best = min(_time(problem, specs, taus, settings) for _ in range(args.repeat))
        estimate = estimate_resources(problem, specs, taus, settings, "dataset")
        rows.append((seeds, best, estimate.seconds))
    lanes = np.array([r[0] for r in rows], float)
    per_step = np.array([r[1] for r in rows]) / args.steps
    # The per-step overhead is the one-lane step; the per-element cost the slope between the two largest
    # calls (small calls are all overhead, so a least-squares line is dominated by them).
    slope = (per_step[-1] - per_step[-2]) / ((lanes[-1] - lanes[-2]) * (n + 2 * K))
    print(f"measured: {per_step[0]:.3g} s per step + {slope:.3g} s per lane-element per step")
    print(f"model:    {resources.SECONDS_PER_STEP:.3g} s per step + {resources.SECONDS_PER_ELEMENT:.3g} s per element")
    for seeds, measured, estimated in rows:
        print(f"  {seeds:4d} lanes: measured {measured:.3f} s, estimated {estimated:.3f} s "
              f"(ratio {estimated / measured:.2f})")


def _time(problem, specs, taus, settings) -> float:
    start = time.perf_counter()
    run_gradient(problem, specs, taus, settings, "dataset")
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
