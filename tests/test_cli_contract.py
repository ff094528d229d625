"""The output contract of docs/outputs.md, pinned: what scripts built on `psipo` rely on.

If a test here fails, a script somewhere breaks silently. The contract allows *adding* keys and columns; doing so
means updating the pinned sets below on purpose (and the README), never by accident. Everything runs the
real command in a subprocess: exit codes, stdout and stderr are what a shell sees.

Pinned:
- `--format json`: one object `{run_dir, policy, metrics, summary}`; policy records
  `{method, tau, solver, context, action, prob, prob_lo, prob_hi}`; metric records
  `{method, tau, solver, context, status}` + the metrics of docs/outputs.md (and `noise`, `tv_to_exact`, `nash_gap`,
  `exploitability`) +
  `seeds, objective, detail`, with their JSON types (numbers or null for metrics, never NaN/Infinity);
  summary records (the context-weighted aggregate): the metric records' keys but `context`;
- `--format csv`: the policy records with a fixed header, `--no-header` to concatenate calls;
- `--format path`: the run directory alone; `--format table`: a table on stdout;
- stdout carries data only; messages ("wrote ...") go to stderr, and `--quiet` silences them;
- exit codes 0 (ok), 1 (runtime failure: the run could not be written), 2 (bad usage or input),
  130 (Ctrl-C), 143 (SIGTERM), each failure as one line on stderr.
"""

from __future__ import annotations

import csv
import io
import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

POLICY_KEYS = ["method", "tau", "solver", "context", "action", "prob", "prob_lo", "prob_hi"]
METRIC_NAMES = [
    "kl", "entropy", "loss", "win_rate_ref", "win_rate_mu", "reward", "tv_to_optimum", "grad_norm", "noise",
    "tv_to_exact", "nash_gap", "exploitability",
]
METRIC_KEYS = ["method", "tau", "solver", "context", "status", *METRIC_NAMES, "seeds", "objective", "detail"]
SUMMARY_KEYS = [k for k in METRIC_KEYS if k != "context"]
STATUSES = {"exact": {"optimal", "diverged", "limit"}, "gradient": {"converged", "running", "mixed"}}
FAST = ["--steps", "60", "--seeds", "3"]


def psipo(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "psipo_cli", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def ok(*args: str) -> subprocess.CompletedProcess[str]:
    result = psipo(*args)
    assert result.returncode == 0, result.stderr
    return result


def reject_nan(token: str) -> Any:
    raise AssertionError(f"non-JSON number {token} in the output")


def load_json(text: str) -> dict[str, Any]:
    """Strict JSON: `json.loads` would accept NaN and Infinity, which no other JSON reader does."""
    return json.loads(text, parse_constant=reject_nan)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_policy_record(record: dict[str, Any], actions: set[str], contexts: set[str]) -> None:
    assert list(record) == POLICY_KEYS
    assert isinstance(record["method"], str) and record["method"]
    assert is_number(record["tau"]) and record["tau"] > 0
    assert record["solver"] in ("exact", "gradient")
    assert record["context"] in contexts and record["action"] in actions
    for key in ("prob", "prob_lo", "prob_hi"):
        assert is_number(record[key]), (key, record)
    assert 0.0 <= record["prob"] <= 1.0
    if record["solver"] == "exact":
        assert record["prob_lo"] == record["prob"] == record["prob_hi"]
    else:
        assert record["prob_lo"] <= record["prob"] <= record["prob_hi"]


def check_metric_record(record: dict[str, Any], contexts: set[str]) -> None:
    assert list(record) == METRIC_KEYS
    assert isinstance(record["method"], str) and is_number(record["tau"])
    assert record["solver"] in ("exact", "gradient") and record["context"] in contexts
    assert record["status"] in STATUSES[record["solver"]]
    for name in METRIC_NAMES:
        assert record[name] is None or is_number(record[name]), (name, record)
    for name in ("kl", "entropy", "loss"):
        assert is_number(record[name]) or name in record["detail"], (name, record)
    assert isinstance(record["seeds"], int) and record["seeds"] >= 1
    assert record["objective"] in ("dataset", "population")
    assert isinstance(record["detail"], str)
    if record["solver"] == "exact":
        assert record["grad_norm"] is None and record["noise"] is None and record["tv_to_exact"] is None


def check_summary_record(record: dict[str, Any]) -> None:
    """A context-weighted summary record: the keys of a metric record but `context`."""
    assert list(record) == SUMMARY_KEYS
    assert record["solver"] in ("exact", "gradient") and is_number(record["tau"])
    assert record["status"] in STATUSES[record["solver"]] | {"mixed"}
    for name in METRIC_NAMES:
        assert record[name] is None or is_number(record[name]), (name, record)
    assert isinstance(record["seeds"], int) and isinstance(record["detail"], str)


# ============================================================================================ json
def test_run_json_document(tmp_path: Path) -> None:
    result = ok("run", "ipo", "--tau", "0.5", "--tau", "2", *FAST, "--out", str(tmp_path), "--no-plots",
                "--format", "json")
    doc = load_json(result.stdout)
    assert list(doc) == ["run_dir", "policy", "metrics", "summary"]
    run_dir = Path(doc["run_dir"])
    assert run_dir.is_dir() and run_dir.parent == tmp_path
    # stdout is the JSON document alone; the "wrote" message is on stderr.
    assert result.stderr.strip() == f"wrote {run_dir}"
    assert len(doc["policy"]) == 2 * 2 * 3  # tau x solver x action (paper-d1: a, b, c)
    for record in doc["policy"]:
        check_policy_record(record, {"a", "b", "c"}, {"default"})
    assert len(doc["metrics"]) == 2 * 2
    for record in doc["metrics"]:
        check_metric_record(record, {"default"})
        assert record["method"] == "ipo"
    assert len(doc["summary"]) == 2 * 2  # tau x solver
    for record in doc["summary"]:
        check_summary_record(record)
    # Records come in a stable order: method, tau, solver as given; actions as in the problem.
    assert [(r["tau"], r["solver"], r["action"]) for r in doc["policy"][:4]] == [
        (0.5, "exact", "a"), (0.5, "exact", "b"), (0.5, "exact", "c"), (2.0, "exact", "a")]
    gradient = [r for r in doc["metrics"] if r["solver"] == "gradient"]
    assert all(r["seeds"] == 3 and is_number(r["grad_norm"]) for r in gradient)


def test_compare_json_with_contexts_and_no_save(tmp_path: Path) -> None:
    problem = tmp_path / "two.toml"
    problem.write_text(
        'name = "two"\nactions = ["yes", "no", "maybe"]\n'
        '[[contexts]]\nname = "easy"\norder = ["yes", "maybe", "no"]\n'
        '[[contexts]]\nname = "hard"\nrewards = [0.0, 0.1, -0.1]\nweight = 3\n',
        encoding="utf-8",
    )
    result = ok("compare", "--problem", str(problem), "--methods", "dpo,ipo,psipo", "--tau", "1",
                "--solver", "exact", "--no-save", "--format", "json")
    assert result.stderr == ""  # no run directory, nothing to say
    doc = load_json(result.stdout)
    assert doc["run_dir"] is None
    for record in doc["policy"]:
        check_policy_record(record, {"yes", "no", "maybe"}, {"easy", "hard"})
    for record in doc["metrics"]:
        check_metric_record(record, {"easy", "hard"})
        assert record["objective"] == "population"
        assert is_number(record["win_rate_ref"]) and is_number(record["tv_to_optimum"])
        assert (record["reward"] is None) == (record["context"] == "easy")  # Bradley-Terry only
    assert {(r["method"], r["context"]) for r in doc["metrics"]} == {
        (m, c) for m in ("dpo", "ipo", "psipo") for c in ("easy", "hard")}
    assert [r["method"] for r in doc["summary"]] == ["dpo", "ipo", "psipo"]
    for record in doc["summary"]:
        check_summary_record(record)
        assert record["reward"] is None  # empty in context easy (not Bradley-Terry): empty in the aggregate
        assert "reward is empty in context easy" in record["detail"]


def test_json_metrics_without_a_preference_model_are_null() -> None:
    doc = load_json(ok("run", "dpo", "--problem", "paper-d3", "--solver", "exact", "--no-save", "-f", "json").stdout)
    for record in doc["metrics"]:
        check_metric_record(record, {"default"})
        for name in ("win_rate_ref", "win_rate_mu", "reward", "tv_to_optimum"):
            assert record[name] is None


# ============================================================================================ csv
def test_csv_header_rows_and_no_header() -> None:
    first = ok("run", "ipo", "--tau", "0.5", "--solver", "exact", "--no-save", "--format", "csv").stdout
    second = ok("run", "ipo", "--tau", "2", "--solver", "exact", "--no-save", "--format", "csv", "--no-header").stdout
    assert first.splitlines()[0] == ",".join(POLICY_KEYS)
    assert first.endswith("\n") and "\r" not in first
    assert len(first.splitlines()) == 1 + 3 and len(second.splitlines()) == 3
    assert not second.startswith("method,")
    rows = list(csv.DictReader(io.StringIO(first + second)))
    assert [r["tau"] for r in rows] == ["0.5"] * 3 + ["2.0"] * 3
    for row in rows:
        assert row["solver"] == "exact" and row["context"] == "default"
        assert row["prob"] == row["prob_lo"] == row["prob_hi"]
        assert float(row["prob"]) == float(repr(float(row["prob"])))  # shortest round-trip spelling


def test_csv_with_awkward_action_names_round_trips(tmp_path: Path) -> None:
    names = ['a,b', 'say "hi"', "ünïcødé", "NA", "1"]
    problem = tmp_path / "names.toml"
    problem.write_text(f"actions = {json.dumps(names, ensure_ascii=False)}\n"
                       f"order = {json.dumps(names, ensure_ascii=False)}\n", encoding="utf-8")
    out = ok("run", "ipo", "--problem", str(problem), "--tau", "1", "--solver", "exact", "--no-save", "-f", "csv")
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert [r["action"] for r in rows] == names


# ============================================================================================ path, table
def test_format_path_prints_the_run_directory_only(tmp_path: Path) -> None:
    result = ok("run", "dpo", "--solver", "exact", "--out", str(tmp_path), "--no-plots", "--format", "path", "-q")
    assert result.stderr == ""  # --quiet
    assert result.stdout.count("\n") == 1
    run_dir = Path(result.stdout.strip())
    assert run_dir.parent == tmp_path and (run_dir / "manifest.json").is_file()
    for name in ("config.json", "manifest.json", "policy.csv", "metrics.csv", "curves.csv", "report.md"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "policy.csv").read_text(encoding="utf-8").splitlines()[0] == ",".join(POLICY_KEYS)
    assert (run_dir / "metrics.csv").read_text(encoding="utf-8").splitlines()[0] == ",".join(METRIC_KEYS)
    assert (run_dir / "curves.csv").read_text(encoding="utf-8").splitlines()[0] == \
        "step,method,tau,context,action,mean,lo,hi"


def test_format_path_without_a_run_directory_is_bad_usage_before_any_work() -> None:
    start = time.monotonic()
    result = psipo("run", "dpo", "--steps", "100000000", "--no-save", "--format", "path")
    assert result.returncode == 2 and "--no-save" in result.stderr and result.stdout == ""
    assert time.monotonic() - start < 30  # rejected up front, not after 1e8 steps


def test_table_goes_to_stdout_and_messages_to_stderr(tmp_path: Path) -> None:
    result = ok("run", "ipo", "--tau", "1", "--solver", "exact", "--out", str(tmp_path), "--no-plots")
    assert "pi(a)" in result.stdout and "ipo" in result.stdout
    assert "wrote" not in result.stdout
    assert result.stderr.startswith("wrote ")


def test_problem_commands_output() -> None:
    listed = ok("problem", "list").stdout.splitlines()
    assert all(len(line.split("\t")) == 2 for line in listed)
    assert listed[0].split("\t")[0] == "paper-d1"
    assert ok("version").stdout.strip().count(".") == 2


# ============================================================================================ exit codes
@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["run", "dpo", "--tau", "0"], 2, "--tau"),
        (["run", "dpo", "--no-such-flag"], 2, "no-such-flag"),
        (["run"], 2, "method"),
        (["run", "dpo", "--problem", "missing.toml"], 2, "missing.toml"),
        (["compare", "missing-experiment.toml"], 2, "missing-experiment.toml"),
        (["plot", "."], 2, "RUN_DIR"),
        (["nonsense"], 2, "nonsense"),
    ],
)
def test_exit_code_2_is_one_line(tmp_path: Path, args: list[str], code: int, needle: str) -> None:
    result = psipo(*args, cwd=tmp_path)
    assert result.returncode == code, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in lines[0], result.stderr


def test_exit_code_1_when_the_run_cannot_be_written(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory", encoding="utf-8")
    result = psipo("run", "dpo", "--solver", "exact", "--out", str(blocker / "sub"), "--format", "json")
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("psipo: error: ") and str(blocker) in lines[0]
    assert "internal error" not in lines[0]
    assert [p.name for p in tmp_path.iterdir()] == ["a-file"]


@pytest.mark.parametrize(("sig", "code", "word"), [(signal.SIGINT, 130, "interrupted"),
                                                   (signal.SIGTERM, 143, "terminated")])
def test_exit_codes_of_signals(tmp_path: Path, sig: int, code: int, word: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "psipo_cli", "run", "dpo", "--solver", "gradient", "--steps", "100000000",
         "--out", str(tmp_path), "--format", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    time.sleep(1.5)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert out == "" and err == f"psipo: {word}\n"
    assert list(tmp_path.iterdir()) == []
