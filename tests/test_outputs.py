"""The outputs layer: atomic run directories, byte-stable CSVs, figures, report, tables and JSON records.

Exact frames come from `psipo_cli.solve` (paper-d1, paper-d3); gradient rows and learning curves are
synthetic (built here), so these tests do not depend on the gradient engine.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import math
import os
import shutil
import struct
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import psipo_cli
from psipo_cli.errors import OutputError
from psipo_cli.outputs import (
    RunDirectory,
    build_report,
    comparison_table,
    csv_text,
    json_document,
    metric_records,
    policy_csv,
    policy_records,
    read_frame,
    render_figures,
    render_frames,
    render_report,
    rewrite_report,
    summary_table,
    tau_grid_frame,
    write_figures,
)
from psipo_cli.outputs.formatting import fmt_prob, json_safe
from psipo_cli.outputs.report import method_findings
from psipo_cli.outputs.tables import comparison_rows

METHODS = ["dpo", "ipo", "rlhf"]
TAUS = [0.1, 0.5, 1, 2]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
POLICY_COLUMNS = ["method", "tau", "solver", "context", "action", "prob", "prob_lo", "prob_hi"]
CONFIG = {
    "command": "compare",
    "problem": {"name": "paper-d1", "description": "D1, each pair once", "source": "preset:paper-d1"},
    "methods": METHODS,
    "tau": TAUS,
    "solver": "both",
    "gradient": {"optimizer": "adam", "lr": 0.01, "steps": 2000, "batch_size": 9, "seeds": 5},
}


# -- synthetic gradient results ------------------------------------------------------------------------
def with_gradient(frames: psipo_cli.api.Frames, steps: int = 2000) -> tuple[pd.DataFrame, ...]:
    """Exact frames plus made-up gradient rows and curves that approach the exact policy.

    IPO's runs converge onto the exact policy; the others stop short of it with status "running", as
    DPO on separable data does.
    """
    grid = np.unique(np.r_[0, np.geomspace(1, steps, 20).round()]).astype(int)
    curve_rows, policy_rows, metric_rows = [], [], []
    for (method, tau, context), group in frames.policy.groupby(["method", "tau", "context"], sort=False):
        target = group["prob"].to_numpy()
        start = np.full(len(target), 1 / len(target))
        reach = 1.0 if method == "ipo" else 0.95
        progress = 1 - np.exp(-grid / (steps / 10))
        half = 0.04 * np.exp(-grid / steps) * (grid > 0)
        for k, action in enumerate(group["action"]):
            mean = start[k] + (target[k] - start[k]) * progress * reach
            lo, hi = np.clip(mean - half, 0, 1), np.clip(mean + half, 0, 1)
            curve_rows += [
                (int(s), method, tau, context, action, m, a, b)
                for s, m, a, b in zip(grid, mean, lo, hi, strict=True)
            ]
            policy_rows.append((method, tau, "gradient", context, action, mean[-1], lo[-1], hi[-1]))
        exact = frames.metrics[
            (frames.metrics["method"] == method) & (frames.metrics["tau"] == tau)
            & (frames.metrics["context"] == context)
        ].iloc[0]
        row = exact.to_dict()
        win = row["win_rate_ref"]
        row.update(
            solver="gradient", status="converged" if method == "ipo" else "running", kl=row["kl"] * 0.95,
            win_rate_ref=None if win is None or math.isnan(win) else win - 0.005, seeds=5,
            grad_norm=1e-3, detail="",
        )
        metric_rows.append(row)
    policy = pd.concat([frames.policy, pd.DataFrame(policy_rows, columns=frames.policy.columns)])
    metrics = pd.concat([frames.metrics, pd.DataFrame(metric_rows)[frames.metrics.columns]])
    curves = pd.DataFrame(
        curve_rows, columns=["step", "method", "tau", "context", "action", "mean", "lo", "hi"]
    )
    return policy.reset_index(drop=True), metrics.reset_index(drop=True), curves


@pytest.fixture(scope="module")
def d1() -> psipo_cli.api.Frames:
    return psipo_cli.solve("paper-d1", METHODS, TAUS)


@pytest.fixture(scope="module")
def d1_grid() -> pd.DataFrame:
    dense = psipo_cli.solve("paper-d1", METHODS, list(np.geomspace(0.05, 5, 25)))
    return tau_grid_frame(dense.policy, dense.metrics)


@pytest.fixture(scope="module")
def d1_both(d1: psipo_cli.api.Frames) -> tuple[pd.DataFrame, ...]:
    return with_gradient(d1)


@pytest.fixture(scope="module")
def d1_run(tmp_path_factory: pytest.TempPathFactory, d1_both, d1_grid) -> RunDirectory:
    """A complete run directory, as `psipo compare` would write it (shared: rendering takes a second)."""
    return run_all(tmp_path_factory.mktemp("runs"), d1_both, d1_grid)


@pytest.fixture(scope="module")
def d3() -> psipo_cli.api.Frames:
    return psipo_cli.solve("paper-d3", METHODS, [0.1, 1])


def assert_png(path: Path) -> None:
    """A real, non-trivial PNG: signature, IHDR dimensions, and more than a blank image's bytes."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, path
    width, height = struct.unpack(">II", data[16:24])
    assert width >= 300 and height >= 200, (path, width, height)
    assert len(data) > 10_000, (path, len(data))


def run_all(root: Path, frames: tuple[pd.DataFrame, ...], grid: pd.DataFrame | None) -> RunDirectory:
    """What `psipo compare` does with the outputs layer, warnings turned into errors."""
    policy, metrics, curves = frames
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        argv = ["psipo", "compare"]
        with RunDirectory(root, "compare", "paper-d1", CONFIG, argv=argv, seeds=[0]) as rd:
            assert rd.path == rd.work and rd.final_path is None
            rd.write_frames(policy=policy, metrics=metrics, curves=curves, tau_grid=grid)
            figures = render_frames(rd.path, policy, metrics, curves, grid, CONFIG)
            rd.write_text("report.md", render_report(CONFIG, policy, metrics, figures))
    assert rd.path == rd.final_path
    return rd


def listing(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir())


# -- layout --------------------------------------------------------------------------------------------
def test_column_layouts_match_the_api() -> None:
    from psipo_cli import api
    from psipo_cli.outputs import formatting

    assert formatting.POLICY_COLUMNS == api.POLICY_COLUMNS
    assert formatting.METRIC_COLUMNS == api.METRIC_COLUMNS
    assert formatting.CURVE_COLUMNS == api.CURVE_COLUMNS
    assert formatting.TAU_GRID_COLUMNS == getattr(api, "TAU_GRID_COLUMNS", formatting.TAU_GRID_COLUMNS)
    assert formatting.SUMMARY_COLUMNS == api.SUMMARY_COLUMNS
    assert formatting.REWARD_COLUMNS == api.REWARD_COLUMNS
    assert formatting.RUN_COLUMNS == api.RUN_COLUMNS
    assert formatting.LOGIT_GAP_COLUMNS == api.LOGIT_GAP_COLUMNS
    assert formatting.SUMMARY_COLUMNS == [c for c in formatting.METRIC_COLUMNS if c != "context"]


def test_importing_outputs_is_light() -> None:
    import subprocess
    import sys

    code = (
        "import sys, psipo_cli.outputs; "
        "print(sorted(m for m in ('pandas', 'matplotlib', 'rich') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# -- run directories -------------------------------------------------------------------------------------
def test_run_directory_layout(d1_run: RunDirectory) -> None:
    rd = d1_run
    assert rd.path is not None
    assert listing(rd.path.parent) == [rd.path.name]  # no temporary directory left
    stamp, command, name = rd.path.name[:15], rd.path.name[16:23], rd.path.name[24:]
    dt.datetime.strptime(stamp, "%Y%m%d-%H%M%S")
    assert (command, name) == ("compare", "paper-d1")
    files = {p.relative_to(rd.path).as_posix() for p in rd.files}
    assert {
        "config.json", "manifest.json", "policy.csv", "metrics.csv", "curves.csv", "tau_grid.csv",
        "report.md", "figures/curves.png", "figures/policy_vs_tau.png", "figures/frontier.png",
    } <= files
    config = json.loads((rd.path / "config.json").read_text())
    assert list(config) == sorted(config) and config["tau"] == TAUS
    manifest = json.loads((rd.path / "manifest.json").read_text())
    assert list(manifest)[-1] == "status" and manifest["status"] == "complete"
    assert manifest["versions"]["psipo"] == psipo_cli.__version__
    assert {"numpy", "scipy", "pandas", "matplotlib"} <= set(manifest["versions"])
    assert manifest["argv"] == ["psipo", "compare"] and manifest["seeds"] == [0]
    assert manifest["started"] <= manifest["finished"]
    assert manifest["git_commit"] is None or len(manifest["git_commit"]) == 40


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
def test_failed_run_leaves_nothing(tmp_path: Path, d1: psipo_cli.api.Frames, error: BaseException) -> None:
    with pytest.raises(type(error)):
        with RunDirectory(tmp_path, "run", "x", {"a": 1}) as rd:
            rd.write_frames(d1.policy, d1.metrics)
            assert rd.work.parent == tmp_path and rd.work.name.startswith(".tmp-")
            assert (rd.work / "policy.csv").is_file()
            raise error
    assert listing(tmp_path) == []
    assert rd.path is None


def test_unserialisable_config_fails_cleanly(tmp_path: Path) -> None:
    class Weird:
        def __str__(self) -> str:
            raise RuntimeError("no str")

    with pytest.raises(RuntimeError):
        with RunDirectory(tmp_path, "run", "x", {"bad": Weird()}):
            pass
    assert listing(tmp_path) == []


def test_name_collisions_get_a_suffix(tmp_path: Path) -> None:
    now = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=dt.UTC)
    paths = []
    for _ in range(3):
        with RunDirectory(tmp_path, "run", "paper-d1", {}, clock=lambda: now) as rd:
            rd.write_text("note.txt", "x\n")
        paths.append(rd.path.name)
    base = "20240501-120000-run-paper-d1"
    assert paths == [base, f"{base}-2", f"{base}-3"]
    assert listing(tmp_path) == sorted(paths)


def test_names_are_sanitised(tmp_path: Path) -> None:
    now = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=dt.UTC)
    with RunDirectory(tmp_path, "run", "problems/my file.toml", {}, clock=lambda: now) as rd:
        pass
    assert rd.path.name == "20240501-120000-run-problems-my-file"
    with RunDirectory(tmp_path, "compare", "", {}, clock=lambda: now) as rd:
        pass
    assert rd.path.name == "20240501-120000-compare"


def test_bad_roots_raise_output_error(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="does not exist"):
        with RunDirectory(tmp_path / "missing", "run", "x", {}):
            pass
    afile = tmp_path / "afile"
    afile.write_text("")
    with pytest.raises(OutputError, match="not a directory"):
        with RunDirectory(afile, "run", "x", {}):
            pass
    with RunDirectory(tmp_path / "new" / "root", "run", "x", {}, create_root=True) as rd:
        pass
    assert rd.path.is_dir()


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_root_raises_output_error(tmp_path: Path) -> None:
    root = tmp_path / "ro"
    root.mkdir()
    root.chmod(0o555)
    try:
        with pytest.raises(OutputError, match="not writable"):
            with RunDirectory(root, "run", "x", {}):
                pass
    finally:
        root.chmod(0o755)


def test_read_only_root_is_reported_even_as_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Root bypasses permission bits, so simulate the failed access check.
    monkeypatch.setattr(os, "access", lambda *args, **kwargs: False)
    with pytest.raises(OutputError, match="not writable"):
        with RunDirectory(tmp_path, "run", "x", {}):
            pass
    assert listing(tmp_path) == []


# -- CSV and JSON files ----------------------------------------------------------------------------------
def test_csvs_are_byte_identical_for_the_same_frames(tmp_path: Path, d1_both, d1_grid) -> None:
    policy, metrics, curves = d1_both
    first, second = [], []
    for out in (first, second):
        with RunDirectory(tmp_path, "run", "same", CONFIG, argv=[], seeds=[0]) as rd:
            rd.write_frames(policy, metrics, curves, tau_grid=d1_grid)
        out.append(rd.path)
    for name in ("policy.csv", "metrics.csv", "curves.csv", "tau_grid.csv", "config.json"):
        a, b = (first[0] / name).read_bytes(), (second[0] / name).read_bytes()
        assert a == b, name
        assert b"\r" not in a and a.endswith(b"\n")
    header = (first[0] / "policy.csv").read_text().splitlines()[0]
    assert header == "method,tau,solver,context,action,prob,prob_lo,prob_hi"


def test_csv_round_trip_is_exact(tmp_path: Path, d1_both, d1_grid) -> None:
    # Writing, reading and writing again gives the same bytes: floats are spelled exactly (repr).
    policy, metrics, curves = d1_both
    for name, frame in {"policy": policy, "metrics": metrics, "curves": curves, "tau_grid": d1_grid}.items():
        path = tmp_path / f"{name}.csv"
        path.write_text(csv_text(frame))
        assert csv_text(read_frame(path)) == path.read_text(), name


def test_csv_spelling() -> None:
    frame = pd.DataFrame(
        {
            "method": ["dpo", "ipo"], "tau": [0.1, 2.0], "solver": ["exact"] * 2,
            "context": ["default"] * 2, "action": ["NA", "1"], "prob": [1e-17, -0.0],
            "prob_lo": [float("nan"), None], "prob_hi": [1 / 3, 1.0],
        }
    )
    text = csv_text(frame)
    assert text.splitlines()[1:] == [
        "dpo,0.1,exact,default,NA,1e-17,,0.3333333333333333",
        "ipo,2.0,exact,default,1,0.0,,1.0",
    ]


def test_empty_curves_are_written_as_a_header(tmp_path: Path, d1: psipo_cli.api.Frames) -> None:
    with RunDirectory(tmp_path, "run", "exact", {}) as rd:
        rd.write_frames(d1)  # a whole `Frames`: its curves are empty (exact only)
    text = (rd.path / "curves.csv").read_text()
    assert text == "step,method,tau,context,action,mean,lo,hi\n"
    assert read_frame(rd.path / "curves.csv").empty


def test_json_records_have_no_nan(d3: psipo_cli.api.Frames, d1_both) -> None:
    # paper-d3 has no preference model: the win rates are unknown and must be null, not NaN.
    policy, metrics, _ = d1_both
    for frames in (d3, (policy, metrics)):
        pol = policy_records(frames if not isinstance(frames, tuple) else frames[0])
        met = metric_records(frames if not isinstance(frames, tuple) else frames[1])
        json.dumps({"policy": pol, "metrics": met}, allow_nan=False)  # raises on NaN
        assert list(pol[0]) == POLICY_COLUMNS
        assert list(met[0])[:5] == ["method", "tau", "solver", "context", "status"]
        for rec in pol + met:
            for value in rec.values():
                assert value is None or isinstance(value, str | int | float)
                assert not (isinstance(value, float) and not math.isfinite(value))
    met = metric_records(d3)
    assert all(r["win_rate_ref"] is None and r["reward"] is None for r in met)
    assert all(isinstance(r["seeds"], int) and isinstance(r["tau"], float) for r in met)
    doc = json.loads(json_document(d3, run_dir=Path("outputs/x")))
    assert doc["run_dir"] == "outputs/x" and len(doc["policy"]) == len(d3.policy)
    assert json.loads(json_document(d3))["run_dir"] is None


def test_policy_csv_concatenates(d1: psipo_cli.api.Frames, d3: psipo_cli.api.Frames) -> None:
    text = policy_csv(d1) + policy_csv(d3, header=False)
    table = pd.read_csv(io.StringIO(text))
    assert list(table.columns) == POLICY_COLUMNS
    assert len(table) == len(d1.policy) + len(d3.policy)
    assert not policy_csv(d3, header=False).startswith("method,")


def test_json_safe_config() -> None:
    cfg = {
        "tau": np.array([0.1, 1.0]), "seed": np.int64(3), "path": Path("a/b"), "pairs": ({"w": "a"},),
        "bad": float("nan"), "big": float("inf"), 1: {"set": {"b", "a"}},
    }
    safe = json_safe(cfg)
    json.dumps(safe, allow_nan=False)
    assert safe == {
        "tau": [0.1, 1.0], "seed": 3, "path": "a/b", "pairs": [{"w": "a"}], "bad": None, "big": None,
        "1": {"set": ["a", "b"]},
    }


def test_probabilities_are_formatted_honestly() -> None:
    assert fmt_prob(0.0) == "0" and fmt_prob(1.0) == "1"
    assert fmt_prob(0.964370) == "0.964"
    assert fmt_prob(1.2e-5) == "1e-05"  # tiny is not zero
    assert fmt_prob(1 - 3e-7) == "1-3e-07"  # almost one is not one
    assert fmt_prob(0.99962) == "0.9996"
    assert fmt_prob(float("nan")) == "-"


# -- figures ----------------------------------------------------------------------------------------------
def test_figures_are_valid_pngs_without_warnings(tmp_path: Path, d1_both, d1_grid) -> None:
    policy, metrics, curves = d1_both
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        paths = write_figures(tmp_path, policy, metrics, curves, d1_grid, problem="paper-d1")
    assert [p.name for p in paths] == ["curves.png", "policy_vs_tau.png", "frontier.png"]
    for path in paths:
        assert_png(path)


def test_figures_skip_what_is_not_there(tmp_path: Path, d3: psipo_cli.api.Frames) -> None:
    # Exact only (no curves) and no preference model (no win rate): only policy_vs_tau can be drawn,
    # from the run's own tau values since there is no dense grid either.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        paths = write_figures(tmp_path, d3.policy, d3.metrics, d3.curves, None, problem="paper-d3")
    assert [p.name for p in paths] == ["policy_vs_tau.png"]
    assert_png(paths[0])
    # With a dense grid the win rate is still unknown (null → NaN), so still no frontier.
    grid = tau_grid_frame(d3.policy, d3.metrics)
    assert grid["win_rate_ref"].isna().all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        paths = write_figures(tmp_path / "grid", d3.policy, d3.metrics, None, grid, problem="paper-d3")
    assert [p.name for p in paths] == ["policy_vs_tau.png"]


def test_several_contexts_get_one_figure_each(tmp_path: Path, d1_both, d1_grid) -> None:
    def two(frame: pd.DataFrame) -> pd.DataFrame:
        # Two methods and two taus are enough here (and keep the six figures quick to draw).
        frame = frame[frame["method"].isin(["dpo", "ipo"]) & frame["tau"].isin([0.1, 1.0])]
        parts = [frame.assign(context="short"), frame.assign(context="long prompt")]
        return pd.concat(parts, ignore_index=True)

    policy, metrics, curves = (two(f) for f in d1_both)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        paths = write_figures(tmp_path, policy, metrics, curves, two(d1_grid), problem="paper-d1")
    names = sorted(p.name for p in paths)
    assert names == sorted(
        f"{stem}-{ctx}.png"
        for stem in ("curves", "policy_vs_tau", "frontier")
        for ctx in ("short", "long-prompt")
    )
    report = build_report(policy, metrics, CONFIG, paths)
    assert "| context |" in report.replace("| tau | context |", "| context |")
    assert "in context short it" in report


def test_render_figures_from_a_copied_directory(
    tmp_path: Path, d1_run: RunDirectory, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = tmp_path / "elsewhere" / "copied-run"
    shutil.copytree(d1_run.path, copy)
    originals = {p.name: p.stat().st_size for p in (copy / "figures").iterdir()}
    shutil.rmtree(copy / "figures")

    # Re-rendering must not solve anything nor look for the problem.
    def forbidden(*args, **kwargs):
        raise AssertionError("render_figures must only read the run directory")

    monkeypatch.setattr(psipo_cli, "solve", forbidden)
    monkeypatch.setattr("psipo_cli.problem.get_problem", forbidden)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        paths = render_figures(copy)
    assert sorted(p.name for p in paths) == ["curves.png", "frontier.png", "policy_vs_tau.png"]
    assert all(p.parent == copy / "figures" for p in paths)
    for path in paths:
        assert_png(path)
    assert {p.name: p.stat().st_size for p in paths} == originals  # the same pictures as the run's
    report = rewrite_report(copy).read_text()
    assert "](figures/curves.png)" in report


def test_render_figures_rejects_a_non_run_directory(tmp_path: Path) -> None:
    from psipo_cli.errors import InputError

    with pytest.raises(InputError, match=r"no policy\.csv"):
        render_figures(tmp_path)


# -- report ------------------------------------------------------------------------------------------------
def findings_section(report: str) -> list[str]:
    section = report.split("## What the exact solver found\n\n", 1)[1].split("\n\n", 1)[0]
    return section.splitlines()


def test_report_has_one_sentence_per_method(d1_run: RunDirectory) -> None:
    report = (d1_run.path / "report.md").read_text()
    assert report.startswith("# psipo compare: paper-d1\n")
    lines = findings_section(report)
    assert len(lines) == len(METHODS)
    assert lines[0] == "- DPO diverged for every tau: pi(b) = pi(c) = 0, whatever tau."
    assert lines[1].startswith("- IPO is optimal for every tau and stays strictly inside the simplex;")
    assert "from 0.964 at tau = 0.1 to 0.390 at tau = 2." in lines[1]
    assert lines[2].startswith("- RLHF diverged for every tau")
    for line in lines:
        assert line.count(". ") == 0 and line.endswith(".")
    # The table, the figures and the gradient note.
    header = "| method | tau | exact policy | exact KL | exact win rate | exact status | gradient policy"
    assert header in report
    assert "| ipo | 0.1 | a 0.964 · b 0.034 · c 0.001 |" in report
    for name in ("curves", "policy_vs_tau", "frontier"):
        assert f"](figures/{name}.png)" in report
    notes = report.split("## Gradient against exact (last step)\n\n", 1)[1].split("\n\n", 1)[0]
    assert "DPO at tau = 0.1, 0.5, 1, 2" in notes and "still moving (status running)" in notes
    assert "IPO" not in notes  # IPO's synthetic runs land on the exact policy


def test_report_findings_on_other_problems(d3: psipo_cli.api.Frames) -> None:
    sentences = method_findings(comparison_rows(d3.policy, d3.metrics))
    assert sentences["dpo"] == "DPO diverged for every tau: pi(c) = 0, whatever tau."
    rlhf = psipo_cli.solve("paper-d1", "rlhf", [0.1, 1], rm_l2=0.1)
    sentence = method_findings(comparison_rows(rlhf.policy, rlhf.metrics))["rlhf"]
    assert sentence.startswith("RLHF is optimal for every tau and stays strictly inside the simplex")
    single = psipo_cli.solve("paper-d1", "ipo", 0.5)
    assert method_findings(comparison_rows(single.policy, single.metrics))["ipo"] == (
        "IPO is optimal at tau = 0.5 and stays strictly inside the simplex: pi = a 0.563 · b 0.289 · c 0.148."
    )
    report = build_report(d3.policy, d3.metrics, {"problem": "paper-d3"}, [])
    assert len(findings_section(report)) == len(METHODS)
    assert "no gradient run" in report and "no preference model" in report
    assert "exact win rate" not in report


# -- terminal table --------------------------------------------------------------------------------------
def test_comparison_table(d1_both, d3: psipo_cli.api.Frames) -> None:
    from rich.console import Console

    def render(table, width: int = 250) -> str:
        console = Console(width=width, record=True, color_system=None)
        console.print(table)
        return console.export_text()

    policy, metrics, _ = d1_both
    # Wide: exact and gradient side by side, one row per method and tau.
    text = render(comparison_table(policy, metrics, title="paper-d1", width=250))
    for needle in ("exact", "gradient", "pi(a)", "win rate", "diverged", "running", "converged", "0.964"):
        assert needle in text
    assert sum(line.split()[:1] == ["dpo"] for line in text.splitlines()) == len(TAUS)
    # Long: one block per method and tau (a row per action and metric, a column per solver), and it fits
    # an 80-column terminal without truncating anything.
    text = render(comparison_table(policy, metrics, title="paper-d1", width=80), width=80)
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 80
    assert sum(line.split()[:1] == ["dpo"] for line in text.splitlines()) == len(TAUS)
    rows = [line.split() for line in text.splitlines()]
    # with_gradient: dpo's gradient pi(a) = 1/3 + (2/3)(0.95)(1 - e^-10) = 0.96664 -> "0.967".
    assert ["dpo", "0.1", "pi(a)", "1", "0.967"] in rows
    assert ["KL", "1.099"] == rows[rows.index(["dpo", "0.1", "pi(a)", "1", "0.967"]) + 3][:2]
    assert ["status", "diverged", "running"] in rows
    # Exact only, policy on one line, no preference model.
    text = render(comparison_table(d3, action_columns=False))
    assert "a 0.500 · b 0.500 · c 0" in text and "win rate" not in text and "gradient" not in text
    assert render(summary_table(d3, psipo_cli.problem.get_problem("paper-d3"))).startswith("paper-d3")


def test_report_explains_the_one_minus_spelling(tmp_path: Path) -> None:
    # DPO on D1 at tau 0.5 after the paper's 18,000 Adam steps: pi(a) = 1 - 4e-11 (seed 0), printed `1-4e-11`
    # by fmt_prob, a spelling a reader cannot guess; the report must say what it means under the table.
    from psipo_cli.outputs.report import render_report

    frames = psipo_cli.solve("paper-d1", ["dpo"], [0.5], solver="gradient", seeds=1)
    pi_a = frames.policy.loc[frames.policy["action"] == "a", "prob"].item()
    assert fmt_prob(pi_a).startswith("1-")
    config = {"command": "run", "name": "t", "problem": "paper-d1", "tau": [0.5], "solver": "gradient"}
    text = render_report(config, frames.policy, frames.metrics, [])
    gap = fmt_prob(pi_a)[2:]
    assert f"{fmt_prob(pi_a)} means 1 - {gap} (one minus {gap})" in text
    # and a report without such a number does not carry the note
    exact = psipo_cli.solve("paper-d1", ["ipo"], [1.0])
    assert "one minus" not in render_report(config, exact.policy, exact.metrics, [])


def test_csv_text_is_the_csv_modules_text_cell_by_cell() -> None:
    # The column-wise writer must give the bytes of `csv.writer` over `csv_cell` cells, row by row, for
    # every kind of cell: quotes, commas, newlines, missing values, -0.0, infinities, ints, mixed objects.
    import csv
    import io

    import numpy as np
    import pandas as pd

    from psipo_cli.outputs.formatting import csv_cell, csv_chunks, csv_text

    frame = pd.DataFrame({
        "text": ['plain', 'a,b', 'say "hi"', 'two\nlines', '', None, 'cr\r', 'plain'],
        "prob": [0.1, -0.0, np.nan, np.inf, 1e-17, 1 / 3, 2.0, -np.inf],
        "n": np.arange(8),
        "mixed": [1, 1.0, True, "1", None, np.nan, [1, 2], "x"],
        "flag": [True, False] * 4,
    })
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(list(frame.columns))
    for row in frame.itertuples(index=False):
        writer.writerow([csv_cell(v) for v in row])
    assert csv_text(frame) == buffer.getvalue()
    assert "".join(csv_chunks(frame, rows=3)) == buffer.getvalue()
    single = pd.DataFrame({"only": ["", "a"]})
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows([["only"], [""], ["a"]])
    assert csv_text(single) == buffer.getvalue()
