"""`psipo diagnose DATA`: counts, per method × tau attainment, zeros and KL, differences between methods.

Datasets are written by the tests. Expected values are worked out by hand in the comments from the paper's
closed forms (arXiv 2310.12036): a prompt with one comparison `w > l` is deterministic, so DPO's (and
RLHF's) optimum is not attained and its limit is `pi(w) = 1`; IPO's optimum (Eq. 17) makes
`h = log(pi(w) pi_ref(l) / (pi(l) pi_ref(w))) = 1 / (2 tau)`, i.e. `pi(w) = sigmoid(1 / (2 tau))` under a
uniform `pi_ref`. A balanced directed cycle `a > b > c > a` is symmetric under the rotation of the actions,
and every method's unique optimum is then `pi = pi_ref` (attained, KL 0).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

TAUS = (0.1, 0.5, 1.0, 2.0)
REQUIRED = {"method", "tau", "prompts_not_attained", "completions_zeroed", "kl_mean", "kl_median", "kl_p90",
            "kl_infinite"}


def psipo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "psipo_cli", *args], capture_output=True, text=True, timeout=600)


def jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def diagnosis(path: Path, *args: str) -> dict:
    done = psipo("diagnose", str(path), "--no-save", "--format", "json", *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def by_method(doc: dict) -> dict[tuple[str, float], dict]:
    return {(r["method"], r["tau"]): r for r in doc["methods"]}


def singles(prompts: int) -> list[dict]:
    return [{"prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(prompts)]


def cycles(prompts: int) -> list[dict]:
    return [{"prompt": f"q{i}", "chosen": w, "rejected": lo} for i in range(prompts)
            for w, lo in (("a", "b"), ("b", "c"), ("c", "a"))]


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_single_comparisons_diverge_for_dpo_at_every_tau_and_never_for_ipo(tmp_path: Path) -> None:
    doc = diagnosis(jsonl(tmp_path / "singles.jsonl", singles(5)))
    # 5 prompts, 2 completions each, 1 comparison each, no ties.
    assert (doc["prompts"], doc["completions"], doc["comparisons"], doc["ties"]) == (5, 10, 5, 0)
    assert doc["comparisons_per_prompt"]["median"] == 1 and doc["completions_per_prompt"]["max"] == 2
    rows = by_method(doc)
    assert set(rows) == {(m, t) for m in ("rlhf", "dpo", "ipo") for t in TAUS}
    for tau in TAUS:
        for method in ("dpo", "rlhf"):
            r = rows[method, tau]
            # Every prompt diverges; its limit puts 1 on the winner, 0 on the loser: half the completions at 0,
            # KL = 1 * log(1 / (1/2)) = log 2 on every prompt.
            assert r["prompts_not_attained"] == 1.0 and r["prompts_not_attained_count"] == 5
            assert r["completions_zeroed"] == 0.5 and r["completions_zeroed_count"] == 5
            for key in ("kl_mean", "kl_median", "kl_p90"):
                assert r[key] == pytest.approx(math.log(2), rel=1e-12)
            assert r["kl_infinite"] == 0.0  # pi_ref > 0 everywhere: KL(pi || pi_ref) <= log 2
        r = rows["ipo", tau]
        p = sigmoid(1 / (2 * tau))
        kl = p * math.log(2 * p) + (1 - p) * math.log(2 * (1 - p))
        assert r["prompts_not_attained"] == 0.0 and r["completions_zeroed"] == 0.0
        assert r["kl_mean"] == pytest.approx(kl, rel=1e-9) and r["kl_median"] == pytest.approx(kl, rel=1e-9)
    pairs = {(r["method_a"], r["method_b"], r["tau"]): r for r in doc["pairs"]}
    for tau in TAUS:
        # DPO and RLHF coincide (same limit); IPO's favourite is the winner too, and TV(DPO, IPO) = 1 - p.
        assert pairs["rlhf", "dpo", tau]["tv_mean"] == 0.0 and pairs["rlhf", "dpo", tau]["favourite_differs"] == 0
        assert pairs["dpo", "ipo", tau]["favourite_differs"] == 0.0
        assert pairs["dpo", "ipo", tau]["tv_mean"] == pytest.approx(1 - sigmoid(1 / (2 * tau)), rel=1e-9)


def test_prompts_holding_a_directed_cycle_never_diverge(tmp_path: Path) -> None:
    doc = diagnosis(jsonl(tmp_path / "cycles.jsonl", cycles(4)), "--methods", "dpo,ipo,rlhf", "--tau", "0.2,3")
    assert (doc["prompts"], doc["completions"], doc["comparisons"]) == (4, 12, 12)
    for r in doc["methods"]:
        assert r["prompts_not_attained"] == 0.0 and r["completions_zeroed"] == 0.0, r
        assert r["kl_mean"] == pytest.approx(0.0, abs=1e-12) and r["kl_p90"] == pytest.approx(0.0, abs=1e-12)
    assert {r["tau"] for r in doc["methods"]} == {0.2, 3.0}


def test_mixed_dataset_counts_ties_and_fractions(tmp_path: Path) -> None:
    # Scored: q0 has scores 3, 1, 1 -> two comparisons (x > y, x > z) and one tie (y = z); q1 has 2, 5 -> one
    # comparison. 2 prompts, 5 completions, 3 comparisons, 1 tie. q0's comparisons are deterministic and x
    # beats both: DPO diverges there, keeping x alone; y and z are both 0. q1: one comparison, diverges, one 0.
    rows = [{"prompt": "q0", "completions": ["x", "y", "z"], "scores": [3, 1, 1]},
            {"prompt": "q1", "completions": ["u", "v"], "scores": [2, 5]}]
    doc = diagnosis(jsonl(tmp_path / "scored.jsonl", rows), "--methods", "dpo", "--tau", "1")
    assert (doc["prompts"], doc["completions"], doc["comparisons"], doc["ties"]) == (2, 5, 3, 1)
    (r,) = doc["methods"]
    assert REQUIRED <= set(r)
    assert r["prompts_not_attained"] == 1.0 and r["completions_zeroed_count"] == 3 and r["completions_zeroed"] == 0.6
    # KL of the limits: q0 log(3) (all mass on one of three), q1 log(2); mean and median (log 3 + log 2) / 2.
    assert r["kl_mean"] == pytest.approx((math.log(3) + math.log(2)) / 2, rel=1e-12)
    assert r["kl_median"] == pytest.approx((math.log(3) + math.log(2)) / 2, rel=1e-12)
    # p90 by linear interpolation between the two sorted values: log 2 + 0.9 (log 3 - log 2).
    assert r["kl_p90"] == pytest.approx(math.log(2) + 0.9 * (math.log(3) - math.log(2)), rel=1e-12)
    assert doc["pairs"] == []


def test_per_prompt_kl_equals_each_prompt_solved_as_a_toml_problem(tmp_path: Path) -> None:
    from psipo_cli import solve
    from psipo_cli.diagnose import prompt_results
    from psipo_cli.problem.datasets import read_dataset
    from psipo_cli.solvers.runs import method_spec

    rows = [{"prompt": "p", "chosen": "a", "rejected": "b"}, {"prompt": "p", "chosen": "b", "rejected": "a"},
            {"prompt": "p", "chosen": "a", "rejected": "b"}, {"prompt": "p", "chosen": "b", "rejected": "c"},
            {"prompt": "r", "chosen": "x", "rejected": "y"}, {"prompt": "r", "chosen": "y", "rejected": "x"}]
    data = read_dataset(jsonl(tmp_path / "d.jsonl", rows))
    specs = [method_spec(m) for m in ("dpo", "ipo", "rlhf")]
    results = prompt_results(data, specs, [0.5, 2.0])
    tomls = {
        0: 'actions = ["a", "b", "c"]\npairs = [{ winner = "a", loser = "b", count = 2 }, '
           '{ winner = "b", loser = "a" }, { winner = "b", loser = "c" }]\n',
        1: 'actions = ["x", "y"]\npairs = [{ winner = "x", loser = "y" }, { winner = "y", loser = "x" }]\n',
    }
    for c, text in tomls.items():
        path = tmp_path / f"p{c}.toml"
        path.write_text(text)
        frames = solve(path, ["dpo", "ipo", "rlhf"], [0.5, 2.0])
        for s, spec in enumerate(specs):
            for t, tau in enumerate((0.5, 2.0)):
                row = frames.metrics[(frames.metrics.method == spec.label) & (frames.metrics.tau == tau)].iloc[0]
                assert results.kl[s, t, c] == pytest.approx(row.kl, rel=1e-9, abs=1e-14)
                assert results.not_attained[s, t, c] == (row.status != "optimal")


def test_segment_helpers_by_hand() -> None:
    from psipo_cli.diagnose import chunk_bounds, segment_first_argmax, segment_sum

    offsets = np.array([0, 3, 4, 6])
    x = np.array([[0.2, 0.4, 0.4, 1.0, 0.5, 0.5], [0.5, 0.1, 0.4, 1.0, 0.0, 1.0]])
    # Segments [0.2, 0.4, 0.4] -> first max at 1; [1.0] -> 0; [0.5, 0.5] -> 0 (the first of equal maxima).
    np.testing.assert_array_equal(segment_first_argmax(x, offsets), [[1, 0, 0], [0, 0, 1]])
    np.testing.assert_allclose(segment_sum(x, offsets), [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
    assert chunk_bounds(10, 3) == [(0, 3), (3, 7), (7, 10)]
    assert chunk_bounds(2, 8) == [(0, 1), (1, 2)]


def test_chunks_and_workers_give_the_same_numbers(tmp_path: Path) -> None:
    from psipo_cli.diagnose import diagnose
    from psipo_cli.problem.datasets import read_dataset
    from psipo_cli.solvers.runs import method_spec
    from psipo_cli.sweep.executors import InlineExecutor

    path = jsonl(tmp_path / "mixed.jsonl", singles(3) + cycles(2) + [{"prompt": "q0", "chosen": "bad 0",
                                                                       "rejected": "good 0"}])
    data = read_dataset(path)
    specs = [method_spec(m) for m in ("dpo", "ipo")]
    whole, _ = diagnose(data, specs, TAUS)
    chunked, _ = diagnose(data, specs, TAUS, executor=InlineExecutor(), chunks=3)
    assert chunked == whole
    one = psipo("diagnose", str(path), "--no-save", "--format", "json")
    two = psipo("diagnose", str(path), "--no-save", "--format", "json", "--jobs", "2")
    assert one.returncode == 0 and two.returncode == 0, two.stderr
    assert one.stdout == two.stdout


def test_diagnose_writes_a_run_directory(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "singles.jsonl", singles(3))
    done = psipo("diagnose", str(path), "--out", str(tmp_path / "runs"), "--format", "path", "--quiet")
    assert done.returncode == 0, done.stderr
    run = Path(done.stdout.strip())
    for name in ("diagnosis.json", "methods.csv", "pairs.csv", "report.md", "config.json", "manifest.json",
                 "figures/kl_histograms.png", "figures/not_attained_vs_tau.png"):
        assert (run / name).is_file(), name
    report = (run / "report.md").read_text()
    assert "| dpo | 0.1 | 100.0% |" in report and "| ipo | 0.1 | 0.0% |" in report
    config = json.loads((run / "config.json").read_text())
    assert config["dataset"]["prompts"] == 3 and config["tau"] == list(TAUS)
    assert json.loads((run / "manifest.json").read_text())["status"] == "complete"
    doc = json.loads((run / "diagnosis.json").read_text())
    assert doc["methods"][0]["method"] == "rlhf"
    table = psipo("diagnose", str(path), "--no-save")
    assert table.returncode == 0 and "3 prompts, 6 completions, 3 comparisons" in table.stdout


@pytest.mark.parametrize(("args", "expected"), [
    (("paper-d1",), "DATA = 'paper-d1': not a preference dataset"),
    (("{missing}",), "no such file"),
    (("{data}", "--methods", "dpo,xpo"), "xpo"),
    (("{data}", "--tau", "0"), "--tau"),
    (("{data}", "--format", "path", "--no-save"), "--format = 'path': needs a run directory"),
    (("{data}", "--jobs", "0"), "--jobs = 0: must be a positive integer"),
    (("{data}", "--rm-l2", "-1"), "--rm-l2 = -1"),
    (("{data}", "--data-format", "battles"), "missing column"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path: Path, args: tuple[str, ...], expected: str) -> None:
    data = jsonl(tmp_path / "d.jsonl", singles(2))
    argv = [a.format(data=data, missing=tmp_path / "missing.jsonl") for a in args]
    done = psipo("diagnose", *argv, "--out", str(tmp_path / "runs"))
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], lines
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_dask_executor_gives_the_same_numbers(tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    path = jsonl(tmp_path / "mixed.jsonl", singles(3) + cycles(2))
    one = psipo("diagnose", str(path), "--no-save", "--format", "json")
    dask = psipo("diagnose", str(path), "--no-save", "--format", "json", "--executor", "dask", "--jobs", "2")
    assert one.returncode == 0 and dask.returncode == 0, dask.stderr
    assert one.stdout == dask.stdout
