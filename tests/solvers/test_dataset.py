"""Exact solutions on a whole preference dataset (`solvers.dataset.solve_dataset`).

Each prompt of a dataset is its own problem over its own completions: its answers must equal those of the
same prompt written as a TOML problem (read by the TOML loader, which shares no code with the dataset's
arrays) and solved by the per-context exact dispatch. The rest is derived by hand (comments) or from
theorems: a directed cycle leaves no separating comparison (the Bradley–Terry MLE exists); a single
comparison always separates (DPO diverges) while IPO's quadratic always attains its minimum; two actions
give the closed forms of the pairwise MLE and of IPO's normal equation.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from psipo_cli.errors import InputError
from psipo_cli.problem import load_problem
from psipo_cli.problem.datasets.data import PreferenceData, SourceRecord
from psipo_cli.solvers.dataset import solve_dataset
from psipo_cli.solvers.exact import solve_exact
from psipo_cli.solvers.runs import method_spec

TAUS = [0.1, 0.5, 1.0, 2.0]
SPECS = [
    method_spec("dpo"),
    method_spec("ipo"),
    method_spec("rlhf"),
    method_spec("rlhf", "rlhf-ridge", rm_l2=0.1),
]


def dataset(prompts: list[dict[str, Any]]) -> PreferenceData:
    """A `PreferenceData` from prompts `{actions: [names], pi_ref: [...]?, pairs: [(winner, loser, count)]}`
    (local indices), each prompt with its own actions."""
    sizes = [len(p["actions"]) for p in prompts]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    rows = [(c, offsets[c] + w, offsets[c] + l_, k) for c, p in enumerate(prompts) for w, l_, k in p["pairs"]]
    log_ref = np.concatenate(
        [np.log(np.asarray(p.get("pi_ref", np.full(len(p["actions"]), 1.0 / len(p["actions"])))))
         for p in prompts]
    )
    return PreferenceData(
        context=[r[0] for r in rows],
        winner=[r[1] for r in rows],
        loser=[r[2] for r in rows],
        count=[float(r[3]) for r in rows],
        offsets=offsets,
        log_pi_ref=log_ref,
        context_ids=tuple(f"x{c}" for c in range(len(prompts))),
        context_texts=tuple(f"prompt {c}" for c in range(len(prompts))),
        action_ids=tuple(a for p in prompts for a in p["actions"]),
        action_texts=tuple(a for p in prompts for a in p["actions"]),
        ties=np.zeros(len(prompts)),
        source=SourceRecord(path="memory", sha256="0" * 64, format="test", rows_read=len(rows)),
    )


def toml_problem(tmp_path: Path, c: int, prompt: dict[str, Any]) -> Any:
    """The prompt written as a TOML problem file and read back by the TOML loader."""
    actions = prompt["actions"]
    lines = [f'name = "prompt-{c}"', "actions = [" + ", ".join(f'"{a}"' for a in actions) + "]"]
    if "pi_ref" in prompt:
        lines.append("pi_ref = [" + ", ".join(repr(float(p)) for p in prompt["pi_ref"]) + "]")
    pairs = ", ".join(f'{{ winner = "{actions[w]}", loser = "{actions[l_]}", count = {k} }}'
                      for w, l_, k in prompt["pairs"])
    lines.append(f"pairs = [{pairs}]")
    path = tmp_path / f"prompt-{c}.toml"
    path.write_text("\n".join(lines) + "\n")
    return load_problem(path)


def random_prompts(rng: np.random.Generator, m: int, complete: bool = False) -> list[dict[str, Any]]:
    """`m` prompts of 2-5 completions each, random comparisons with counts 1-3 (every pair compared at least
    one way when `complete`), random pi_ref on half of them."""
    prompts = []
    for c in range(m):
        n = int(rng.integers(2, 6))
        pairs = []
        for i in range(n):
            for j in range(i + 1, n):
                ways = [(i, j), (j, i)]
                chosen = [w for w in ways if rng.random() < 0.5]
                if not chosen and (complete or rng.random() < 0.4):
                    chosen = [ways[int(rng.integers(2))]]
                pairs += [(w, l_, int(rng.integers(1, 4))) for w, l_ in chosen]
        if not pairs:
            pairs = [(0, 1, 1)]
        prompt: dict[str, Any] = {"actions": [f"c{c}a{k}" for k in range(n)], "pairs": pairs}
        if c % 2:
            p = rng.uniform(0.2, 1.0, n)
            prompt["pi_ref"] = p / p.sum()
        prompts.append(prompt)
    return prompts


#: Zoo members through both routes of `solve_dataset`: cDPO vectorised; hinge, rDPO and EXO (losses with their
#: own search), SimPO (reference-free) and NCA (single actions) one context at a time.
ZOO = [method_spec(m) for m in ("cdpo", "rdpo", "hinge", "exo", "simpo", "nca")]


@pytest.mark.parametrize("complete,zoo", [(False, False), (True, False), (False, True)])
def test_every_prompt_equals_its_toml_problem(tmp_path: Path, complete: bool, zoo: bool) -> None:
    rng = np.random.default_rng(11 + complete)
    prompts = random_prompts(rng, 12, complete)
    data = dataset(prompts)
    specs = [*SPECS, method_spec("psipo"), method_spec("psipo", "psipo-id", psi="identity")] if complete else SPECS
    specs = ZOO if zoo else specs
    solved = solve_dataset(data, specs, TAUS)
    statuses = set()
    for c, prompt in enumerate(prompts):
        span = slice(data.offsets[c], data.offsets[c + 1])
        runs = solve_exact(toml_problem(tmp_path, c, prompt), specs, TAUS, "dataset")
        by_key = {(r.label, r.tau): r for r in runs}
        for sol in solved:
            for t, tau in enumerate(TAUS):
                run = by_key[sol.label, tau]
                np.testing.assert_allclose(sol.policy[t, span], run.policy, rtol=0, atol=1e-12)
                assert sol.status[t, c] == run.status
                np.testing.assert_allclose(sol.loss[t, c], run.loss, rtol=1e-12, atol=1e-14)
                if run.reward is None:
                    assert np.isnan(sol.reward[span]).all()
                else:
                    np.testing.assert_allclose(sol.reward[span], run.reward, rtol=0, atol=1e-10)
                # KL from its definition, on the TOML problem's own pi_ref.
                ref = np.asarray(prompt.get("pi_ref", np.full(len(prompt["actions"]), 1 / len(prompt["actions"]))))
                mass = run.policy > 0
                expected_kl = float(np.sum(run.policy[mass] * np.log(run.policy[mass] / ref[mass])))
                np.testing.assert_allclose(sol.kl[t, c], expected_kl, rtol=1e-10, atol=1e-13)
                statuses.add(run.status)
    assert {"optimal", "diverged"} <= statuses or complete or zoo  # the random data exercise both routes


def test_prompts_each_holding_a_directed_cycle_have_no_diverged_prompt() -> None:
    # a > b > c > a: every action reaches every other along winner -> loser edges, so the graph is one strongly
    # connected component and no comparison separates two components: the Bradley–Terry MLE exists (all
    # three offsets equal by symmetry with equal counts), DPO's optimum is attained on every prompt.
    cycle = {"actions": ["a", "b", "c"], "pairs": [(0, 1, 1), (1, 2, 1), (2, 0, 1)]}
    longer = {"actions": ["a", "b", "c", "d"], "pairs": [(0, 1, 2), (1, 2, 1), (2, 3, 1), (3, 0, 3), (0, 2, 1)]}
    data = dataset([cycle, longer, cycle])
    for sol in solve_dataset(data, SPECS, TAUS):
        assert (sol.status == "optimal").all(), sol.label
        assert (sol.policy > 0).all()
        assert np.isfinite(sol.reward).all()
    # Equal counts around a 3-cycle: the MLE has all rewards equal, so pi = pi_ref (uniform) and KL = 0.
    dpo = solve_dataset(data, [method_spec("dpo")], TAUS)[0]
    np.testing.assert_allclose(dpo.policy[:, :3], 1 / 3, atol=1e-12)
    np.testing.assert_allclose(dpo.kl[:, 0], 0.0, atol=1e-12)


def test_single_comparisons_diverge_for_dpo_and_never_for_ipo() -> None:
    # Each prompt holds one comparison w > l (with some counts): two singleton components, one separating
    # comparison, so the logistic loss has no minimiser (DPO and RLHF without a ridge: `diverged`, pi(l) = 0
    # for every tau). IPO: (h - 1/(2 tau))^2 is minimised at h = delta_w - delta_l = 1/(2 tau), attained.
    prompts = [{"actions": ["w", "l"], "pairs": [(0, 1, k)]} for k in (1, 2, 5)]
    prompts.append({"actions": ["l", "m", "w"], "pairs": [(2, 0, 1)]})  # m is never compared
    data = dataset(prompts)
    dpo, ipo, rlhf, ridge = solve_dataset(data, SPECS, TAUS)
    assert (dpo.status == "diverged").all() and (rlhf.status == "diverged").all()
    assert (ipo.status == "optimal").all() and (ridge.status == "optimal").all()
    # DPO's limit: all mass on the winner among compared actions; m (unseen) keeps its offset 0 but the
    # winner's offset grows without bound, so m gets 0 too.
    np.testing.assert_allclose(dpo.policy[:, [0, 2, 4, 8]], 1.0, atol=1e-15)
    np.testing.assert_allclose(dpo.policy[:, [1, 3, 5, 6, 7]], 0.0, atol=1e-15)
    assert np.isnan(dpo.reward).all()
    # IPO, 2 actions, uniform pi_ref: delta_w - delta_l = 1/(2 tau), so pi(w) = sigmoid(1/(2 tau)).
    for t, tau in enumerate(TAUS):
        np.testing.assert_allclose(ipo.policy[t, 0], 1 / (1 + math.exp(-0.5 / tau)), rtol=1e-12)


def test_two_action_prompt_matches_the_closed_forms() -> None:
    # W[a,b] = 3, W[b,a] = 1. Bradley–Terry MLE: sigma(r_a - r_b) = 3/4, i.e. r_a - r_b = log(W[a,b]/W[b,a])
    # = log 3, so DPO's pi(a)/pi(b) = (pi_ref(a)/pi_ref(b)) 3^(1/tau). IPO's normal equation
    # 3 (h - 1/(2 tau)) + 1 (h + 1/(2 tau)) = 0 gives h = (3 - 1) / (2 tau (3 + 1)) = 1/(4 tau).
    # RLHF with ridge l2 on the mean loss: r_b = -r_a, d/dr_a [(3 softplus(-2 r_a) + softplus(2 r_a))/4
    # + l2 r_a^2] = 0, solved below by bisection on the derivative written out.
    ref = np.array([0.3, 0.7])
    data = dataset([{"actions": ["a", "b"], "pi_ref": ref, "pairs": [(0, 1, 3), (1, 0, 1)]}])
    dpo, ipo, rlhf, ridge = solve_dataset(data, SPECS, TAUS)
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731

    def dridge(r: float, l2: float = 0.1) -> float:
        return (-3 * 2 * sig(-2 * r) + 2 * sig(2 * r)) / 4 + 2 * l2 * r

    lo, hi = 0.0, 5.0
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if dridge(mid) < 0 else (lo, mid)
    r_ridge = 2 * lo  # r_a - r_b
    for t, tau in enumerate(TAUS):
        for sol, gap in ((dpo, math.log(3) / tau), (rlhf, math.log(3) / tau), (ipo, 1 / (4 * tau)),
                         (ridge, r_ridge / tau)):
            odds = ref[0] / ref[1] * math.exp(gap)
            np.testing.assert_allclose(sol.policy[t, 0] / sol.policy[t, 1], odds, rtol=1e-10)
    np.testing.assert_allclose(dpo.reward[0] - dpo.reward[1], math.log(3), rtol=1e-12)


def test_prompts_without_comparisons_keep_pi_ref() -> None:
    # A prompt with one completion, and one whose only comparisons were ties (no comparison recorded): the
    # loss sees none of their actions, so the canonical gauge leaves pi = pi_ref, loss 0, KL 0.
    data = dataset([
        {"actions": ["a", "b"], "pairs": [(0, 1, 1)]},
        {"actions": ["only"], "pairs": []},
        {"actions": ["x", "y"], "pi_ref": [0.25, 0.75], "pairs": []},
    ])
    for sol in solve_dataset(data, SPECS, TAUS):
        np.testing.assert_allclose(sol.policy[:, 2:], [[1.0, 0.25, 0.75]] * len(TAUS), atol=1e-15)
        assert (sol.status[:, 1:] == "optimal").all()
        np.testing.assert_allclose(sol.loss[:, 1:], 0.0)
        np.testing.assert_allclose(sol.kl[:, 1:], 0.0, atol=1e-15)


def test_psipo_on_a_prompt_with_an_uncompared_pair_names_the_prompt() -> None:
    data = dataset([
        {"actions": ["a", "b"], "pairs": [(0, 1, 1)]},
        {"actions": ["a", "b", "c"], "pairs": [(0, 1, 1), (1, 2, 1)]},  # a and c never compared
    ])
    with pytest.raises(InputError, match=r"x1") as err:
        solve_dataset(data, [method_spec("psipo")], TAUS)
    assert "every pair of compared actions observed" in err.value.reason


def test_pairs_and_matrix_give_the_same_divergence_limit() -> None:
    # The limit read from comparison arrays (memory O(comparisons)) is the one read from the dense matrix.
    from psipo_cli.methods import METHODS
    from psipo_cli.methods.linalg import Pairs, comparison_graph
    from psipo_cli.methods.pairwise._limit import separated_limit

    rng = np.random.default_rng(3)
    loss = METHODS["dpo"].loss
    checked = 0
    for _ in range(40):
        n = int(rng.integers(3, 9))
        W = (rng.random((n, n)) < 0.35) * rng.integers(1, 4, (n, n)).astype(float)
        np.fill_diagonal(W, 0.0)
        if not W.any() or comparison_graph(W).has_minimiser:
            continue
        w, l_ = np.nonzero(W)
        pairs = Pairs(w, l_, W[w, l_], n, np.zeros(n, dtype=np.int64), 1)
        log_ref = np.full(n, -np.log(n))
        dense = separated_limit(W, log_ref, comparison_graph(W), loss)
        flat = separated_limit(pairs, log_ref, comparison_graph(pairs), loss)
        assert np.array_equal(dense.winners, flat.winners)
        np.testing.assert_allclose(flat.offsets[flat.winners], dense.offsets[dense.winners], atol=1e-12)
        assert flat.components == dense.components and flat.losing == dense.losing
        assert flat.infimum == pytest.approx(dense.infimum, rel=1e-14)
        checked += 1
    assert checked > 10


def test_conjugate_gradients_solve_the_laplacian_system_of_a_large_context(monkeypatch: pytest.MonkeyPatch) -> None:
    # A component of ITERATIVE_FROM nodes or more is solved by CG; on the same system the direct solve
    # (grounded LU) gives the same answer once both are put in the canonical gauge.
    import psipo_cli.methods.linalg as linalg

    rng = np.random.default_rng(4)
    n, k = 400, 3000
    i, j = rng.integers(0, n, k), rng.integers(0, n, k)
    keep = i != j
    i, j, weight = i[keep], j[keep], rng.uniform(0.5, 3.0, int(keep.sum()))
    rhs = rng.normal(size=n)
    for shift in (0.0, 0.1):
        direct = linalg.LaplacianSystem(i, j, weight, n, shift=shift)
        monkeypatch.setattr(linalg, "ITERATIVE_FROM", 50)
        iterative = linalg.LaplacianSystem(i, j, weight, n, shift=shift)
        monkeypatch.undo()
        b = rhs if shift > 0 else direct.centre(rhs)  # singular: a right-hand side summing to 0 per component
        x, y = direct.solve(b), iterative.solve(b)
        if shift == 0:
            x, y = direct.centre(x), iterative.centre(y)
        np.testing.assert_allclose(y, x, atol=1e-9)
        # The equations themselves, written out: (Lap + shift I) x = b.
        lap_y = shift * y
        np.add.at(lap_y, i, weight * (y[i] - y[j]))
        np.add.at(lap_y, j, weight * (y[j] - y[i]))
        np.testing.assert_allclose(lap_y, b, atol=1e-9)


@pytest.mark.parametrize("iterative_from", [pytest.param(1000, id="direct"), pytest.param(50, id="cg")])
def test_a_laplacian_pattern_reused_across_weights_solves_each_system(
    iterative_from: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Newton steps change only the weights of the same edges: `LaplacianPattern.system` keeps the components
    # and the sparse layout and must solve each new system as `LaplacianSystem` does (to the bit: the same
    # matrix), including one with a zero weight (that edge drops out: built from scratch) and both directions
    # of a pair compared (two terms summed into one matrix entry). Each answer is checked on the equations
    # written out, (Lap + shift I) x = b.
    import psipo_cli.methods.linalg as linalg

    monkeypatch.setattr(linalg, "ITERATIVE_FROM", iterative_from)
    rng = np.random.default_rng(8)
    n, k = 400, 3000
    i, j = rng.integers(0, n, k), rng.integers(0, n, k)
    keep = i != j
    i, j = i[keep], j[keep]
    _, first = np.unique(i * n + j, return_index=True)  # distinct comparisons, as `Pairs` holds them
    i, j = np.r_[i[first], j[first][:5]], np.r_[j[first], i[first][:5]]  # five pairs compared both ways
    pattern = linalg.LaplacianPattern(i, j, n)
    for trial, shift in enumerate((0.0, 0.1, 0.0, 0.1)):
        weight = rng.uniform(0.5, 3.0, len(i))
        if trial >= 2:
            weight[:3] = 0.0
        reused, fresh = pattern.system(weight, shift=shift), linalg.LaplacianSystem(i, j, weight, n, shift=shift)
        b = rng.normal(size=n) if shift > 0 else fresh.centre(rng.normal(size=n))
        x = reused.solve(b)
        assert np.array_equal(x, fresh.solve(b)) and np.array_equal(reused.labels, fresh.labels)
        lap_x = shift * x
        np.add.at(lap_x, i, weight * (x[i] - x[j]))
        np.add.at(lap_x, j, weight * (x[j] - x[i]))
        np.testing.assert_allclose(lap_x, b, atol=1e-8)


def test_conjugate_gradients_with_an_action_never_compared_warn_of_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    # An action without comparisons is its own component with no unknown: removing the per-component mean of
    # the right-hand side must not divide 0 by 0 for it (a RuntimeWarning a user would see on every such
    # large context). Node 0 alone (its component numbered first) and the path 1-2-...-99 with unit weights:
    # x = 0 on node 0, and on the path the solution of the equations written out below.
    import warnings

    import psipo_cli.methods.linalg as linalg

    monkeypatch.setattr(linalg, "ITERATIVE_FROM", 50)
    n = 100
    i, j = np.arange(1, 99), np.arange(2, 100)
    system = linalg.LaplacianSystem(i, j, np.ones(98), n)
    b = np.zeros(n)
    b[1], b[99] = 1.0, -1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x = system.centre(system.solve(b))
    # Unit flow from node 1 to node 99 along the path: x_k - x_{k+1} = 1, centred on the path.
    np.testing.assert_allclose(x[1:], 49.0 - np.arange(99), atol=1e-7)
    assert x[0] == 0.0


def random_dataset(rng: np.random.Generator, m: int, n: int, k: int) -> PreferenceData:
    """`m` contexts of `n` actions with `k` random comparisons each, Bradley–Terry outcomes from
    N(0, 1) rewards, the same action names in every context (so that `to_problem` can read it), uniform
    pi_ref."""
    ctx = np.repeat(np.arange(m), k)
    a = rng.integers(0, n, m * k)
    b = (a + rng.integers(1, n, m * k)) % n  # never a itself: every context gets its k comparisons
    a, b = a + ctx * n, b + ctx * n
    r = rng.normal(size=m * n)
    first = rng.random(len(a)) < 1 / (1 + np.exp(-(r[a] - r[b])))
    w, l_ = np.where(first, a, b), np.where(first, b, a)
    keys, count = np.unique(w * (m * n) + l_, return_counts=True)
    w, l_ = keys // (m * n), keys % (m * n)
    offsets = np.arange(m + 1) * n
    names = tuple(f"a{i % n}" for i in range(m * n))
    return PreferenceData(
        context=w // n, winner=w, loser=l_, count=count.astype(float), offsets=offsets,
        log_pi_ref=np.full(m * n, -np.log(n)), context_ids=tuple(f"x{c}" for c in range(m)),
        context_texts=tuple(f"p{c}" for c in range(m)), action_ids=names, action_texts=names, ties=np.zeros(m),
        source=SourceRecord(path="memory", sha256="0" * 64, format="test", rows_read=len(w)),
    )


@pytest.mark.parametrize("m", [pytest.param(300, id="300-prompts"),
                               pytest.param(5000, id="5000-prompts", marks=pytest.mark.slow)])
def test_many_prompts_equal_the_per_context_solvers(m: int) -> None:
    # All prompts at once (one block-diagonal system per Newton step, each prompt its own line search and
    # stopping rule; divergence limits once per comparison pattern) against one exact solve per context.
    from psipo_cli.problem.datasets.data import to_problem

    data = random_dataset(np.random.default_rng(m), m, 4, 5)
    solved = solve_dataset(data, SPECS, TAUS)
    runs = solve_exact(to_problem(data), SPECS, TAUS, "dataset")
    by_key = {(r.label, r.tau, r.context): r for r in runs}
    for sol in solved:
        for t, tau in enumerate(TAUS):
            expected = np.stack([by_key[sol.label, tau, c].policy for c in range(m)])
            np.testing.assert_allclose(sol.policy[t].reshape(m, 4), expected, rtol=0, atol=1e-12)
            assert list(sol.status[t]) == [by_key[sol.label, tau, c].status for c in range(m)]
    dpo, ipo = solved[0], solved[1]
    assert 0 < (dpo.status == "diverged").mean() < 1 and (ipo.status == "optimal").all()


@pytest.mark.parametrize("n", [pytest.param(1500, id="1500-actions"),
                               pytest.param(20_000, id="20000-actions", marks=pytest.mark.slow)])
def test_one_large_context_meets_the_first_order_conditions(n: int) -> None:
    # One context past ITERATIVE_FROM actions (conjugate gradients, the divergence limit from the comparison
    # arrays): the answers satisfy the optimality conditions written from the losses' definitions.
    from psipo_cli.methods.linalg import strong_components

    data = random_dataset(np.random.default_rng(n), 1, n, 10 * n)
    w, l_, c = data.winner, data.loser, data.count
    dpo, ipo, _, ridge = solve_dataset(data, SPECS, TAUS)
    t, tau = 2, TAUS[2]

    def flows(per_pair: np.ndarray) -> np.ndarray:
        return np.bincount(w, weights=per_pair, minlength=n) - np.bincount(l_, weights=per_pair, minlength=n)

    # IPO: d/d delta of mean c (h - 1/(2 tau))^2 is 2 c (h - 1/(2 tau)) (e_w - e_l) / sum c = 0.
    delta = np.log(ipo.policy[t] * n)
    h = delta[w] - delta[l_]
    assert np.abs(flows(2 * c * (h - 0.5 / tau)) / c.sum()).max() < 1e-9
    # RLHF with ridge 0.1: -c sigmoid(-(r_w - r_l)) (e_w - e_l) / sum c + 0.1 r = 0, and pi ∝ exp(r / tau).
    r = ridge.reward
    grad = flows(-c / (1 + np.exp(r[w] - r[l_]))) / c.sum() + 0.1 * r
    assert np.abs(grad).max() < 1e-9
    np.testing.assert_allclose(ridge.policy[t], np.exp(r / tau) / np.exp(r / tau).sum(), rtol=1e-9)
    # DPO on these data: some comparisons separate strongly connected components (an action that never
    # loses, or never wins), so the optimum diverges and every component that loses a separating
    # comparison gets probability 0 (the losing components of the limit, for every tau).
    strong = strong_components(w, l_, n)
    across = strong[w] != strong[l_]
    assert across.any() and (dpo.status == "diverged").all()
    losing = np.isin(strong, strong[l_[across]])
    assert (dpo.policy[:, losing] == 0).all() and np.allclose(dpo.policy.sum(axis=1), 1.0)


def test_a_family_without_a_vectorised_solver_is_solved_context_by_context() -> None:
    # `per_context` (families without `solve_dataset`) must give what the vectorised families give: DPO
    # through it equals DPO through `PairwiseFamily.solve_dataset`.
    from psipo_cli.methods import get_method
    from psipo_cli.solvers.dataset import per_context

    prompts = random_prompts(np.random.default_rng(5), 10)
    prompts.append({"actions": ["x", "y"], "pairs": []})
    data = dataset(prompts)
    dpo = get_method("dpo")
    slow = per_context(dpo, data, tuple(TAUS), dpo.option_values({}))
    fast = solve_dataset(data, [method_spec("dpo")], TAUS)[0]
    np.testing.assert_allclose(slow.policy, fast.policy, atol=1e-12)
    assert (slow.status == fast.status).all()
    np.testing.assert_allclose(slow.loss, fast.loss, rtol=1e-12, atol=1e-14)
