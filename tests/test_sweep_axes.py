"""Sweeping solver settings and method options (a grid key given a list; README, "Sweeps").

The expected numbers come from `psipo_cli.solve` called directly with each combination of settings: the
engine's streams depend only on (root seed, seed index, context), so a cell's numbers do not depend on
which other cells share its engine call.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from psipo_cli import solve
from psipo_cli.errors import InputError
from psipo_cli.sweep.grid import load_grid, resolve_grid
from psipo_cli.sweep.plan import plan_chunks
from psipo_cli.sweep.runner import run_sweep

GRID = """\
methods = ["rlhf", "dpo"]
problems = ["paper-d1"]
tau = [0.5, 2.0]
seeds = 2
solver = "gradient"
steps = 60
lr = [0.01, 0.1]
optimizer = ["adam", "sgd"]
rm_l2 = [0, 0.1]
"""


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> Path:
    grid = tmp_path_factory.mktemp("axes") / "grid.toml"
    grid.write_text(GRID, encoding="utf-8")
    return run_sweep(grid, out=grid.parent / "out", quiet=True, plots=False, argv=["test"])


def read(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "results.csv", encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_a_column_per_swept_setting_after_n(swept: Path) -> None:
    table = read(swept)
    assert list(table[0])[:6] == ["problem", "n", "lr", "optimizer", "rm_l2", "method"]
    # 2 lr x 2 optimizers x (rlhf at 2 rm_l2 + dpo) x 2 tau x 3 actions
    assert len(table) == 2 * 2 * 3 * 2 * 3
    assert {r["rm_l2"] for r in table if r["method"] == "dpo"} == {""}  # dpo takes no rm_l2
    assert {(r["lr"], r["optimizer"], r["rm_l2"]) for r in table if r["method"] == "rlhf"} == {
        (lr, opt, l2) for lr in ("0.01", "0.1") for opt in ("adam", "sgd") for l2 in ("0.0", "0.1")
    }


def test_each_cell_is_what_solve_gives_with_its_settings(swept: Path) -> None:
    table = read(swept)
    for lr in (0.01, 0.1):
        for optimizer in ("adam", "sgd"):
            for method, rm_l2 in (("rlhf", 0.0), ("rlhf", 0.1), ("dpo", None)):
                options = {} if rm_l2 is None else {"rm_l2": rm_l2}
                frames = solve("paper-d1", method, [0.5, 2.0], solver="gradient", steps=60, seeds=2, lr=lr,
                               optimizer=optimizer, **options)
                expected = [(float(r.tau), r.action, r.prob) for r in frames.policy.itertuples()]
                got = [(float(r["tau"]), r["action"], float(r["prob"])) for r in table
                       if r["method"] == method and float(r["lr"]) == lr and r["optimizer"] == optimizer
                       and r["rm_l2"] == ("" if rm_l2 is None else repr(rm_l2))]
                assert got == expected, (lr, optimizer, method, rm_l2)


def test_cells_with_equal_settings_share_one_engine_call(tmp_path: Path) -> None:
    grid = resolve_grid({"methods": ["rlhf", "dpo", "ipo"], "problems": ["paper-d1"], "lr": [0.01, 0.1],
                         "rm_l2": [0, 0.1]}, tmp_path)
    chunks = plan_chunks(grid)
    # One chunk (one `api.solve` call) per value of the swept gradient setting; the swept method option's
    # values are lanes of that call, next to the other methods.
    assert [c.variant for c in chunks] == [0, 1]
    assert all(len(c.methods) == 4 and c.cells == 4 * 4 for c in chunks)
    assert [grid.gradient_settings(grid.variants()[c.variant]).lr for c in chunks] == [0.01, 0.1]


def test_a_scalar_means_what_it_meant(tmp_path: Path) -> None:
    grid = resolve_grid({"methods": ["rlhf"], "problems": ["paper-d1"], "lr": 1, "rm_l2": 0.5}, tmp_path)
    # The identity of a grid without lists: the settings with their README defaults, method options in the
    # methods (as before sweeps of settings existed: resuming an older sweep directory still works).
    assert grid.identity()["settings"] == {"steps": 18000, "lr": 1.0, "batch_size": 9, "optimizer": "adam",
                                           "seed": 0, "rm_steps": None, "eps": 1e-6}
    assert grid.identity()["methods"] == [{"method": "rlhf", "rm_l2": 0.5, "label": "rlhf"}]
    assert grid.axes() == () and grid.variants() == [{}] and len(plan_chunks(grid)) == 1


@pytest.mark.parametrize(
    ("extra", "key", "reason"),
    [
        ({"lr": [0.1, -1]}, "lr", "must be a positive finite number"),
        ({"batch_size": [9, 9]}, "batch_size", "listed twice"),
        ({"optimizer": []}, "optimizer", "give at least one value"),
        ({"optimizer": ["adam", "rmsprop"]}, "optimizer", "must be one of adam, sgd"),
        ({"rm_l2": [0.1, -1]}, "rm_l2", "must be a non-negative finite number"),
    ],
)
def test_bad_swept_values_are_rejected_before_any_work(extra: dict, key: str, reason: str, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=reason) as exc:
        resolve_grid({"methods": ["rlhf"], "problems": ["paper-d1"], **extra}, tmp_path)
    assert exc.value.key == key


def test_a_swept_option_no_method_takes_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no method in methods takes this option"):
        resolve_grid({"methods": ["dpo"], "problems": ["paper-d1"], "rm_l2": [0, 0.1]}, tmp_path)


def test_a_swept_directory_resumes_to_the_same_bytes(swept: Path) -> None:
    config = swept / "config.toml"
    before = (swept / "results.csv").read_bytes()
    (swept / "results.csv").unlink()
    assert load_grid(config).axes() == ("lr", "optimizer", "rm_l2")
    again = run_sweep(config, resume=swept, quiet=True, plots=False, argv=["test"])
    assert again == swept and (swept / "results.csv").read_bytes() == before
