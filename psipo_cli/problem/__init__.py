"""Problem layer: data model, presets, loading and validation (docs/maths.md §1, docs/files.md)."""

from __future__ import annotations

from pathlib import Path

from psipo_cli.problem.loading import build_problem, load_problem
from psipo_cli.problem.model import (
    DEFAULT_CONTEXT,
    Context,
    Problem,
    Sample,
    bradley_terry_matrix,
    expected_wins,
    order_matrix,
    problem_table,
    realise,
)
from psipo_cli.problem.presets import ALIASES, PRESETS, preset, preset_name

# File endings read as preference datasets (`psipo_cli.problem.datasets`); a directory is a `save_to_disk` one.
DATASET_SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".parquet", ".pq")

__all__ = [
    "ALIASES",
    "DEFAULT_CONTEXT",
    "PRESETS",
    "Context",
    "Problem",
    "Sample",
    "bradley_terry_matrix",
    "build_problem",
    "expected_wins",
    "get_problem",
    "is_dataset",
    "load_problem",
    "order_matrix",
    "preset",
    "problem_table",
    "realise",
]


def is_dataset(spec: str | Path) -> bool:
    """Whether `spec` names a preference dataset (JSON Lines, JSON, CSV, Parquet, or a `save_to_disk`
    directory) rather than a TOML problem file or a preset."""
    if preset_name(str(spec)) is not None:
        return False
    path = Path(spec)
    return path.is_dir() or path.suffix.lower() in DATASET_SUFFIXES


def get_problem(spec: str | Path | Problem | dict, base_dir: str | Path | None = None) -> Problem:
    """A problem from a preset name, a TOML file, a preference dataset, an inline table, or a `Problem`
    (returned as is).

    `base_dir` is where an inline table's `pairs_csv` is looked for (the experiment file's directory);
    a problem file's own `pairs_csv` is always relative to that file. A dataset becomes a problem when every
    prompt has the same completions (battles, one prompt: `datasets.to_problem`); otherwise the error says
    why.
    """
    if isinstance(spec, Problem):
        return spec
    if isinstance(spec, dict):
        return build_problem(spec, source="inline", base_dir=None if base_dir is None else Path(base_dir))
    text = str(spec)
    if preset_name(text) is not None:
        return preset(text)
    if is_dataset(text):
        from psipo_cli.problem.datasets import read_dataset, to_problem

        return to_problem(read_dataset(text))
    if not Path(text).exists() and not Path(text).suffix and len(Path(text).parts) == 1:
        return preset(text)  # a bare word that names no file was meant as a preset: say which exist
    return load_problem(text)
