"""Column layouts and value formatting shared by the run directory, the tables, the report and the figures.

Nothing here does maths: it only decides how numbers and frames are spelled, so that every output (CSV,
JSON, terminal, markdown) spells them the same way.

The column lists come from `psipo_cli.schema` (which imports nothing), as `psipo_cli.api`'s do.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, is_dataclass
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

from psipo_cli.schema import (
    CURVE_COLUMNS,
    FRAME_COLUMNS,
    LOGIT_GAP_COLUMNS,
    METRIC_COLUMNS,
    METRIC_NAMES,
    POLICY_COLUMNS,
    REWARD_COLUMNS,
    RUN_COLUMNS,
    SOCIAL_CHOICE_COLUMNS,
    SUMMARY_COLUMNS,
    TAU_GRID_COLUMNS,
    TEXT_COLUMNS,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "CURVE_COLUMNS", "FRAME_COLUMNS", "LOGIT_GAP_COLUMNS", "METRIC_COLUMNS", "METRIC_NAMES", "POLICY_COLUMNS",
    "REWARD_COLUMNS", "RUN_COLUMNS", "SOCIAL_CHOICE_COLUMNS", "SUMMARY_COLUMNS", "TAU_GRID_COLUMNS", "TEXT_COLUMNS",
]

#: Display names of the built-in methods in prose (labels with options stay as the user wrote them).
METHOD_PROSE = {"dpo": "DPO", "ipo": "IPO", "rlhf": "RLHF", "psipo": "PsiPO"}


def method_prose(label: str) -> str:
    """How a method label reads in a sentence: `DPO` for `dpo`, any other label unchanged."""
    return METHOD_PROSE.get(label, label)


def is_missing(value: Any) -> bool:
    """True for `None`, NaN and pandas' missing markers (`pd.NA`, `NaT`)."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    try:
        import pandas as pd

        result = pd.isna(value)
    except (TypeError, ValueError):
        return False
    return bool(result) if isinstance(result, bool) or getattr(result, "shape", None) == () else False


def native(value: Any) -> Any:
    """A plain Python value for JSON: numpy scalars unwrapped, missing values and non-finite floats → None.

    JSON has no NaN or infinity (`json.dumps` would write invalid `NaN`); an unknown metric is `null`.
    """
    if is_missing(value):
        return None
    if hasattr(value, "item") and getattr(value, "shape", None) == ():
        value = value.item()  # numpy scalar → Python scalar
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value


def json_safe(obj: Any) -> Any:
    """A copy of `obj` that `json.dumps(..., allow_nan=False)` accepts.

    Mappings get string keys, tuples/lists/arrays become lists, sets sorted lists, dataclasses dicts, paths
    strings, non-finite floats None; anything else unknown becomes its `str`.
    """
    if is_dataclass(obj) and not isinstance(obj, type):
        return json_safe(asdict(obj))
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, set | frozenset):
        return sorted((json_safe(v) for v in obj), key=repr)
    if isinstance(obj, PurePath):
        return str(obj)
    if hasattr(obj, "tolist") and not isinstance(obj, str | bytes):
        return json_safe(obj.tolist())  # numpy arrays and scalars
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if obj is None or isinstance(obj, bool | int | str):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    return str(obj)


def csv_cell(value: Any) -> str:
    """One CSV field: floats in their shortest round-trip form (`repr`), missing values as an empty field.

    `repr` is exact (reading the file back gives the same float) and platform-independent, so the same
    frame always gives the same bytes; `-0.0` is written `0.0` so that a sign bit never shows up in a diff.
    """
    value = native(value)
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value + 0.0)  # + 0.0 turns -0.0 into 0.0
    return str(value)


def ordered_columns(frame: pd.DataFrame, columns: Sequence[str] | None) -> list[str]:
    """The known `columns` first (in that order, including those the frame lacks), then any extra ones."""
    if columns is None:
        return [str(c) for c in frame.columns]
    return [*columns, *(str(c) for c in frame.columns if c not in columns)]


def frame_rows(frame: pd.DataFrame, columns: Sequence[str]) -> Iterable[list[Any]]:
    """The rows of `frame` over `columns` (a column the frame lacks reads as missing), as Python lists."""
    present = [c for c in columns if c in frame.columns]
    data = {c: frame[c].tolist() for c in present}
    for i in range(len(frame)):
        yield [data[c][i] if c in data else None for c in columns]


def csv_text(frame: pd.DataFrame, columns: Sequence[str] | None = None, header: bool = True) -> str:
    """`frame` as CSV text: fixed column order, no index, `\\n` line ends, `csv_cell` formatting.

    The text of the standard `csv` module (minimal quoting) rather than `DataFrame.to_csv`, whose float
    and missing-value spelling depends on column dtypes (and changed across pandas versions); built column
    by column (`csv_chunks`).
    """
    return "".join(csv_chunks(frame, columns, header))


#: Rows per piece of `csv_chunks` (a few tens of MB of text).
CHUNK_ROWS = 200_000


def csv_chunks(
    frame: pd.DataFrame, columns: Sequence[str] | None = None, header: bool = True, rows: int = CHUNK_ROWS
) -> Iterator[str]:
    """`csv_text` in pieces of `rows` rows (joined, exactly `csv_text`), for files too large to hold as one
    string (a dataset run's per-prompt tables).

    Each column is spelled at once: floats by `repr` (`csv_cell`), text through the `csv` module's own
    quoting once per distinct value, then the rows are joined — the bytes of `csv.writer` over
    `csv_cell` cells, at a fraction of the time on millions of rows.
    """
    cols = ordered_columns(frame, columns)
    if header:
        yield _csv_row(cols) + "\n"
    for start in range(0, len(frame), rows):
        part = frame.iloc[start:start + rows]
        cells = [_csv_column(part[c]) if c in part.columns else [""] * len(part) for c in cols]
        if len(cols) == 1:  # `csv` writes a row of one empty field as `""`, not as an empty line
            cells = [[v or '""' for v in cells[0]]]
        yield "\n".join(map(",".join, zip(*cells, strict=True))) + "\n"


def _csv_row(values: Sequence[Any]) -> str:
    import csv
    import io

    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(values)
    return buffer.getvalue()[:-1]


#: The characters for which `csv.writer` (minimal quoting, `\\n` line ends) may quote a field: a text
#: without any of them is written as it is.
_CSV_SPECIAL = re.compile(r'[,"\r\n]')


def _csv_field(value: Any) -> str:
    """One field as `csv.writer` spells `csv_cell(value)` inside a row (quoted only where it must be)."""
    if isinstance(value, str) and value and not _CSV_SPECIAL.search(value):
        return value
    return _csv_row([csv_cell(value), ""])[:-1]


def _csv_column(series: pd.Series) -> list[str]:
    """The CSV fields of a column (see `csv_chunks`)."""
    import numpy as np
    import pandas as pd

    values = series.to_numpy()
    if values.dtype.kind == "f":
        # Each distinct value spelled once: repr(x + 0.0), the shortest round trip with -0.0 as 0.0; NaN and
        # infinities are missing (`native`). Tables repeat values a lot (0 and 1 of diverged answers).
        codes, uniques = pd.factorize(values.astype(float) + 0.0, use_na_sentinel=True)
        spelled_floats = [repr(x) if math.isfinite(x) else "" for x in uniques.tolist()]
        return np.array([*spelled_floats, ""], dtype=object)[codes].tolist()
    if values.dtype.kind in "iu":
        return [str(x) for x in values.tolist()]
    if pd.api.types.infer_dtype(series, skipna=True) not in ("string", "empty"):
        # Mixed cells (1 and 1.0 and True hash alike, lists do not hash): one at a time.
        return [_csv_field(v) for v in values.tolist()]
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    spelled = np.array([*(_csv_field(v) for v in uniques.tolist()), ""], dtype=object)
    return spelled[codes].tolist()  # code -1 (missing) takes the last entry, ""


def records(frame: pd.DataFrame, columns: Sequence[str]) -> list[dict[str, Any]]:
    """JSON records of `frame`: keys in the order of `columns` (then any extra), values via `native`."""
    cols = ordered_columns(frame, columns)
    return [dict(zip(cols, (native(v) for v in row), strict=True)) for row in frame_rows(frame, cols)]


def read_frame(path: Any, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Read a CSV written by `csv_text` back into a frame with the same values.

    Only empty fields are missing (an action named `NA` stays a string), name columns are strings, and
    a header-only file gives an empty frame with its columns.
    """
    import pandas as pd

    with open(path, encoding="utf-8") as handle:
        head = handle.readline().rstrip("\n")
    names = head.split(",") if head else list(columns or [])
    dtype = {c: str for c in TEXT_COLUMNS if c in names}
    frame = pd.read_csv(path, dtype=dtype, keep_default_na=False, na_values={c: [""] for c in names})
    if "detail" in frame.columns:
        frame["detail"] = frame["detail"].fillna("")
    return frame


def fmt_prob(p: Any) -> str:
    """A probability for people, at most seven characters: ``0`` and ``1`` only when exact, ``9e-08`` when
    tiny, ``1-3e-07`` when within 5e-5 of one, ``0.9996`` just below that, else three decimals.

    Exact zeros are the paper's claims (DPO puts probability 0 on every beaten action), so they must not
    look like a small number rounded down, nor a small number like a zero. Full precision is in the CSVs.
    """
    if is_missing(p):
        return "-"
    p = float(p)
    if p == 0.0 or p == 1.0:
        return f"{p:.0f}"
    if abs(p) < 0.0005:
        return f"{p:.0e}"
    gap = 1.0 - p
    if 0.0 < gap < 0.00005:
        return f"1-{gap:.0e}"
    if 0.0 < gap < 0.0005:
        return f"{p:.4f}"
    return f"{p:.3f}"


def fmt_num(x: Any, digits: int = 3) -> str:
    """A metric (KL, win rate, ...) with `digits` significant decimals; `-` when unknown."""
    if is_missing(x):
        return "-"
    x = float(x)
    if x == 0.0:
        return "0"
    if abs(x) < 10 ** (-digits):
        return f"{x:.1e}"
    return f"{x:.{digits}f}"


def fmt_tau(tau: Any) -> str:
    """A tau value as typed (`0.1`, `1`, `2.5`), never `1.0000000000000002`-style noise."""
    return f"{float(tau):.6g}"


def fmt_policy(actions: Sequence[str], probs: Sequence[float], sep: str = " · ") -> str:
    """A policy on one line: `a 0.964 · b 0.034 · c 0.001`."""
    return sep.join(f"{a} {fmt_prob(p)}" for a, p in zip(actions, probs, strict=True))


def fmt_list(items: Sequence[str]) -> str:
    """`a`, `a and b`, `a, b and c`."""
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def unique(values: Iterable[Any]) -> list[Any]:
    """Distinct values in first-seen order (the order the user gave methods and actions in)."""
    seen: dict[Any, None] = {}
    for v in values:
        seen.setdefault(v, None)
    return list(seen)
