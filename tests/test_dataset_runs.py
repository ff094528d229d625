"""`psipo run|compare --problem DATA` on a dataset whose prompts have their own completions (the usual TRL
dataset): every prompt solved exactly, the per-prompt tables (compressed when large), the summary over prompts.

Expected answers are the same prompts written as TOML problems and solved through `psipo_cli.solve` (the
TOML loader and the dataset reader share no code), or worked out by hand in the comments.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

# Prompt P: a beats b twice, b beats a once, b beats c once, c beats a once (strongly connected: every
# method's optimum is attained). Prompt R: x beats y once (its own completions; deterministic).
ROWS = [
    {"prompt": "P", "chosen": "a", "rejected": "b"}, {"prompt": "P", "chosen": "b", "rejected": "a"},
    {"prompt": "R", "chosen": "x", "rejected": "y"}, {"prompt": "P", "chosen": "a", "rejected": "b"},
    {"prompt": "P", "chosen": "b", "rejected": "c"}, {"prompt": "P", "chosen": "c", "rejected": "a"},
]
TOMLS = {
    "P": 'actions = ["a", "b", "c"]\npairs = [{ winner = "a", loser = "b", count = 2 }, '
         '{ winner = "b", loser = "a" }, { winner = "b", loser = "c" }, { winner = "c", loser = "a" }]\n',
    "R": 'actions = ["x", "y"]\npairs = [{ winner = "x", loser = "y" }]\n',
}
TAUS = (0.25, 1.0)


def psipo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "psipo_cli", *args], capture_output=True, text=True, timeout=600)


def sha12(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def dataset(tmp_path: Path) -> Path:
    path = tmp_path / "prefs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    return path


def test_every_prompt_is_solved_as_its_own_toml_problem(tmp_path: Path) -> None:
    from psipo_cli import solve

    done = psipo("compare", "--problem", str(dataset(tmp_path)), "--solver", "exact", "--tau", "0.25,1",
                 "--methods", "rlhf,dpo,ipo", "--no-save", "--format", "json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    got = {(r["method"], r["tau"], r["context"], r["action"]): r["prob"] for r in doc["policy"]}
    status = {(r["method"], r["tau"], r["context"]): r["status"] for r in doc["metrics"]}
    kl = {(r["method"], r["tau"], r["context"]): r["kl"] for r in doc["metrics"]}
    assert len(got) == 3 * 2 * 5
    for prompt, text in TOMLS.items():
        path = tmp_path / f"{prompt}.toml"
        path.write_text(text)
        frames = solve(path, ["rlhf", "dpo", "ipo"], list(TAUS))
        for row in frames.policy.itertuples():
            key = (row.method, row.tau, sha12(prompt), sha12(row.action))
            assert got[key] == pytest.approx(row.prob, rel=1e-9, abs=1e-15), key
        for row in frames.metrics.itertuples():
            key = (row.method, row.tau, sha12(prompt))
            assert status[key] == row.status and kl[key] == pytest.approx(row.kl, rel=1e-9, abs=1e-15)
    # The summary weighs the two prompts equally: for DPO, R diverges (all mass on x: KL log 2) and P is
    # attained, so the status is mixed and the KL the mean of the two.
    summary = {(r["method"], r["tau"]): r for r in doc["summary"]}
    for tau in TAUS:
        dpo = summary["dpo", tau]
        assert dpo["status"] == "mixed" and "diverged: 1, optimal: 1" in dpo["detail"]
        p_kl = kl["dpo", tau, sha12("P")]
        assert dpo["kl"] == pytest.approx((p_kl + math.log(2)) / 2, rel=1e-12)


def test_terminal_summary_and_csv_tables(tmp_path: Path) -> None:
    path = dataset(tmp_path)
    table = psipo("run", "ipo", "--problem", str(path), "--solver", "exact", "--tau", "1", "--no-save")
    assert table.returncode == 0, table.stderr
    assert table.stdout.startswith("2 prompts, 5 completions, 6 comparisons")
    assert "ipo" in table.stdout and "optimal" in table.stdout
    metrics = psipo("run", "ipo", "--problem", str(path), "--solver", "exact", "--tau", "1", "--no-save",
                    "--format", "csv", "--table", "metrics")
    rows = list(csv.DictReader(io.StringIO(metrics.stdout)))
    assert [r["context"] for r in rows] == [sha12("P"), sha12("R")]


def read_csv(path: Path) -> str:
    return gzip.decompress(path.read_bytes()).decode() if path.suffix == ".gz" else path.read_text()


def test_large_tables_are_compressed_and_byte_identical(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from psipo_cli.cli import app, pipeline

    def run(out: Path) -> Path:
        # In this process (so that the lowered threshold applies); the app exits only on failure.
        app(["compare", "--problem", str(dataset(tmp_path)), "--solver", "exact", "--out", str(out), "--format",
             "path", "--quiet"], prog_name="psipo")
        return Path(capsys.readouterr().out.strip())

    plain = run(tmp_path / "plain")
    # Above the threshold (lowered here: the default is 100,000 rows) the per-prompt tables are gzip files.
    monkeypatch.setattr(pipeline, "COMPRESS_ROWS", 6)
    first, second = run(tmp_path / "a"), run(tmp_path / "b")
    # policy: 3 methods x 4 taus x 5 completions = 60 rows, rewards 60, metrics 24: compressed; actions 5 and
    # contexts 2 stay plain, and so does summary (12 rows, one per method and tau: never per prompt).
    for stem, compressed in (("policy", True), ("metrics", True), ("rewards", True), ("actions", False),
                             ("contexts", False), ("summary", False)):
        name = f"{stem}.csv.gz" if compressed else f"{stem}.csv"
        assert (first / name).is_file() and not (first / (f"{stem}.csv" if compressed else f"{stem}.csv.gz")).exists()
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
        assert read_csv(first / name) == (plain / f"{stem}.csv").read_text(), name


def test_population_is_refused_in_one_line(tmp_path: Path) -> None:
    # (Gradient runs on such datasets work since issue 11: tests/test_dataset_gradient.py.)
    path = dataset(tmp_path)
    for args, key in ((("--solver", "exact", "--objective", "population"), "--objective = 'population'"),
                      (("--solver", "gradient", "--objective", "population"), "--objective = 'population'")):
        done = psipo("run", "dpo", "--problem", str(path), *args, "--out", str(tmp_path / "runs"))
        assert done.returncode == 2
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"psipo: {key}"), lines
        assert "--objective dataset" in lines[0]
    assert not (tmp_path / "runs").exists()
