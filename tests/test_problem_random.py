"""`psipo problem random`: deterministic in the seed, a valid problem file, and each kind with the structure it
promises (checked on the matrix from its definition: sigmoid of reward differences, P + P^T = 1, who beats whom
on the circle)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from psipo_cli.cli import app
from psipo_cli.errors import InputError
from psipo_cli.problem import build_problem, load_problem
from psipo_cli.problem.random_games import random_table


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        app(list(args), prog_name="psipo")
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("kind", ["bt", "nontransitive", "cyclic"])
def test_same_seed_same_bytes_and_a_valid_file(kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["problem", "random", "--actions", "6", "--kind", kind, "--seed", "4"]
    code, first, _ = cli(capsys, *args)
    assert code == 0
    assert cli(capsys, *args)[1] == first
    assert cli(capsys, *args[:-1], "5")[1] != first
    path = tmp_path / "game.toml"
    code, out, _ = cli(capsys, *args, "--output", str(path))
    assert code == 0 and out == "" and path.read_text() == first
    problem = load_problem(path)
    assert problem.n_actions == 6 and problem.has_model and not problem.has_data


def test_bt_is_sigmoid_of_reward_differences() -> None:
    table = random_table(5, "bt", 2)
    r = np.array(table["rewards"])
    P = build_problem(table).contexts[0].preferences
    np.testing.assert_allclose(P, 1 / (1 + np.exp(-(r[:, None] - r[None, :]))), rtol=1e-14)


@pytest.mark.parametrize("n", [3, 4, 5, 8])
@pytest.mark.parametrize("seed", range(3))
def test_cyclic_has_no_condorcet_winner(n: int, seed: int) -> None:
    # On the circle, y beats the next ceil(n / 2) - 1 actions, loses to the previous ones, ties the opposite
    # one (even n): every action loses to its predecessor, so none beats all others.
    P = np.array(random_table(n, "cyclic", seed)["preferences"])
    np.testing.assert_allclose(P + P.T, 1.0, atol=1e-15)
    for y in range(n):
        for k in range(1, n):
            z = (y + k) % n
            if k < n - k:
                assert P[y, z] >= 0.5
            elif k > n - k:
                assert P[y, z] <= 0.5
            else:
                assert P[y, z] == 0.5
        assert P[y, (y - 1) % n] <= 0.5


def test_nontransitive_pairs_are_independent_uniforms() -> None:
    # P[y, y'] for y > y' are U(0, 1): over a 40-action game (780 pairs) their mean is 1/2 within 4 standard
    # errors (sd of U(0, 1) is 1 / sqrt(12)).
    P = np.array(random_table(40, "nontransitive", 0)["preferences"])
    lower = P[np.tril_indices(40, -1)]
    assert abs(lower.mean() - 0.5) < 4 / np.sqrt(12 * len(lower))
    np.testing.assert_allclose(P + P.T, 1.0, atol=1e-15)


@pytest.mark.parametrize(("args", "key"), [
    (["--actions", "1"], "--actions"), (["--kind", "loop"], "--kind"), (["--seed", "-1"], "--seed"),
    (["--actions", "2", "--kind", "cyclic"], "--actions"),
])
def test_bad_input_is_one_line(args: list[str], key: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "problem", "random", *args)
    assert code == 2 and out == "" and err.startswith(f"psipo: {key} = ") and err.count("\n") == 1


def test_unwritable_output_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "problem", "random", "--output", str(tmp_path / "missing" / "x.toml"))
    assert code == 2 and err.startswith("psipo: --output = ")
    assert not (tmp_path / "missing").exists()


def test_table_errors_are_input_errors() -> None:
    with pytest.raises(InputError):
        random_table(3, "cyclic", 1.5)  # type: ignore[arg-type]
