"""Preference datasets: every layout and file type read into `PreferenceData`, bad rows, `describe`, `to_problem`.

Every dataset is written by the test itself; every expected array, id and count is worked out by hand in the
comments (ids are SHA-256 prefixes, computed here with `hashlib` from the texts, not by the reader).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from psipo_cli.errors import InputError
from psipo_cli.problem import load_problem
from psipo_cli.problem.datasets import PreferenceData, SourceRecord, describe, read_dataset, summary, to_problem

# ---------------------------------------------------------------------------------------------- helpers


def sha12(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def msgs_json(*messages: tuple[str, str]) -> str:
    """The canonical JSON of a message list, written out: keys sorted (content before role), no spaces."""
    return "[" + ",".join(f'{{"content":{json.dumps(c)},"role":{json.dumps(r)}}}' for r, c in messages) + "]"


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def write_json(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps(records, indent=1), encoding="utf-8")
    return path


def write_csv(path: Path, records: list[dict[str, Any]]) -> Path:
    """List-valued cells (messages, completions, scores) as JSON text, the way the reader expects them."""
    frame = pd.DataFrame(
        [{k: json.dumps(v) if isinstance(v, list) else v for k, v in r.items()} for r in records], dtype=object
    )
    frame.to_csv(path, index=False)
    return path


def write_parquet(path: Path, records: list[dict[str, Any]]) -> Path:
    pytest.importorskip("pyarrow")
    pd.DataFrame(records).to_parquet(path)
    return path


def write_hf(path: Path, records: list[dict[str, Any]]) -> Path:
    datasets = pytest.importorskip("datasets")
    columns = {k: [r[k] for r in records] for k in records[0]}
    datasets.Dataset.from_dict(columns).save_to_disk(str(path))
    return path


WRITERS = {
    "jsonl": (write_jsonl, "data.jsonl"),
    "json": (write_json, "data.json"),
    "csv": (write_csv, "data.csv"),
    "parquet": (write_parquet, "data.parquet"),
    "hf": (write_hf, "data_hf"),
}


def write(tmp_path: Path, kind: str, records: list[dict[str, Any]]) -> Path:
    writer, name = WRITERS[kind]
    return writer(tmp_path / name, records)


def assert_same_data(a: PreferenceData, b: PreferenceData) -> None:
    """Equal ids, texts and arrays (the source record, which names the file, may differ)."""
    for key in ("context", "winner", "loser", "count", "offsets", "log_pi_ref", "ties"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key), err_msg=key)
    for key in ("context_ids", "context_texts", "action_ids", "action_texts"):
        assert getattr(a, key) == getattr(b, key), key


def error_line(path: Path, **kwargs: Any) -> str:
    with pytest.raises(InputError) as info:
        read_dataset(path, **kwargs)
    line = info.value.line()
    assert "\n" not in line
    return line


# Paired, plain text. Contexts by first appearance: Q1 = 0, Q2 = 1. Actions of Q1: a, b, c = 0, 1, 2 (in order
# of first appearance, chosen before rejected); of Q2: a, b = 3, 4. Comparisons (winner, loser), aggregated:
# (0, 1) twice (rows 1 and 4), (1, 2) once, (3, 4) once; sorted by (winner, loser).
PAIRED = [
    {"prompt": "Q1", "chosen": "a", "rejected": "b"},
    {"prompt": "Q1", "chosen": "b", "rejected": "c"},
    {"prompt": "Q2", "chosen": "a", "rejected": "b"},
    {"prompt": "Q1", "chosen": "a", "rejected": "b"},
]


def check_paired(d: PreferenceData) -> None:
    np.testing.assert_array_equal(d.offsets, [0, 3, 5])
    np.testing.assert_array_equal(d.context, [0, 0, 1])
    np.testing.assert_array_equal(d.winner, [0, 1, 3])
    np.testing.assert_array_equal(d.loser, [1, 2, 4])
    np.testing.assert_array_equal(d.count, [2.0, 1.0, 1.0])
    # Uniform over each prompt's observed completions: 1/3 for Q1's three, 1/2 for Q2's two.
    np.testing.assert_allclose(d.log_pi_ref, [-math.log(3)] * 3 + [-math.log(2)] * 2, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(d.ties, [0.0, 0.0])
    assert d.context_texts == ("Q1", "Q2")
    assert d.context_ids == (sha12("Q1"), sha12("Q2"))
    assert d.action_texts == ("a", "b", "c", "a", "b")
    assert d.action_ids == (sha12("a"), sha12("b"), sha12("c"), sha12("a"), sha12("b"))


# ---------------------------------------------------------------------------------------------- paired


@pytest.mark.parametrize("kind", list(WRITERS))
def test_paired_text_in_every_file_type(tmp_path: Path, kind: str) -> None:
    path = write(tmp_path, kind, PAIRED)
    d = read_dataset(path)
    check_paired(d)
    assert d.source.format == f"{kind}/paired"
    assert d.source.rows_read == 4 and d.source.rows_skipped == 0
    assert d.source.path == str(path.resolve())
    if kind != "hf":
        assert d.source.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_arrays_are_read_only(tmp_path: Path) -> None:
    d = read_dataset(write(tmp_path, "jsonl", PAIRED))
    for key in ("context", "winner", "loser", "count", "offsets", "log_pi_ref", "ties"):
        with pytest.raises(ValueError):
            getattr(d, key)[0] = 1


def test_conversational_explicit_and_implicit_prompts_are_one_context(tmp_path: Path) -> None:
    user = {"role": "user", "content": "What color is the sky?"}
    blue = {"role": "assistant", "content": "It is blue."}
    green = {"role": "assistant", "content": "It is green."}
    grey = {"role": "assistant", "content": "Grey."}
    records = [
        {"prompt": [user], "chosen": [blue], "rejected": [green]},
        # No prompt: the prompt is the shared prefix, [user]; completions are what follows.
        {"prompt": None, "chosen": [user, blue], "rejected": [user, grey]},
        # A text prompt with conversational completions is not their prompt (TRL's rule): extract [user] again.
        {"prompt": "What color is the sky?", "chosen": [user, grey], "rejected": [user, green]},
    ]
    # Parquet and datasets hold one type per column: there, the last record's prompt is left out instead.
    columnar = [*records[:2], {**records[2], "prompt": None}]
    for kind, rows in (("jsonl", records), ("json", records), ("parquet", columnar), ("hf", columnar)):
        d = read_dataset(write(tmp_path, kind, rows))
        prompt = msgs_json(("user", "What color is the sky?"))
        assert d.context_texts == (prompt,) and d.context_ids == (sha12(prompt),)
        # Actions by first appearance: blue 0, green 1, grey 2. Comparisons: blue>green, blue>grey, grey>green.
        assert d.action_texts == tuple(msgs_json(("assistant", t)) for t in ("It is blue.", "It is green.", "Grey."))
        np.testing.assert_array_equal(d.offsets, [0, 3])
        np.testing.assert_array_equal(d.winner, [0, 0, 2])
        np.testing.assert_array_equal(d.loser, [1, 2, 1])
        np.testing.assert_array_equal(d.count, [1.0, 1.0, 1.0])


def test_implicit_text_prompt_follows_trls_split(tmp_path: Path) -> None:
    records = [
        # First difference at index 11 ('b' vs 'g'); the character before is a space, so the split is at 10:
        # prompt "Q: sky? A:", completions " blue" and " green".
        {"chosen": "Q: sky? A: blue", "rejected": "Q: sky? A: green"},
        # "abc" is a prefix of "abcd": the last shared element stays with the completions (split at 2).
        {"chosen": "abc", "rejected": "abcd"},
    ]
    d = read_dataset(write(tmp_path, "jsonl", records))
    assert d.context_texts == ("Q: sky? A:", "ab")
    assert d.action_texts == (" blue", " green", "c", "cd")
    np.testing.assert_array_equal(d.winner, [0, 2])
    np.testing.assert_array_equal(d.loser, [1, 3])


def test_reference_logps_give_pi_ref_renormalised_over_observed_completions(tmp_path: Path) -> None:
    records = [
        {"prompt": "Q", "chosen": "a", "rejected": "b", "ref_chosen_logps": -1.0, "ref_rejected_logps": -2.0},
        {"prompt": "Q", "chosen": "b", "rejected": "c", "ref_chosen_logps": -2.0, "ref_rejected_logps": -3.0},
        {"prompt": "R", "chosen": "a", "rejected": "b", "ref_chosen_logps": -10.0, "ref_rejected_logps": -10.0},
    ]
    for kind in ("jsonl", "csv", "parquet"):
        d = read_dataset(write(tmp_path, kind, records))
        # pi_ref(y|Q) = exp(logp) / (e^-1 + e^-2 + e^-3); R's two completions are equally likely: 1/2 each.
        z = math.log(math.exp(-1) + math.exp(-2) + math.exp(-3))
        np.testing.assert_allclose(d.log_pi_ref, [-1 - z, -2 - z, -3 - z, -math.log(2), -math.log(2)], atol=1e-14)


# ---------------------------------------------------------------------------------------------- scored

# Prompt P, completions x, y, z scored 1, 3, 3: y > x, z > x, (y, z) a tie. Second row, same prompt: y 2, w 5:
# w > y. Actions of P by first appearance: x 0, y 1, z 2, w 3. Comparisons sorted by (winner, loser):
# (1, 0), (2, 0), (3, 1). One tie. Prompt S (one completion): an action and no comparison.
SCORED = [
    {"prompt": "P", "completions": ["x", "y", "z"], "scores": [1, 3, 3]},
    {"prompt": "P", "completions": ["y", "w"], "scores": [2, 5]},
    {"prompt": "S", "completions": ["only"], "scores": [4]},
]


def check_scored(d: PreferenceData) -> None:
    np.testing.assert_array_equal(d.offsets, [0, 4, 5])
    np.testing.assert_array_equal(d.winner, [1, 2, 3])
    np.testing.assert_array_equal(d.loser, [0, 0, 1])
    np.testing.assert_array_equal(d.context, [0, 0, 0])
    np.testing.assert_array_equal(d.count, [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(d.ties, [1.0, 0.0])
    assert d.action_texts == ("x", "y", "z", "w", "only")
    np.testing.assert_allclose(d.log_pi_ref, [-math.log(4)] * 4 + [0.0], atol=1e-15)


@pytest.mark.parametrize("kind", list(WRITERS))
def test_scored_with_ties(tmp_path: Path, kind: str) -> None:
    d = read_dataset(write(tmp_path, kind, SCORED))
    check_scored(d)
    assert d.source.format == f"{kind}/scored"


def test_scored_ultrafeedback_records(tmp_path: Path) -> None:
    """openbmb/UltraFeedback's layout: `instruction`, `completions` as records with `response`, `overall_score`."""
    records = [
        {
            "instruction": r["prompt"],
            "completions": [
                {"model": "m", "response": t, "overall_score": s}
                for t, s in zip(r["completions"], r["scores"], strict=True)
            ],
        }
        for r in SCORED
    ]
    for kind in ("jsonl", "parquet"):
        d = read_dataset(write(tmp_path, kind, records))
        check_scored(d)
        assert_same_data(d, read_dataset(write(tmp_path, "json", SCORED)))


# ---------------------------------------------------------------------------------------------- battles

# Models by first appearance: gpt 0, llama 1, claude 2. gpt beats llama twice (rows 1, 2), claude beats gpt
# once (row 5); rows 3 and 4 are ties. Sorted (winner, loser): (0, 1) x2, (2, 0) x1.
BATTLES = [
    {"model_a": "gpt", "model_b": "llama", "winner": "model_a"},
    {"model_a": "llama", "model_b": "gpt", "winner": "model_b"},
    {"model_a": "gpt", "model_b": "claude", "winner": "tie"},
    {"model_a": "claude", "model_b": "llama", "winner": "tie (bothbad)"},
    {"model_a": "claude", "model_b": "gpt", "winner": "model_a"},
]


@pytest.mark.parametrize("kind", list(WRITERS))
def test_battles_with_ties(tmp_path: Path, kind: str) -> None:
    d = read_dataset(write(tmp_path, kind, BATTLES))
    assert d.context_ids == ("battles",)
    assert d.action_ids == ("gpt", "llama", "claude") == d.action_texts
    np.testing.assert_array_equal(d.offsets, [0, 3])
    np.testing.assert_array_equal(d.winner, [0, 2])
    np.testing.assert_array_equal(d.loser, [1, 0])
    np.testing.assert_array_equal(d.count, [2.0, 1.0])
    np.testing.assert_array_equal(d.ties, [2.0])


def test_battles_to_problem_equals_the_toml_problem(tmp_path: Path) -> None:
    problem = to_problem(read_dataset(write(tmp_path, "jsonl", BATTLES)))
    toml = tmp_path / "battles.toml"
    toml.write_text(
        'actions = ["gpt", "llama", "claude"]\n'
        'pairs = [{winner = "gpt", loser = "llama", count = 2}, {winner = "claude", loser = "gpt"}]\n',
        encoding="utf-8",
    )
    expected = load_problem(toml)
    assert problem.actions == expected.actions
    (got,), (want,) = problem.contexts, expected.contexts
    np.testing.assert_array_equal(got.wins, want.wins)
    np.testing.assert_allclose(got.pi_ref, want.pi_ref, atol=1e-15)
    np.testing.assert_allclose(got.mu, want.mu, atol=1e-15)
    assert got.weight == want.weight == 1.0
    with pytest.raises(ValueError):
        got.wins[0, 0] = 1.0


def test_to_problem_shared_action_sets_reordered(tmp_path: Path) -> None:
    # Two prompts with the same completions met in a different order: one shared action list (a, b), and
    # W of Q2 in that order: b beat a once -> W[1, 0] = 1.
    records = [{"prompt": "Q1", "chosen": "a", "rejected": "b"}, {"prompt": "Q2", "chosen": "b", "rejected": "a"}]
    problem = to_problem(read_dataset(write(tmp_path, "jsonl", records)))
    assert problem.actions == (sha12("a"), sha12("b"))
    np.testing.assert_array_equal(problem.contexts[0].wins, [[0, 1], [0, 0]])
    np.testing.assert_array_equal(problem.contexts[1].wins, [[0, 0], [1, 0]])
    assert [c.weight for c in problem.contexts] == [0.5, 0.5]


def test_to_problem_refuses_different_action_sets(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="different completions"):
        to_problem(read_dataset(write(tmp_path, "jsonl", PAIRED)))
    only_ties = [{"model_a": "a", "model_b": "b", "winner": "tie"}]
    with pytest.raises(InputError, match="no comparisons"):
        to_problem(read_dataset(write(tmp_path, "jsonl", only_ties)))
    one = [{"prompt": "S", "completions": ["only"], "scores": [1]}]
    with pytest.raises(InputError, match="at least two actions"):
        to_problem(read_dataset(write(tmp_path, "jsonl", one)))


# ---------------------------------------------------------------------------------------------- same data, two forms


def test_same_data_in_two_file_types_is_identical(tmp_path: Path) -> None:
    conv = [
        {
            "prompt": [{"role": "user", "content": "hi"}],
            "chosen": [{"role": "assistant", "content": "yo"}],
            "rejected": [{"role": "assistant", "content": "no"}],
        },
        {
            "prompt": [{"role": "user", "content": "hé"}],
            "chosen": [{"role": "assistant", "content": "a b"}],
            "rejected": [{"role": "assistant", "content": "no"}],
        },
    ]
    for records in (PAIRED, SCORED, BATTLES, conv):
        (a := tmp_path / "a").mkdir(exist_ok=True)
        (b := tmp_path / "b").mkdir(exist_ok=True)
        reference = read_dataset(write(a, "jsonl", records))
        for kind in ("json", "csv", "parquet", "hf"):
            assert_same_data(reference, read_dataset(write(b, kind, records)))


# ---------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("records", "row", "column", "reason"),
    [
        ([PAIRED[0], {"prompt": "Q1", "chosen": "a"}], 2, "rejected", "missing"),
        ([PAIRED[0], PAIRED[1], {"prompt": "Q1", "chosen": "a", "rejected": "a"}], 3, "rejected", "same as chosen"),
        ([PAIRED[0], {"prompt": "Q1", "chosen": 7, "rejected": "a"}], 2, "chosen", "must be text or a list"),
        ([PAIRED[0], {"prompt": "Q1", "chosen": "", "rejected": "a"}], 2, "chosen", "empty completion"),
        ([{"prompt": "Q", "chosen": [], "rejected": [{"role": "assistant", "content": "a"}]}], 1, "chosen", "empty"),
        (
            [SCORED[0], {"prompt": "P", "completions": ["u", "v"], "scores": [1, "high"]}],
            2,
            "scores",
            "must be numbers",
        ),
        ([{"prompt": "P", "completions": ["u", "v"], "scores": [1]}], 1, "scores", "one per completion"),
        ([BATTLES[0], {"model_a": "a", "model_b": "b", "winner": "draw"}], 2, "winner", "unknown winner"),
        ([BATTLES[0], {"model_a": "a", "model_b": "a", "winner": "tie"}], 2, "model_b", "same model"),
        (
            [
                {"prompt": "Q", "chosen": "a", "rejected": "b", "ref_chosen_logps": -1.0, "ref_rejected_logps": -2.0},
                {"prompt": "Q", "chosen": "a", "rejected": "c", "ref_chosen_logps": -1.5, "ref_rejected_logps": -3.0},
            ],
            2,
            "ref_chosen_logps",
            "different reference log-prob",
        ),
    ],
)
def test_bad_row_is_one_line_with_file_row_and_column(
    tmp_path: Path, records: list[dict[str, Any]], row: int, column: str, reason: str
) -> None:
    pa = pytest.importorskip("pyarrow")
    for kind in ("jsonl", "json", "parquet"):
        try:
            path = write(tmp_path, kind, records)
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # Parquet cannot hold a number in a text column
            continue
        line = error_line(path)
        assert line.startswith(f"{path.resolve()}, row {row}: {column} = "), line
        assert reason in line


def test_rows_are_counted_as_lines(tmp_path: Path) -> None:
    # JSON Lines: a blank line 2 is skipped by the reader but counted: the bad record is on line 4.
    path = tmp_path / "gaps.jsonl"
    path.write_text(
        json.dumps(PAIRED[0])
        + "\n\n"
        + json.dumps(PAIRED[1])
        + "\n"
        + json.dumps({"prompt": "Q", "chosen": "x", "rejected": "x"})
        + "\n",
        encoding="utf-8",
    )
    assert error_line(path).startswith(f"{path.resolve()}, row 4: rejected = 'x'")
    # CSV: the header is line 1 and a quoted cell spans lines 2-3, so the third record starts on line 5.
    path = tmp_path / "multi.csv"
    path.write_text('prompt,chosen,rejected\n"two\nlines",a,b\nQ,a,b\nQ,c,c\n', encoding="utf-8")
    assert error_line(path).startswith(f"{path.resolve()}, row 5: rejected = 'c'")
    # JSON: the record's position.
    path = write_json(tmp_path / "list.json", [PAIRED[0], PAIRED[1], {"prompt": "Q", "chosen": "x", "rejected": "x"}])
    assert error_line(path).startswith(f"{path.resolve()}, row 3: rejected")


def test_invalid_json_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_text(json.dumps(PAIRED[0]) + '\n{"prompt": "Q", "chosen": \n', encoding="utf-8")
    line = error_line(path)
    assert line.startswith(f"{path}, row 2: line = ") and "not valid JSON" in line


def test_missing_column_and_unknown_layout(tmp_path: Path) -> None:
    path = write(tmp_path, "jsonl", PAIRED)
    line = error_line(path, format="battles")
    assert line.startswith(f"{path.resolve()}: model_a = None: missing column")
    other = write_jsonl(tmp_path / "other.jsonl", [{"question": "q", "answer": "a"}])
    assert "cannot tell the layout" in error_line(other)
    assert "must be one of" in error_line(path, format="pairs")
    assert "no such file" in error_line(tmp_path / "absent.jsonl")
    assert "unknown file type" in error_line(write_jsonl(tmp_path / "data.txt", PAIRED))


def test_skip_bad_rows_counts_them(tmp_path: Path) -> None:
    good = PAIRED
    records = [
        good[0],
        {"prompt": "Q1", "chosen": "a"},  # missing rejected
        good[1],
        {"prompt": "Q1", "chosen": "b", "rejected": "b"},  # chosen == rejected
        good[2],
        good[3],
    ]
    d = read_dataset(write(tmp_path, "jsonl", records), skip_bad_rows=True)
    check_paired(d)  # exactly the data of the good rows
    assert d.source.rows_read == 6 and d.source.rows_skipped == 2
    assert len(d.source.skipped) == 2
    assert d.source.skipped[0].endswith("row 2: rejected = None: missing")
    assert "row 4: rejected = 'b'" in d.source.skipped[1]


def test_skip_bad_rows_drops_conflicting_logps(tmp_path: Path) -> None:
    records = [
        {"prompt": "Q", "chosen": "a", "rejected": "b", "ref_chosen_logps": -1.0, "ref_rejected_logps": -2.0},
        {"prompt": "Q", "chosen": "a", "rejected": "c", "ref_chosen_logps": -1.5, "ref_rejected_logps": -3.0},
        {"prompt": "Q", "chosen": "b", "rejected": "c", "ref_chosen_logps": -2.0, "ref_rejected_logps": -3.0},
    ]
    d = read_dataset(write(tmp_path, "jsonl", records), skip_bad_rows=True)
    # Row 2 disagrees with row 1 on a's log-prob and goes; a, b, c keep -1, -2, -3 (c from row 3).
    assert d.source.rows_skipped == 1
    z = math.log(math.exp(-1) + math.exp(-2) + math.exp(-3))
    np.testing.assert_allclose(d.log_pi_ref, [-1 - z, -2 - z, -3 - z], atol=1e-14)
    np.testing.assert_array_equal(d.winner, [0, 1])
    np.testing.assert_array_equal(d.loser, [1, 2])


def test_every_row_bad(tmp_path: Path) -> None:
    path = write(tmp_path, "jsonl", [{"prompt": "Q", "chosen": "a", "rejected": "a"}])
    assert "no usable rows (1 skipped)" in error_line(path, skip_bad_rows=True)


# ---------------------------------------------------------------------------------------------- describe


def test_summary_and_describe(tmp_path: Path) -> None:
    d = read_dataset(write(tmp_path, "jsonl", PAIRED + [{"prompt": "Q3", "chosen": "u", "rejected": "v"}] * 3))
    s = summary(d)
    # Q1: 3 comparisons, 3 completions; Q2: 1 and 2; Q3: 3 (one pair, thrice) and 2.
    assert (s["prompts"], s["completions"], s["comparisons"], s["distinct_pairs"], s["ties"]) == (3, 7, 7, 4, 0)
    assert s["comparisons_per_prompt"] == {"min": 1.0, "median": 3.0, "max": 3.0}
    assert s["completions_per_prompt"] == {"min": 2.0, "median": 2.0, "max": 3.0}
    text = describe(d)
    assert "prompts      3" in text and "comparisons  7" in text and "min 1, median 3, max 3" in text
    assert "jsonl/paired" in text and "7 read, 0 skipped" in text


# ---------------------------------------------------------------------------------------------- data model


def make(**overrides: Any) -> PreferenceData:
    fields: dict[str, Any] = {
        "context": [0],
        "winner": [0],
        "loser": [1],
        "count": [1.0],
        "offsets": [0, 2, 3],
        "log_pi_ref": [math.log(0.5), math.log(0.5), 0.0],
        "context_ids": ("x0", "x1"),
        "context_texts": ("p0", "p1"),
        "action_ids": ("a", "b", "a"),
        "action_texts": ("A", "B", "A"),
        "ties": [0.0, 0.0],
        "source": SourceRecord(path="mem", sha256="0" * 64, format="test", rows_read=1),
    }
    fields.update(overrides)
    return PreferenceData(**fields)


def test_data_model_validation() -> None:
    d = make()
    assert d.n_contexts == 2 and d.n_actions == 3
    np.testing.assert_array_equal(d.action_context, [0, 0, 1])
    cases = [
        ({"loser": [2]}, "not an action of context 0"),  # action 2 belongs to context 1
        ({"winner": [2]}, "not an action of context 0"),
        ({"winner": [1], "loser": [1]}, "cannot be compared with itself"),
        ({"count": [0.0]}, "positive"),
        ({"offsets": [0, 2, 2]}, "at least one action"),
        ({"log_pi_ref": [0.0, 0.0, 0.0]}, "normalised"),
        ({"log_pi_ref": [0.0, -np.inf, 0.0]}, "finite"),
        ({"context_ids": ("x", "x")}, "unique"),
        ({"action_ids": ("a", "a", "a")}, "unique within each context"),
        ({"ties": [0.0]}, "length 2"),
    ]
    for overrides, reason in cases:
        with pytest.raises(InputError, match=reason):
            make(**overrides)


# ---------------------------------------------------------------------------------------------- file details


def test_json_lines_in_a_json_file(tmp_path: Path) -> None:
    """`datasets.Dataset.to_json` writes JSON Lines into a `.json` file: read as JSON Lines."""
    path = write_jsonl(tmp_path / "lines.json", PAIRED)
    d = read_dataset(path)
    check_paired(d)
    assert d.source.format == "jsonl/paired"


def test_save_to_disk_splits_and_directory_hash(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    columns = {k: [r[k] for r in BATTLES] for k in BATTLES[0]}
    one = datasets.DatasetDict({"train": datasets.Dataset.from_dict(columns)})
    one.save_to_disk(str(tmp_path / "one"))
    d = read_dataset(tmp_path / "one")
    np.testing.assert_array_equal(d.count, [2.0, 1.0])
    # The documented directory hash: SHA-256 of "<relative path>\0<sha256 of the file>\n" over sorted files.
    h = hashlib.sha256()
    for f in sorted(p for p in (tmp_path / "one").rglob("*") if p.is_file()):
        h.update(
            f"{f.relative_to(tmp_path / 'one').as_posix()}\0{hashlib.sha256(f.read_bytes()).hexdigest()}\n".encode()
        )
    assert d.source.sha256 == h.hexdigest()
    two = datasets.DatasetDict({"train": one["train"], "test": one["train"]})
    two.save_to_disk(str(tmp_path / "two"))
    assert "give one split's directory" in error_line(tmp_path / "two")
    np.testing.assert_array_equal(read_dataset(tmp_path / "two" / "test").count, [2.0, 1.0])


def test_huge_scores_compare_without_overflow(tmp_path: Path) -> None:
    # 1.7e308 > -1.7e308: a win, although their difference overflows to inf.
    records = [{"prompt": "P", "completions": ["x", "y"], "scores": [-1.7e308, 1.7e308]}]
    with np.errstate(all="raise"):
        d = read_dataset(write(tmp_path, "jsonl", records))
    np.testing.assert_array_equal(d.winner, [1])
    np.testing.assert_array_equal(d.loser, [0])


def test_boolean_and_text_scores_are_not_numbers(tmp_path: Path) -> None:
    # Numeric text is a number ("2.5"), a boolean is not (JSON true is no score).
    ok = read_dataset(write(tmp_path, "jsonl", [{"prompt": "P", "completions": ["x", "y"], "scores": ["2.5", 1]}]))
    np.testing.assert_array_equal(ok.winner, [0])
    path = write(tmp_path, "jsonl", [{"prompt": "P", "completions": ["x", "y"], "scores": [True, 1]}])
    assert error_line(path).startswith(f"{path.resolve()}, row 1: scores = True: must be numbers")


def test_csv_text_that_looks_like_json_stays_text(tmp_path: Path) -> None:
    path = tmp_path / "lists.csv"
    path.write_text('prompt,chosen,rejected\n"[1, 2]","[3]",[]\n', encoding="utf-8")
    d = read_dataset(path)
    assert d.context_texts == ("[1, 2]",) and d.action_texts == ("[3]", "[]")


# ---------------------------------------------------------------------------------------------- against a plain loop


def reference(appear: list[tuple[str, str]], cmps: list[tuple[str, str, str]]) -> tuple[list, list, list]:
    """Counted with dicts, one row at a time: contexts and their actions in order of first appearance, and the
    comparisons (prompt, winner, loser) as sorted (winner, loser, count) global indices."""
    actions: dict[str, list[str]] = {}
    for p, t in appear:
        seen = actions.setdefault(p, [])
        if t not in seen:
            seen.append(t)
    index, start = {}, 0
    for p, seen in actions.items():
        index.update({(p, t): start + k for k, t in enumerate(seen)})
        start += len(seen)
    counts: dict[tuple[int, int], int] = {}
    for p, w, lo in cmps:
        key = (index[p, w], index[p, lo])
        counts[key] = counts.get(key, 0) + 1
    return list(actions), [t for seen in actions.values() for t in seen], sorted((*k, c) for k, c in counts.items())


def test_random_paired_and_scored_match_a_plain_loop(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    prompts, texts = [f"p{i}" for i in range(15)], [f"c{i}" for i in range(6)]
    paired, p_appear, p_cmps = [], [], []
    for _ in range(400):
        p = prompts[rng.integers(15)]
        w, lo = (texts[k] for k in rng.choice(6, size=2, replace=False))
        paired.append({"prompt": p, "chosen": w, "rejected": lo})
        p_appear += [(p, w), (p, lo)]
        p_cmps.append((p, w, lo))
    scored, s_appear, s_cmps, ties = [], [], [], 0
    for _ in range(100):
        p = prompts[rng.integers(15)]
        picked = [texts[k] for k in rng.choice(6, size=int(rng.integers(1, 6)), replace=False)]
        scores = rng.integers(0, 3, size=len(picked)).tolist()
        scored.append({"prompt": p, "completions": picked, "scores": scores})
        s_appear += [(p, t) for t in picked]
        # Each pair (i < j) is a comparison, the higher score winning, unless the scores tie.
        for i in range(len(picked)):
            for j in range(i + 1, len(picked)):
                if scores[i] == scores[j]:
                    ties += 1
                else:
                    best, worst = (i, j) if scores[i] > scores[j] else (j, i)
                    s_cmps.append((p, picked[best], picked[worst]))
    for records, appear, cmps, n_ties in ((paired, p_appear, p_cmps, 0), (scored, s_appear, s_cmps, ties)):
        d = read_dataset(write(tmp_path, "jsonl", records))
        contexts, actions, comparisons = reference(appear, cmps)
        assert d.context_texts == tuple(contexts)
        assert d.action_texts == tuple(actions)
        got = list(zip(d.winner.tolist(), d.loser.tolist(), d.count.astype(int).tolist(), strict=True))
        assert got == comparisons
        assert d.ties.sum() == n_ties
