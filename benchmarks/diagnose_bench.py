"""`psipo diagnose` on a large paired dataset, as a whole process, against `pandas.read_json(lines=True)`.

Generates 10^5 prompts × 4 completions with all 6 pairs compared (6 × 10^5 JSON Lines rows, TRL's `prompt`,
`chosen`, `rejected`; the rows of `read_bench.py`) in a temporary directory, then runs, each as its own
process on the same file:

- the baseline: ``python -c "import pandas; pandas.read_json(PATH, lines=True)"``;
- ``psipo diagnose PATH --no-save --format json`` at the defaults (rlhf, dpo, ipo × tau 0.1, 0.5, 1, 2,
  exact solver), and with ``--jobs N`` when asked;

and prints the wall time and peak resident memory (``ru_maxrss`` of each child) of each, and the ratio of
the wall times. The goals: a ratio of at most 10, peak memory under 2 GB.
Run: ``PYTHONPATH=$PWD python benchmarks/diagnose_bench.py [--prompts N] [--jobs N]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from read_bench import write_file  # the same generated rows as the reading benchmark


def measure(argv: list[str]) -> tuple[float, float]:
    """Wall seconds and peak resident memory (MB) of one child process."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {process.stderr.read().decode() if process.stderr else ''}")
    return seconds, usage.ru_maxrss / 1024  # ru_maxrss is in kB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=100_000)
    parser.add_argument("--jobs", type=int, default=1, help="also run psipo diagnose with --jobs N (N > 1)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "prefs.jsonl"
        rows = write_file(path, args.prompts, "paired")
        print(f"{args.prompts:,} prompts x 4 completions, {rows:,} rows, {path.stat().st_size / 1e6:.0f} MB")
        base_s, base_mb = measure([sys.executable, "-c", f"import pandas; pandas.read_json({str(path)!r}, lines=True)"])
        print(f"pandas.read_json(lines=True) process : {base_s:7.2f} s  peak {base_mb:6.0f} MB")
        runs = [[]] + ([["--jobs", str(args.jobs)]] if args.jobs > 1 else [])
        for extra in runs:
            argv = [sys.executable, "-m", "psipo_cli", "diagnose", str(path), "--no-save", "--format", "json", *extra]
            seconds, mb = measure(argv)
            label = " ".join(["psipo diagnose", *extra])
            print(f"{label:<37}: {seconds:7.2f} s  peak {mb:6.0f} MB  ratio {seconds / base_s:5.1f}x "
                  f"(goal <= 10x, < 2048 MB)")


if __name__ == "__main__":
    main()
