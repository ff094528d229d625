"""How a dataset given as the problem is read: the problem file's `dataset` key, `--data-format`,
`--skip-bad-rows`, and what a run on a dataset writes (`contexts.csv`, `actions.csv`, the dataset's record in
`config.json` and `report.md`).

Every file is written by the test; expected ids are SHA-256 prefixes computed here with `hashlib`, counts and
policies are worked out by hand in the comments.
"""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

# gpt beats llama twice, llama beats gpt once and mistral once; the tie is no comparison (as in
# tests/test_dataset_problems.py).
BATTLES = [
    {"model_a": "gpt", "model_b": "llama", "winner": "model_a"},
    {"model_a": "gpt", "model_b": "llama", "winner": "model_a"},
    {"model_a": "llama", "model_b": "gpt", "winner": "model_a"},
    {"model_a": "llama", "model_b": "mistral", "winner": "model_a"},
    {"model_a": "mistral", "model_b": "gpt", "winner": "tie"},
]


def psipo(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "psipo_cli", *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd)


def jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def sha12(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def one_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


def dpo_policy(done: subprocess.CompletedProcess) -> dict[tuple[float, str], float]:
    assert done.returncode == 0, done.stderr
    return {(r["tau"], r["action"]): r["prob"] for r in json.loads(done.stdout)["policy"] if r["method"] == "dpo"}


def test_problem_file_dataset_key_is_relative_to_the_file(tmp_path: Path) -> None:
    jsonl(tmp_path / "problems" / "data" / "arena.jsonl", BATTLES)
    toml = tmp_path / "problems" / "arena.toml"
    toml.write_text('name = "my-arena"\ndescription = "three models"\ndataset = { path = "data/arena.jsonl" }\n')
    # Run from elsewhere: the path is relative to the TOML file, not to the working directory.
    done = psipo("run", "dpo", "--problem", str(toml), "--solver", "exact", "--tau", "0.5,1", "--no-save",
                 "--format", "json", cwd=tmp_path.parent)
    dpo = dpo_policy(done)
    # By hand (tests/test_dataset_problems.py): mistral only loses, so it gets 0; in {gpt, llama} the reward
    # gap is the two-action MLE log(2/1), so pi(gpt) / pi(llama) = 2^(1/tau).
    for tau in (0.5, 1.0):
        odds = 2.0 ** (1.0 / tau)
        np.testing.assert_allclose([dpo[tau, a] for a in ("gpt", "llama", "mistral")],
                                   [odds / (1 + odds), 1 / (1 + odds), 0.0], atol=1e-10)
    shown = psipo("problem", "show", str(toml))
    assert shown.returncode == 0 and "prompts      1" in shown.stdout and "comparisons  4" in shown.stdout


def test_run_on_a_dataset_writes_id_tables_and_records_the_file_not_its_arrays(tmp_path: Path) -> None:
    # One prompt, three completions: a > b twice, b > c once (pi_ref uniform, 1/3 each).
    rows = [{"prompt": "Q", "chosen": "a", "rejected": "b"}, {"prompt": "Q", "chosen": "b", "rejected": "c"},
            {"prompt": "Q", "chosen": "a", "rejected": "b"}]
    data = jsonl(tmp_path / "prefs.jsonl", rows)
    done = psipo("run", "ipo", "--problem", str(data), "--solver", "exact", "--tau", "1", "--no-plots",
                 "--out", str(tmp_path / "runs"), "--format", "path")
    assert done.returncode == 0, done.stderr
    run = Path(done.stdout.strip())
    with (run / "contexts.csv").open(newline="", encoding="utf-8") as fh:
        contexts = list(csv.DictReader(fh))
    assert contexts == [{"context": sha12("Q"), "prompt": "Q", "completions": "3", "comparisons": "3.0",
                         "ties": "0.0"}]
    with (run / "actions.csv").open(newline="", encoding="utf-8") as fh:
        actions = list(csv.DictReader(fh))
    assert [(r["context"], r["action"], r["completion"]) for r in actions] == [
        (sha12("Q"), sha12(t), t) for t in ("a", "b", "c")]
    np.testing.assert_allclose([float(r["pi_ref"]) for r in actions], [1 / 3] * 3, rtol=1e-15)
    # a wins 2 and loses 0; b wins 1, loses 2; c wins 0, loses 1.
    assert [(float(r["wins"]), float(r["losses"])) for r in actions] == [(2, 0), (1, 2), (0, 1)]
    # The policy names the actions by these ids.
    with (run / "policy.csv").open(newline="", encoding="utf-8") as fh:
        assert {r["action"] for r in csv.DictReader(fh)} == {sha12(t) for t in "abc"}
    config = json.loads((run / "config.json").read_text())
    record = config["problem_resolved"]["dataset"]
    raw = data.read_bytes()
    assert record["path"] == str(data.resolve()) and record["sha256"] == hashlib.sha256(raw).hexdigest()
    assert record["bytes"] == len(raw) and record["format"] == "jsonl/paired"
    assert (record["prompts"], record["completions"], record["comparisons"]) == (1, 3, 3)
    assert "contexts" not in config["problem_resolved"] and "actions" not in config["problem_resolved"]
    assert "wins" not in (run / "config.json").read_text()
    assert "**Dataset**" in (run / "report.md").read_text()


def test_a_preset_run_writes_no_id_tables(tmp_path: Path) -> None:
    done = psipo("run", "ipo", "--solver", "exact", "--tau", "1", "--no-plots", "--out", str(tmp_path),
                 "--format", "path")
    assert done.returncode == 0, done.stderr
    run = Path(done.stdout.strip())
    assert not (run / "contexts.csv").exists() and not (run / "actions.csv").exists()


# A paired file that also has a `completions` column fits two layouts: auto refuses, a format decides.
AMBIGUOUS = [{"prompt": "Q", "chosen": "a", "rejected": "b", "completions": ["a", "b"], "scores": [0, 1]}]


def test_data_format_forces_the_layout_on_every_surface(tmp_path: Path) -> None:
    data = jsonl(tmp_path / "both.jsonl", AMBIGUOUS)
    line = one_line(psipo("run", "dpo", "--problem", str(data), "--solver", "exact", "--no-save"))
    assert "format = 'auto'" in line and "paired, scored" in line
    # Paired: a beats b, so DPO puts everything on a; scored: b (score 1) beats a.
    paired = psipo("run", "dpo", "--problem", str(data), "--data-format", "paired", "--solver", "exact",
                   "--tau", "1", "--no-save", "--format", "json")
    assert dpo_policy(paired) == {(1.0, sha12("a")): 1.0, (1.0, sha12("b")): 0.0}
    toml = tmp_path / "both.toml"
    toml.write_text('dataset = { path = "both.jsonl", format = "scored" }\n')
    scored = psipo("compare", "--problem", str(toml), "--methods", "dpo", "--solver", "exact", "--tau", "1",
                   "--no-save", "--format", "json")
    assert dpo_policy(scored) == {(1.0, sha12("a")): 0.0, (1.0, sha12("b")): 1.0}
    # The flag overrides the file's format (flags override files everywhere).
    forced = psipo("compare", "--problem", str(toml), "--methods", "dpo", "--data-format", "paired", "--solver",
                   "exact", "--tau", "1", "--no-save", "--format", "json")
    assert dpo_policy(forced) == dpo_policy(paired)
    # An experiment file takes the flag's name as a key.
    experiment = tmp_path / "exp.toml"
    experiment.write_text('problem = "both.jsonl"\ndata_format = "scored"\nmethods = ["dpo"]\ntau = [1.0]\n'
                          'solver = "exact"\n')
    from_file = psipo("compare", str(experiment), "--no-save", "--format", "json")
    assert dpo_policy(from_file) == dpo_policy(scored)
    shown = psipo("problem", "show", str(data), "--data-format", "scored")
    assert shown.returncode == 0 and "jsonl/scored" in shown.stdout


def test_dataset_flags_on_a_problem_that_is_no_dataset_are_refused(tmp_path: Path) -> None:
    line = one_line(psipo("run", "dpo", "--data-format", "paired", "--no-save"))
    assert line.startswith("psipo: --data-format = 'paired': ") and "not a preference dataset" in line
    line = one_line(psipo("problem", "validate", "--skip-bad-rows", str(Path("problems") / "missing.toml")))
    assert "no such file" in line
    line = one_line(psipo("run", "dpo", "--data-format", "pairs", "--no-save"))
    assert line == "psipo: --data-format = 'pairs': must be one of auto, paired, scored, battles"


def test_skip_bad_rows_goes_on_and_counts_them(tmp_path: Path) -> None:
    rows = [{"prompt": "Q", "chosen": "a", "rejected": "b"}, {"prompt": "Q", "chosen": "a", "rejected": "a"},
            {"prompt": "Q", "chosen": "b", "rejected": "c"}]
    data = jsonl(tmp_path / "prefs.jsonl", rows)
    out = tmp_path / "runs"
    line = one_line(psipo("run", "ipo", "--problem", str(data), "--solver", "exact", "--out", str(out)))
    # Row 2 (line 2 of the file), column rejected; nothing written.
    assert str(data.resolve()) in line and "row 2" in line and "rejected" in line
    assert not out.exists() or not any(out.iterdir())
    done = psipo("run", "ipo", "--problem", str(data), "--skip-bad-rows", "--solver", "exact", "--tau", "1",
                 "--no-plots", "--out", str(out), "--format", "path")
    assert done.returncode == 0, done.stderr
    run = Path(done.stdout.strip())
    record = json.loads((run / "config.json").read_text())["problem_resolved"]["dataset"]
    assert (record["rows_read"], record["rows_skipped"], record["comparisons"]) == (3, 1, 2)
    assert json.loads((run / "config.json").read_text())["skip_bad_rows"] is True
    report = (run / "report.md").read_text()
    assert "3 rows read, 1 skipped (--skip-bad-rows)" in report and "row 2" in report
    checked = psipo("problem", "validate", str(data), "--skip-bad-rows")
    assert checked.returncode == 0 and "1 bad rows skipped" in checked.stderr
    # The problem file's own switch does the same.
    toml = tmp_path / "p.toml"
    toml.write_text('dataset = { path = "prefs.jsonl", skip_bad_rows = true }\n')
    assert psipo("problem", "validate", str(toml)).returncode == 0


def test_bad_dataset_keys_are_one_line_naming_the_key(tmp_path: Path) -> None:
    jsonl(tmp_path / "arena.jsonl", BATTLES)
    cases = {
        'dataset = { path = "arena.jsonl", fromat = "battles" }\n': "dataset.fromat = 'battles': unknown key (did "
                                                                    "you mean format?)",
        'dataset = { path = "arena.jsonl", format = "pairs" }\n': "dataset.format = 'pairs': must be one of auto",
        'dataset = { format = "battles" }\n': "dataset.path = None: must be a file name",
        'dataset = "arena.jsonl"\n': "dataset = 'arena.jsonl': must be a table",
        'dataset = { path = "nope.jsonl" }\n': "no such file or directory",
        'actions = ["a", "b"]\ndataset = { path = "arena.jsonl" }\n': "actions = ['a', 'b']: a problem given by "
                                                                      "`dataset` takes only",
        'dataset = { path = "arena.jsonl", skip_bad_rows = "yes" }\n': "dataset.skip_bad_rows = 'yes': must be true",
    }
    for i, (text, expected) in enumerate(cases.items()):
        toml = tmp_path / f"bad{i}.toml"
        toml.write_text(text)
        for args in (("problem", "validate", str(toml)),
                     ("run", "dpo", "--problem", str(toml), "--out", str(tmp_path / "runs"))):
            line = one_line(psipo(*args))
            assert str(toml) in line and expected in line, (text, line)
    assert not (tmp_path / "runs").exists()
