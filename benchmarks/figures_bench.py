"""Time the figures of the paper's Figure-1 run (`psipo compare experiments/paper-fig1.toml`), against a
baseline checkout of psipo.

The workload: the run directory of ``psipo compare experiments/paper-fig1.toml`` (DPO and IPO × 4 tau,
10 seeds, 18,000 Adam steps: curves.png with 8 panels, policy_vs_tau.png, frontier.png). It is computed
once (or taken from ``--run-dir``); then, for this tree and for the baseline tree, a fresh interpreter

- draws the three figures `--repeat` times from the saved frames (`render_frames`, what `psipo compare`
  calls) and reports the best CPU time of one round (CPU time, not wall time: the machine is shared);
- runs ``psipo plot RUN_DIR`` as a whole process (imports included), best wall time of `--repeat`;
- runs the whole ``psipo compare experiments/paper-fig1.toml`` (best wall time of `--compare`), whose
  other parts (imports, the gradient engine, the dense tau grid) the figures share the time with.

    python benchmarks/figures_bench.py --baseline /path/to/old/psipo [--repeat 5] [--run-dir DIR]

A baseline tree is any checkout of psipo (e.g. ``git archive <commit> | tar -x -C /tmp/base``). The
ratio baseline / this tree is printed; > 1 means this tree is faster.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]

IN_PROCESS = """
import sys, time
from psipo_cli.outputs.figures import load_run_frames, render_frames
frames = load_run_frames(sys.argv[1])
out, repeat = sys.argv[2], int(sys.argv[3])
args = (frames["policy"], frames["metrics"], frames["curves"], frames["tau_grid"], frames["config"])
render_frames(out, *args)  # the first round pays matplotlib's imports and font cache: not timed
times = []
for _ in range(repeat):
    start = time.process_time()
    render_frames(out, *args)
    times.append(time.process_time() - start)
print(min(times))
"""


def run_dir(given: str | None, scratch: Path) -> Path:
    if given:
        return Path(given)
    argv = [sys.executable, "-m", "psipo_cli", "compare", str(HERE / "experiments" / "paper-fig1.toml"),
            "--out", str(scratch), "--format", "path", "--quiet", "--no-plots"]
    out = subprocess.run(argv, check=True, capture_output=True, text=True, cwd=scratch,
                         env={**os.environ, "PYTHONPATH": str(HERE)})
    return Path(out.stdout.strip())


def in_process(tree: Path, directory: Path, scratch: Path, repeat: int) -> float:
    # cwd = scratch: `python -c` and `-m` put the working directory first on sys.path, which must not be a tree.
    out = subprocess.run([sys.executable, "-c", IN_PROCESS, str(directory), str(scratch / tree.name), str(repeat)],
                         check=True, capture_output=True, text=True, cwd=scratch,
                         env={**os.environ, "PYTHONPATH": str(tree)})
    return float(out.stdout.strip())


def whole_process(tree: Path, argv: list[str], scratch: Path, repeat: int) -> tuple[float, float]:
    """Best wall time and best CPU time (user + system, the child's own) of ``python -m psipo_cli ARGV``
    run from `tree`. On a shared machine the CPU time is the steadier of the two."""
    walls, cpus = [], []
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "psipo_cli", *argv], check=True, capture_output=True,
                       cwd=scratch, env={**os.environ, "PYTHONPATH": str(tree)})
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return min(walls), min(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="root of a baseline psipo checkout")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--run-dir", help="an existing paper-fig1 run directory (default: compute one)")
    parser.add_argument("--compare", type=int, default=3, help="repetitions of the whole psipo compare")
    args = parser.parse_args()
    trees = {"baseline": Path(args.baseline).resolve(), "this tree": HERE}
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        directory = run_dir(args.run_dir, scratch)
        drawn = {name: in_process(tree, directory, scratch, args.repeat) for name, tree in trees.items()}
        plot = ["plot", str(directory)]
        plotted = {name: whole_process(tree, plot, scratch, args.repeat) for name, tree in trees.items()}
        compare = ["compare", str(HERE / "experiments" / "paper-fig1.toml"), "--out", str(scratch / "runs"), "-q"]
        compared = {name: whole_process(tree, compare, scratch, args.compare) for name, tree in trees.items()}
    for name in trees:
        print(f"{name:<10} render_frames (3 figures, CPU): {drawn[name]:6.3f} s   "
              f"psipo plot: {plotted[name][0]:6.3f} s wall, {plotted[name][1]:6.3f} s CPU   "
              f"psipo compare paper-fig1: {compared[name][0]:6.3f} s wall, {compared[name][1]:6.3f} s CPU")
    base, this = "baseline", "this tree"
    print(f"ratio baseline / this tree: figures {drawn[base] / drawn[this]:.2f}x; "
          f"psipo plot {plotted[base][0] / plotted[this][0]:.2f}x wall, "
          f"{plotted[base][1] / plotted[this][1]:.2f}x CPU; "
          f"psipo compare {compared[base][0] / compared[this][0]:.2f}x wall, "
          f"{compared[base][1] / compared[this][1]:.2f}x CPU")


if __name__ == "__main__":
    main()
