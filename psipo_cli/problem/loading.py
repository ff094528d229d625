"""Problem files: TOML (stdlib `tomllib`) to a validated `Problem` (DESIGN §6).

Every check raises `InputError` naming the key and the value. Files are data only: nothing in them is
executed; `pairs_csv` is read relative to the TOML file.
"""

from __future__ import annotations

import csv
import math
import tomllib
from pathlib import Path
from typing import Any

import numpy as np

from psipo_cli.errors import InputError
from psipo_cli.problem.model import (
    DEFAULT_CONTEXT,
    MODEL_KINDS,
    Context,
    Problem,
    Sample,
    bradley_terry_matrix,
    order_matrix,
)

TOP_KEYS = {"name", "description", "actions", "contexts", "notes"}
CONTEXT_KEYS = {"name", "weight", "pi_ref", "mu", *MODEL_KINDS, "pairs", "pairs_csv", "sample"}
TOL = 1e-9


def load_problem(path: str | Path) -> Problem:
    """Read and validate a problem file."""
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise InputError("problem", str(path), "no such file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError("problem", str(path), f"not valid TOML ({exc})") from None
    try:
        return build_problem(data, source=where, base_dir=path.parent)
    except InputError as exc:
        raise exc.located(where) from None


def build_problem(data: dict[str, Any], source: str = "", base_dir: Path | None = None) -> Problem:
    """Validate a parsed problem table (TOML layout) and build the `Problem`."""
    if not isinstance(data, dict):
        raise InputError("problem", data, "must be a table")
    unknown = set(data) - TOP_KEYS - CONTEXT_KEYS
    if unknown:
        key = sorted(unknown)[0]
        raise InputError(key, data[key], "unknown key")
    name = data.get("name", Path(source).stem if source else "problem")
    if not isinstance(name, str) or not name:
        raise InputError("name", name, "must be a non-empty string")
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
                raise InputError(f"{key}.{k}", raw[k], "unknown key")
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
    names = [layer["name"] for layer, _ in layers]
    csv_rows = _csv_rows(layers, base_dir)
    contexts = tuple(
        _context(layer, prefix, actions, csv_rows.get(layer["name"]), len(layers)) for layer, prefix in layers
    )
    if len(set(names)) != len(names):
        raise InputError("contexts.name", names, "context names must be unique")
    total = sum(c.weight for c in contexts)
    contexts = tuple(_with_weight(c, c.weight / total) for c in contexts)
    notes = data.get("notes", [])
    if isinstance(notes, str):
        notes = [notes]
    description = data.get("description", "")
    if not isinstance(description, str):
        raise InputError("description", description, "must be a string")
    return Problem(
        name=name,
        actions=actions,
        contexts=contexts,
        description=description,
        source=source,
        notes=tuple(str(n) for n in notes),
    )


def _with_weight(ctx: Context, weight: float) -> Context:
    from dataclasses import replace

    return replace(ctx, weight=weight)


def _actions(raw: Any) -> tuple[str, ...]:
    if not isinstance(raw, list) or len(raw) < 2:
        raise InputError("actions", raw, "must be a list of at least two names")
    for a in raw:
        if not isinstance(a, str) or not a.strip():
            raise InputError("actions", raw, f"every action must be a non-empty string (got {a!r})")
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
    if not isinstance(raw, list) or sorted(map(str, raw)) != sorted(actions) or len(raw) != len(actions):
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
    if not isinstance(name, str) or not name:
        raise InputError(f"{prefix}name", name, "must be a non-empty string")
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
        wins = _wins_from_rows(f"{prefix}pairs_csv", rows, actions)
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
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError(f"{key}.seed", seed, "must be a non-negative integer")
    return Sample(n=n, seed=seed)


def _wins_from_rows(key: str, rows: Any, actions: tuple[str, ...]) -> np.ndarray:
    if not isinstance(rows, list) or not rows:
        raise InputError(key, rows, "must be a non-empty list of {winner, loser, count}")
    n = len(actions)
    W = np.zeros((n, n))
    for i, row in enumerate(rows):
        k = f"{key}[{i}]"
        if not isinstance(row, dict):
            raise InputError(k, row, "must be a table {winner, loser, count}")
        bad = set(row) - {"winner", "loser", "count", "context"}
        if bad:
            b = sorted(bad)[0]
            raise InputError(f"{k}.{b}", row[b], "unknown key")
        for side in ("winner", "loser"):
            if side not in row:
                raise InputError(f"{k}.{side}", None, "missing")
            if row[side] not in actions:
                raise InputError(f"{k}.{side}", row[side], f"unknown action (actions: {list(actions)})")
        w, l_ = actions.index(row["winner"]), actions.index(row["loser"])
        if w == l_:
            raise InputError(f"{k}.loser", row["loser"], "an action cannot be compared with itself")
        count = row.get("count", 1)
        if isinstance(count, bool) or not isinstance(count, int | float) or not (count > 0 and math.isfinite(count)):
            raise InputError(f"{k}.count", count, "must be a positive finite number")
        W[w, l_] += float(count)
    if not np.isfinite(W).all():
        raise InputError(key, rows, "counts overflow")
    return W


def _csv_rows(layers: list[tuple[dict[str, Any], str]], base_dir: Path | None) -> dict[str, list]:
    """Rows of every `pairs_csv` file, grouped by context name (column `context`, default `default`)."""
    by_context: dict[str, list] = {}
    read: set[Path] = set()
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
            raise InputError(f"{prefix}pairs_csv", raw, f"no such file ({path})")
        try:
            with path.open(newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                if reader.fieldnames is None or not {"winner", "loser"} <= set(reader.fieldnames):
                    raise InputError(f"{prefix}pairs_csv", raw, "needs columns winner,loser[,count][,context]")
                for j, rec in enumerate(reader):
                    row: dict[str, Any] = {"winner": rec["winner"], "loser": rec["loser"]}
                    if rec.get("count") not in (None, ""):
                        try:
                            row["count"] = float(rec["count"])
                        except ValueError:
                            raise InputError(
                                f"{prefix}pairs_csv[{j}].count", rec["count"], "must be a number"
                            ) from None
                    ctx = rec.get("context") or DEFAULT_CONTEXT
                    by_context.setdefault(ctx, []).append(row)
        except UnicodeDecodeError:
            raise InputError(f"{prefix}pairs_csv", raw, "not a UTF-8 text file") from None
        except csv.Error as exc:
            raise InputError(f"{prefix}pairs_csv", raw, f"not valid CSV ({exc})") from None
    known = {layer["name"] for layer, _ in layers}
    stray = sorted(set(by_context) - known)
    if stray:
        raise InputError("pairs_csv.context", stray[0], f"unknown context (contexts: {sorted(known)})")
    return by_context
