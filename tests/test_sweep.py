"""`psipo sweep` and `psipo merge`: per-cell agreement with `psipo_cli.solve` and `psipo run`,
byte-identical `results.csv` across --jobs, chunking, shards + merge, Dask, and interruptions + --resume;
bad grids fail before any work with one line and exit 2."""

from __future__ import annotations

import csv
import glob
import io
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from psipo_cli import solve
from psipo_cli.cli import app
from psipo_cli.config.settings import GradientSettings
from psipo_cli.errors import InputError
from psipo_cli.problem import get_problem
from psipo_cli.problem.presets import preset_table
from psipo_cli.solvers.runs import method_spec
from psipo_cli.sweep.compute import RESULT_COLUMNS
from psipo_cli.sweep.grid import load_grid
from psipo_cli.sweep.merge import merge_sweeps
from psipo_cli.sweep.plan import parse_shard, plan_chunks, select
from psipo_cli.sweep.runner import run_sweep

# 3 methods × 4 tau × 3 seeds × 3 problems, one of them sampled at two dataset sizes (n = 20 is the
# preset's own size, so that cell is exactly `psipo run ... --problem bt-finite`): 48 cells, 12 chunks.
GRID = """
name = "test"
methods = ["rlhf", "dpo", { method = "ipo", label = "ipo" }]
tau = [0.1, 0.5, 1.0, 2.0]
seeds = 3
problems = ["paper-d1", "cycle", "bt-finite"]
n = [10, 20]
solver = "both"
steps = 400
chunk_cells = 4
"""
SETTINGS = GradientSettings(steps=400, seeds=3)

# A slower grid (small chunks of long runs) to interrupt midway.
SLOW_GRID = """
name = "slow"
methods = ["rlhf", "dpo", "ipo"]
tau = { min = 0.1, max = 2.0, num = 4 }
seeds = 3
problems = ["paper-d1"]
solver = "gradient"
steps = 6000
chunk_cells = 1
"""
PSIPO = [sys.executable, "-c", "import sys; from psipo_cli.cli import app; sys.exit(app())"]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def results_bytes(run_dir: Path) -> bytes:
    return (run_dir / "results.csv").read_bytes()


def rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "results.csv", encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def grid_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write(tmp_path_factory.mktemp("grid") / "grid.toml", GRID)


@pytest.fixture(scope="module")
def reference(grid_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uninterrupted, unsharded, in-process run (--jobs 1): what every other way must reproduce."""
    return run_sweep(grid_file, out=tmp_path_factory.mktemp("ref"), quiet=True, argv=["test"])


# ----------------------------------------------------------------------------------------------------------
# What a sweep computes
# ----------------------------------------------------------------------------------------------------------


def _same(field: str, expected: object) -> bool:
    if expected is None or (isinstance(expected, float) and math.isnan(expected)):
        return field == ""
    if isinstance(expected, str):
        return field == expected
    return float(field) == float(expected)  # exact: the CSV holds shortest round-trip floats


def test_layout_and_row_order(reference: Path) -> None:
    assert {p.name for p in reference.iterdir()} >= {"results.csv", "grid.json", "manifest.json", "config.toml",
                                                      "chunks", "figures"}
    table = rows(reference)
    assert list(table[0]) == RESULT_COLUMNS
    # 48 cells × 2 solvers × 1 context × (3 actions, or 4 for bt-finite)
    assert len(table) == 12 * 2 * 3 + 12 * 2 * 3 + 24 * 2 * 4
    # grid order: problems, n, methods, tau, solver, action — as listed, not by completion
    order = [(r["problem"], r["n"], r["method"], float(r["tau"]), r["solver"]) for r in table]
    rank = {p: i for i, p in enumerate(["paper-d1", "cycle", "bt-finite"])}
    mrank = {m: i for i, m in enumerate(["rlhf", "dpo", "ipo"])}
    keyed = [(rank[p], int(n or 0), mrank[m], t, s) for p, n, m, t, s in order]
    assert keyed == sorted(keyed)
    assert {r["n"] for r in table if r["problem"] != "bt-finite"} == {""}  # not sampled: no n
    assert {r["n"] for r in table if r["problem"] == "bt-finite"} == {"10", "20"}
    manifest = json.loads((reference / "manifest.json").read_text())
    assert manifest["status"] == "complete" and list(manifest)[-1] == "status"
    grid = json.loads((reference / "grid.json").read_text())
    assert len(grid["digest"]) == 64 and len(grid["chunks"]) == 12 and grid["cells"] == 48
    figures = {p.name for p in (reference / "figures").iterdir()}
    assert {"paper-d1-vs-tau.png", "bt-finite-vs-tau.png", "bt-finite-vs-n.png"} <= figures


def test_every_cell_equals_its_own_solve_call(reference: Path) -> None:
    """Cells solved in chunks (several methods and taus per engine call) equal one `psipo_cli.solve` call per
    cell: the engine's per-run streams do not depend on what else is batched."""
    cells: dict[tuple[str, str, str, str], list[dict[str, str]]] = {}
    for row in rows(reference):
        cells.setdefault((row["problem"], row["n"], row["method"], row["tau"]), []).append(row)
    assert len(cells) == 48
    for (problem, n, method, tau), got in cells.items():
        # The dataset size through the problem table itself (not through the sweep's own helper).
        spec = problem if not n else {**preset_table(problem), "sample": {"n": int(n), "seed": 0}}
        frames = solve(get_problem(spec), [method_spec(method)], [float(tau)], solver="both", settings=SETTINGS)
        metrics = {(m.solver, m.context): m for m in frames.metrics.itertuples(index=False)}
        expected = list(frames.policy.itertuples(index=False))
        assert len(expected) == len(got)
        for row, pol in zip(got, expected, strict=True):
            assert (row["solver"], row["context"], row["action"]) == (pol.solver, pol.context, pol.action)
            for name in ("prob", "prob_lo", "prob_hi"):
                assert _same(row[name], getattr(pol, name)), (problem, n, method, tau, name)
            metric = metrics[(pol.solver, pol.context)]
            for name in ("status", "kl", "entropy", "loss", "win_rate_ref", "win_rate_mu", "reward",
                         "tv_to_optimum", "grad_norm", "nash_gap", "exploitability", "seeds", "objective", "detail"):
                assert _same(row[name], getattr(metric, name)), (problem, n, method, tau, name)


@pytest.mark.parametrize(
    ("method", "tau", "problem", "n"), [("dpo", "0.5", "paper-d1", ""), ("rlhf", "2.0", "bt-finite", "20")]
)
def test_cells_equal_psipo_run(reference: Path, method: str, tau: str, problem: str, n: str) -> None:
    done = subprocess.run(
        [*PSIPO, "run", method, "--tau", tau, "--problem", problem, "--solver", "both", "--steps", "400",
         "--seeds", "3", "--format", "csv", "--no-save", "--quiet"],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    expected = list(csv.DictReader(io.StringIO(done.stdout)))
    got = [r for r in rows(reference) if (r["method"], r["tau"], r["problem"], r["n"]) == (method, tau, problem, n)]
    assert len(got) == len(expected) > 0
    for row, ref in zip(got, expected, strict=True):
        for key in ("solver", "context", "action", "prob", "prob_lo", "prob_hi"):
            assert row[key] == ref[key], key  # the same bytes, not just the same numbers


# ----------------------------------------------------------------------------------------------------------
# The same bytes whatever the scheduling
# ----------------------------------------------------------------------------------------------------------


def test_jobs_2_is_byte_identical(grid_file: Path, reference: Path, tmp_path: Path) -> None:
    run_dir = run_sweep(grid_file, jobs=2, out=tmp_path, quiet=True, plots=False, argv=["test"])
    assert results_bytes(run_dir) == results_bytes(reference)


def test_chunking_does_not_change_results(reference: Path, tmp_path: Path) -> None:
    for cells in (1, 48):
        config = write(tmp_path / f"c{cells}" / "grid.toml", GRID.replace("chunk_cells = 4", f"chunk_cells = {cells}"))
        run_dir = run_sweep(config, out=tmp_path / f"out{cells}", quiet=True, plots=False, argv=["test"])
        assert len(list((run_dir / "chunks").iterdir())) == (48 if cells == 1 else 4)
        assert results_bytes(run_dir) == results_bytes(reference)


def test_shards_then_merge_is_byte_identical(grid_file: Path, reference: Path, tmp_path: Path) -> None:
    shards = [run_sweep(grid_file, shard=f"{i}/3", out=tmp_path / "shards", quiet=True, plots=False, argv=["t"])
              for i in (1, 2, 3)]
    assert all("-shard-" in s.name for s in shards)
    assert sum(len(list((s / "chunks").iterdir())) for s in shards) == 12
    with pytest.raises(InputError, match="missing"):
        merge_sweeps(shards[:2], out=tmp_path / "merged", quiet=True)
    merged = merge_sweeps(shards, out=tmp_path / "merged", quiet=True, plots=False)
    assert results_bytes(merged) == results_bytes(reference)
    assert json.loads((merged / "manifest.json").read_text())["status"] == "complete"
    # A directory of another grid is refused: exit 2, one line.
    other = write(tmp_path / "other" / "grid.toml", GRID.replace("steps = 400", "steps = 401"))
    other_dir = run_sweep(other, shard="1/3", out=tmp_path / "other-out", quiet=True, plots=False, argv=["t"])
    result = subprocess.run([*PSIPO, "merge", str(shards[0]), str(other_dir), "--out", str(tmp_path / "m2")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "different sweep" in result.stderr and "settings" in result.stderr
    assert not (tmp_path / "m2").exists()


def test_dask_local_cluster_is_byte_identical(grid_file: Path, reference: Path, tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, protocol="tcp", host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        run_dir = run_sweep(grid_file, executor="dask", scheduler=cluster.scheduler_address, out=tmp_path,
                            quiet=True, plots=False, argv=["test"])
    assert results_bytes(run_dir) == results_bytes(reference)


def test_dask_scheduler_from_environment(grid_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("distributed")
    monkeypatch.setattr("psipo_cli.sweep.executors.CONNECT_TIMEOUT", "0.5s")
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", "tcp://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(InputError, match="cannot connect"):
        run_sweep(grid_file, executor="dask", out=tmp_path / "out", quiet=True)
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------------------------------------
# Interruptions and --resume
# ----------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def slow(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    config = write(tmp_path_factory.mktemp("slow") / "slow.toml", SLOW_GRID)
    run_dir = run_sweep(config, out=tmp_path_factory.mktemp("slow-ref"), quiet=True, plots=False, argv=["t"])
    return config, results_bytes(run_dir)


def _start_and_stop(config: Path, out: Path, sig: int, jobs: str) -> tuple[subprocess.CompletedProcess, Path]:
    proc = subprocess.Popen([*PSIPO, "sweep", str(config), "--out", str(out), "--jobs", jobs, "--no-plots"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not glob.glob(str(out / "*" / "chunks" / "*.csv")):
        assert proc.poll() is None and time.monotonic() < deadline, "the sweep ended before its first chunk"
        time.sleep(0.005)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    (run_dir,) = out.iterdir()
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), run_dir


@pytest.mark.parametrize(("sig", "jobs"), [(signal.SIGINT, "2"), (signal.SIGTERM, "2"), (signal.SIGKILL, "1")])
def test_interrupted_sweep_resumes_to_identical_results(slow: tuple[Path, bytes], tmp_path: Path, sig: int,
                                                        jobs: str) -> None:
    config, expected = slow
    stopped, run_dir = _start_and_stop(config, tmp_path, sig, jobs)
    done = list((run_dir / "chunks").glob("*.csv"))
    assert 0 < len(done) < 12, "stop the sweep midway"
    assert not (run_dir / "results.csv").exists()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    if sig in (signal.SIGINT, signal.SIGTERM):  # Ctrl-C; Slurm's time limit
        assert stopped.returncode == 128 + sig
        lines = stopped.stderr.strip().splitlines()
        assert lines[-1] == ("psipo: interrupted" if sig == signal.SIGINT else "psipo: terminated")
        assert len(lines) == 2 and f"--resume {run_dir}" in lines[0]  # the opening line says how to go on
        assert manifest["status"] == "interrupted"
    else:
        assert stopped.returncode == -signal.SIGKILL
        assert manifest["status"] == "running"
    resumed = subprocess.run([*PSIPO, "sweep", str(config), "--resume", str(run_dir), "--no-plots"],
                             capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip() == str(run_dir)
    assert f"{len(done)} of 12 chunk(s) already done" in resumed.stderr
    assert (run_dir / "results.csv").read_bytes() == expected
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete" and len(manifest["sessions"]) == 2
    assert manifest["sessions"][-1]["chunks_computed"] == 12 - len(done)  # only the missing ones
    assert not list((run_dir / "chunks").glob(".*"))  # no temporary file left behind


def test_resume_refuses_another_config(grid_file: Path, reference: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    changed = write(tmp_path / "grid.toml", GRID.replace("tau = [0.1, 0.5, 1.0, 2.0]", "tau = [0.1, 0.5, 1.0]"))
    before = sorted(p.name for p in reference.rglob("*"))
    code = _cli(["sweep", str(changed), "--resume", str(reference)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "CONFIG" in err and "differs" in err and "`tau`" in err
    assert sorted(p.name for p in reference.rglob("*")) == before
    # The same grid with other comments and formatting is the same sweep: nothing left to compute.
    same = write(tmp_path / "same.toml", "# a comment\n" + GRID.replace(" = ", "="))
    assert run_sweep(same, resume=reference, quiet=True, plots=False, argv=["t"]) == reference
    # ... but not another shard of it.
    code = _cli(["sweep", str(grid_file), "--resume", str(reference), "--shard", "1/2"])
    assert code == 2 and "--shard" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------------------
# Bad grids: one line, exit 2, nothing written
# ----------------------------------------------------------------------------------------------------------


def _cli(args: list[str]) -> int:
    with pytest.raises(SystemExit) as exc:
        app(args=args)
    return int(exc.value.code or 0)


BASE = 'methods = ["dpo", "ipo"]\nproblems = ["paper-d1"]\nsolver = "exact"\n'


@pytest.mark.parametrize(
    ("text", "key", "value"),
    [
        ('methods = ["dpo", "sft"]\nproblems = ["paper-d1"]\n', "methods", "'sft'"),
        (BASE + "tau = []\n", "tau", "[]"),
        (BASE + "tau = [0.5, 0]\n", "tau", "0"),
        (BASE + "tau = [0.5, -1.0]\n", "tau", "-1.0"),
        (BASE + "tau = { min = 0.0, max = 1.0, num = 3 }\n", "tau", "'min'"),
        ('methods = ["dpo"]\nproblems = ["paper-d1", "missing.toml"]\n', "problems", "'missing.toml'"),
        ('methods = ["dpo"]\nproblems = ["nowhere/*.toml"]\n', "problems", "'nowhere/*.toml'"),
        (BASE + "stepz = 10\n", "stepz", "10"),
        (BASE + "n = [10, 100]\n", "n", "[10, 100]"),
        (BASE + "seeds = 0\n", "seeds", "0"),
        (BASE + "batch_size = -1\n", "batch_size", "-1"),
        (BASE + 'optimizer = "rmsprop"\n', "optimizer", "'rmsprop'"),
        (BASE + "rm_l2 = 0.1\n", "rm_l2", "0.1"),
        ('methods = [{ method = "rlhf", rm_l2 = -1.0 }]\nproblems = ["paper-d1"]\n', "methods.rm_l2", "-1.0"),
        ('methods = ["psipo"]\nproblems = ["paper-d3"]\nsolver = "exact"\n', "pairs", "('a', 'c')"),
    ],
)
def test_bad_grid_fails_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, key: str,
                                        value: str) -> None:
    config = write(tmp_path / "bad.toml", text)
    out = tmp_path / "out"
    code = _cli(["sweep", str(config), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert key in err and value in err, err
    assert not out.exists()


@pytest.mark.parametrize(
    ("flags", "key"),
    [
        (["--shard", "0/3"], "--shard"),
        (["--shard", "4/3"], "--shard"),
        (["--shard", "two"], "--shard"),
        (["--jobs", "0"], "--jobs"),
        (["--executor", "ray"], "--executor"),
        (["--scheduler", "tcp://127.0.0.1:1"], "--scheduler"),
        (["--resume", "."], "--resume"),
    ],
)
def test_bad_flags_fail_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch, flags: list[str], key: str) -> None:
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    monkeypatch.chdir(tmp_path)
    config = write(tmp_path / "ok.toml", BASE)
    code = _cli(["sweep", str(config), *flags])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and key in err, err
    assert not (tmp_path / "outputs").exists()


# ----------------------------------------------------------------------------------------------------------
# Planning
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_cells", [1, 3, 4, 5, 7, 12, 100])
def test_plan_covers_every_cell_once_and_shards_partition_it(tmp_path: Path, chunk_cells: int) -> None:
    config = write(tmp_path / "g.toml", GRID.replace("chunk_cells = 4", f"chunk_cells = {chunk_cells}"))
    grid = load_grid(config)
    chunks = plan_chunks(grid)
    cells = [(c.problem, c.n, m, t) for c in chunks for m in c.methods for t in c.taus]
    assert len(cells) == len(set(cells)) == 48
    assert all(c.cells <= chunk_cells for c in chunks)
    assert cells == sorted(cells, key=lambda x: (x[0], x[1] or 0, x[2], x[3]))  # grid order
    for count in (1, 2, 5):
        parts = [select(chunks, parse_shard(f"{i}/{count}")) for i in range(1, count + 1)]
        assert sorted(c.index for part in parts for c in part) == list(range(len(chunks)))


def test_grid_resolution(tmp_path: Path) -> None:
    write(tmp_path / "problems" / "two.toml", 'actions = ["x", "y"]\npreferences = [[0.5, 0.8], [0.2, 0.5]]\n')
    write(tmp_path / "problems" / "three.toml",
          'actions = ["x", "y", "z"]\nrewards = [1.0, 0.0, -1.0]\nsample = { n = 5, seed = 3 }\n')
    config = write(tmp_path / "g.toml", 'methods = ["rlhf", "ipo"]\nproblems = ["problems/*.toml", "cycle"]\n'
                                        'tau = { min = 0.1, max = 10, num = 3 }\nrm_l2 = 0.5\nlr = 1\n')
    grid = load_grid(config)
    assert [p.key for p in grid.problems] == ["problems/three.toml", "problems/two.toml", "cycle"]
    assert [p.sampled for p in grid.problems] == [True, False, False]
    assert grid.tau == pytest.approx((0.1, 1.0, 10.0))
    assert grid.methods[0]["rm_l2"] == 0.5 and "rm_l2" not in grid.methods[1]  # only methods that take it
    assert grid.settings["lr"] == 1.0 and grid.chunk_cells == 1024 // 10
    # The identity follows the content of the problem files, not their text or location.
    digest = grid.digest()
    write(tmp_path / "problems" / "two.toml", '# same problem\nactions = ["x", "y"]\n'
                                              'preferences = [[0.5, 0.8], [0.2, 0.5]]\n')
    assert load_grid(config).digest() == digest
    write(tmp_path / "problems" / "two.toml", 'actions = ["x", "y"]\npreferences = [[0.5, 0.9], [0.1, 0.5]]\n')
    assert load_grid(config).digest() != digest


def test_cli_module_stays_light() -> None:
    code = ("import sys; import psipo_cli.cli, psipo_cli.sweep.runner, psipo_cli.sweep.executors; "
            "print(','.join(m for m in ('numpy', 'pandas', 'matplotlib', 'scipy', 'distributed') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ}).stdout
    assert out.strip() == ""


def test_results_hold_the_game_metrics(tmp_path: Path) -> None:
    # The cycle D2 with pi_ref = (0.6, 0.3, 0.1) (experiments/nash-cycle.toml): IPO returns pi_ref (each pair
    # won once each way round the cycle), nash the regularised equilibrium. The duality gap of the game
    # f(p, q) = p^T P q - tau KL(p || pi_ref) + tau KL(q || pi_ref) at pi is max_p f(p, pi) - min_q f(pi, q).
    # By the Gibbs variational principle max_p [p . v - tau KL(p || pi_ref)] = tau log sum pi_ref e^(v / tau),
    # and with P^T = 1 - P, pi^T P q = 1 - q . (P pi): gap = 2 tau (log Z + KL(pi || pi_ref)) - 1 with
    # Z = sum pi_ref exp(P pi / tau). Exploitability: max_y (P pi)_y - 1/2.
    import numpy as np
    from scipy.special import logsumexp

    P = [[0.5, 1.0, 0.0], [0.0, 0.5, 1.0], [1.0, 0.0, 0.5]]
    grid = write(
        tmp_path / "game.toml",
        'name = "game"\nmethods = ["ipo", "nash", "dpo"]\ntau = [0.5, 2.0]\nseeds = 1\nsolver = "exact"\n'
        'problems = [{ name = "cycle-skewed-ref", actions = ["a", "b", "c"], pi_ref = [0.6, 0.3, 0.1], '
        f'preferences = {P}, pairs = [{{ winner = "a", loser = "b" }}, {{ winner = "b", loser = "c" }}, '
        '{ winner = "c", loser = "a" }] }]\n',
    )
    run_dir = run_sweep(grid, out=tmp_path / "out", quiet=True, plots=False, argv=["test"])
    table = rows(run_dir)
    assert list(table[0]) == RESULT_COLUMNS and {"nash_gap", "exploitability"} <= set(RESULT_COLUMNS)
    ref, pref = np.array([0.6, 0.3, 0.1]), np.array(P)
    cells: dict[tuple[str, str, str], list[dict[str, str]]] = {}
    for row in table:
        cells.setdefault((row["problem"], row["method"], row["tau"]), []).append(row)
    gaps = {}
    for (_problem, method, tau), got in cells.items():
        pi, t = np.array([float(r["prob"]) for r in got]), float(tau)
        kl = float(np.sum(pi[pi > 0] * np.log(pi[pi > 0] / ref[pi > 0])))
        gap = 2 * t * (logsumexp(pref @ pi / t, b=ref) + kl) - 1
        assert float(got[0]["nash_gap"]) == pytest.approx(gap, abs=1e-12)
        assert float(got[0]["exploitability"]) == pytest.approx(float(np.max(pref @ pi)) - 0.5, abs=1e-12)
        gaps[(method, t)] = float(got[0]["nash_gap"])
    for t in (0.5, 2.0):
        assert gaps[("nash", t)] < 1e-12 < gaps[("ipo", t)]  # 0 only at the equilibrium
    with open(run_dir / "summary.csv", encoding="utf-8", newline="") as handle:
        summary = list(csv.DictReader(handle))
    for row in summary:  # one context: the context-weighted mean is the context's own value
        match = cells[(row["problem"], row["method"], row["tau"])][0]
        assert (row["nash_gap"], row["exploitability"]) == (match["nash_gap"], match["exploitability"])


def test_inline_problem_reads_pairs_csv_relative_to_the_grid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # An inline problem's pairs_csv is relative to the grid file, not to the working directory.
    grid_dir = tmp_path / "grids"
    write(grid_dir / "pairs.csv", "winner,loser\na,b\nb,c\na,c\n")
    grid = write(
        grid_dir / "inline.toml",
        'name = "inline"\nmethods = ["ipo"]\ntau = [0.5]\nseeds = 1\nsolver = "exact"\n'
        'problems = [{ name = "d1-csv", actions = ["a", "b", "c"], pairs_csv = "pairs.csv" }]\n',
    )
    monkeypatch.chdir(tmp_path)  # somewhere the CSV is not
    run_dir = run_sweep(grid, out=tmp_path / "out", quiet=True, plots=False, argv=["test"])
    probs = {r["action"]: float(r["prob"]) for r in rows(run_dir)}
    # The CSV holds D1: IPO's offsets are (1, 0, -1) / (3 tau) = (2, 0, -2) / 3 at tau = 1/2.
    weights = {a: math.exp(d) for a, d in zip("abc", (2 / 3, 0.0, -2 / 3), strict=True)}
    total = sum(weights.values())
    for action, weight in weights.items():
        assert probs[action] == pytest.approx(weight / total, abs=1e-12)
