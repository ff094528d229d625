"""Benchmark: whole `psipo` processes, as a user's shell runs them, this tree against a baseline commit.

Each command is a fresh interpreter (`python -m psipo_cli ...`, PYTHONPATH pointing at the tree), so
start-up and imports count. Timed, interleaved (the machine may be shared: every round runs every
command once, and the best round is reported), wall time and CPU time (user + system of the child):

- `compare`: `psipo compare experiments/paper-fig1.toml` (exact and gradient solves, run directory,
  figures, report), in the baseline tree and in this tree.
- `gradient`: `psipo compare experiments/paper-fig1.toml --solver gradient --no-save` (the paper's
  Figure-1 workload: DPO and IPO × 4 tau × 10 seeds × 18,000 Adam steps, batch 9), in both trees.
- `loop`: the same 80 runs by the per-run loop of `benchmarks/fig1_engine.py` (`baseline_run`, one run at
  a time), as a whole process too.

Run: `python benchmarks/whole_process.py` (about 2 minutes, mostly the loop), `--rounds 5` for more
rounds, `--base <commit>` for another baseline (default d859a62). Timing is never part of the test suite.

`--same-as <commit>` first checks that this tree writes the same bytes as that commit: every CSV and PNG of
the `compare` run directory, and the four `--table`s of the gradient command's `--format csv` (a speed
change must not move a digit). The script stops if a file differs.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
FIG1 = "experiments/paper-fig1.toml"
LOOP = (
    "import numpy as np, fig1_engine as b; from psipo_cli.config.settings import GradientSettings; "
    "from psipo_cli.problem import preset; s = GradientSettings(); c = preset('paper-d1').contexts[0]; "
    "W, p = np.asarray(c.wins), np.asarray(c.pi_ref); "
    "[b.baseline_run(W, p, m, t, k, s) for m in b.METHODS for t in b.TAUS for k in range(s.seeds)]"
)


def timed(argv: list[str], tree: Path, extra_path: str = "") -> tuple[float, float]:
    """Wall and CPU seconds (user + system) of one child process run in `tree` with PYTHONPATH = `tree`."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(tree), extra_path) if p)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, cwd=tree, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def tree_of(commit: str, where: Path) -> Path:
    """`git archive commit` extracted into `where` (created)."""
    where.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", commit], cwd=HERE, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive, check=True)
    return where


def outputs(tree: Path, dest: Path) -> dict[str, bytes]:
    """The files a speed change must leave alone, written by `tree`: name -> bytes."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    py = [sys.executable, "-m", "psipo_cli"]
    subprocess.run([*py, "compare", FIG1, "--out", str(dest), "--name", "check", "-q"], cwd=tree, env=env,
                   check=True, stdout=subprocess.DEVNULL)
    run = next(dest.iterdir())
    files = {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.suffix in (".csv", ".png")}
    for table in ("policy", "metrics", "summary", "curves"):
        files[f"gradient --table {table}"] = subprocess.run(
            [*py, "compare", FIG1, "--solver", "gradient", "--no-save", "-q", "--format", "csv", "--table", table],
            cwd=tree, env=env, check=True, capture_output=True).stdout
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (best is reported)")
    parser.add_argument("--base", default="d859a62", help="baseline commit [d859a62]")
    parser.add_argument("--no-loop", action="store_true", help="skip the per-run loop (~12 s a round)")
    parser.add_argument("--same-as", metavar="COMMIT", help="first check the outputs are that commit's bytes")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        if args.same_as:
            ref = outputs(tree_of(args.same_as, Path(tmp) / "ref"), Path(tmp) / "ref-out")
            mine = outputs(HERE, Path(tmp) / "this-out")
            differ = sorted(k for k in ref.keys() | mine.keys() if ref.get(k) != mine.get(k))
            if differ:
                sys.exit(f"outputs differ from {args.same_as}: {', '.join(differ)}")
            print(f"same bytes as {args.same_as}: {len(ref)} files (CSVs, PNGs, gradient --format csv tables)")
        base = tree_of(args.base, Path(tmp) / "base")
        out = Path(tmp) / "runs"
        py = [sys.executable, "-m", "psipo_cli"]
        commands = {
            "compare": [*py, "compare", FIG1, "--out", str(out), "-q"],
            "gradient": [*py, "compare", FIG1, "--solver", "gradient", "--no-save", "-q"],
        }
        runs = [(name, label, tree) for name in commands for label, tree in (("base", base), ("this", HERE))]
        best: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.rounds):
            for name, label, tree in runs:
                wall, cpu = timed(commands[name], tree)
                old = best.get((name, label), [float("inf"), float("inf")])
                best[name, label] = [min(old[0], wall), min(old[1], cpu)]
            if not args.no_loop:
                wall, cpu = timed([sys.executable, "-c", LOOP], HERE, str(HERE / "benchmarks"))
                old = best.get(("loop", "this"), [float("inf"), float("inf")])
                best["loop", "this"] = [min(old[0], wall), min(old[1], cpu)]

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"python {platform.python_version()}; best of {args.rounds} interleaved rounds; baseline {args.base}")
    for (name, label), (wall, cpu) in best.items():
        print(f"  {name:9s} {label:5s} wall {wall:6.2f} s   cpu {cpu:6.2f} s")
    for name in commands:
        (bw, bc), (tw, tc) = best[name, "base"], best[name, "this"]
        print(f"{name}: this tree vs {args.base}: {bw / tw:.2f}x wall, {bc / tc:.2f}x cpu")
    if not args.no_loop:
        (lw, lc) = best["loop", "this"]
        for label in ("base", "this"):
            gw, gc = best["gradient", label]
            print(f"gradient ({label}) vs per-run loop, whole processes: {lw / gw:.1f}x wall, {lc / gc:.1f}x cpu")


if __name__ == "__main__":
    main()
