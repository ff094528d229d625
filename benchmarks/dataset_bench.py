"""Exact solves on whole preference datasets: `solvers.dataset.solve_dataset` against the per-context path.

Two cases, each printed with its baseline measured in this process:

- ``prompts``: 10,000 prompts × 4 completions, 5 of the 6 pairs compared once each (Bradley–Terry draws),
  uniform `pi_ref`. Exact DPO + IPO + RLHF at tau ∈ {0.1, 0.5, 1, 2}. Baseline: the same data as a
  `Problem` whose contexts share the completion list (`to_problem`) through `solvers.exact.solve_exact`,
  one context at a time (psipo 0.1's only path). Goal: a ratio of at least 20.
- ``big``: one context with 10^5 actions and 10^6 comparisons (random pairs, Bradley–Terry outcomes).
  Exact DPO, IPO and RLHF (`rm_l2 = 0.1`) at the same 4 taus. Goal: under 30 s, memory O(comparisons).
  Baseline: the per-context path at 2,000 actions and 20,000 comparisons (it builds dense `n x n`
  matrices: at 10^5 actions they would take 80 GB each).

Run: ``PYTHONPATH=$PWD python benchmarks/dataset_bench.py [--case prompts|big|both] [--scale 1.0]``
(`--scale` multiplies the sizes, for a quick check). Before/after: ``--against DIR`` (another checkout of
psipo, e.g. ``git archive <commit> | tar -x -C /tmp/before``) times the ``big`` case's solves in fresh processes,
alternately with that checkout's psipo and with this one (`--repeat` rounds, the fastest of each kept: the
machine is shared), prints both with their ratio and checks that the policies agree.

BLAS runs on one thread (as psipo's sweep workers do): on a shared 2-core machine a multi-threaded LAPACK call
on a 256 x 256 matrix took 0.5 s instead of 0.02 s.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402  (after the thread settings, which BLAS reads when it loads)

TAUS = [0.1, 0.5, 1.0, 2.0]


def preference_data(
    rng: np.random.Generator, m: int, n: int, comparisons: int, shared_ids: bool, all_pairs_of: int = 0
) -> object:
    """`m` contexts of `n` actions each. With `all_pairs_of = n` (small n): each context compares
    `comparisons` of its pairs, chosen at random, once; else `comparisons` random pairs of the one context.
    Outcomes are Bradley–Terry draws from N(0, 1) rewards."""
    from psipo_cli.problem.datasets.data import PreferenceData, SourceRecord, log_uniform

    offsets = np.arange(m + 1, dtype=np.int64) * n
    if all_pairs_of:
        iu = np.array(np.triu_indices(n, 1)).T  # (pairs, 2)
        pick = np.argsort(rng.random((m, len(iu))), axis=1)[:, :comparisons]
        ij = iu[pick]  # (m, comparisons, 2)
        ctx = np.repeat(np.arange(m), comparisons)
        a, b = ij[..., 0].ravel() + ctx * n, ij[..., 1].ravel() + ctx * n
    else:
        a, b = rng.integers(0, n, comparisons), rng.integers(0, n, comparisons)
        keep = a != b
        a, b, ctx = a[keep], b[keep], np.zeros(int(keep.sum()), dtype=np.int64)
    r = rng.normal(size=m * n)
    first = rng.random(len(a)) < 1.0 / (1.0 + np.exp(-(r[a] - r[b])))
    w, l_ = np.where(first, a, b), np.where(first, b, a)
    total = m * n
    keys, count = np.unique(w * total + l_, return_counts=True)
    w, l_ = keys // total, keys % total
    ids = tuple(f"a{k % n}" if shared_ids else f"c{k // n}a{k % n}" for k in range(total))
    return PreferenceData(
        context=w // n, winner=w, loser=l_, count=count.astype(float), offsets=offsets,
        log_pi_ref=log_uniform(offsets), context_ids=tuple(f"x{c}" for c in range(m)),
        context_texts=tuple(f"prompt {c}" for c in range(m)), action_ids=ids, action_texts=ids,
        ties=np.zeros(m), source=SourceRecord(path="bench", sha256="0" * 64, format="bench", rows_read=len(w)),
    )


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def timed(fn: object) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def case_prompts(scale: float) -> None:
    from psipo_cli.problem.datasets.data import to_problem
    from psipo_cli.solvers.dataset import solve_dataset
    from psipo_cli.solvers.exact import solve_exact
    from psipo_cli.solvers.runs import method_spec

    m = max(10, int(10_000 * scale))
    data = preference_data(np.random.default_rng(0), m, 4, 5, shared_ids=True, all_pairs_of=4)
    specs = [method_spec("dpo"), method_spec("ipo"), method_spec("rlhf")]
    new, solved = timed(lambda: solve_dataset(data, specs, TAUS))
    problem = to_problem(data)
    old, runs = timed(lambda: solve_exact(problem, specs, TAUS, "dataset"))
    # Same answers: the largest difference in any probability.
    by_key = {(r.label, r.tau, r.context): r.policy for r in runs}
    gap = max(
        float(np.max(np.abs(sol.policy[t].reshape(m, 4) - np.stack([by_key[sol.label, tau, c] for c in range(m)]))))
        for sol in solved for t, tau in enumerate(TAUS)
    )
    diverged = {sol.label: float((sol.status[0] == "diverged").mean()) for sol in solved}
    print(f"prompts: {m} prompts x 4 completions, {len(data.count)} comparisons; dpo+ipo+rlhf x {len(TAUS)} taus")
    print(f"  solve_dataset {new:8.2f} s   per-context baseline {old:8.2f} s   ratio {old / new:6.1f}x")
    print(f"  max |prob difference| {gap:.2e}; diverged fraction {diverged}")


def big_specs() -> list[object]:
    from psipo_cli.solvers.runs import method_spec

    return [method_spec("dpo"), method_spec("ipo"), method_spec("rlhf", "rlhf-ridge", rm_l2=0.1)]


def big_data(scale: float) -> object:
    n, k = max(100, int(100_000 * scale)), max(1000, int(1_000_000 * scale))
    return preference_data(np.random.default_rng(1), 1, n, k, shared_ids=False)


def big_solves(data: object, report: bool) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Each method of the ``big`` case on its own: seconds and policies per label."""
    from psipo_cli.solvers.dataset import solve_dataset

    seconds, policies = {}, {}
    for spec in big_specs():
        took, (sol,) = timed(lambda spec=spec: solve_dataset(data, [spec], TAUS))
        seconds[spec.label], policies[spec.label] = took, sol.policy
        if report:
            print(f"big: {data.offsets[-1]} actions, {len(data.count)} distinct comparisons: "
                  f"{spec.label:10s} {took:7.2f} s  status {sol.status[0, 0]}, "
                  f"{int((sol.policy[0] == 0).sum())} actions at 0")
    return seconds, policies


def case_big(scale: float) -> None:
    from psipo_cli.problem.datasets.data import to_problem
    from psipo_cli.solvers.dataset import solve_dataset
    from psipo_cli.solvers.exact import solve_exact

    specs = big_specs()
    data = big_data(scale)
    before = peak_mb()
    big_solves(data, report=True)
    total, _ = timed(lambda: solve_dataset(data, specs, TAUS))
    print(f"  all three: {total:.2f} s (goal < 30 s); peak RSS {peak_mb():.0f} MB (before: {before:.0f} MB)")
    small = preference_data(np.random.default_rng(1), 1, 2000, 20_000, shared_ids=False)
    flat_s, _ = timed(lambda: solve_dataset(small, specs, TAUS))
    problem = to_problem(small)
    old, _ = timed(lambda: solve_exact(problem, specs, TAUS, "dataset"))
    print(f"  2000 actions / 20000 comparisons: solve_dataset {flat_s:.2f} s, per-context baseline {old:.2f} s "
          f"(ratio {old / flat_s:.1f}x)")


def big_worker(scale: float, out: Path) -> None:
    """One timed round of the ``big`` case with whichever psipo `PYTHONPATH` selects: seconds to
    ``out`` (JSON), policies next to it (``.npz``)."""
    data = big_data(scale)
    seconds, policies = big_solves(data, report=False)
    out.write_text(json.dumps(seconds))
    np.savez(out.with_suffix(".npz"), **policies)


def against(before_root: Path, scale: float, repeat: int) -> None:
    """The ``big`` case's solves with the psipo of `before_root` and with this checkout's, alternately, in
    fresh processes; the fastest round of each, their ratio, and the largest difference between policies."""
    here = Path(__file__).resolve().parent.parent
    best: dict[str, dict[str, float]] = {"before": {}, "after": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeat):
            for name, root in (("before", before_root.resolve()), ("after", here)):
                out = Path(tmp) / f"{name}.json"
                env = {**os.environ, "PYTHONPATH": str(root)}
                subprocess.run([sys.executable, __file__, "--case", "big", "--scale", str(scale), "--worker",
                                str(out)], env=env, check=True)
                for label, took in json.loads(out.read_text()).items():
                    best[name][label] = min(took, best[name].get(label, np.inf))
        old, new = np.load(Path(tmp) / "before.npz"), np.load(Path(tmp) / "after.npz")
        gap = max(float(np.max(np.abs(old[label] - new[label]))) for label in new.files)
    print(f"big, before ({before_root}) / after (this checkout), fastest of {repeat} rounds each:")
    for label in best["after"]:
        b, a = best["before"][label], best["after"][label]
        print(f"  {label:10s} before {b:7.2f} s   after {a:7.2f} s   ratio {b / a:5.2f}x")
    b, a = sum(best["before"].values()), sum(best["after"].values())
    print(f"  {'total':10s} before {b:7.2f} s   after {a:7.2f} s   ratio {b / a:5.2f}x (goal: after < 30 s)")
    print(f"  max |prob difference| before vs after: {gap:.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=("prompts", "big", "both"), default="both")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--against", type=Path, help="another psipo checkout: before/after timings of `big`")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        big_worker(args.scale, args.worker)
        return
    if args.against is not None:
        against(args.against, args.scale, args.repeat)
        return
    if args.case in ("prompts", "both"):
        case_prompts(args.scale)
    if args.case in ("big", "both"):
        case_big(args.scale)


if __name__ == "__main__":
    main()
