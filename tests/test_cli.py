"""The `psipo` command end to end, as a shell user runs it (subprocesses: exit codes and streams are real)."""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest


def psipo(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "psipo_cli", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_help_starts_without_heavy_imports() -> None:
    # `psipo --help` must not pay for numpy/pandas/matplotlib/scipy: shell loops call psipo many times.
    code = (
        "import sys; import psipo_cli.cli; "
        "print(','.join(m for m in ('numpy', 'pandas', 'matplotlib', 'scipy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""
    result = psipo("--help")
    assert result.returncode == 0
    assert "compare" in result.stdout and "run" in result.stdout


def test_run_ipo_json_matches_contract_and_closed_form() -> None:
    result = psipo("run", "ipo", "--tau", "0.5", "--format", "json", "--solver", "exact", "--no-save")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert set(doc) == {"run_dir", "policy", "metrics", "summary"}
    assert doc["run_dir"] is None
    policy = {r["action"]: r for r in doc["policy"]}
    for record in doc["policy"]:
        assert set(record) >= {"method", "tau", "solver", "context", "action", "prob", "prob_lo", "prob_hi"}
        assert record["method"] == "ipo" and record["solver"] == "exact" and record["context"] == "default"
        assert record["prob_lo"] == record["prob"] == record["prob_hi"]
    # D1 = {a>b, b>c, a>c}: the Laplacian is 3I - 11^T and b = (2, 0, -2); on sum-zero vectors
    # Lap delta = b / (2 tau) gives delta = b / (6 tau) = (2, 0, -2) / 3 at tau = 1/2.
    z = np.exp(np.array([2.0, 0.0, -2.0]) / 3.0)
    expected = z / z.sum()
    assert [policy[a]["prob"] for a in "abc"] == pytest.approx(expected, abs=1e-12)
    (metrics,) = doc["metrics"]
    assert metrics["status"] == "optimal"
    assert set(metrics) >= {"method", "tau", "solver", "context", "status", "kl", "entropy", "loss"}
    # win rate vs pi_ref under the order a > b > c: row sums of P / 3 are (5/6, 1/2, 1/6).
    assert metrics["win_rate_ref"] == pytest.approx(expected @ np.array([5, 3, 1]) / 6, abs=1e-12)


def test_csv_calls_concatenate_into_one_table() -> None:
    first = psipo("run", "dpo", "--beta", "0.1", "--solver", "exact", "--no-save", "--format", "csv")
    second = psipo(
        "run", "dpo", "--beta", "1", "--solver", "exact", "--no-save", "--format", "csv", "--no-header"
    )
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    table = pd.read_csv(io.StringIO(first.stdout + second.stdout))
    assert list(table.columns[:8]) == ["method", "tau", "solver", "context", "action", "prob", "prob_lo", "prob_hi"]
    assert sorted(table["tau"].unique()) == [0.1, 1.0]
    # DPO on D1 diverges: all mass on a for every tau (the limit policy).
    assert table.set_index(["tau", "action"])["prob"].to_dict() == {
        (0.1, "a"): 1.0, (0.1, "b"): 0.0, (0.1, "c"): 0.0, (1.0, "a"): 1.0, (1.0, "b"): 0.0, (1.0, "c"): 0.0,
    }


@pytest.mark.parametrize(
    ("args", "key"),
    [
        (["run", "dpo", "--tau", "0"], "--tau"),
        (["run", "dpo", "--tau", "-1"], "--tau"),
        (["run", "dpo", "--tau", "abc"], "--tau"),
        (["run", "sft"], "method"),
        (["run", "dpo", "--solver", "magic"], "--solver"),
        (["run", "dpo", "--format", "xml"], "--format"),
        (["run", "dpo", "--problem", "no-such-file.toml"], "problem"),
        (["run", "dpo", "--psi", "identity"], "--psi"),
        (["run", "dpo", "--steps", "0"], "--steps"),
    ],
)
def test_bad_flags_exit_2_with_one_line(tmp_path: Path, args: list[str], key: str) -> None:
    result = psipo(*args, "--out", str(tmp_path / "out"))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert key in lines[0]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


BAD_PROBLEMS = {
    "pi_ref": ('actions = ["a", "b"]\npi_ref = [0.5, 0.6]\norder = ["a", "b"]\n', "pi_ref"),
    "negative": ('actions = ["a", "b"]\nmu = [1.5, -0.5]\norder = ["a", "b"]\n', "mu"),
    "not_complementary": ('actions = ["a", "b"]\npreferences = [[0.5, 0.7], [0.4, 0.5]]\n', "preferences"),
    "unknown_action": (
        'actions = ["a", "b"]\npairs = [{winner = "a", loser = "z"}]\n',
        "loser",
    ),
    "shape": ('actions = ["a", "b", "c"]\npreferences = [[0.5, 1.0], [0.0, 0.5]]\n', "preferences"),
    "malformed": ('actions = ["a", "b"\norder = \n', "problem"),
}


@pytest.mark.parametrize("case", sorted(BAD_PROBLEMS))
def test_bad_problem_files_exit_2_naming_the_key(tmp_path: Path, case: str) -> None:
    text, key = BAD_PROBLEMS[case]
    path = write(tmp_path, f"{case}.toml", text)
    out = tmp_path / "out"
    result = psipo("run", "ipo", "--problem", str(path), "--solver", "exact", "--out", str(out))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists() or not any(out.iterdir())
    validate = psipo("problem", "validate", str(path))
    assert validate.returncode == 2 and key in validate.stderr


def test_problem_commands() -> None:
    listed = psipo("problem", "list")
    assert listed.returncode == 0
    names = [line.split("\t")[0] for line in listed.stdout.strip().splitlines()]
    assert names == ["paper-d1", "paper-d3", "paper-two-actions", "cycle", "bt-finite"]
    shown = psipo("problem", "show", "paper-d3")
    assert shown.returncode == 0 and "(b, c)" in shown.stdout


def test_run_both_writes_a_complete_run_directory(tmp_path: Path) -> None:
    args = ["run", "ipo", "--tau", "0.5", "--tau", "2", "--steps", "300", "--seeds", "3", "--out", str(tmp_path)]
    result = psipo(*args, "--format", "path")
    assert result.returncode == 0, result.stderr
    run_dir = Path(result.stdout.strip())
    assert run_dir.parent == tmp_path and run_dir.name.endswith("-run-paper-d1")
    for name in ("config.json", "manifest.json", "policy.csv", "metrics.csv", "curves.csv", "report.md"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "figures" / "curves.png").stat().st_size > 1000
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    config = json.loads((run_dir / "config.json").read_text())
    assert config["tau"] == [0.5, 2.0] and config["steps"] == 300 and config["seeds"] == 3
    curves = pd.read_csv(run_dir / "curves.csv")
    assert curves["step"].min() == 0 and curves["step"].max() == 300
    policy = pd.read_csv(run_dir / "policy.csv")
    assert set(policy["solver"]) == {"exact", "gradient"}
    # Nothing else is left in the output root (no temporary directories).
    assert [p.name for p in tmp_path.iterdir()] == [run_dir.name]


def test_same_command_twice_gives_identical_csvs(tmp_path: Path) -> None:
    dirs = []
    for i in range(2):
        args = ["run", "dpo", "--steps", "200", "--seeds", "2", "--out", str(tmp_path / str(i)), "--no-plots"]
        result = psipo(*args, "--format", "path")
        assert result.returncode == 0, result.stderr
        dirs.append(Path(result.stdout.strip()))
    for name in ("policy.csv", "metrics.csv", "curves.csv", "config.json"):
        assert (dirs[0] / name).read_bytes() == (dirs[1] / name).read_bytes(), name


def test_plot_rerenders_from_a_copied_directory(tmp_path: Path) -> None:
    import shutil

    result = psipo("run", "dpo", "--steps", "200", "--seeds", "2", "--out", str(tmp_path / "a"), "--format", "path")
    assert result.returncode == 0, result.stderr
    copy = tmp_path / "copy"
    shutil.copytree(result.stdout.strip(), copy)
    shutil.rmtree(copy / "figures")
    replot = psipo("plot", str(copy))
    assert replot.returncode == 0, replot.stderr
    assert (copy / "figures" / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_nan_in_json_for_a_problem_without_model() -> None:
    result = psipo("run", "dpo", "--problem", "paper-d3", "--solver", "exact", "--no-save", "--format", "json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)  # json.loads would accept NaN; check explicitly
    for record in doc["metrics"]:
        for value in record.values():
            assert not (isinstance(value, float) and math.isnan(value))
        assert record["win_rate_ref"] is None
