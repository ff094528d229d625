"""The loss zoo's user-facing side (issue 12, part 1): `psipo methods`, the report's sentences for the
statuses `unbounded`, `set` and `local`, and the shared multi-start search of non-convex losses."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import minimize

import psipo_cli
from psipo_cli.cli.app import app
from psipo_cli.methods import METHODS, methods_markdown
from psipo_cli.methods.pairwise.gpo import SAVAGE
from psipo_cli.methods.pairwise.multistart import multistart
from psipo_cli.outputs.report import gap_cause
from psipo_cli.outputs.tables import SolverCell

ROOT = Path(__file__).resolve().parents[1]


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        result = app(list(args), prog_name="psipo")
        code = 0 if result in (None, 0) else int(result)
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------------------------------------- psipo methods
def test_methods_json_lists_every_method_with_its_kinds(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "methods", "--format", "json")
    assert code == 0
    records = {r["method"]: r for r in json.loads(out)}
    assert list(records) == list(METHODS)
    assert records["rdpo"]["trl"] == "robust" and records["hinge"]["trl"] == "hinge"
    assert records["cdpo"]["options"] == [
        {"name": "label_smoothing", "flag": "--label-smoothing", "default": 0.1, "choices": []}
    ]
    assert [k["kind"] for k in records["rdpo"]["exact"]] == ["inflow"]
    assert [k["kind"] for k in records["hinge"]["exact"]] == ["set"]
    # GPO's kind depends on --gpo-f: logistic and exponential (type A), squared (attained), the half-line
    # minimal ones (set), Savage (not convex).
    assert {k["when"]: k["kind"] for k in records["gpo"]["exact"]} == {
        "--gpo-f logistic": "separated-limit", "--gpo-f exponential": "separated-limit", "--gpo-f squared": "attained",
        "--gpo-f truncated-quadratic": "set", "--gpo-f savage": "local", "--gpo-f hinge": "set",
    }
    assert all(r["loss"] for r in records.values())


def test_methods_markdown_is_docs_methods(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "methods", "--format", "markdown")
    assert code == 0 and out == (ROOT / "docs" / "methods.md").read_text() == methods_markdown()
    code, out, _ = cli(capsys, "methods")
    assert code == 0 and all(f"{name}  (" in out for name in METHODS)


def test_methods_bad_format_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "methods", "--format", "yaml")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and "table, json, markdown" in err


# ------------------------------------------------------------------------------------------- report sentences
def test_report_says_unbounded_and_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = cli(capsys, "compare", "--methods", "rdpo,hinge", "--problem", "D1", "--solver", "exact",
                     "--out", str(tmp_path), "--name", "zoo", "--no-plots", "--quiet")
    assert code == 0
    report = next(tmp_path.glob("*zoo*/report.md")).read_text()
    assert "rdpo is unbounded below for every tau" in report
    assert "hinge has a set of minimisers for every tau" in report
    assert "into {a}" in report and "r_a - r_b in [1, inf)" in report


def cell(status: str, detail: str = "") -> SolverCell:
    return SolverCell([0.5, 0.5], [None, None], [None, None], status=status, detail=detail)


@pytest.mark.parametrize(("exact", "key", "words"), [
    ("set", "set-valued", "the minimisers form a set"),
    ("local", "local", "not convex"),
    ("unbounded", "unbounded", "unbounded below"),
])
def test_gap_cause_explains_the_new_statuses(exact: str, key: str, words: str) -> None:
    cause, why = gap_cause(cell("converged"), cell(exact, "detail"), 0)
    assert cause == key and words in why
    if exact == "unbounded":
        cause, why = gap_cause(cell("running"), cell(exact), 0)
        assert cause == "running" and "unbounded below" in why


# --------------------------------------------------------------------------------------------- multi-start
def savage_mean(z: np.ndarray, W: np.ndarray) -> float:
    # GPO's Savage loss 1 / (1 + e^x)^2 (arXiv 2402.05749), rewritten from its definition.
    total = sum(W[w, l_] / (1.0 + math.exp(z[w] - z[l_])) ** 2 for w, l_ in zip(*np.nonzero(W), strict=True))
    return total / W.sum()


def test_multistart_finds_at_least_the_best_of_an_independent_search() -> None:
    # An independent search: Nelder–Mead on the rewritten loss from 30 seeded starts. The package's search
    # (BFGS from z = 0 and 24 Gaussian starts) must do at least as well, and its value is the loss at its point.
    W = np.array([[0, 3, 0, 1], [1, 0, 2, 0], [2, 1, 0, 3], [1, 2, 1, 0]], float)
    rng = np.random.default_rng(11)
    best = min(
        minimize(savage_mean, rng.normal(0, 2, 4), args=(W,), method="Nelder-Mead",
                 options={"xatol": 1e-10, "fatol": 1e-14, "maxiter": 20000}).fun
        for _ in range(30)
    )
    found = multistart(W, SAVAGE)
    assert found.value <= best + 1e-9
    assert savage_mean(found.z, W) == pytest.approx(found.value, abs=1e-14)
    assert found.starts == 25 and found.minima >= 1
    np.testing.assert_allclose(found.z.sum(), 0.0, atol=1e-12)  # canonical gauge: one component, zero sum


def test_savage_local_status_through_the_api() -> None:
    frames = psipo_cli.solve("cycle", "gpo", [0.5, 2.0], gpo_f="savage")
    assert set(frames.metrics["status"]) == {"local"}
    assert "best of 25 local searches" in frames.metrics["detail"].iloc[0]
