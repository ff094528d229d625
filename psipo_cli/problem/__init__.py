"""Problem layer: data model, presets, loading and validation (docs/maths.md §1, docs/files.md)."""

from __future__ import annotations

from pathlib import Path

from psipo_cli.errors import InputError
from psipo_cli.problem.loading import DatasetSource, build_problem, build_source, load_problem, load_source
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
    "DatasetSource",
    "Problem",
    "Sample",
    "bradley_terry_matrix",
    "build_problem",
    "expected_wins",
    "get_problem",
    "is_dataset",
    "load_problem",
    "load_source",
    "open_source",
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


def open_source(
    spec: str | Path | Problem | dict, base_dir: str | Path | None = None, data_format: str = "auto",
    skip_bad_rows: bool = False,
) -> Problem | DatasetSource:
    """What `spec` names: a `Problem` (a preset, a TOML problem file, an inline table, or a `Problem`
    returned as is), or a `DatasetSource` (a preference dataset file, or a table's `dataset` key).

    `base_dir` is where an inline table's `pairs_csv` or `dataset` is looked for (the experiment file's
    directory); a problem file's own files are always relative to that file. A dataset is read with layout
    `data_format` (``"auto"``: from its columns, or the table's `dataset.format`) and, with
    `skip_bad_rows`, without its malformed rows. Presets and problems without a dataset ignore both.
    """
    if isinstance(spec, Problem):
        return spec
    if isinstance(spec, dict):
        return build_source(spec, source="inline", base_dir=None if base_dir is None else Path(base_dir),
                            data_format=data_format, skip_bad_rows=skip_bad_rows)
    text = str(spec)
    if preset_name(text) is not None:
        return preset(text)
    if is_dataset(text):
        from psipo_cli.problem.datasets import read_dataset

        data = read_dataset(text, data_format, skip_bad_rows)
        return DatasetSource(data, Path(data.source.path).stem, files=((data.source.path, data.source.sha256),))
    if not Path(text).exists() and not Path(text).suffix and len(Path(text).parts) == 1:
        return preset(text)  # a bare word that names no file was meant as a preset: say which exist
    return load_source(text, data_format, skip_bad_rows)


def get_problem(
    spec: str | Path | Problem | dict, base_dir: str | Path | None = None, data_format: str = "auto",
    skip_bad_rows: bool = False,
) -> Problem:
    """A problem from a preset name, a TOML file, a preference dataset, an inline table, or a `Problem`
    (returned as is): `open_source`, a dataset made a problem (`DatasetSource.problem`) when every prompt has
    the same completions (battles, one prompt; otherwise the error says why)."""
    source = open_source(spec, base_dir, data_format, skip_bad_rows)
    if isinstance(source, DatasetSource):
        where = str(spec) if isinstance(spec, str | Path) and not is_dataset(spec) else ""
        try:
            return source.problem()
        except InputError as exc:
            raise exc.located(where) if where else exc from None
    return source
