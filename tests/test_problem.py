"""Problem layer: presets, TOML loading of every feature, sampling, and validation errors (docs/files.md).

Expected values are written out by hand from the problem definitions, never taken from the loader.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from psipo_cli.errors import InputError
from psipo_cli.problem import PRESETS, get_problem, load_problem, preset, realise

# ---------------------------------------------------------------------------------------------- helpers


def write(tmp_path: Path, text: str, name: str = "problem.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load(tmp_path: Path, text: str) -> object:
    return load_problem(write(tmp_path, text))


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# ---------------------------------------------------------------------------------------------- presets


def test_preset_names() -> None:
    assert set(PRESETS) == {"paper-d1", "paper-d3", "paper-two-actions", "cycle", "bt-finite"}


def test_paper_d1() -> None:
    p = preset("paper-d1")
    assert p.actions == ("a", "b", "c")
    assert len(p.contexts) == 1
    ctx = p.contexts[0]
    assert ctx.name == "default" and ctx.weight == 1.0
    np.testing.assert_array_equal(ctx.pi_ref, [1 / 3] * 3)
    np.testing.assert_array_equal(ctx.mu, [1 / 3] * 3)
    # order a > b > c: P[y, y'] = 1 when y ranks first, 1/2 on the diagonal.
    np.testing.assert_array_equal(ctx.preferences, [[0.5, 1, 1], [0, 0.5, 1], [0, 0, 0.5]])
    # D1 = {(a, b), (b, c), (a, c)}, each once: W[winner, loser].
    np.testing.assert_array_equal(ctx.wins, [[0, 1, 1], [0, 0, 1], [0, 0, 0]])
    assert ctx.rewards is None and ctx.model == "order"


def test_paper_d3() -> None:
    p = preset("paper-d3")
    ctx = p.contexts[0]
    # (a, b), (b, a), (b, c): the pair (b, c) is our addition, and the preset says so.
    np.testing.assert_array_equal(ctx.wins, [[0, 1, 0], [1, 0, 1], [0, 0, 0]])
    assert ctx.preferences is None
    assert p.notes and "(b, c)" in p.notes[0]


def test_paper_two_actions() -> None:
    p = preset("paper-two-actions")
    ctx = p.contexts[0]
    assert p.actions == ("y1", "y2")
    np.testing.assert_array_equal(ctx.preferences, [[0.5, 1.0], [0.0, 0.5]])
    assert ctx.wins is None and ctx.sample is None
    assert not p.has_data and p.has_model


def test_cycle() -> None:
    ctx = preset("cycle").contexts[0]
    P = ctx.preferences
    assert P[0, 1] == 1 and P[1, 2] == 1 and P[2, 0] == 1
    np.testing.assert_array_equal(P + P.T, np.ones((3, 3)))
    np.testing.assert_array_equal(ctx.wins, [[0, 1, 0], [0, 0, 1], [1, 0, 0]])


def test_bt_finite() -> None:
    p = preset("bt-finite")
    ctx = p.contexts[0]
    r = [1.0, 0.5, 0.0, -0.5]
    np.testing.assert_array_equal(ctx.rewards, r)
    for i in range(4):
        for j in range(4):
            assert ctx.preferences[i, j] == pytest.approx(sigmoid(r[i] - r[j]), abs=1e-15)
    assert ctx.sample is not None and (ctx.sample.n, ctx.sample.seed) == (20, 0)
    assert p.is_sampled and ctx.wins is None
    W = realise(p).contexts[0].wins
    assert W.sum() == 20 and np.all(np.diag(W) == 0)


def test_get_problem_accepts_names_files_and_problems(tmp_path: Path) -> None:
    assert get_problem("paper-d1").name == "paper-d1"
    path = write(tmp_path, 'actions = ["u", "v"]\nrewards = [0, 1]\n', name="mine.toml")
    loaded = get_problem(path)
    assert loaded.name == "mine"  # default name: the file stem
    assert get_problem(loaded) is loaded


# ---------------------------------------------------------------------------------------------- loading


def test_load_every_top_level_field(tmp_path: Path) -> None:
    p = load(
        tmp_path,
        """
name = "full"
description = "everything"
actions = ["a", "b", "c"]
pi_ref = [0.5, 0.25, 0.25]
mu = [0.2, 0.3, 0.5]
preferences = [[0.5, 0.7, 0.9], [0.3, 0.5, 0.4], [0.1, 0.6, 0.5]]
pairs = [
  {winner = "a", loser = "b", count = 3},
  {winner = "c", loser = "b"},
  {winner = "a", loser = "b", count = 2.5},
]
""",
    )
    assert p.name == "full" and p.description == "everything"
    ctx = p.contexts[0]
    np.testing.assert_array_equal(ctx.pi_ref, [0.5, 0.25, 0.25])
    np.testing.assert_array_equal(ctx.mu, [0.2, 0.3, 0.5])
    np.testing.assert_array_equal(ctx.preferences[0], [0.5, 0.7, 0.9])
    # Repeated (winner, loser) rows add up; count defaults to 1.
    np.testing.assert_array_equal(ctx.wins, [[0, 5.5, 0], [0, 0, 0], [0, 1, 0]])


def test_mu_defaults_to_pi_ref(tmp_path: Path) -> None:
    p = load(tmp_path, 'actions = ["a", "b"]\npi_ref = [0.75, 0.25]\nrewards = [0, 1]\n')
    np.testing.assert_array_equal(p.contexts[0].mu, [0.75, 0.25])
    np.testing.assert_array_equal(p.contexts[0].pi_ref, [0.75, 0.25])


def test_rewards_are_bradley_terry(tmp_path: Path) -> None:
    p = load(tmp_path, 'actions = ["a", "b", "c"]\nrewards = [2.0, -1.0, 0.5]\n')
    ctx = p.contexts[0]
    assert ctx.model == "rewards"
    r = [2.0, -1.0, 0.5]
    for i in range(3):
        for j in range(3):
            assert ctx.preferences[i, j] == pytest.approx(sigmoid(r[i] - r[j]), abs=1e-15)


def test_order_is_deterministic(tmp_path: Path) -> None:
    p = load(tmp_path, 'actions = ["a", "b", "c"]\norder = ["c", "a", "b"]\n')
    # c > a > b.
    np.testing.assert_array_equal(
        p.contexts[0].preferences, [[0.5, 1.0, 0.0], [0.0, 0.5, 0.0], [1.0, 1.0, 0.5]]
    )


def test_pairs_csv_relative_to_the_toml_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "pairs.csv").write_text("context,winner,loser,count\n,a,b,2\n,b,c,\ndefault,a,b,1.5\n")
    path = write(data, 'actions = ["a", "b", "c"]\npairs_csv = "pairs.csv"\n')
    monkeypatch.chdir(tmp_path)  # the CSV is NOT in the working directory
    ctx = load_problem(path).contexts[0]
    np.testing.assert_array_equal(ctx.wins, [[0, 3.5, 0], [0, 0, 1], [0, 0, 0]])


def test_pairs_csv_without_count_or_context_columns(tmp_path: Path) -> None:
    (tmp_path / "p.csv").write_text("winner,loser\na,b\na,b\nb,a\n")
    ctx = load(tmp_path, 'actions = ["a", "b"]\npairs_csv = "p.csv"\n').contexts[0]
    np.testing.assert_array_equal(ctx.wins, [[0, 2], [1, 0]])


def test_pairs_csv_split_by_context(tmp_path: Path) -> None:
    (tmp_path / "p.csv").write_text("context,winner,loser,count\nx,a,b,1\ny,b,a,4\nx,b,a,2\n")
    p = load(
        tmp_path,
        """
actions = ["a", "b"]
pairs_csv = "p.csv"
[[contexts]]
name = "x"
[[contexts]]
name = "y"
""",
    )
    np.testing.assert_array_equal(p.contexts[0].wins, [[0, 1], [2, 0]])
    np.testing.assert_array_equal(p.contexts[1].wins, [[0, 0], [4, 0]])


def test_sample_count_support_and_determinism(tmp_path: Path) -> None:
    text = (
        'actions = ["a", "b", "c", "d"]\nmu = [0.5, 0.5, 0, 0]\n'
        "rewards = [0, 1, 2, 3]\nsample = {n = 37, seed = 4}\n"
    )
    p = load(tmp_path, text)
    ctx = p.contexts[0]
    assert ctx.wins is None and (ctx.sample.n, ctx.sample.seed) == (37, 4)
    W0 = realise(p, 0).contexts[0].wins
    assert W0.sum() == 37
    # Only pairs of distinct actions in supp mu are drawn.
    assert W0[2:].sum() == 0 and W0[:, 2:].sum() == 0 and np.all(np.diag(W0) == 0)
    # Same file, same dataset number: same data; another dataset number: another draw.
    np.testing.assert_array_equal(realise(load(tmp_path, text), 0).contexts[0].wins, W0)
    draws = [realise(p, k).contexts[0].wins for k in range(1, 6)]
    assert any(not np.array_equal(W, W0) for W in draws)


def test_sample_frequencies_match_the_model(tmp_path: Path) -> None:
    """E W[w, l] / n = 2 mu_w mu_l P[w, l] / (1 - sum mu^2).

    A pair (y, y') is drawn from mu x mu conditioned on y != y' (normaliser 1 - sum mu^2); `w` beats `l`
    either as (w, l) with probability P[w, l] or as (l, w) with probability 1 - P[l, w] = P[w, l].
    """
    mu = np.array([0.1, 0.2, 0.3, 0.4])
    r = np.array([0.3, -0.2, 1.0, 0.0])
    n = 200_000
    p = load(
        tmp_path,
        f'actions = ["a", "b", "c", "d"]\nmu = {mu.tolist()}\n'
        f"rewards = {r.tolist()}\nsample = {{n = {n}, seed = 1}}\n",
    )
    W = realise(p).contexts[0].wins
    P = 1.0 / (1.0 + np.exp(-(r[:, None] - r[None, :])))
    expected = 2 * np.outer(mu, mu) * P / (1 - np.sum(mu**2))
    np.fill_diagonal(expected, 0.0)
    sd = np.sqrt(expected * (1 - expected) / n)
    assert np.all(np.abs(W / n - expected) <= 5 * sd + 1e-12)


def test_contexts_override_and_weights(tmp_path: Path) -> None:
    p = load(
        tmp_path,
        """
name = "multi"
actions = ["a", "b", "c"]
pi_ref = [0.2, 0.3, 0.5]
rewards = [1, 0, 0]
pairs = [{winner = "a", loser = "b"}]

[[contexts]]
name = "first"
weight = 1

[[contexts]]
name = "second"
weight = 3
order = ["c", "b", "a"]
pairs = [{winner = "c", loser = "a", count = 2}]

[[contexts]]
weight = 4
pi_ref = [0.6, 0.2, 0.2]
""",
    )
    assert p.context_names == ("first", "second", "x2")
    first, second, third = p.contexts
    # Weights are normalised to sum to 1.
    assert [c.weight for c in p.contexts] == pytest.approx([1 / 8, 3 / 8, 4 / 8])
    # First: everything shared.
    np.testing.assert_array_equal(first.pi_ref, [0.2, 0.3, 0.5])
    np.testing.assert_array_equal(first.wins, [[0, 1, 0], [0, 0, 0], [0, 0, 0]])
    assert first.model == "rewards"
    # Second: its own model and data replace the shared ones; pi_ref is inherited.
    assert second.model == "order" and second.rewards is None
    np.testing.assert_array_equal(second.preferences[2], [1.0, 1.0, 0.5])
    np.testing.assert_array_equal(second.wins, [[0, 0, 0], [0, 0, 0], [2, 0, 0]])
    np.testing.assert_array_equal(second.pi_ref, [0.2, 0.3, 0.5])
    # Third: its own pi_ref, and mu defaults to it (not to the top-level pi_ref).
    np.testing.assert_array_equal(third.pi_ref, [0.6, 0.2, 0.2])
    np.testing.assert_array_equal(third.mu, [0.6, 0.2, 0.2])


def test_unnamed_contexts_get_distinct_names(tmp_path: Path) -> None:
    """A top-level `name` is the problem's name, not a name shared by every context."""
    p = load(
        tmp_path,
        'name = "prob"\nactions = ["a", "b"]\nrewards = [0, 1]\n'
        "[[contexts]]\nweight = 1\n[[contexts]]\nweight = 1\n",
    )
    assert p.name == "prob"
    assert len(set(p.context_names)) == 2


def test_sampled_contexts_draw_independent_data(tmp_path: Path) -> None:
    p = load(
        tmp_path,
        'actions = ["a", "b", "c"]\nrewards = [0, 1, 2]\nsample = {n = 50, seed = 0}\n'
        '[[contexts]]\nname = "x"\n[[contexts]]\nname = "y"\n',
    )
    Wx, Wy = (c.wins for c in realise(p).contexts)
    assert Wx.sum() == 50 and Wy.sum() == 50
    assert not np.array_equal(Wx, Wy)


# ---------------------------------------------------------------------------------------------- errors


def expect_error(tmp_path: Path, text: str, key: str, value: str) -> InputError:
    with pytest.raises(InputError) as info:
        load(tmp_path, text)
    message = str(info.value)
    assert key in message, message
    assert value in message, message
    assert "\n" not in message
    return info.value


A3 = 'actions = ["a", "b", "c"]\n'


@pytest.mark.parametrize(
    ("text", "key", "value"),
    [
        # pi_ref not summing to 1
        (A3 + "pi_ref = [0.5, 0.5, 0.5]\norder = ['a', 'b', 'c']\n", "pi_ref", "[0.5, 0.5, 0.5]"),
        # negative probabilities (summing to 1)
        (A3 + "pi_ref = [-0.5, 0.5, 1.0]\norder = ['a', 'b', 'c']\n", "pi_ref", "-0.5"),
        (A3 + "mu = [1.2, -0.1, -0.1]\norder = ['a', 'b', 'c']\n", "mu", "-0.1"),
        # pi_ref of the wrong length
        (A3 + "pi_ref = [0.5, 0.5]\norder = ['a', 'b', 'c']\n", "pi_ref", "[0.5, 0.5]"),
        # P + P^T != 1
        (
            A3 + "preferences = [[0.5, 0.6, 0.5], [0.6, 0.5, 0.5], [0.5, 0.5, 0.5]]\n",
            "preferences[0][1]",
            "0.6",
        ),
        # diagonal must be 1/2 (P + P^T = 1 on the diagonal)
        (
            A3 + "preferences = [[1.0, 0.5, 0.5], [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]]\n",
            "preferences[0][0]",
            "1.0",
        ),
        # entries outside [0, 1]
        (
            A3 + "preferences = [[0.5, 1.5, 0.5], [-0.5, 0.5, 0.5], [0.5, 0.5, 0.5]]\n",
            "preferences",
            "1.5",
        ),
        # wrong matrix shape: 2 rows for 3 actions, and a short row
        (A3 + "preferences = [[0.5, 0.5], [0.5, 0.5]]\n", "preferences", "[[0.5, 0.5], [0.5, 0.5]]"),
        (
            A3 + "preferences = [[0.5, 0.5, 0.5], [0.5, 0.5], [0.5, 0.5, 0.5]]\n",
            "preferences[1]",
            "[0.5, 0.5]",
        ),
        # rewards of the wrong length
        (A3 + "rewards = [1, 2]\n", "rewards", "[1, 2]"),
        # order that is not a permutation of the actions
        (A3 + "order = ['a', 'b', 'z']\n", "order", "'z'"),
        # unknown action in a pair
        (A3 + "pairs = [{winner = 'a', loser = 'zz'}]\n", "pairs[0].loser", "'zz'"),
        (
            A3 + "pairs = [{winner = 'b', loser = 'a'}, {winner = 'q', loser = 'a'}]\n",
            "pairs[1].winner",
            "'q'",
        ),
        # winner == loser
        (A3 + "pairs = [{winner = 'a', loser = 'a'}]\n", "pairs[0].loser", "'a'"),
        # non-positive count
        (A3 + "pairs = [{winner = 'a', loser = 'b', count = -2}]\n", "pairs[0].count", "-2"),
        # duplicate action
        ('actions = ["a", "b", "a"]\norder = ["a", "b"]\n', "actions", "['a', 'b', 'a']"),
        # two models at once
        (A3 + "rewards = [1, 2, 3]\norder = ['a', 'b', 'c']\n", "order", "['a', 'b', 'c']"),
        # two data sources at once
        (
            A3 + "rewards = [1, 2, 3]\npairs = [{winner = 'a', loser = 'b'}]\nsample = {n = 3, seed = 1}\n",
            "sample",
            "'n': 3",
        ),
        # unknown key, top level and in a context
        (A3 + "order = ['a', 'b', 'c']\npi_reff = [1, 0, 0]\n", "pi_reff", "[1, 0, 0]"),
        (A3 + "order = ['a', 'b', 'c']\n[[contexts]]\nbogus = 3\n", "contexts[0].bogus", "3"),
        # sample without a model
        (A3 + "sample = {n = 10, seed = 1}\n", "sample", "'n': 10"),
        # bad sample size
        (A3 + "rewards = [1, 2, 3]\nsample = {n = 0, seed = 1}\n", "sample.n", "0"),
        # no model and no data at all
        (A3, "preferences", "None"),
        # context override errors carry the context's prefix
        (
            A3 + "order = ['a', 'b', 'c']\n[[contexts]]\n[[contexts]]\npi_ref = [1, 1, 1]\n",
            "contexts[1].pi_ref",
            "[1, 1, 1]",
        ),
        # an action in the data with pi_ref = 0
        (A3 + "pi_ref = [0.5, 0.5, 0]\npairs = [{winner = 'c', loser = 'a'}]\n", "pi_ref", "'c'"),
        # non-positive context weight
        (A3 + "order = ['a', 'b', 'c']\n[[contexts]]\nweight = 0\n", "contexts[0].weight", "0"),
    ],
)
def test_bad_input_names_key_and_value(tmp_path: Path, text: str, key: str, value: str) -> None:
    expect_error(tmp_path, text, key, value)


def test_malformed_toml(tmp_path: Path) -> None:
    path = write(tmp_path, 'actions = ["a", "b"\nrewards = [1, 2]\n')
    with pytest.raises(InputError) as info:
        load_problem(path)
    assert "problem" in str(info.value) and str(path) in str(info.value)
    assert "TOML" in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(InputError) as info:
        load_problem(path)
    assert str(path) in str(info.value)
    # Unknown preset names and missing files both end up as InputError through get_problem.
    with pytest.raises(InputError):
        get_problem(str(path))


def test_missing_pairs_csv(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        load(tmp_path, A3 + 'pairs_csv = "missing.csv"\n')
    assert "pairs_csv" in str(info.value) and "missing.csv" in str(info.value)


def test_pairs_csv_unknown_action(tmp_path: Path) -> None:
    (tmp_path / "p.csv").write_text("winner,loser\na,b\nb,zz\n")
    with pytest.raises(InputError) as info:
        load(tmp_path, A3 + 'pairs_csv = "p.csv"\n')
    assert "pairs_csv[1].loser" in str(info.value) and "'zz'" in str(info.value)


def test_pairs_csv_errors_name_the_line(tmp_path: Path) -> None:
    # Line 1 is the header, so the second data row is line 3; a quoted cell spanning two lines shifts
    # the later rows by one, which a row counter would miss (csv.reader counts physical lines).
    (tmp_path / "p.csv").write_text('winner,loser,note\na,b,"two\nlines"\nb,c,x\nc,zz,y\n')
    with pytest.raises(InputError) as info:
        load(tmp_path, A3 + 'pairs_csv = "p.csv"\n')
    assert "(p.csv, line 5)" in str(info.value) and "'zz'" in str(info.value)
    (tmp_path / "q.csv").write_text("winner,loser,count\na,b,1\nb,c,lots\n")
    with pytest.raises(InputError) as info:
        load(tmp_path, A3 + 'pairs_csv = "q.csv"\n')
    assert "(q.csv, line 3)" in str(info.value) and "'lots'" in str(info.value)


def test_pairs_csv_cells_are_stripped(tmp_path: Path) -> None:
    # A spreadsheet's "a, b, 2": the same counts as "a,b,2" (W[a, b] = 2, W[b, c] = 1).
    (tmp_path / "p.csv").write_text(" winner , loser , count\n a , b , 2 \nb,  c,\n")
    W = load(tmp_path, A3 + 'pairs_csv = "p.csv"\n').contexts[0].wins
    expected = np.zeros((3, 3))
    expected[0, 1], expected[1, 2] = 2.0, 1.0
    np.testing.assert_array_equal(W, expected)


def test_errors_name_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, A3 + "pi_ref = [0.2, 0.2, 0.2]\norder = ['a', 'b', 'c']\n")
    with pytest.raises(InputError) as info:
        load_problem(path)
    assert str(info.value).startswith(str(path))


def test_pairs_csv_action_names_with_spaces_match_as_written(tmp_path: Path) -> None:
    # An action whose name itself ends in a space (valid in TOML) is matched as written; a padded cell of a
    # plain name falls back to the stripped name (found by the loader fuzzer: stripping every cell made the
    # action "is " unreachable from a CSV).
    (tmp_path / "p.csv").write_text("winner,loser\nis ,a\n a ,is \n")
    W = load(tmp_path, 'actions = ["is ", "a"]\npairs_csv = "p.csv"\n').contexts[0].wins
    np.testing.assert_array_equal(W, [[0.0, 1.0], [1.0, 0.0]])


def test_pairs_csv_context_names_with_spaces_match_as_written(tmp_path: Path) -> None:
    # A context named " x" (valid in TOML) is matched as written; "y " falls back to the context "y".
    (tmp_path / "p.csv").write_text("winner,loser,context\na,b, x\nb,a,y \n")
    problem = load(
        tmp_path,
        'actions = ["a", "b"]\npairs_csv = "p.csv"\n[[contexts]]\nname = " x"\n[[contexts]]\nname = "y"\n',
    )
    wins = {c.name: c.wins for c in problem.contexts}
    np.testing.assert_array_equal(wins[" x"], [[0.0, 1.0], [0.0, 0.0]])
    np.testing.assert_array_equal(wins["y"], [[0.0, 0.0], [1.0, 0.0]])
