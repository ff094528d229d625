"""Preference datasets used where a problem is: `--problem FILE`, `psipo problem show|validate FILE`.

A battles file is one context whose actions are the models; solved through `--problem` it must give exactly
what the same comparisons written as a TOML problem give (both are read independently: the TOML loader and
the dataset reader share no code).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROWS = [
    {"model_a": "gpt", "model_b": "llama", "winner": "model_a"},
    {"model_a": "gpt", "model_b": "llama", "winner": "model_a"},
    {"model_a": "llama", "model_b": "gpt", "winner": "model_a"},
    {"model_a": "llama", "model_b": "mistral", "winner": "model_a"},
    {"model_a": "mistral", "model_b": "gpt", "winner": "tie"},
]


def psipo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "psipo_cli", *args], capture_output=True, text=True, timeout=300)


def battles(tmp_path: Path) -> Path:
    path = tmp_path / "arena.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


def test_battles_file_solves_as_its_toml_problem(tmp_path: Path) -> None:
    # gpt beats llama twice, llama beats gpt once and mistral once; the tie is no comparison. Actions in
    # order of first appearance (gpt, llama, mistral), uniform pi_ref over the three observed models.
    toml = tmp_path / "arena.toml"
    toml.write_text(
        'name = "arena"\nactions = ["gpt", "llama", "mistral"]\npairs = [\n'
        '  { winner = "gpt", loser = "llama", count = 2 },\n'
        '  { winner = "llama", loser = "gpt" },\n'
        '  { winner = "llama", loser = "mistral" },\n]\n'
    )
    results = []
    for problem in (battles(tmp_path), toml):
        done = psipo("compare", "--problem", str(problem), "--methods", "dpo,ipo,rlhf", "--solver", "exact",
                     "--no-save", "--format", "json")
        assert done.returncode == 0, done.stderr
        results.append(json.loads(done.stdout))
    probs = [[(r["method"], r["tau"], r["action"], r["prob"]) for r in doc["policy"]] for doc in results]
    assert probs[0] == probs[1]
    assert [m["status"] for m in results[0]["metrics"]] == [m["status"] for m in results[1]["metrics"]]
    # DPO by hand: {gpt, llama} is a strongly connected component (2 and 1 wins) and mistral only loses, so
    # mistral gets 0 for every tau; inside the component the reward gap is the two-action MLE
    # r_gpt - r_llama = log(2/1), so pi(gpt) / pi(llama) = exp(log 2 / tau) = 2^(1/tau).
    dpo = {(r["tau"], r["action"]): r["prob"] for r in results[0]["policy"] if r["method"] == "dpo"}
    for tau in {t for t, _ in dpo}:
        odds = 2.0 ** (1.0 / tau)
        expected = [odds / (1 + odds), 1 / (1 + odds), 0.0]
        np.testing.assert_allclose([dpo[tau, a] for a in ("gpt", "llama", "mistral")], expected, atol=1e-10)


def test_problem_show_and_validate_count_a_dataset(tmp_path: Path) -> None:
    path = battles(tmp_path)
    shown = psipo("problem", "show", str(path))
    assert shown.returncode == 0, shown.stderr
    # 5 rows: 4 comparisons over 3 models, 1 tie; one context.
    assert "prompts      1" in shown.stdout and "ties         1" in shown.stdout
    assert "comparisons  4" in shown.stdout
    checked = psipo("problem", "validate", str(path))
    assert checked.returncode == 0
    assert "valid (1 prompt(s), 3 completions, 4 comparisons, 1 ties)" in checked.stderr


def test_prompts_with_their_own_completions_run_prompt_by_prompt(tmp_path: Path) -> None:
    # Refused (exit 2) until gradient runs on such datasets existed (issue 11); the default solver, both,
    # now solves every prompt exactly and by gradient descent (tests/test_dataset_gradient.py).
    path = tmp_path / "paired.jsonl"
    rows = [{"prompt": "p1", "chosen": "a", "rejected": "b"}, {"prompt": "p2", "chosen": "c", "rejected": "d"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    done = psipo("run", "dpo", "--problem", str(path), "--no-save", "--steps", "100", "--seeds", "2")
    assert done.returncode == 0, done.stderr
    # One line per solver and tau (the default tau values, 0.1, 0.5, 1, 2), exact first.
    assert [line.split()[2] for line in done.stdout.splitlines()[2:]] == ["exact"] * 4 + ["gradient"] * 4
    # The same file is still readable for its counts.
    assert psipo("problem", "show", str(path)).returncode == 0
