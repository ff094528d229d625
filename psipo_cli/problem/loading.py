"""Problem files: TOML (stdlib `tomllib`) to a validated `Problem` (docs/files.md).

Every check raises `InputError` naming the key and the value. Files are data only: nothing in them is
executed; `pairs_csv` is read relative to the TOML file. Every file read is recorded in `Problem.files`
(absolute path and SHA-256 of the bytes read), so a run says exactly which data it solved.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import tomllib
import unicodedata
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from psipo_cli.errors import InputError, did_you_mean
from psipo_cli.problem.model import (
    DEFAULT_CONTEXT,
    MODEL_KINDS,
    Context,
    Problem,
    Sample,
    bradley_terry_matrix,
    order_matrix,
)

TOP_KEYS = {"name", "description", "actions", "contexts", "notes", "dataset"}
#: `dataset = {path, format, skip_bad_rows}`: the problem is a preference dataset (docs/files.md).
DATASET_KEYS = ("path", "format", "skip_bad_rows")
DATASET_COMPANIONS = {"name", "description", "notes"}
CONTEXT_KEYS = {"name", "weight", "pi_ref", "mu", *MODEL_KINDS, "pairs", "pairs_csv", "sample"}
TOL = 1e-9
MAX_TOTAL_COUNT = 1e100  # only ratios of counts matter; beyond this, sums and products of counts overflow
MAX_SAMPLE = 10_000_000  # comparisons drawn per dataset (`sample.n`): memory grows linearly with it


def read_text(path: Path, key: str) -> tuple[str, tuple[str, str]]:
    """The UTF-8 text of `path` (a leading byte-order mark is dropped, as spreadsheets write one) and the
    file's record `(absolute path, sha256 of its bytes)`."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(key, str(path), f"cannot read ({exc.strerror or exc})") from None
    record = (str(path.resolve()), hashlib.sha256(data).hexdigest())
    try:
        return data.decode("utf-8-sig"), record
    except UnicodeDecodeError:
        raise InputError(key, str(path), "not a UTF-8 text file") from None


def parse_toml(text: str, key: str, path: Path) -> dict[str, Any]:
    """`tomllib.loads` with every failure (syntax, absurd nesting) reported as an `InputError`."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(key, str(path), f"not valid TOML ({exc})") from None
    except RecursionError:
        raise InputError(key, str(path), "not valid TOML (arrays or tables nested too deeply)") from None


@dataclass(frozen=True, eq=False)
class DatasetSource:
    """A preference dataset named where a problem is (a dataset file, or a problem table's `dataset` key).

    `data` is the `PreferenceData`; `name`, `description` and `notes` are the problem's (the table's, else
    the file's stem); `files` every file read (the problem file first, then the dataset). `problem()` is
    the dataset as a `Problem` (`datasets.to_problem`: only when every prompt has the same completions).
    """

    data: Any
    name: str
    description: str = ""
    notes: tuple[str, ...] = ()
    files: tuple[tuple[str, str], ...] = ()

    def problem(self) -> Problem:
        from psipo_cli.problem.datasets import to_problem

        problem = to_problem(self.data, self.name, self.description, self.notes)
        return replace(problem, files=self.files or problem.files)


def load_source(path: str | Path, data_format: str = "auto", skip_bad_rows: bool = False) -> Problem | DatasetSource:
    """Read and validate a problem file: the `Problem`, or the `DatasetSource` of its `dataset` key
    (`data_format`, `skip_bad_rows`: how that dataset is read; see `dataset_key`)."""
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise InputError("problem", str(path), "no such file")
    text, record = read_text(path, "problem")
    data = parse_toml(text, "problem", path)
    try:
        source = build_source(data, source=where, base_dir=path.parent, data_format=data_format,
                              skip_bad_rows=skip_bad_rows)
    except InputError as exc:
        raise exc.located(where) from None
    return replace(source, files=(record, *source.files))


def load_problem(path: str | Path, data_format: str = "auto", skip_bad_rows: bool = False) -> Problem:
    """Read and validate a problem file (a `dataset` key: see `load_source`)."""
    source = load_source(path, data_format, skip_bad_rows)
    if isinstance(source, DatasetSource):
        try:
            return source.problem()
        except InputError as exc:
            raise exc.located(str(path)) from None
    return source


def build_source(
    data: dict[str, Any], source: str = "", base_dir: Path | None = None, data_format: str = "auto",
    skip_bad_rows: bool = False,
) -> Problem | DatasetSource:
    """`build_problem`, but a table with a `dataset` key gives its `DatasetSource` (read as `dataset_key`
    says), whatever the prompts' completions."""
    if isinstance(data, dict) and "dataset" in data:
        name = data.get("name", Path(source).stem if source else "")
        if not isinstance(name, str) or not name:
            raise InputError("name", name, "must be a non-empty string")
        preferences = dataset_key(data, base_dir, data_format, skip_bad_rows)
        description, notes = _description(data)
        record = (preferences.source.path, preferences.source.sha256)
        return DatasetSource(preferences, name, description, notes, (record,))
    return build_problem(data, source, base_dir)


def build_problem(
    data: dict[str, Any], source: str = "", base_dir: Path | None = None, data_format: str = "auto",
    skip_bad_rows: bool = False,
) -> Problem:
    """Validate a parsed problem table (TOML layout) and build the `Problem` (a `dataset` key: the
    preference dataset it names, read as `dataset_key` says, as a `Problem`: `DatasetSource.problem`)."""
    if not isinstance(data, dict):
        raise InputError("problem", data, "must be a table")
    unknown = set(data) - TOP_KEYS - CONTEXT_KEYS
    if unknown:
        key = sorted(unknown)[0]
        raise InputError(key, data[key], f"unknown key{did_you_mean(key, TOP_KEYS | CONTEXT_KEYS)}")
    name = data.get("name", Path(source).stem if source else "problem")
    if not isinstance(name, str) or not name:
        raise InputError("name", name, "must be a non-empty string")
    if "dataset" in data:
        dataset = build_source(data, source, base_dir, data_format, skip_bad_rows)
        assert isinstance(dataset, DatasetSource)
        return dataset.problem()
    actions = _actions(data.get("actions"))
    raw_contexts = data.get("contexts")
    # The top-level `name` names the problem, not its contexts.
    shared = {k: v for k, v in data.items() if k in CONTEXT_KEYS and k != "name"}
    if raw_contexts is None:
        layers = [({**shared, "name": DEFAULT_CONTEXT}, "")]
    else:
        if not isinstance(raw_contexts, list) or not raw_contexts:
            raise InputError("contexts", raw_contexts, "must be a non-empty array of tables")
        layers = []
        for i, raw in enumerate(raw_contexts):
            key = f"contexts[{i}]"
            if not isinstance(raw, dict):
                raise InputError(key, raw, "must be a table")
            bad = set(raw) - CONTEXT_KEYS
            if bad:
                k = sorted(bad)[0]
                raise InputError(f"{key}.{k}", raw[k], f"unknown key{did_you_mean(k, CONTEXT_KEYS)}")
            # Contexts override the top level; a context's own model replaces the shared one.
            merged = dict(shared)
            if any(k in raw for k in MODEL_KINDS):
                for k in MODEL_KINDS:
                    merged.pop(k, None)
            if any(k in raw for k in ("pairs", "pairs_csv", "sample")):
                for k in ("pairs", "pairs_csv", "sample"):
                    merged.pop(k, None)
            merged.update(raw)
            merged.setdefault("name", f"x{i}")
            layers.append((merged, f"{key}."))
    for layer, prefix in layers:
        _check_name(f"{prefix}name", layer["name"])
    names = [layer["name"] for layer, _ in layers]
    csv_rows, files = _csv_rows(layers, base_dir)
    contexts = tuple(
        _context(layer, prefix, actions, csv_rows.get(layer["name"]), len(layers)) for layer, prefix in layers
    )
    if len(set(names)) != len(names):
        raise InputError("contexts.name", names, "context names must be unique")
    # rho = weights / their sum, scaled by the largest first so that huge weights cannot overflow the sum.
    top = max(c.weight for c in contexts)
    total = math.fsum(c.weight / top for c in contexts)
    contexts = tuple(_with_weight(c, c.weight / top / total) for c in contexts)
    description, notes = _description(data)
    return Problem(
        name=name,
        actions=actions,
        contexts=contexts,
        description=description,
        source=source,
        notes=notes,
        files=files,
    )


def _description(data: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    """The `description` and `notes` of a problem table, validated."""
    notes = data.get("notes", [])
    if isinstance(notes, str):
        notes = [notes]
    if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
        raise InputError("notes", notes, "must be a string or a list of strings")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise InputError("description", description, "must be a string")
    return description, tuple(notes)


def dataset_key(
    data: dict[str, Any], base_dir: Path | None, data_format: str = "auto", skip_bad_rows: bool = False
) -> Any:
    """The preference dataset a problem table's `dataset = {path, format, skip_bad_rows}` names, read
    (`psipo_cli.problem.datasets.read_dataset`). `path` is relative to `base_dir` (the TOML file's
    directory); `data_format` other than ``"auto"`` (``--data-format``) overrides `format`, and
    `skip_bad_rows` (``--skip-bad-rows``) turns the file's `skip_bad_rows` on. Only `name`, `description`
    and `notes` may accompany it: the dataset is the whole problem."""
    from psipo_cli.config.choices import DATA_FORMATS
    from psipo_cli.problem.datasets import read_dataset

    other = sorted(set(data) - DATASET_COMPANIONS - {"dataset"})
    if other:
        raise InputError(other[0], data[other[0]], "a problem given by `dataset` takes only "
                         f"{', '.join(sorted(DATASET_COMPANIONS))} besides it (the dataset holds the rest)")
    raw = data["dataset"]
    if not isinstance(raw, dict):
        raise InputError("dataset", raw, "must be a table {path = FILE, format = LAYOUT}")
    unknown = sorted(set(raw) - set(DATASET_KEYS))
    if unknown:
        key = unknown[0]
        raise InputError(f"dataset.{key}", raw[key], f"unknown key{did_you_mean(key, DATASET_KEYS)} (keys: "
                         f"{', '.join(DATASET_KEYS)})")
    path = raw.get("path")
    if not isinstance(path, str) or not path:
        raise InputError("dataset.path", path, "must be a file name (relative to the problem file)")
    layout = raw.get("format", "auto")
    if layout not in DATA_FORMATS:
        raise InputError("dataset.format", layout, f"must be one of {', '.join(DATA_FORMATS)}")
    skip = raw.get("skip_bad_rows", False)
    if not isinstance(skip, bool):
        raise InputError("dataset.skip_bad_rows", skip, "must be true or false")
    file = Path(path)
    if not file.is_absolute() and base_dir is not None:
        file = base_dir / file
    return read_dataset(file, data_format if data_format != "auto" else layout, skip or skip_bad_rows)


def _with_weight(ctx: Context, weight: float) -> Context:
    return replace(ctx, weight=weight)


def _check_name(key: str, name: Any) -> str:
    """Names (of actions, of contexts) are non-empty strings without control characters: they become CSV
    fields, JSON strings, table rows and figure labels, where a newline or a NUL would corrupt the output."""
    if not isinstance(name, str) or not name.strip():
        raise InputError(key, name, "must be a non-empty string")
    if any(unicodedata.category(ch) == "Cc" for ch in name):
        raise InputError(key, name, "must not contain control characters (newline, tab, NUL, ...)")
    return name


def _actions(raw: Any) -> tuple[str, ...]:
    if not isinstance(raw, list) or len(raw) < 2:
        raise InputError("actions", raw, "must be a list of at least two names")
    for a in raw:
        if not isinstance(a, str) or not a.strip():
            raise InputError("actions", raw, f"every action must be a non-empty string (got {a!r})")
        _check_name("actions", a)
    if len(set(raw)) != len(raw):
        dup = next(a for a in raw if raw.count(a) > 1)
        raise InputError("actions", raw, f"duplicate action {dup!r}")
    return tuple(raw)


def _vector(key: str, raw: Any, n: int) -> np.ndarray:
    if not isinstance(raw, list) or len(raw) != n:
        raise InputError(key, raw, f"must be a list of {n} numbers (one per action)")
    for v in raw:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise InputError(key, raw, f"must contain numbers only (got {v!r})")
        if not math.isfinite(v):
            raise InputError(key, raw, f"must be finite (got {v!r})")
    return np.asarray(raw, dtype=float)


def _distribution(key: str, raw: Any, n: int) -> np.ndarray:
    p = _vector(key, raw, n)
    if np.any(p < 0):
        raise InputError(key, raw, "probabilities must be non-negative")
    if abs(p.sum() - 1.0) > 1e-6:
        raise InputError(key, raw, f"must sum to 1 (sums to {p.sum():.6g})")
    return p / p.sum()


def _matrix(key: str, raw: Any, n: int) -> np.ndarray:
    if not isinstance(raw, list) or len(raw) != n:
        raise InputError(key, raw, f"must be a {n}x{n} matrix (list of {n} rows)")
    rows = [_vector(f"{key}[{i}]", row, n) for i, row in enumerate(raw)]
    return np.vstack(rows)


def _preferences(key: str, raw: Any, n: int) -> np.ndarray:
    P = _matrix(key, raw, n)
    if np.any(P < 0) or np.any(P > 1):
        i, j = np.argwhere((P < 0) | (P > 1))[0]
        raise InputError(f"{key}[{i}][{j}]", float(P[i, j]), "must lie in [0, 1]")
    gap = np.abs(P + P.T - 1.0)
    if np.any(gap > TOL):
        i, j = np.argwhere(gap > TOL)[0]
        raise InputError(
            f"{key}[{i}][{j}]", float(P[i, j]), f"P + P^T must be 1 (P[{j}][{i}] = {P[j, i]:g})"
        )
    return P


def _order(key: str, raw: Any, actions: tuple[str, ...]) -> np.ndarray:
    if (
        not isinstance(raw, list)
        or not all(isinstance(a, str) for a in raw)
        or sorted(raw) != sorted(actions)
    ):
        raise InputError(key, raw, f"must list every action once, best first (actions: {list(actions)})")
    rank = np.empty(len(actions), dtype=int)
    for position, a in enumerate(raw):
        rank[actions.index(a)] = position
    return rank


def _context(
    layer: dict[str, Any], prefix: str, actions: tuple[str, ...], csv_rows: list | None, m: int
) -> Context:
    n = len(actions)
    name = layer["name"]
    weight = layer.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not (weight > 0 and math.isfinite(weight)):
        raise InputError(f"{prefix}weight", weight, "must be a positive number")
    pi_ref = _distribution(f"{prefix}pi_ref", layer["pi_ref"], n) if "pi_ref" in layer else np.full(n, 1.0 / n)
    mu = _distribution(f"{prefix}mu", layer["mu"], n) if "mu" in layer else pi_ref.copy()

    given = [k for k in MODEL_KINDS if k in layer]
    if len(given) > 1:
        raise InputError(f"{prefix}{given[1]}", layer[given[1]], f"give only one of {', '.join(MODEL_KINDS)}")
    model = given[0] if given else None
    preferences = rewards = None
    if model == "preferences":
        preferences = _preferences(f"{prefix}preferences", layer["preferences"], n)
    elif model == "rewards":
        rewards = _vector(f"{prefix}rewards", layer["rewards"], n)
        preferences = bradley_terry_matrix(rewards)
    elif model == "order":
        preferences = order_matrix(_order(f"{prefix}order", layer["order"], actions))

    sources = [k for k in ("pairs", "pairs_csv", "sample") if k in layer]
    if len(sources) > 1:
        raise InputError(f"{prefix}{sources[1]}", layer[sources[1]], "give only one of pairs, pairs_csv, sample")
    wins = sample = None
    if "pairs" in layer:
        wins = _wins_from_rows(f"{prefix}pairs", layer["pairs"], actions)
    elif "pairs_csv" in layer:
        rows = csv_rows if csv_rows is not None else []
        if not rows:
            raise InputError(f"{prefix}pairs_csv", layer["pairs_csv"], f"no rows for context {name!r}")
        wins = _wins_from_rows(f"{prefix}pairs_csv", [row for row, _ in rows], actions, [at for _, at in rows])
    elif "sample" in layer:
        sample = _sample(f"{prefix}sample", layer["sample"])
        if preferences is None:
            raise InputError(f"{prefix}sample", layer["sample"], "sampling needs a preference model")
        if np.count_nonzero(mu) < 2:
            raise InputError(f"{prefix}mu", layer.get("mu"), "sampling needs at least two actions with mu > 0")
    if wins is not None:
        unsupported = [actions[y] for y in range(n) if pi_ref[y] == 0 and (wins[y].any() or wins[:, y].any())]
        if unsupported:
            raise InputError(
                f"{prefix}pi_ref", layer.get("pi_ref"), f"action {unsupported[0]!r} is in the data but has pi_ref = 0"
            )
    if preferences is None and wins is None and sample is None:
        raise InputError(
            f"{prefix}preferences", None, "a context needs a preference model (preferences/rewards/order) or data"
        )
    for arr in (pi_ref, mu, preferences, rewards, wins):
        if arr is not None:
            arr.setflags(write=False)
    return Context(
        name=name,
        weight=float(weight),
        pi_ref=pi_ref,
        mu=mu,
        preferences=preferences,
        rewards=rewards,
        model=model,
        wins=wins,
        sample=sample,
    )


def _sample(key: str, raw: Any) -> Sample:
    if not isinstance(raw, dict) or set(raw) - {"n", "seed"} or "n" not in raw:
        raise InputError(key, raw, "must be a table {n = COUNT, seed = INT}")
    n, seed = raw["n"], raw.get("seed", 0)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InputError(f"{key}.n", n, "must be a positive integer")
    if n > MAX_SAMPLE:
        raise InputError(f"{key}.n", n, f"at most {MAX_SAMPLE:,} comparisons per dataset")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError(f"{key}.seed", seed, "must be a non-negative integer")
    return Sample(n=n, seed=seed)


def _wins_from_rows(
    key: str, rows: Any, actions: tuple[str, ...], locations: list[str] | None = None
) -> np.ndarray:
    """The win counts `W[winner, loser]` of a list of `{winner, loser, count}` rows. `locations` (rows read
    from a CSV file: "FILE, line N") is added to a row's error, so that it points at the line to fix."""
    if not isinstance(rows, list) or not rows:
        raise InputError(key, rows, "must be a non-empty list of {winner, loser, count}")
    n = len(actions)
    W = np.zeros((n, n))
    for i, row in enumerate(rows):
        try:
            _add_row(W, f"{key}[{i}]", row, actions, padded=locations is not None)
        except InputError as exc:
            if locations is None:
                raise
            raise InputError(exc.key, exc.value, f"{exc.reason} ({locations[i]})", exc.where) from None
    with np.errstate(over="ignore"):
        total = float(W.sum())  # inf when the counts overflow: rejected just below
    if not np.isfinite(W).all() or not total <= MAX_TOTAL_COUNT:
        raise InputError(
            key, rows, f"counts total {total:g}: at most {MAX_TOTAL_COUNT:g} (only their ratios matter; rescale them)"
        )
    return W


def _add_row(W: np.ndarray, k: str, row: Any, actions: tuple[str, ...], padded: bool = False) -> None:
    """Add one `{winner, loser, count}` row (key `k`) to `W`, validated. `padded` (CSV cells): a name that is
    not an action as written is looked up without its surrounding spaces, as a spreadsheet pads cells (an
    action whose name itself has such spaces still matches as written)."""
    if not isinstance(row, dict):
        raise InputError(k, row, "must be a table {winner, loser, count}")
    bad = set(row) - {"winner", "loser", "count", "context"}
    if bad:
        b = sorted(bad)[0]
        raise InputError(f"{k}.{b}", row[b], "unknown key")
    for side in ("winner", "loser"):
        if side not in row:
            raise InputError(f"{k}.{side}", None, "missing")
        if padded and row[side] not in actions and isinstance(row[side], str):
            row = {**row, side: row[side].strip()}
        if row[side] not in actions:
            raise InputError(f"{k}.{side}", row[side], f"unknown action (actions: {list(actions)})")
    w, l_ = actions.index(row["winner"]), actions.index(row["loser"])
    if w == l_:
        raise InputError(f"{k}.loser", row["loser"], "an action cannot be compared with itself")
    count = row.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int | float) or not (count > 0 and math.isfinite(count)):
        raise InputError(f"{k}.count", count, "must be a positive finite number")
    W[w, l_] += float(count)


def _csv_rows(
    layers: list[tuple[dict[str, Any], str]], base_dir: Path | None
) -> tuple[dict[str, list], tuple[tuple[str, str], ...]]:
    """Rows of every `pairs_csv` file as `(row, "FILE, line N")`, grouped by context name (column `context`,
    default `default`), and the files read (absolute path, sha256). Column names and counts are stripped of
    surrounding spaces; context and action names are matched as written first, then stripped. A
    relative path is relative to `base_dir` (the TOML file's directory), else to the working directory."""
    known = {layer["name"] for layer, _ in layers}
    by_context: dict[str, list] = {}
    read: set[Path] = set()
    files: list[tuple[str, str]] = []
    for layer, prefix in layers:
        if "pairs_csv" not in layer:
            continue
        raw = layer["pairs_csv"]
        if not isinstance(raw, str) or not raw:
            raise InputError(f"{prefix}pairs_csv", raw, "must be a file name")
        path = Path(raw)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        if path in read:
            continue
        read.add(path)
        if not path.is_file():
            raise InputError(f"{prefix}pairs_csv", raw, f"no such file ({str(path)!r})")
        text, record = read_text(path, f"{prefix}pairs_csv")
        files.append(record)
        try:
            with io.StringIO(text, newline="") as fh:
                reader = csv.DictReader(fh)
                columns = {name.strip() for name in reader.fieldnames or () if isinstance(name, str)}
                if not {"winner", "loser"} <= columns:
                    raise InputError(f"{prefix}pairs_csv", raw, "needs columns winner,loser[,count][,context]")
                for j, rec in enumerate(reader):
                    # Spreadsheets pad cells ("a, b"): surrounding spaces are not part of a name or number.
                    rec = {k.strip(): v for k, v in rec.items() if isinstance(k, str) and isinstance(v, str)}
                    at = f"{raw}, line {reader.line_num}"
                    row: dict[str, Any] = {"winner": rec.get("winner", ""), "loser": rec.get("loser", "")}
                    if rec.get("count", "").strip() != "":
                        try:
                            row["count"] = float(rec["count"])
                        except ValueError:
                            raise InputError(
                                f"{prefix}pairs_csv[{j}].count", rec["count"], f"must be a number ({at})"
                            ) from None
                    ctx = rec.get("context", "")
                    if ctx not in known:  # a padded cell names the context without its spaces
                        ctx = ctx.strip() or DEFAULT_CONTEXT
                    by_context.setdefault(ctx, []).append((row, at))
        except csv.Error as exc:
            raise InputError(f"{prefix}pairs_csv", raw, f"not valid CSV ({exc})") from None
    stray = sorted(set(by_context) - known)
    if stray:
        first = by_context[stray[0]][0][1]
        raise InputError("pairs_csv.context", stray[0], f"unknown context (contexts: {sorted(known)}; {first})")
    return by_context, tuple(files)
