"""Reading a large paired-preference JSON Lines file: `read_dataset` against `pandas.read_json(lines=True)`.

Generates 10^5 prompts × 4 completions with all 6 pairs compared (6 × 10^5 rows, TRL's `prompt`, `chosen`,
`rejected`, plain text; `--layout implicit` without `prompt`, `conversational` as message lists, `scored` as
one UltraFeedback-style row per prompt) in a temporary directory, then times, in this process, `pandas.read_json(path,
lines=True)` (the baseline) and `psipo_cli.problem.datasets.read_dataset(path)` (which reads the same file
with pandas and then groups prompts, completions and comparisons), and prints both and their ratio. The goal
is a ratio of at most 10. Run: ``PYTHONPATH=$PWD python benchmarks/read_bench.py [--prompts N] [--layout L]``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import tempfile
import time
from pathlib import Path

LAYOUTS = ("paired", "implicit", "conversational", "scored")


def records(p: int, layout: str, completions: int = 4) -> list[dict]:
    """The rows of prompt `p`: every pair of its completions once, the lower index winning (scored: one row,
    scores 1, 2, 3, 3, so five comparisons and one tie)."""
    prompt = f"Question {p}: what is the best answer to problem number {p}?"
    texts = [
        f"Answer {k} to question {p}, written at some length to look like a completion." for k in range(completions)
    ]
    if layout == "scored":
        return [{"prompt": prompt, "completions": texts, "scores": [1, 2, 3, 3][:completions]}]
    pairs = itertools.combinations(range(completions), 2)
    if layout == "paired":
        return [{"prompt": prompt, "chosen": texts[a], "rejected": texts[b]} for a, b in pairs]
    if layout == "implicit":
        return [{"chosen": f"{prompt} {texts[a]}", "rejected": f"{prompt} {texts[b]}"} for a, b in pairs]
    user = {"role": "user", "content": prompt}
    return [
        {
            "prompt": [user],
            "chosen": [{"role": "assistant", "content": texts[a]}],
            "rejected": [{"role": "assistant", "content": texts[b]}],
        }
        for a, b in pairs
    ]


def write_file(path: Path, prompts: int, layout: str) -> int:
    """Write the JSON Lines file; returns the row count."""
    rows = 0
    with path.open("w", encoding="utf-8") as fh:
        for p in range(prompts):
            batch = records(p, layout)
            fh.write("".join(json.dumps(r) + "\n" for r in batch))
            rows += len(batch)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=100_000)
    parser.add_argument("--layout", choices=LAYOUTS, default="paired")
    args = parser.parse_args()
    import pandas as pd

    from psipo_cli.problem.datasets import read_dataset

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "prefs.jsonl"
        rows = write_file(path, args.prompts, args.layout)
        size = path.stat().st_size
        t0 = time.perf_counter()
        frame = pd.read_json(path, lines=True)
        t_pandas = time.perf_counter() - t0
        del frame
        t0 = time.perf_counter()
        data = read_dataset(path)
        t_read = time.perf_counter() - t0
    compared = 5 if args.layout == "scored" else 6  # scored: scores 1, 2, 3, 3 tie one pair
    assert data.n_contexts == args.prompts and data.n_actions == 4 * args.prompts
    assert data.count.sum() == compared * args.prompts
    print(f"{args.layout} file: {rows:,} rows, {size / 1e6:.1f} MB ({args.prompts:,} prompts x 4 completions)")
    print(f"pandas.read_json(lines=True): {t_pandas:.2f} s")
    print(f"read_dataset:                 {t_read:.2f} s")
    print(f"ratio: {t_read / t_pandas:.2f} (goal: at most 10)")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kB on Linux
    print(f"peak RSS of this process (both reads): {peak:.2f} GB")


if __name__ == "__main__":
    main()
