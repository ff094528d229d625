"""Gradient runs on a dataset whose prompts have their own completions: chunked against one chunk.

`psipo_cli.dataset_gradient.gradient_dataset_frames` runs the prompts in chunks of at most
`CHUNK_BYTES` of engine memory. Baseline: the same call with the cap lifted (every prompt of a size in one
`run_gradient` call, as far as half the available memory allows). Each case runs in its own process and
prints its wall time and peak resident memory, then the ratios; the tables of both are checked equal.

Data: `--prompts` prompts (default 10,000) × 4 completions, all 6 pairs compared once (70% the order of
the completions), uniform `pi_ref`; DPO, IPO and RLHF at tau 1, 2 seeds, `--steps` Adam steps (default 500),
batch 9.

Run: ``PYTHONPATH=$PWD python benchmarks/dataset_gradient_bench.py [--prompts 10000] [--steps 500]``.
Measured on the 2-core VM (shared with other jobs): 3,000 prompts, 300 steps: chunked 50.3 s and 0.42 GB,
one chunk 50.6 s and 1.73 GB (same policy table); 10,000 prompts, 500 steps, through `psipo compare`: chunked
80 s and 0.56 GB, one chunk 88 s and 8.2 GB.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def write_data(path: Path, prompts: int) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    with path.open("w", encoding="utf-8") as fh:
        for p in range(prompts):
            for i in range(4):
                for j in range(i + 1, 4):
                    w, l_ = (i, j) if rng.random() < 0.7 else (j, i)
                    fh.write(json.dumps({"prompt": f"prompt {p}", "chosen": f"c{p}.{w}", "rejected": f"c{p}.{l_}"})
                             + "\n")


def child(path: str, steps: int, capped: bool) -> None:
    from psipo_cli import dataset_gradient
    from psipo_cli.config.settings import GradientSettings
    from psipo_cli.problem import open_source
    from psipo_cli.solvers.runs import method_spec

    if not capped:
        dataset_gradient.CHUNK_BYTES = float("inf")
    data = open_source(path).data
    specs = [method_spec(m) for m in ("dpo", "ipo", "rlhf")]
    settings = GradientSettings(steps=steps, seeds=2, batch_size=9)
    start = time.perf_counter()
    frames = dataset_gradient.gradient_dataset_frames(data, specs, [1.0], settings)
    seconds = time.perf_counter() - start
    digest = hashlib.sha256(frames.policy.to_csv(index=False).encode()).hexdigest()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0
    print(json.dumps({"seconds": seconds, "peak": peak, "digest": digest}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--child", nargs=2)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.steps, args.child[1] == "capped")
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "prefs.jsonl"
        write_data(path, args.prompts)
        out = {}
        for case in ("capped", "one"):
            done = subprocess.run([sys.executable, __file__, "--steps", str(args.steps), "--child", str(path), case],
                                  capture_output=True, text=True, check=True)
            out[case] = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"{case:>7}: {out[case]['seconds']:.1f} s, peak {out[case]['peak'] / 1e9:.2f} GB")
    print(f"time ratio (one chunk / chunked): {out['one']['seconds'] / out['capped']['seconds']:.2f}")
    print(f"memory ratio (one chunk / chunked): {out['one']['peak'] / out['capped']['peak']:.1f}")
    print("same policy table:", out["one"]["digest"] == out["capped"]["digest"])


if __name__ == "__main__":
    main()
