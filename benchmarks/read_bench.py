"""Reading a large paired-preference JSON Lines file: `read_dataset` against `pandas.read_json(lines=True)`.

Generates 10^5 prompts × 4 completions with all 6 pairs compared (6 × 10^5 rows, TRL's `prompt`, `chosen`,
`rejected`, plain text) in a temporary directory, then times, in this process, `pandas.read_json(path,
lines=True)` (the baseline) and `psipo_cli.problem.datasets.read_dataset(path)` (which reads the same file
with pandas and then groups prompts, completions and comparisons), and prints both and their ratio. The goal
is a ratio of at most 10. Run: ``PYTHONPATH=$PWD python benchmarks/read_bench.py [--prompts N]``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import time
from pathlib import Path


def write_file(path: Path, prompts: int, completions: int = 4) -> int:
    """Every pair of each prompt's completions, once, the lower index winning. Returns the row count."""
    pairs = list(itertools.combinations(range(completions), 2))
    with path.open("w", encoding="utf-8") as fh:
        for p in range(prompts):
            prompt = f"Question {p}: what is the best answer to problem number {p}?"
            texts = [
                f"Answer {k} to question {p}, written at some length to look like a completion."
                for k in range(completions)
            ]
            for a, b in pairs:
                fh.write(json.dumps({"prompt": prompt, "chosen": texts[a], "rejected": texts[b]}) + "\n")
    return prompts * len(pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=100_000)
    args = parser.parse_args()
    import pandas as pd

    from psipo_cli.problem.datasets import read_dataset

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "prefs.jsonl"
        rows = write_file(path, args.prompts)
        size = path.stat().st_size
        t0 = time.perf_counter()
        frame = pd.read_json(path, lines=True)
        t_pandas = time.perf_counter() - t0
        del frame
        t0 = time.perf_counter()
        data = read_dataset(path)
        t_read = time.perf_counter() - t0
    assert data.n_contexts == args.prompts and data.n_actions == 4 * args.prompts and data.count.sum() == rows
    print(f"file: {rows:,} rows, {size / 1e6:.1f} MB ({args.prompts:,} prompts x 4 completions x 6 pairs)")
    print(f"pandas.read_json(lines=True): {t_pandas:.2f} s")
    print(f"read_dataset:                 {t_read:.2f} s")
    print(f"ratio: {t_read / t_pandas:.2f} (goal: at most 10)")


if __name__ == "__main__":
    main()
