"""Start-up cost of the CLI, for shell loops: `psipo --help` and one exact CSV call.

Each command is run `--repeat` times as a fresh interpreter; the best time is reported next to two
baselines measured in the same process: a bare interpreter (`python -c pass`) and `import numpy, pandas`
(the floor for any command that prints a table through pandas). Ratios, not absolute times, are what carry
over between machines.

    python benchmarks/startup.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

COMMANDS = {
    "python -c pass (baseline)": [sys.executable, "-c", "pass"],
    "import numpy, pandas (baseline)": [sys.executable, "-c", "import numpy, pandas"],
    "psipo --help": [sys.executable, "-m", "psipo_cli", "--help"],
    "psipo run dpo --solver exact --no-save --format csv": [
        sys.executable, "-m", "psipo_cli", "run", "dpo", "--beta", "0.1", "--solver", "exact", "--no-save",
        "--format", "csv",
    ],
}


def best_time(argv: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    results = {name: best_time(argv, args.repeat) for name, argv in COMMANDS.items()}
    bare = results["python -c pass (baseline)"]
    for name, seconds in results.items():
        print(f"{name:<55} {seconds * 1000:7.0f} ms   {seconds / bare:5.1f}x bare interpreter")


if __name__ == "__main__":
    main()
