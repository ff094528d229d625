"""The data model of a preference dataset: every comparison as flat arrays, contexts with their own actions.

Memory is O(actions + comparisons): no per-context matrix and no per-context Python object. Comparison `k`
says that action `winner[k]` beat action `loser[k]`, `count[k]` times, in context `context[k]`; the actions of
context `c` are the global indices `offsets[c]:offsets[c + 1]` (a context has one action or more, of any
number). The dataset of context `x` in the paper's notation (arXiv 2310.12036, §2: pairs `(y_w, y_l)` drawn
given `x`) is exactly the comparisons with `context == x`, and the win-count matrix of a tabular problem is
``W[w, l] = sum of count over the comparisons (w, l)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from psipo_cli.errors import InputError
from psipo_cli.numerics import segment_logsumexp

# The per-context log-normaliser of `log_pi_ref` must be 0 to this tolerance (float64 logsumexp of many terms).
LOG_NORM_TOL = 1e-9


@dataclass(frozen=True)
class SourceRecord:
    """Where a dataset came from.

    `path` is absolute; `sha256` is the SHA-256 of the file's bytes (for a `save_to_disk` directory: of the
    sorted list of its files' relative paths and SHA-256s, see `psipo_cli.problem.datasets.files`); `format`
    is ``"<file type>/<layout>"``, e.g. ``"jsonl/paired"``; `rows_read` counts the records in the file and
    `rows_skipped` those dropped by ``skip_bad_rows=True``, of which `skipped` keeps the first few error lines;
    `bytes` is the file's size (a directory's: the sum over its files).
    """

    path: str
    sha256: str
    format: str
    rows_read: int
    rows_skipped: int = 0
    skipped: tuple[str, ...] = ()
    bytes: int = 0


def _frozen(key: str, raw: Any, dtype: type, ndim: int = 1) -> np.ndarray:
    """A read-only copy of `raw` as a `dtype` array of `ndim` dimensions (a copy, so the caller's array is
    never frozen or aliased)."""
    try:
        arr = np.array(raw, dtype=dtype)
    except (TypeError, ValueError):
        raise InputError(key, raw, f"must be an array of {np.dtype(dtype).name}") from None
    if arr.ndim != ndim:
        raise InputError(key, arr.shape, f"must be {ndim}-dimensional")
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class PreferenceData:
    """Every comparison of a preference dataset, as arrays (validated on construction, read-only).

    Attributes
    ----------
    context, winner, loser : int64 arrays, one entry per distinct comparison
        `winner` and `loser` are global action indices, both actions of context `context`.
    count : float64 array
        How many times `winner` beat `loser` (positive, finite).
    offsets : int64 array of length ``n_contexts + 1``
        The actions of context `c` are ``offsets[c]:offsets[c + 1]`` (at least one each).
    log_pi_ref : float64 array, one per action
        Finite; ``logsumexp(log_pi_ref[offsets[c]:offsets[c + 1]]) = 0`` for every context.
    context_ids, context_texts : one per context
        Short stable id and the prompt text (a conversational prompt is its canonical JSON).
    action_ids, action_texts : one per action
        Short stable id (unique within its context) and the completion text (for battles: the model name).
    ties : float64 array, one per context
        Comparisons recorded as ties (no winner; not in the comparison arrays).
    source : SourceRecord
    """

    context: np.ndarray
    winner: np.ndarray
    loser: np.ndarray
    count: np.ndarray
    offsets: np.ndarray
    log_pi_ref: np.ndarray
    context_ids: tuple[str, ...]
    context_texts: tuple[str, ...]
    action_ids: tuple[str, ...]
    action_texts: tuple[str, ...]
    ties: np.ndarray
    source: SourceRecord

    def __post_init__(self) -> None:
        for key, dtype in (
            ("context", np.int64),
            ("winner", np.int64),
            ("loser", np.int64),
            ("count", np.float64),
            ("offsets", np.int64),
            ("log_pi_ref", np.float64),
            ("ties", np.float64),
        ):
            object.__setattr__(self, key, _frozen(key, getattr(self, key), dtype))
        for key in ("context_ids", "context_texts", "action_ids", "action_texts"):
            object.__setattr__(self, key, tuple(getattr(self, key)))
        self._validate()

    def _validate(self) -> None:
        offsets, m = self.offsets, self.n_contexts
        n = int(offsets[-1]) if len(offsets) else 0
        if len(offsets) < 2 or offsets[0] != 0:
            raise InputError("offsets", offsets, "must start at 0 and hold at least one context")
        if np.any(np.diff(offsets) < 1):
            raise InputError(
                "offsets", offsets, "every context needs at least one action (offsets strictly increasing)"
            )
        for key, size in (
            ("log_pi_ref", n),
            ("action_ids", n),
            ("action_texts", n),
            ("context_ids", m),
            ("context_texts", m),
            ("ties", m),
        ):
            if len(getattr(self, key)) != size:
                raise InputError(key, len(getattr(self, key)), f"must have length {size}")
        k = len(self.context)
        for key in ("winner", "loser", "count"):
            if len(getattr(self, key)) != k:
                raise InputError(key, len(getattr(self, key)), f"must have length {k} (one per comparison)")
        if k:
            if self.context.min() < 0 or self.context.max() >= m:
                raise InputError("context", self.context, f"context indices must lie in [0, {m})")
            for key in ("winner", "loser"):
                idx = getattr(self, key)
                inside = (idx >= offsets[self.context]) & (idx < offsets[self.context + 1])
                if not inside.all():
                    bad = int(np.argmin(inside))
                    raise InputError(
                        f"{key}[{bad}]", int(idx[bad]), f"is not an action of context {int(self.context[bad])}"
                    )
            if np.any(self.winner == self.loser):
                raise InputError("loser", self.loser, "an action cannot be compared with itself")
            if not (np.all(self.count > 0) and np.all(np.isfinite(self.count))):
                raise InputError("count", self.count, "counts must be positive and finite")
        if not (np.all(self.ties >= 0) and np.all(np.isfinite(self.ties))):
            raise InputError("ties", self.ties, "tie counts must be non-negative and finite")
        if not np.all(np.isfinite(self.log_pi_ref)):
            raise InputError("log_pi_ref", self.log_pi_ref, "must be finite (pi_ref > 0 on every action)")
        gap = np.abs(segment_logsumexp(self.log_pi_ref, offsets))
        if np.any(gap > LOG_NORM_TOL):
            raise InputError("log_pi_ref", self.log_pi_ref, "must be normalised within each context")
        import pandas as pd

        if len(set(self.context_ids)) != m:
            raise InputError("context_ids", self.context_ids, "context ids must be unique")
        codes, uniques = pd.factorize(pd.Series(self.action_ids, dtype=object), sort=False)
        if len(np.unique(self.action_context * len(uniques) + codes)) != n:
            raise InputError("action_ids", self.action_ids, "action ids must be unique within each context")

    @property
    def n_contexts(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_actions(self) -> int:
        return int(self.offsets[-1])

    @property
    def action_context(self) -> np.ndarray:
        """The context of every action (int64, length `n_actions`)."""
        return np.repeat(np.arange(self.n_contexts, dtype=np.int64), np.diff(self.offsets))


def _quantiles(values: np.ndarray) -> dict[str, float]:
    return {"min": float(values.min()), "median": float(np.median(values)), "max": float(values.max())}


def summary(data: PreferenceData) -> dict[str, Any]:
    """The counts of a dataset, JSON-safe: prompts, completions, comparisons (the sum of the counts), distinct
    compared pairs, ties, and the distribution (min/median/max) over prompts of comparisons and completions."""
    m = data.n_contexts
    per_prompt = np.bincount(data.context, weights=data.count, minlength=m)
    src = data.source
    return {
        "path": src.path,
        "sha256": src.sha256,
        "format": src.format,
        "rows_read": src.rows_read,
        "rows_skipped": src.rows_skipped,
        "bytes": src.bytes,
        "prompts": m,
        "completions": data.n_actions,
        "comparisons": float(data.count.sum()),
        "distinct_pairs": len(data.count),
        "ties": float(data.ties.sum()),
        "comparisons_per_prompt": _quantiles(per_prompt),
        "completions_per_prompt": _quantiles(np.diff(data.offsets).astype(float)),
    }


def dataset_record(data: PreferenceData) -> dict[str, Any]:
    """What a run records of its dataset (`config.json`): `summary` (path, size in bytes, SHA-256, layout,
    rows read and skipped, counts) and the first few skipped rows' error lines — never the arrays."""
    return {**summary(data), "skipped": list(data.source.skipped)}


def id_tables(data: PreferenceData) -> tuple[Any, Any]:
    """``contexts.csv`` and ``actions.csv`` of a run on `data`: what each short id stands for.

    `contexts`: `context` (id), `prompt` (text; a conversation as canonical JSON), `completions` (how many),
    `comparisons` (sum of counts), `ties`. `actions`: `context`, `action` (id), `completion` (text; for
    battles the model name), `pi_ref`, `wins` and `losses` (sums of counts). Rows in the dataset's order.
    """
    import pandas as pd

    from psipo_cli.schema import ACTION_TABLE_COLUMNS, CONTEXT_TABLE_COLUMNS

    m, n = data.n_contexts, data.n_actions
    contexts = pd.DataFrame({
        "context": np.asarray(data.context_ids, dtype=object),
        "prompt": np.asarray(data.context_texts, dtype=object),
        "completions": np.diff(data.offsets),
        "comparisons": np.bincount(data.context, weights=data.count, minlength=m),
        "ties": np.asarray(data.ties),
    })[CONTEXT_TABLE_COLUMNS]
    actions = pd.DataFrame({
        "context": np.asarray(data.context_ids, dtype=object)[data.action_context],
        "action": np.asarray(data.action_ids, dtype=object),
        "completion": np.asarray(data.action_texts, dtype=object),
        "pi_ref": np.exp(data.log_pi_ref),
        "wins": np.bincount(data.winner, weights=data.count, minlength=n),
        "losses": np.bincount(data.loser, weights=data.count, minlength=n),
    })[ACTION_TABLE_COLUMNS]
    return contexts, actions


def count_text(x: float) -> str:
    """A count in full with thousands separators (``600,000``); a non-integer to 6 significant digits."""
    return f"{int(x):,}" if float(x).is_integer() else f"{x:,.6g}"


def describe(data: PreferenceData) -> str:
    """A few lines of text describing the dataset (`psipo problem show DATA`), from `summary`."""
    s = summary(data)
    cmp, comp = s["comparisons_per_prompt"], s["completions_per_prompt"]
    lines = [
        f"dataset      {s['path']}",
        f"format       {s['format']}  (sha256 {s['sha256'][:16]}…)",
        f"rows         {count_text(s['rows_read'])} read, {count_text(s['rows_skipped'])} skipped",
        f"prompts      {count_text(s['prompts'])}",
        f"completions  {count_text(s['completions'])}  (per prompt: min {count_text(comp['min'])}, "
        f"median {count_text(comp['median'])}, max {count_text(comp['max'])})",
        f"comparisons  {count_text(s['comparisons'])}  ({count_text(s['distinct_pairs'])} distinct ordered pairs; "
        "per prompt: "
        f"min {count_text(cmp['min'])}, median {count_text(cmp['median'])}, max {count_text(cmp['max'])})",
        f"ties         {count_text(s['ties'])}",
    ]
    lines += [f"skipped      {line}" for line in data.source.skipped]
    return "\n".join(lines)


def shared_actions(data: PreferenceData) -> tuple[np.ndarray | None, str]:
    """Whether `data` is a tabular `Problem`: every context has the same two or more actions (by id) and at
    least one comparison. Returns each action's place in the shared list (the first context's order) and
    ``""``, or None and why not (for `to_problem`'s error; such a dataset is solved per prompt by
    `psipo_cli.solvers.dataset`)."""
    import pandas as pd

    sizes = np.diff(data.offsets)
    n, m = int(sizes[0]), data.n_contexts
    if n < 2:
        return None, "a problem needs at least two actions; this prompt has one completion"
    # Action ids as codes; the first context's are 0..n-1 (factorize numbers by first appearance, and ids are
    # unique within a context). Every context must hold exactly those n codes, in any order.
    codes, _ = pd.factorize(pd.Series(data.action_ids, dtype=object), sort=False)
    same = sizes == n
    if same.all():
        table = codes.reshape(m, n)
        same = (np.sort(table, axis=1) == np.arange(n)).all(axis=1)
    if not same.all():
        c = int(np.argmin(same))
        return None, (f"prompts {data.context_ids[0]!r} and {data.context_ids[c]!r} have different completions: "
                      "a problem holds one completion list shared by every prompt")
    compared = np.bincount(data.context, minlength=m) > 0
    if not compared.all():
        c = int(np.argmin(compared))
        return None, f"context {data.context_ids[c]!r} has no comparisons (only ties): a Problem context needs data"
    return codes.astype(np.int64), ""


def to_problem(data: PreferenceData, name: str = "", description: str = "", notes: tuple[str, ...] = ()) -> Any:
    """The dataset as a `psipo_cli.problem.Problem`, when every context has the same set of actions.

    `name` (default: the file's stem), `description` and `notes` are the problem's (a problem file's
    `dataset` key gives them); `Problem.dataset` is `data`.

    Today's `Problem` holds one action list shared by all contexts, so this works for battles (one context),
    for a single prompt, and for prompts whose completions are all the same texts. Each context gets
    ``pi_ref = mu = exp(log_pi_ref)`` (in the first context's action order), equal weights (as a TOML file
    without `weight`), and the win-count matrix ``W[w, l] = sum of count over comparisons (w, l)``.

    Raises
    ------
    InputError
        When two contexts have different action sets, a context has fewer than two actions, or a context has
        no comparison (`shared_actions`).
    """
    from psipo_cli.problem.loading import _check_name
    from psipo_cli.problem.model import Context, Problem

    where = data.source.path
    position, reason = shared_actions(data)
    if position is None:
        raise InputError("dataset", where, f"{reason} (psipo run|compare and psipo diagnose solve it prompt by "
                         "prompt; from Python: psipo_cli.solvers.dataset.solve_dataset, "
                         "psipo_cli.dataset_gradient.gradient_dataset_frames)")
    n, m = int(data.offsets[1]), data.n_contexts
    first = data.action_ids[:n]
    for a in first:
        _check_name("actions", a)
    W = np.zeros((m, n, n))
    np.add.at(W, (data.context, position[data.winner], position[data.loser]), data.count)
    pi = np.zeros((m, n))
    pi[data.action_context, position] = np.exp(data.log_pi_ref)
    pi /= pi.sum(axis=1, keepdims=True)
    pi.setflags(write=False)  # and so every row view handed to a Context
    W.setflags(write=False)
    contexts = [Context(name=data.context_ids[c], weight=1.0 / m, pi_ref=pi[c], mu=pi[c], wins=W[c]) for c in range(m)]
    return Problem(
        name=name or Path(where).stem or "dataset",
        actions=tuple(first),
        contexts=tuple(contexts),
        description=description or f"{data.source.format} dataset {where}",
        source=where,
        notes=tuple(notes),
        files=((where, data.source.sha256),),
        dataset=data,
    )


def log_uniform(offsets: np.ndarray) -> np.ndarray:
    """``log pi_ref = -log n_c`` on every action of a context with `n_c` actions."""
    sizes = np.diff(offsets)
    return np.repeat(-np.log(sizes.astype(float)), sizes)
