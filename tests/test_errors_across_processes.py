"""Errors that cross process boundaries: psipo's exception types survive pickling with all
their attributes, so a sweep cell that is bad input in a pool or Dask worker reports the same one line and
exit code 2 as in-process; and the grid check before any work covers every seed's dataset, so such a grid
exits 2 before the sweep directory exists, naming the cell."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from psipo_cli.cli import Terminated, app
from psipo_cli.errors import InputError, OutputError
from psipo_cli.problem import get_problem, realise
from psipo_cli.sweep.grid import with_n

# ΨPO from data needs every pair of compared actions observed (its empirical P_hat = W / (W + W^T)).
# bt-finite samples n comparisons of 4 actions; with n = 10 some of the first seeds' datasets miss a pair.
N, SEEDS = 10, 4
BAD_GRID = f"""
methods = [{{ method = "psipo", psi = "identity" }}]
problems = ["bt-finite"]
n = [{N}]
tau = [1.0]
seeds = {SEEDS}
solver = "exact"
"""


def _cli(args: list[str]) -> int:
    with pytest.raises(SystemExit) as exc:
        app(args=args)
    return int(exc.value.code or 0)


def _first_incomplete_dataset(n: int, seeds: int) -> int:
    """The first seed whose bt-finite dataset of size `n` leaves a pair of compared actions unobserved,
    read off the drawn win counts (`realise`, the problem layer's draw) — not from the check under test."""
    problem = with_n(get_problem("bt-finite"), n)
    for k in range(seeds):
        W = realise(problem, k).contexts[0].wins
        seen = (W.sum(axis=0) + W.sum(axis=1)) > 0
        unobserved = seen[:, None] & seen[None, :] & ((W + W.T) == 0) & ~np.eye(len(W), dtype=bool)
        if unobserved.any():
            return k
    raise AssertionError("every dataset is complete: pick a smaller n")


# ----------------------------------------------------------------------------------------------------------
# Pickling
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        InputError("contexts[x].pairs", [("a", "b")], "unobserved", "grid.toml"),
        InputError("--tau", np.array([0.5, -1.0]), "must be positive"),
        InputError("n", None, "missing"),
    ],
)
def test_input_error_round_trips_through_pickle(error: InputError) -> None:
    error.add_note("a note added after construction")
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        back = pickle.loads(pickle.dumps(error, protocol=protocol))
        assert type(back) is InputError
        assert (back.key, back.reason, back.where) == (error.key, error.reason, error.where)
        np.testing.assert_equal(back.value, error.value)
        assert back.line() == error.line() and str(back) == str(error) and back.args == error.args
        assert back.__notes__ == error.__notes__


def test_other_error_types_round_trip_through_pickle() -> None:
    error = OutputError("cannot write the run directory in /x: No space left on device; nothing was saved")
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is OutputError and str(back) == str(error)
    assert type(pickle.loads(pickle.dumps(Terminated()))) is Terminated


# ----------------------------------------------------------------------------------------------------------
# A bad cell in a worker: the same line and exit code whatever the executor
# ----------------------------------------------------------------------------------------------------------


@pytest.fixture
def unchecked_grid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The bad grid with the driver's pre-check switched off, so that the bad cell reaches a worker (the
    workers are spawned processes: the patch lives in the driver only)."""
    monkeypatch.setattr("psipo_cli.sweep.runner.check_solvable", lambda grid: None)
    path = tmp_path / "bad.toml"
    path.write_text(BAD_GRID, encoding="utf-8")
    return path


def _last_line(capsys: pytest.CaptureFixture[str]) -> str:
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_bad_cell_in_a_pool_worker_reads_as_in_process(unchecked_grid: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    inline = _cli(["sweep", str(unchecked_grid), "--jobs", "1", "--out", str(tmp_path / "j1"), "--no-plots"])
    inline_line = _last_line(capsys)
    pool = _cli(["sweep", str(unchecked_grid), "--jobs", "2", "--out", str(tmp_path / "j2"), "--no-plots"])
    pool_line = _last_line(capsys)
    assert inline == pool == 2
    assert pool_line == inline_line
    assert "psipo from data needs every pair" in pool_line and "BrokenProcessPool" not in pool_line


def test_bad_cell_on_a_dask_worker_reads_as_in_process(unchecked_grid: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    distributed = pytest.importorskip("distributed")
    inline = _cli(["sweep", str(unchecked_grid), "--out", str(tmp_path / "j1"), "--no-plots"])
    inline_line = _last_line(capsys)
    # A worker *process*, so that the error really is serialised on the way back.
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        code = _cli(["sweep", str(unchecked_grid), "--executor", "dask", "--scheduler", cluster.scheduler_address,
                     "--out", str(tmp_path / "dask"), "--no-plots"])
    assert code == inline == 2
    assert _last_line(capsys) == inline_line


# ----------------------------------------------------------------------------------------------------------
# ... and the grid check finds that cell before any work
# ----------------------------------------------------------------------------------------------------------


def test_every_seeds_dataset_is_checked_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad_seed = _first_incomplete_dataset(N, SEEDS)
    assert bad_seed > 0, "the test needs dataset 0 complete: a check of seed 0 alone must not suffice"
    config = tmp_path / "bad.toml"
    config.write_text(BAD_GRID, encoding="utf-8")
    out = tmp_path / "out"
    code = _cli(["sweep", str(config), "--jobs", "2", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert "psipo from data needs every pair" in err
    assert f"(problem bt-finite, n = {N}, method psipo, seed {bad_seed})" in err
    assert not out.exists()


def test_complete_datasets_pass_the_check(tmp_path: Path) -> None:
    # With enough comparisons every pair is observed in every dataset (checked on the draws themselves),
    # and the sweep runs.
    from psipo_cli.sweep.runner import run_sweep

    n = 400
    with pytest.raises(AssertionError, match="every dataset is complete"):
        _first_incomplete_dataset(n, SEEDS)
    config = tmp_path / "ok.toml"
    config.write_text(BAD_GRID.replace(f"n = [{N}]", f"n = [{n}]"), encoding="utf-8")
    run_dir = run_sweep(config, out=tmp_path / "out", quiet=True, plots=False, argv=["test"])
    assert (run_dir / "results.csv").is_file()
