"""Preference layouts (paired, scored, battles) read from a frame into `PreferenceData`, vectorised.

Layouts, detected from the columns (or forced with ``format=``):

- **paired** (TRL style): `prompt`, `chosen`, `rejected`, each plain text or a conversational message list
  ``[{role, content}, ...]``; optional `ref_chosen_logps` / `ref_rejected_logps`. Without a `prompt` (or when
  the prompt is text and the completions conversations, or the reverse), the prompt is implicit: the shared
  prefix of `chosen` and `rejected`, split as TRL's ``extract_prompt`` splits it (we follow its rule, not its
  code): the prompt is everything before the first element (character, or message) where `chosen` and
  `rejected` differ; when one is a prefix of the other, the last shared element stays with the completions;
  in text, a space just before the split goes to the completions.
- **scored** (UltraFeedback style): `prompt` (or UltraFeedback's `instruction`), `completions` (a list of
  texts, or of records whose text is `response` as in UltraFeedback, else `text` or `content`) and `scores`
  (a list of numbers; without it, each record's `overall_score`). Every pair of completions with different
  scores is one comparison; equal scores are a tie (counted, not compared).
- **battles** (arena style): `model_a`, `model_b`, `winner` in `model_a`, `model_b`, `tie`, `tie (bothbad)`:
  one context whose actions are the models.

Each distinct prompt is a context (identical message lists are the same prompt), each distinct completion of a
prompt an action of that context; contexts and actions are numbered in order of first appearance. Ids are the
first 12 hex digits of the SHA-256 of the text (UTF-8; a message list is its canonical JSON: keys sorted, no
spaces, null fields dropped); for battles the context id is ``battles`` and the action ids are the model names.

Reference policy: uniform over a context's observed completions, ``pi_ref(y|x) = 1/n_x``; with reference
log-probs, ``pi_ref(y|x) = exp(logp(y|x)) / sum_{y' observed for x} exp(logp(y'|x))`` — the log-probs are
renormalised over the completions the dataset holds for the prompt (a tabular policy lives on those only).
A completion's log-prob is the one of the first row that holds it; a later row whose value differs (beyond
``rtol = atol = 1e-6``, the float32 noise of recomputing a log-prob) is a bad row.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from psipo_cli.config.choices import DATA_FORMATS
from psipo_cli.errors import InputError
from psipo_cli.problem.datasets.data import PreferenceData, SourceRecord, log_uniform, segment_logsumexp
from psipo_cli.problem.datasets.files import Table

LAYOUTS = DATA_FORMATS[1:]  # ("paired", "scored", "battles"): `--data-format` without "auto"
BATTLE_WINS = {"model_a": 0, "model_b": 1}
BATTLE_TIES = ("tie", "tie (bothbad)")
BATTLES_CONTEXT = "battles"
TEXT_FIELDS = ("response", "text", "content")  # UltraFeedback's completion records use `response`
SCORE_FIELDS = ("overall_score", "score")
LOGP_RTOL = LOGP_ATOL = 1e-6
SKIPPED_KEPT = 5  # error lines kept in the source record when rows are skipped
_TEXT_OR_MESSAGES = "must be text or a list of {role, content} messages"


# ------------------------------------------------------------------------------------------------ bad rows


class BadRows:
    """Problems found in rows, resolved all at once: the earliest becomes an `InputError` naming the file,
    the row and the column, or, when skipping, every row with a problem is dropped and counted."""

    def __init__(self, table: Table, n_rows: int) -> None:
        self.table = table
        self.n_rows = n_rows
        self.found: list[tuple[np.ndarray, str, str, np.ndarray]] = []
        self.skipped = 0
        self.examples: list[str] = []

    def add(self, rows: np.ndarray, column: str, reason: str, values: Any) -> None:
        """Rows (positions) with a problem in `column`; `values` are their cells (an array as long as `rows`)."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows):
            self.found.append((rows, column, reason, np.asarray(values, dtype=object)))

    def add_mask(self, mask: np.ndarray, column: str, reason: str, cells: np.ndarray | None) -> None:
        """Rows where `mask` holds (over all rows), with `cells` the column's values over all rows (None: the
        cells are missing)."""
        rows = np.flatnonzero(mask)
        self.add(rows, column, reason, [None] * len(rows) if cells is None else cells[rows])

    def error(self, position: int, column: str, reason: str, value: Any) -> InputError:
        row = int(self.table.rows(np.array([position]))[0])
        return InputError(column, value, reason, f"{self.table.path}, row {row}")

    def resolve(self, skip: bool) -> np.ndarray:
        """The rows to keep (bool, one per row). Raises the earliest problem unless `skip`."""
        keep = np.ones(self.n_rows, dtype=bool)
        if not self.found:
            return keep
        first = [(int(rows.min()), int(rows.argmin()), i) for i, (rows, _, _, _) in enumerate(self.found)]
        pos, at, i = min(first)
        if not skip:
            _, column, reason, values = self.found[i]
            raise self.error(pos, column, reason, values[at])
        for rows, _, _, _ in self.found:
            keep[rows] = False
        examples = sorted(
            (int(r), j, k) for k, (rows, _, _, _) in enumerate(self.found) for j, r in enumerate(rows[:SKIPPED_KEPT])
        )
        for r, j, k in examples[: SKIPPED_KEPT - len(self.examples)]:
            _, column, reason, values = self.found[k]
            self.examples.append(self.error(r, column, reason, values[j]).line())
        self.skipped += int((~keep).sum())
        self.found = []
        return keep


# ------------------------------------------------------------------------------------------------ cells


def _json_default(value: Any) -> Any:
    """JSON for the numpy values Parquet and `datasets` hand back inside messages."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def canonical(messages: list[dict[str, Any]]) -> str:
    """The canonical JSON of a message list: keys sorted, no spaces, non-ASCII kept."""
    return json.dumps(messages, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=_json_default)


def _is_seq(value: Any) -> bool:
    return isinstance(value, list | tuple | np.ndarray)


def _messages(value: Any) -> list[dict[str, Any]] | None:
    """A message list with null fields dropped (Parquet fills absent struct fields with null), or None."""
    out = []
    for m in value:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            return None
        out.append({k: v for k, v in m.items() if v is not None})
    return out


def _objects(values: list[Any]) -> np.ndarray:
    """A 1-d object array of `values` (never broadcast into 2-d, whatever the elements)."""
    return np.fromiter(values, dtype=object, count=len(values))


def _missing(series: Any) -> np.ndarray:
    return series.isna().to_numpy(dtype=bool)


def text_or_messages(series: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cells as (value, conversational, ok): text stays text, a message list becomes a list of dicts.

    All-text columns (the common, large case) take one vectorised type check; others are read per cell.
    """
    import pandas as pd

    n = len(series)
    values = series.to_numpy(dtype=object)
    if pd.api.types.infer_dtype(series, skipna=False) in ("string", "empty"):
        return values, np.zeros(n, dtype=bool), np.ones(n, dtype=bool)
    conv = np.zeros(n, dtype=bool)
    ok = np.ones(n, dtype=bool)
    out = values.copy()
    for i, v in enumerate(values):
        if isinstance(v, str):
            continue
        msgs = _messages(v) if _is_seq(v) else None
        if msgs is None:
            ok[i], out[i] = False, None  # None compares safely (an array cell would not)
        else:
            out[i], conv[i] = msgs, True
    return out, conv, ok


def texts(values: np.ndarray, conv: np.ndarray) -> np.ndarray:
    """The text of each value: itself for text, the canonical JSON for a message list."""
    out = values.copy()
    idx = np.flatnonzero(conv)
    if len(idx):
        out[idx] = _objects([canonical(values[i]) for i in idx])
    return out


def split_shared_prefix(a: str | list, b: str | list) -> int:
    """Where TRL's ``extract_prompt`` splits two different sequences into prompt and completions.

    The index of the first element (character or message) where `a` and `b` differ; when one is a prefix of
    the other, one less (the last shared element stays with the completions); in text, a space just before
    the split moves to the completions.
    """
    n = min(len(a), len(b))
    if isinstance(a, str):
        lo, hi = 0, n  # a[:lo] == b[:lo]; bisect for the longest shared prefix (each test is one C comparison)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if a[:mid] == b[:mid]:
                lo = mid
            else:
                hi = mid - 1
        idx = lo
    else:
        idx = next((i for i in range(n) if a[i] != b[i]), n)
    if idx == n:
        return max(n - 1, 0)
    if idx > 0 and isinstance(a, str) and a[idx - 1] == " ":
        return idx - 1
    return idx


def _numbers(series: Any) -> np.ndarray:
    """Cells as float64: numbers and numeric text as themselves; anything else (and booleans) NaN."""
    import pandas as pd

    out = np.array(pd.to_numeric(series, errors="coerce").to_numpy(dtype=float, na_value=np.nan))  # writable
    if pd.api.types.infer_dtype(series, skipna=True) not in ("integer", "floating", "mixed-integer-float", "empty"):
        values = series.to_numpy(dtype=object)  # may hold booleans, which are not scores
        out[np.fromiter((isinstance(v, bool | np.bool_) for v in values), dtype=bool, count=len(values))] = np.nan
    return out


# ------------------------------------------------------------------------------------------------ observations


@dataclass(frozen=True, eq=False)
class Observations:
    """What a layout read, row-aligned: per row its prompt text; every completion as it appears (its row,
    text and optional reference log-prob with the column that gave it); comparisons as pairs of appearance
    indices (`better` beat `worse`); and one entry per tie (its row)."""

    prompt: np.ndarray
    kept: np.ndarray
    app_row: np.ndarray
    app_text: np.ndarray
    better: np.ndarray
    worse: np.ndarray
    tie_row: np.ndarray
    app_logp: np.ndarray | None = None
    app_column: np.ndarray | None = None

    def keep_rows(self, keep: np.ndarray) -> Observations:
        """The observations of the rows where `keep` holds."""
        app = keep[self.app_row]
        new_index = np.cumsum(app) - 1
        cmp = app[self.better]
        return replace(
            self,
            kept=self.kept & keep,
            app_row=self.app_row[app],
            app_text=self.app_text[app],
            better=new_index[self.better[cmp]],
            worse=new_index[self.worse[cmp]],
            tie_row=self.tie_row[keep[self.tie_row]],
            app_logp=None if self.app_logp is None else self.app_logp[app],
            app_column=None if self.app_column is None else self.app_column[app],
        )


def _require(table: Table, layout: str, columns: tuple[str, ...]) -> None:
    present = list(table.frame.columns)
    for col in columns:
        if col not in present:
            raise InputError(
                col,
                None,
                f"missing column (a {layout} dataset needs {', '.join(columns)}; columns: {present})",
                table.path,
            )


def _check_completion(bad: BadRows, column: str, text: np.ndarray, conv: np.ndarray) -> None:
    """Empty completions (the text "", or an empty message list) are bad rows: there is nothing to prefer."""
    bad.add_mask((text == "") | (conv & (text == "[]")), column, "empty completion", text)


def read_paired(table: Table, bad: BadRows, skip: bool) -> Observations:
    """`prompt` (optional), `chosen`, `rejected` [, `ref_chosen_logps`, `ref_rejected_logps`]."""
    frame = table.frame
    _require(table, "paired", ("chosen", "rejected"))
    n = len(frame)
    cells = {}
    for col in ("chosen", "rejected", "prompt"):
        if col in frame.columns:
            raw = frame[col].to_numpy(dtype=object)
            value, conv, ok = text_or_messages(frame[col])
            missing = _missing(frame[col])
            if col != "prompt":  # a row without a prompt has an implicit one (TRL's maybe_extract_prompt)
                bad.add_mask(missing, col, "missing", None)
            bad.add_mask(~ok & ~missing, col, _TEXT_OR_MESSAGES, raw)
            cells[col] = (value, conv, ok & ~missing)
    (c_val, c_conv, c_ok), (r_val, r_conv, r_ok) = cells["chosen"], cells["rejected"]
    both = c_ok & r_ok
    bad.add_mask(both & (c_conv != r_conv), "rejected", "must be of the same kind as chosen (text or messages)", r_val)
    c_text, r_text = texts(c_val, c_conv & c_ok), texts(r_val, r_conv & r_ok)
    same = both & (c_text == r_text)
    bad.add_mask(same, "rejected", "same as chosen (a completion cannot be compared with itself)", r_val)
    if "prompt" in cells:
        p_val, p_conv, p_ok = cells["prompt"]
        # TRL's rule: a prompt of the other kind than the completions is not their prompt; extract it.
        implicit = ~p_ok | (p_conv != c_conv)
        prompt = texts(p_val, p_conv & p_ok)
    else:
        implicit = np.ones(n, dtype=bool)
        prompt = np.full(n, "", dtype=object)
    usable = both & (c_conv == r_conv) & ~same
    for i in np.flatnonzero(implicit & usable):
        cut = split_shared_prefix(c_val[i], r_val[i])
        a, b, p = c_val[i][cut:], r_val[i][cut:], c_val[i][:cut]
        if c_conv[i]:
            a, b, p = canonical(a), canonical(b), canonical(p)
        c_text[i], r_text[i], prompt[i] = a, b, p
    _check_completion(bad, "chosen", c_text, c_conv)
    _check_completion(bad, "rejected", r_text, r_conv)

    logp = column = None
    logp_cols = ("ref_chosen_logps", "ref_rejected_logps")
    if any(col in frame.columns for col in logp_cols):
        _require(table, "paired", ("chosen", "rejected", *logp_cols))
        pair = []
        for col in logp_cols:
            raw = frame[col].to_numpy(dtype=object)
            values = _numbers(frame[col])
            missing = _missing(frame[col])
            bad.add_mask(missing, col, "missing", None)
            bad.add_mask(~missing & ~np.isfinite(values), col, "must be a finite number (a log-probability)", raw)
            pair.append(values)
        logp = np.stack(pair, axis=1).ravel()
        column = np.tile(np.array(logp_cols, dtype=object), n)

    keep = bad.resolve(skip)
    rows = np.arange(n, dtype=np.int64)
    obs = Observations(
        prompt=prompt,
        kept=np.ones(n, dtype=bool),
        app_row=np.repeat(rows, 2),
        app_text=np.stack([c_text, r_text], axis=1).ravel(),
        better=2 * rows,
        worse=2 * rows + 1,
        tie_row=np.empty(0, dtype=np.int64),
        app_logp=logp,
        app_column=column,
    )
    return obs.keep_rows(keep)


def _completion(value: Any) -> tuple[str | None, Any]:
    """(text, score or None) of one completion: a text, or a record with a text field (and maybe a score)."""
    if isinstance(value, str):
        return value, None
    if isinstance(value, dict):
        text = next((value[f] for f in TEXT_FIELDS if isinstance(value.get(f), str)), None)
        score = next((value[f] for f in SCORE_FIELDS if value.get(f) is not None), None)
        return text, score
    return None, None


def read_scored(table: Table, bad: BadRows, skip: bool) -> Observations:
    """`prompt` (or `instruction`), `completions`, `scores` (or per-record `overall_score`)."""
    import pandas as pd

    frame = table.frame
    prompt_col = "prompt" if "prompt" in frame.columns or "instruction" not in frame.columns else "instruction"
    _require(table, "scored", (prompt_col, "completions"))
    n = len(frame)
    p_raw = frame[prompt_col].to_numpy(dtype=object)
    p_val, p_conv, p_ok = text_or_messages(frame[prompt_col])
    p_missing = _missing(frame[prompt_col])
    bad.add_mask(p_missing, prompt_col, "missing", None)
    bad.add_mask(~p_ok & ~p_missing, prompt_col, _TEXT_OR_MESSAGES, p_raw)
    prompt = texts(p_val, p_conv & p_ok)

    comp = frame["completions"]
    c_raw = comp.to_numpy(dtype=object)
    is_list = comp.map(_is_seq).to_numpy(dtype=bool)
    length = np.fromiter((len(v) if _is_seq(v) else 0 for v in c_raw), dtype=np.int64, count=n)
    c_missing = _missing(comp)
    bad.add_mask(c_missing, "completions", "missing", None)
    bad.add_mask(~is_list & ~c_missing, "completions", "must be a list of completions", c_raw)
    bad.add_mask(is_list & (length == 0), "completions", "no completions", c_raw)
    usable = is_list & (length > 0)

    has_scores = "scores" in frame.columns
    if has_scores:
        s_raw = frame["scores"].to_numpy(dtype=object)
        s_len = np.fromiter((len(v) if _is_seq(v) else -1 for v in s_raw), dtype=np.int64, count=n)
        wrong = usable & (s_len != length)
        bad.add(
            np.flatnonzero(wrong),
            "scores",
            "must be a list of numbers, one per completion",
            s_raw[wrong],
        )
        usable &= ~wrong

    rows = np.flatnonzero(usable)
    flat = pd.Series(c_raw[rows], index=rows, dtype=object).explode()
    flat_row = flat.index.to_numpy(dtype=np.int64)
    flat_raw = flat.to_numpy(dtype=object)
    no_text = np.zeros(len(flat_raw), dtype=bool)
    if pd.api.types.infer_dtype(flat, skipna=False) == "string":
        flat_text, record_scores = flat_raw, None
    else:
        pairs = [_completion(v) for v in flat_raw]
        flat_text = _objects([t if t is not None else "" for t, _ in pairs])
        record_scores = pd.Series(_objects([s for _, s in pairs]), dtype=object)
        no_text = np.fromiter((t is None for t, _ in pairs), dtype=bool, count=len(pairs))
        bad.add(
            flat_row[no_text],
            "completions",
            f"every completion must be text or a record with a text field ({', '.join(TEXT_FIELDS)})",
            flat_raw[no_text],
        )
    if has_scores:
        scores = pd.Series(s_raw[rows], index=rows, dtype=object).explode()
        column, reason = "scores", "must be numbers"
    elif record_scores is not None:
        scores = record_scores
        column, reason = "completions", f"every completion needs a score (a scores column, or {SCORE_FIELDS[0]})"
    else:
        raise InputError(
            "scores", None, "missing column (completions are texts, so their scores must be a column)", table.path
        )
    score_raw = scores.to_numpy(dtype=object)
    score = _numbers(scores)
    nan = ~np.isfinite(score)
    bad.add(flat_row[nan], column, reason, score_raw[nan])
    empty = (flat_text == "") & ~no_text
    bad.add(flat_row[empty], "completions", "empty completion", flat_raw[empty])
    dup = pd.DataFrame({"row": flat_row, "text": flat_text}).duplicated().to_numpy(dtype=bool)
    bad.add(flat_row[dup], "completions", "lists the same completion twice", flat_text[dup])

    keep = bad.resolve(skip)
    inside = keep[flat_row]
    flat_row, flat_text, score = flat_row[inside], flat_text[inside], score[inside]
    better, worse, tie_row = score_pairs(flat_row, score)
    return Observations(
        prompt=prompt,
        kept=keep,
        app_row=flat_row,
        app_text=flat_text,
        better=better,
        worse=worse,
        tie_row=tie_row,
    )


def score_pairs(row: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair of completions of the same row: (better, worse) indices where the scores differ, and the row
    of each pair with equal scores (a tie). `row` is sorted (completions of a row are contiguous)."""
    _, start, size = np.unique(row, return_index=True, return_counts=True)
    better, worse, ties = [np.empty(0, dtype=np.int64)], [np.empty(0, dtype=np.int64)], [np.empty(0, dtype=np.int64)]
    for k in np.unique(size[size >= 2]):  # one vectorised block per distinct list length (a handful)
        i, j = np.triu_indices(int(k), 1)
        base = start[size == k][:, None]
        a, b = (base + i).ravel(), (base + j).ravel()
        wins = score[a] > score[b]  # compared, not subtracted: no overflow for scores near the largest double
        loses = score[a] < score[b]
        better += [a[wins], b[loses]]
        worse += [b[wins], a[loses]]
        ties.append(row[a[~wins & ~loses]])
    return np.concatenate(better), np.concatenate(worse), np.concatenate(ties)


def read_battles(table: Table, bad: BadRows, skip: bool) -> Observations:
    """`model_a`, `model_b`, `winner`: one context, whose actions are the models."""
    import pandas as pd

    frame = table.frame
    _require(table, "battles", ("model_a", "model_b", "winner"))
    n = len(frame)
    models = []
    for col in ("model_a", "model_b"):
        raw = frame[col].to_numpy(dtype=object)
        missing = _missing(frame[col])
        if pd.api.types.infer_dtype(frame[col], skipna=False) == "string":
            ok = raw != ""
        else:
            ok = np.fromiter((isinstance(v, str) and v != "" for v in raw), dtype=bool, count=n)
        bad.add_mask(missing, col, "missing", None)
        bad.add_mask(~ok & ~missing, col, "must be a model name (non-empty text)", raw)
        models.append(raw)
    a, b = models
    bad.add_mask(a == b, "model_b", "same model as model_a (a model cannot battle itself)", b)
    w_raw = frame["winner"].to_numpy(dtype=object)
    w = frame["winner"]
    w_missing = _missing(w)
    known = w.isin([*BATTLE_WINS, *BATTLE_TIES]).to_numpy(dtype=bool)
    bad.add_mask(w_missing, "winner", "missing", None)
    bad.add_mask(
        ~known & ~w_missing,
        "winner",
        f"unknown winner (expected one of {', '.join([*BATTLE_WINS, *BATTLE_TIES])})",
        w_raw,
    )
    keep = bad.resolve(skip)
    rows = np.arange(n, dtype=np.int64)
    b_wins = (w == "model_b").to_numpy(dtype=bool)
    decided = (w == "model_a").to_numpy(dtype=bool) | b_wins
    obs = Observations(
        prompt=np.full(n, "", dtype=object),
        kept=np.ones(n, dtype=bool),
        app_row=np.repeat(rows, 2),
        app_text=np.stack([a, b], axis=1).ravel(),
        better=(2 * rows + b_wins)[decided],
        worse=(2 * rows + 1 - b_wins)[decided],
        tie_row=rows[w.isin(BATTLE_TIES).to_numpy(dtype=bool)],
    )
    return obs.keep_rows(keep)


READERS: dict[str, Callable[[Table, BadRows, bool], Observations]] = {
    "paired": read_paired,
    "scored": read_scored,
    "battles": read_battles,
}


def detect_layout(table: Table) -> str:
    """The layout the columns say: `chosen`+`rejected` paired, `completions` scored, `model_a`+`model_b`+
    `winner` battles."""
    cols = set(table.frame.columns)
    found = [
        name
        for name, needed in (
            ("paired", {"chosen", "rejected"}),
            ("scored", {"completions"}),
            ("battles", {"model_a", "model_b", "winner"}),
        )
        if needed <= cols
    ]
    if len(found) == 1:
        return found[0]
    reason = (
        f"columns fit several layouts ({', '.join(found)}): give the format"
        if found
        else "cannot tell the layout from the columns (paired: chosen, rejected; scored: completions, scores; "
        f"battles: model_a, model_b, winner); columns: {sorted(cols)}"
    )
    raise InputError("format", "auto", reason, table.path)


# ------------------------------------------------------------------------------------------------ assembly


def short_id(text: str) -> str:
    """The first 12 hex digits of the SHA-256 of the UTF-8 text."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def assemble(obs: Observations, bad: BadRows, skip: bool, table: Table, layout: str) -> PreferenceData:
    """Number contexts and actions by first appearance, check reference log-probs, count comparisons."""
    import pandas as pd

    rows = np.flatnonzero(obs.kept)
    if not len(rows):
        raise InputError("dataset", table.path, "no usable rows" + (f" ({bad.skipped} skipped)" if bad.skipped else ""))
    row_ctx = np.full(len(obs.kept), -1, dtype=np.int64)
    codes, prompts = pd.factorize(pd.Series(obs.prompt[rows], dtype=object), sort=False)
    row_ctx[rows] = codes
    m = len(prompts)
    app_ctx = row_ctx[obs.app_row]
    comp_code, completions = pd.factorize(pd.Series(obs.app_text, dtype=object), sort=False)
    key = app_ctx * len(completions) + comp_code
    app_key, keys = pd.factorize(key, sort=False)  # actions by first appearance ...
    key_ctx = keys // len(completions)
    order = np.argsort(key_ctx, kind="stable")  # ... grouped by context, first appearance within each
    rank = np.empty(len(keys), dtype=np.int64)
    rank[order] = np.arange(len(keys))
    action = rank[app_key]
    offsets = np.concatenate([[0], np.cumsum(np.bincount(key_ctx, minlength=m))]).astype(np.int64)

    if obs.app_logp is None:
        log_pi_ref = log_uniform(offsets)
    else:
        _, first = np.unique(app_key, return_index=True)  # first appearance of each action code 0..K-1
        ref = obs.app_logp[first[app_key]]
        conflict = ~np.isclose(obs.app_logp, ref, rtol=LOGP_RTOL, atol=LOGP_ATOL)
        if conflict.any():
            where = np.flatnonzero(conflict)
            for col in np.unique(obs.app_column[where]):
                at = where[obs.app_column[where] == col]
                bad.add(
                    obs.app_row[at],
                    str(col),
                    "this completion was seen earlier with a different reference log-prob",
                    obs.app_logp[at],
                )
            return assemble(obs.keep_rows(bad.resolve(skip)), bad, skip, table, layout)
        logp = np.empty(len(keys))
        logp[rank] = obs.app_logp[first]
        log_pi_ref = logp - np.repeat(segment_logsumexp(logp, offsets), np.diff(offsets))

    n = len(keys)
    pair, inverse = np.unique(action[obs.better] * n + action[obs.worse], return_inverse=True)
    count = np.bincount(inverse.ravel(), minlength=len(pair)).astype(float)
    winner, loser = pair // n, pair % n
    action_context = np.repeat(np.arange(m, dtype=np.int64), np.diff(offsets))
    action_texts = np.asarray(completions, dtype=object)[(keys % len(completions))[order]]
    context_texts = list(np.asarray(prompts, dtype=object))
    if layout == "battles":
        context_ids, action_ids = [BATTLES_CONTEXT], list(action_texts)
    else:
        context_ids = [short_id(t) for t in context_texts]
        action_ids = [short_id(t) for t in action_texts]
    return PreferenceData(
        context=action_context[winner],
        winner=winner,
        loser=loser,
        count=count,
        offsets=offsets,
        log_pi_ref=log_pi_ref,
        context_ids=tuple(context_ids),
        context_texts=tuple(context_texts),
        action_ids=tuple(action_ids),
        action_texts=tuple(action_texts),
        ties=np.bincount(row_ctx[obs.tie_row], minlength=m).astype(float),
        source=SourceRecord(
            path=table.path,
            sha256=table.sha256,
            format=f"{table.file_type}/{layout}",
            rows_read=len(obs.kept),
            rows_skipped=bad.skipped,
            skipped=tuple(bad.examples),
            bytes=table.size,
        ),
    )
