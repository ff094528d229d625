"""Reading a local file (or a `save_to_disk` directory) into a pandas frame, one row per record.

File types, by extension: ``.jsonl``/``.ndjson`` (JSON Lines), ``.json`` (a list of records; JSON Lines in a
``.json`` file, as `datasets.Dataset.to_json` writes, are read too), ``.csv``, ``.parquet``/``.pq``
(pyarrow, extra ``psipo[data]``), and a directory written by Hugging Face `datasets`' ``save_to_disk``
(extra ``psipo[hf]``). Nothing is fetched over the network. In CSV, a cell of `completions` or `scores` holding a
JSON list (``[...]``) is read as that list, and a cell of `prompt`, `chosen`, `rejected` or `instruction`
holding a JSON list of ``{role, content}`` messages as those messages; every other cell is text.

Rows are reported as a user counts them: in JSON Lines and CSV, the line of the file where the record
starts (the CSV header is line 1); in JSON, Parquet and `save_to_disk` data, the record's position (the first
is 1). Mapping row positions to lines costs a second pass over the file, so it is done only when an error is
reported or a row skipped.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from psipo_cli.errors import InputError

FILE_TYPES = ("jsonl", "json", "csv", "parquet", "hf")
_SUFFIXES = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
# CSV cells holding lists are JSON text: lists of completions and of scores, and message lists (a text cell
# that happens to be a JSON list of anything else, e.g. the prompt "[1, 2]", stays text).
_CSV_LIST_COLUMNS = ("completions", "scores")
_CSV_MESSAGE_COLUMNS = ("prompt", "chosen", "rejected", "instruction")


@dataclass(frozen=True, eq=False)
class Table:
    """A file read into a frame: `frame` (object columns, one row per record), the file's record (`size`:
    its bytes, for a directory the sum over its files), and `rows(positions)`, which maps 0-based row
    positions to the 1-based rows a user sees."""

    frame: Any
    path: str
    sha256: str
    file_type: str
    rows: Callable[[np.ndarray], np.ndarray]
    size: int = 0


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _sha256_dir(path: Path) -> str:
    """SHA-256 of the lines ``<relative path>\\0<sha256 of its bytes>\\n`` of every file, sorted by path."""
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(path).as_posix()}\0{_sha256_file(f)}\n".encode())
    return h.hexdigest()


def _positions_plus_one(positions: np.ndarray) -> np.ndarray:
    return np.asarray(positions, dtype=np.int64) + 1


def _jsonl_lines(path: Path) -> np.ndarray:
    """1-based line numbers of the non-blank lines (pandas skips blank lines, so row `i` is the `i`-th)."""
    with path.open(encoding="utf-8-sig") as fh:
        return np.array([i for i, line in enumerate(fh, 1) if line.strip()], dtype=np.int64)


def _csv_lines(path: Path) -> np.ndarray:
    """1-based line where every data record starts (the header is line 1; quoted cells may span lines)."""
    starts = []
    with path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh)
        end = 0
        for record in reader:
            if record:
                starts.append(end + 1)
            end = reader.line_num
    return np.array(starts[1:], dtype=np.int64)


def _lazy_lines(make: Callable[[], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    cache: list[np.ndarray] = []

    def rows(positions: np.ndarray) -> np.ndarray:
        if not cache:
            cache.append(make())
        return cache[0][np.asarray(positions, dtype=np.int64)]

    return rows


def _first_bad_json_line(path: Path) -> InputError:
    with path.open(encoding="utf-8-sig") as fh:
        for i, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                return InputError("line", line.strip(), f"not valid JSON ({exc.msg})", f"{path}, row {i}")
            if not isinstance(value, dict):
                return InputError(
                    "line", line.strip(), "must be a JSON object (one record per line)", f"{path}, row {i}"
                )
    return InputError("dataset", str(path), "not valid JSON Lines")


def _read_jsonl(path: Path) -> Any:
    import pandas as pd

    try:
        # Columns stay as written (no dtype guessing; dates are parsed only in date-named columns, none of
        # which a layout reads) and floats are parsed exactly (log-probs).
        frame = pd.read_json(path, lines=True, dtype=False, precise_float=True)
    except ValueError:
        raise _first_bad_json_line(path) from None
    return frame


def _read_json(path: Path) -> tuple[Any, str]:
    """A ``.json`` file: a list of records, or JSON Lines (what `datasets.Dataset.to_json` writes)."""
    import pandas as pd

    text = path.read_text(encoding="utf-8-sig")
    try:
        records = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # several JSON values, one a line
            return _read_jsonl(path), "jsonl"
        raise InputError("dataset", str(path), f"not valid JSON ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise InputError("dataset", str(path), "a JSON dataset must be a list of records (objects)")
    return pd.DataFrame.from_records(records), "json"


def _read_csv(path: Path) -> Any:
    import pandas as pd

    try:
        # Every cell as text; an empty cell is the empty string, a short row's missing cells are NaN.
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[], encoding="utf-8-sig")
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise InputError("dataset", str(path), f"not valid CSV ({str(exc).strip().splitlines()[-1]})") from None
    for col in (*_CSV_LIST_COLUMNS, *_CSV_MESSAGE_COLUMNS):
        if col in frame.columns:
            frame[col] = frame[col].map(lambda v, messages=col in _CSV_MESSAGE_COLUMNS: _csv_json_cell(v, messages))
    return frame


def _csv_json_cell(value: Any, messages: bool) -> Any:
    """A CSV cell holding a JSON list (``[...]``) as that list (with `messages`, only a list of
    ``{role, content, ...}`` records, at least one); any other cell unchanged."""
    if not (isinstance(value, str) and value.startswith("[")):
        return value
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        return value
    is_messages = (
        isinstance(parsed, list)
        and parsed
        and all(isinstance(m, dict) and {"role", "content"} <= set(m) for m in parsed)
    )
    if messages and not is_messages:
        return value
    return parsed


def _read_parquet(path: Path) -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError("dataset", str(path), "reading Parquet needs pyarrow: pip install 'psipo[data]'") from None
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises its own error types for a corrupt file
        raise InputError("dataset", str(path), f"not a readable Parquet file ({exc})") from None
    return table.to_pandas()


def _read_hf(path: Path) -> Any:
    try:
        import datasets
    except ImportError:
        raise InputError(
            "dataset", str(path), "reading a save_to_disk directory needs datasets: pip install 'psipo[hf]'"
        ) from None
    try:
        ds = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as exc:
        raise InputError("dataset", str(path), f"not a datasets save_to_disk directory ({exc})") from None
    if isinstance(ds, datasets.DatasetDict):
        splits = list(ds)
        if len(splits) != 1:
            raise InputError(
                "dataset", str(path), f"holds splits {splits}: give one split's directory, e.g. {path / splits[0]}"
            )
        ds = ds[splits[0]]
    return ds.to_pandas()


def read_table(path: str | Path) -> Table:
    """Read a dataset file (or `save_to_disk` directory) into a `Table`.

    Raises
    ------
    InputError
        For a missing file, an unknown extension, or a file that is not valid in its format.
    """
    path = Path(path)
    if path.is_dir():
        file_type = "hf"
    elif not path.is_file():
        raise InputError("dataset", str(path), "no such file or directory")
    else:
        file_type = _SUFFIXES.get(path.suffix.lower(), "")
        if not file_type:
            raise InputError(
                "dataset",
                str(path),
                f"unknown file type {path.suffix!r} (use {', '.join(_SUFFIXES)} or a save_to_disk directory)",
            )
    try:
        if file_type == "hf":
            frame, digest, rows = _read_hf(path), _sha256_dir(path), _positions_plus_one
        else:
            digest = _sha256_file(path)
            rows = _positions_plus_one
            if file_type == "jsonl":
                frame, rows = _read_jsonl(path), _lazy_lines(lambda: _jsonl_lines(path))
            elif file_type == "json":
                frame, file_type = _read_json(path)
                if file_type == "jsonl":
                    rows = _lazy_lines(lambda: _jsonl_lines(path))
            elif file_type == "csv":
                frame, rows = _read_csv(path), _lazy_lines(lambda: _csv_lines(path))
            else:
                frame = _read_parquet(path)
    except UnicodeDecodeError:
        raise InputError("dataset", str(path), "not a UTF-8 text file") from None
    except OSError as exc:
        raise InputError("dataset", str(path), f"cannot read ({exc.strerror or exc})") from None
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size
    return Table(frame=frame, path=str(path.resolve()), sha256=digest, file_type=file_type, rows=rows, size=size)
