"""Preference datasets read from the files researchers hold (JSON Lines, JSON, CSV, Parquet, `save_to_disk`).

`read_dataset(path)` reads a file into `PreferenceData` (every comparison as flat arrays, contexts with their
own actions); `describe` / `summary` count it; `to_problem` turns it into a `psipo_cli.problem.Problem` when
every context has the same actions (battles, one prompt). Layouts and rules: `psipo_cli.problem.datasets.formats`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from psipo_cli.errors import InputError
from psipo_cli.problem.datasets.data import (
    PreferenceData,
    SourceRecord,
    dataset_record,
    describe,
    id_tables,
    summary,
    to_problem,
)
from psipo_cli.problem.datasets.files import FILE_TYPES, read_table
from psipo_cli.problem.datasets.formats import LAYOUTS, READERS, BadRows, assemble, detect_layout

FORMATS = ("auto", *LAYOUTS)  # = psipo_cli.config.choices.DATA_FORMATS

__all__ = [
    "FILE_TYPES",
    "FORMATS",
    "LAYOUTS",
    "PreferenceData",
    "SourceRecord",
    "dataset_record",
    "describe",
    "id_tables",
    "read_dataset",
    "summary",
    "to_problem",
]


def read_dataset(path: str | Path, format: str = "auto", skip_bad_rows: bool = False) -> PreferenceData:
    """Read a preference dataset from a local file or `save_to_disk` directory.

    Parameters
    ----------
    path : str or Path
        ``.jsonl``/``.ndjson``, ``.json``, ``.csv``, ``.parquet``/``.pq``, or a `save_to_disk` directory.
    format : {"auto", "paired", "scored", "battles"}
        The layout; ``"auto"`` tells it from the columns.
    skip_bad_rows : bool
        Drop rows with a problem (counted in ``source.rows_skipped``) instead of raising on the first.

    Raises
    ------
    InputError
        Naming the file, the row (1-based, as a user counts lines) and the column of the first bad row.
    """
    if format not in FORMATS:
        raise InputError("format", format, f"must be one of {', '.join(FORMATS)}")
    table = read_table(path)
    frame = table.frame.reset_index(drop=True)
    table = replace(table, frame=frame)
    if not len(frame):
        raise InputError("dataset", table.path, "no records")
    layout = detect_layout(table) if format == "auto" else format
    bad = BadRows(table, len(frame))
    obs = READERS[layout](table, bad, skip_bad_rows)
    return assemble(obs, bad, skip_bad_rows, table, layout)
