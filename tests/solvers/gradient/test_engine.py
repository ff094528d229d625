"""The vectorised gradient engine (`psipo_cli.solvers.gradient`).

Expected values come from elsewhere than the engine: central finite differences of the methods' own
loss functions, the exact solvers (`solvers.exact`), closed forms, or a plain per-run re-implementation
of the minibatch algorithm written here.
"""

from __future__ import annotations

import numpy as np
import pytest
from reference.routes import central_diff

from psipo_cli.api import solve
from psipo_cli.config.settings import GradientSettings
from psipo_cli.errors import InputError
from psipo_cli.methods import METHODS, get_method
from psipo_cli.methods.kl import regularised_value
from psipo_cli.methods.linalg import log_of, mean_pair_loss, pairs_of
from psipo_cli.methods.population.psipo import clipped_target
from psipo_cli.methods.reward_model.rlhf import reward_gradient, reward_objective
from psipo_cli.problem import build_problem, preset, realise
from psipo_cli.solvers.exact import solve_exact
from psipo_cli.solvers.gradient import (
    STREAM_CHUNK,
    KLBlock,
    KLLane,
    PairBlock,
    PairLane,
    comparisons,
    lane_softmax,
    record_grid,
    run_gradient,
)
from psipo_cli.solvers.runs import method_spec

PAPER_TAUS = [0.1, 0.5, 1.0, 2.0]
FULL_SGD = {"optimizer": "sgd", "batch_size": 0, "seeds": 1}


def by_key(runs):
    """Runs grouped by (label, tau, context), seeds in order."""
    out: dict = {}
    for r in runs:
        out.setdefault((r.label, r.tau, r.context), []).append(r)
    return out



@pytest.fixture(scope="module")
def random_W() -> np.ndarray:
    """A 4-action win-count matrix with uneven, non-integer counts and one absent pair."""
    rng = np.random.default_rng(11)
    W = rng.uniform(0.5, 3.0, size=(4, 4))
    np.fill_diagonal(W, 0.0)
    W[2, 3] = 0.0
    return W


# ----------------------------------------------------------------------------------------------------
# Analytic gradients of the step kernels vs central finite differences of the methods' own losses
# ----------------------------------------------------------------------------------------------------


def pair_kernel(method: str, W: np.ndarray, X: np.ndarray, taus, l2: float = 0.0) -> np.ndarray:
    """The engine's full-batch pairwise step kernel on lanes `X` (one lane per tau)."""
    m = get_method(method)
    data = comparisons(W, "ctx")
    lpr = np.zeros(W.shape[0])
    lanes = [PairLane(m.pair_grad, tau, l2, data, None, 1, lpr) for tau in taus]
    block = PairBlock(lanes, 0, W.shape[0], batch_size=0, seed=0)
    return block.gradient(X, 0)


@pytest.mark.parametrize("method", [n for n, m in METHODS.items() if m.family.name == "pairwise"])
def test_pairwise_kernel_matches_finite_differences(method, random_W):
    # The mean pair loss `sum W f(delta_w - delta_l; tau) / sum W` (methods.linalg) is the function
    # the engine minimises; its gradient by central differences must equal the kernel's, lane by lane.
    rng = np.random.default_rng(0)
    taus = [0.3, 1.0, 2.5]
    X = rng.normal(size=(len(taus), 4))
    G = pair_kernel(method, random_W, X, taus)
    m = get_method(method)
    for i, tau in enumerate(taus):
        fd = central_diff(lambda d, tau=tau: mean_pair_loss(d, random_W, m.pair_loss, tau), X[i])
        np.testing.assert_allclose(G[i], fd, rtol=1e-6, atol=1e-8)


def test_reward_model_kernel_matches_finite_differences(random_W):
    # RLHF stage 1: mean Bradley-Terry loss + (rm_l2 / 2) ||r||^2, i.e.
    # methods.reward_model.rlhf.reward_objective.
    rng = np.random.default_rng(1)
    X = rng.normal(size=(1, 4))
    for l2 in (0.0, 0.3):
        G = pair_kernel("rlhf", random_W, X, [1.0], l2=l2)
        fd = central_diff(lambda r, l2=l2: reward_objective(r, random_W, l2=l2), X[0])
        np.testing.assert_allclose(G[0], fd, rtol=1e-6, atol=1e-8)


def kl_kernel(X: np.ndarray, reward: np.ndarray, pi_ref: np.ndarray, taus) -> np.ndarray:
    lpr = log_of(pi_ref)
    block = KLBlock([KLLane(tau, reward, lpr) for tau in taus], 0)
    block.set_rewards(np.tile(reward, (len(taus), 1)))
    return block.gradient(X, 0)


def test_kl_stage_kernel_matches_finite_differences():
    # -J(pi) with J = sum pi r - tau KL(pi || pi_ref) (methods.kl.regularised_value), pi = softmax of
    # log pi_ref + delta; an action with pi_ref = 0 has zero gradient and stays at probability 0.
    rng = np.random.default_rng(2)
    pi_ref = np.array([0.4, 0.3, 0.0, 0.3])
    reward = rng.normal(size=4)
    taus = [0.2, 1.0, 3.0]
    X = rng.normal(size=(len(taus), 4))
    G = kl_kernel(X, reward, pi_ref, taus)
    lpr = log_of(pi_ref)
    for i, tau in enumerate(taus):

        def minus_j(d, tau=tau):
            pi = lane_softmax(lpr[None, :], d[None, :])[0]
            return -regularised_value(pi, reward, pi_ref, tau)

        np.testing.assert_allclose(G[i], central_diff(minus_j, X[i]), rtol=1e-6, atol=1e-8)
        assert G[i, 2] == 0.0


@pytest.mark.parametrize("psi", ["identity", "logit", "log"])
def test_psipo_objective_gradient_matches_finite_differences(psi):
    # The ΨPO population objective (paper Eq. 6) written out independently of the engine:
    # J(delta) = sum_y pi_y sum_y' mu_y' Psi(P[y, y']) - tau KL(pi || pi_ref), with a Bradley-Terry P
    # (finite Psi everywhere); the engine's KL kernel with r = clipped_target(...) must be its gradient.
    r_true = np.array([0.7, 0.0, -0.4])
    P = 1.0 / (1.0 + np.exp(-(r_true[:, None] - r_true[None, :])))
    mu = np.array([0.5, 0.2, 0.3])
    pi_ref = np.array([0.2, 0.5, 0.3])
    psi_fn = {"identity": lambda q: q, "logit": lambda q: np.log(q / (1 - q)), "log": np.log}[psi]
    g_direct = (psi_fn(P) * mu[None, :]).sum(axis=1)
    g, note = clipped_target(P, mu, pi_ref, psi, 1e-6)
    np.testing.assert_allclose(g, g_direct, rtol=1e-12)
    assert note == ""
    tau = 0.7
    X = np.array([[0.3, -0.2, 0.5]])

    def minus_j(d):
        pi = pi_ref * np.exp(d) / np.sum(pi_ref * np.exp(d))
        return -(pi @ g_direct - tau * np.sum(pi * np.log(pi / pi_ref)))

    np.testing.assert_allclose(kl_kernel(X, g, pi_ref, [tau])[0], central_diff(minus_j, X[0]), rtol=1e-6)


def test_clipped_target_clips_only_infinite_entries():
    # paper-two-actions: P = [[1/2, 1], [0, 1/2]], mu uniform. logit(1) = +inf, so P is clipped to
    # 1 - eps there (and to eps at P = 0): g = mu * (logit(1/2), logit(1 - eps)) = (0 + L) / 2, with
    # L = log((1 - eps) / eps); identity is finite and nothing is clipped.
    P = np.array([[0.5, 1.0], [0.0, 0.5]])
    mu = pi_ref = np.array([0.5, 0.5])
    eps = 1e-6
    L = np.log((1 - eps) / eps)
    g, note = clipped_target(P, mu, pi_ref, "logit", eps)
    np.testing.assert_allclose(g, [L / 2, -L / 2], rtol=1e-10)  # 1 - eps itself is rounded
    assert note == "P clipped to [1e-06, 1 - 1e-06] where Psi(P) is infinite"
    g, note = clipped_target(P, mu, pi_ref, "identity", eps)
    np.testing.assert_allclose(g, [0.75, 0.25])
    assert note == ""


# ----------------------------------------------------------------------------------------------------
# The minibatch scheme, against a plain per-run re-implementation of the specification
# ----------------------------------------------------------------------------------------------------


def reference_minibatch_sgd(
    W: np.ndarray, pair_grad, tau: float, lr: float, steps: int, batch: int, root: int, k: int, c: int
) -> np.ndarray:
    """SGD on the mean pair loss, one run, written from the spec (docs/maths.md §3).

    Stream `default_rng(SeedSequence([root, k, c]))`, read `STREAM_CHUNK` steps x `batch` uniforms at a
    time; row `(w, l)` drawn with probability `W[w,l] / sum W` by inverse CDF over `np.nonzero(W)` order;
    gradient = mean over the batch of `f'(h) (e_w - e_l)`.
    """
    w, l_, cnt = pairs_of(W)
    cum = np.cumsum(cnt / cnt.sum())
    rng = np.random.default_rng(np.random.SeedSequence([root, k, c]))
    delta = np.zeros(W.shape[0])
    u = np.empty((0, batch))
    for t in range(steps):
        if t % STREAM_CHUNK == 0:
            u = rng.random((STREAM_CHUNK, batch))
        j = np.minimum(np.searchsorted(cum, u[t % STREAM_CHUNK], side="right"), len(w) - 1)
        grad = np.zeros_like(delta)
        for b in range(batch):
            gb = pair_grad(delta[w[j[b]]] - delta[l_[j[b]]], tau) / batch
            grad[w[j[b]]] += gb
            grad[l_[j[b]]] -= gb
        delta = delta - lr * grad
    return delta


def test_minibatch_sgd_matches_per_run_reference():
    # bt-finite samples its data: seed k trains on dataset k (realise(problem, k)) with stream (root, k, 0).
    # 600 steps cross a stream-chunk boundary (512).
    problem = preset("bt-finite")
    settings = GradientSettings(optimizer="sgd", lr=0.05, steps=600, batch_size=5, seeds=3, seed=4)
    _, runs = run_gradient(problem, [method_spec("dpo"), method_spec("ipo")], [0.7], settings, "dataset")
    for r in runs:
        W = realise(problem, r.seed).contexts[0].wins
        delta = reference_minibatch_sgd(W, get_method(r.method).pair_grad, r.tau, 0.05, 600, 5, 4, r.seed, 0)
        pi_ref = problem.contexts[0].pi_ref
        expected = pi_ref * np.exp(delta) / np.sum(pi_ref * np.exp(delta))
        np.testing.assert_allclose(r.policy, expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name, batch", [("paper-d1", 9), ("bt-finite", 20)])
def test_fewer_comparisons_than_rows_evaluate_f_prime_once_per_comparison(name, batch, monkeypatch):
    # paper-d1 has 3 comparisons, bt-finite's sampled datasets at most 12 (4 actions), some fewer (padding):
    # f' is called on (lanes, max comparisons) arrays, not (lanes, batch), and the runs still follow the
    # per-run reference of the specification (mean over the batch rows of f'(h) (e_w - e_l)).
    problem = preset(name)
    settings = GradientSettings(optimizer="sgd", lr=0.05, steps=600, batch_size=batch, seeds=3, seed=4)
    shapes: list[tuple[int, ...]] = []

    def recording(f):
        def pair_grad(h, tau):
            shapes.append(np.shape(h))
            return f(h, tau)

        return pair_grad

    for m in ("dpo", "ipo"):  # frozen dataclasses: the engine reads `method.loss.pair_grad`
        loss = get_method(m).loss
        monkeypatch.setitem(loss.__dict__, "pair_grad", recording(loss.pair_grad))
    _, runs = run_gradient(problem, [method_spec("dpo"), method_spec("ipo")], [0.7], settings, "dataset")
    monkeypatch.undo()
    most = max(len(pairs_of(realise(problem, k).contexts[0].wins)[0]) for k in range(3))
    assert most < batch
    assert {s for s in shapes if len(s) == 2} == {(3, most)}  # 3 seeds per method; one call per method
    for r in runs:
        W = realise(problem, r.seed).contexts[0].wins
        delta = reference_minibatch_sgd(W, get_method(r.method).pair_grad, r.tau, 0.05, 600, batch, 4, r.seed, 0)
        pi_ref = problem.contexts[0].pi_ref
        expected = pi_ref * np.exp(delta) / np.sum(pi_ref * np.exp(delta))
        np.testing.assert_allclose(r.policy, expected, rtol=1e-12, atol=1e-15)


# ----------------------------------------------------------------------------------------------------
# The claims at the paper's defaults (Adam, lr 0.01, batch 9, 18000 steps, 10 seeds)
# ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["paper-d1", "paper-d3"])
def paper_defaults(request):
    name = request.param
    problem = preset(name)
    settings = GradientSettings()
    assert (settings.steps, settings.lr, settings.batch_size, settings.seeds, settings.optimizer) == (
        18000,
        0.01,
        9,
        10,
        "adam",
    )
    specs = [method_spec("ipo"), method_spec("dpo")]
    steps, runs = run_gradient(problem, specs, PAPER_TAUS, settings, "dataset")
    exact = {(r.label, r.tau): r.policy for r in solve_exact(problem, specs, PAPER_TAUS, "dataset")}
    return name, steps, by_key(runs), exact


def test_ipo_paper_defaults_match_exact(paper_defaults):
    # Issue 3: the seed mean at the last step is within 0.01 of the exact IPO policy, every tau; and the
    # status rule calls all these jittering-but-settled runs converged.
    _, _, runs, exact = paper_defaults
    for tau in PAPER_TAUS:
        members = runs["ipo", tau, 0]
        assert len(members) == 10
        mean = np.mean([r.policy for r in members], axis=0)
        assert np.max(np.abs(mean - exact["ipo", tau])) < 0.01, (tau, mean, exact["ipo", tau])
        assert all(r.status == "converged" for r in members), [r.detail for r in members]


def test_dpo_paper_defaults_ignore_tau(paper_defaults):
    # Issue 3 / paper §5.4: on D1 DPO sends pi(a) above 0.99 for every tau; on our D3 pi(c) below 0.01.
    # The offsets grow forever (separable data): every run is still `running`.
    name, _, runs, _ = paper_defaults
    for tau in PAPER_TAUS:
        members = runs["dpo", tau, 0]
        mean = np.mean([r.policy for r in members], axis=0)
        if name == "paper-d1":
            assert mean[0] > 0.99, (tau, mean)
        else:
            assert mean[2] < 0.01, (tau, mean)
        assert all(r.status == "running" for r in members)
        assert all("still moving" in r.detail for r in members)


def test_status_tells_jitter_from_divergence():
    # The other side of the status rule: on `cycle` the DPO (and RLHF) minimiser exists (delta = 0, the
    # uniform policy) and the minibatch Adam iterate only jitters around it, so every run is `converged`
    # — although its final-iterate gradient is far from 0 (minibatch noise), which is why the rule looks
    # at the averaged iterate. Same data with one comparison reversed to make it separable: `running`.
    settings = GradientSettings()
    _, runs = run_gradient(preset("cycle"), [method_spec("dpo"), method_spec("ipo")], PAPER_TAUS, settings, "dataset")
    assert all(r.status == "converged" for r in runs), [r.detail for r in runs if r.status != "converged"]
    assert max(r.grad_norm for r in runs) > 1e-3
    flipped = build_problem(
        {
            "name": "acyclic",
            "actions": ["a", "b", "c"],
            "pairs": [{"winner": "a", "loser": "b"}, {"winner": "b", "loser": "c"}, {"winner": "a", "loser": "c"}],
        }
    )
    _, runs = run_gradient(flipped, [method_spec("dpo")], PAPER_TAUS, settings, "dataset")
    assert all(r.status == "running" for r in runs)


def test_curves_grid_and_shape(paper_defaults):
    # The grid is log-spaced, starts at 0 (= pi_ref) and ends at the last step (= the final policy).
    _, steps, runs, _ = paper_defaults
    assert steps[0] == 0 and steps[-1] == 18000 and np.all(np.diff(steps) > 0)
    np.testing.assert_array_equal(steps, record_grid(18000, 60))
    r = runs["ipo", 1.0, 0][0]
    assert r.curve.shape == (len(steps), 3)
    np.testing.assert_allclose(r.curve[0], [1 / 3] * 3)
    np.testing.assert_array_equal(r.curve[-1], r.policy)
    np.testing.assert_allclose(r.curve.sum(axis=1), 1.0)


def test_record_grid_small_cases():
    np.testing.assert_array_equal(record_grid(1, 60), [0, 1])
    np.testing.assert_array_equal(record_grid(5, 2), [0, 1, 5])
    grid = record_grid(18000, 60)
    ratios = grid[1:][grid[1:] > 50] / grid[:-1][grid[1:] > 50]
    assert ratios.max() < 1.2  # geometric spacing once integer rounding stops mattering


# ----------------------------------------------------------------------------------------------------
# Full-batch SGD reaches every exact `optimal` case; on a diverged case it approaches the exact limit
# ----------------------------------------------------------------------------------------------------


def strongly_connected_problem():
    """A random 5-action dataset whose comparison graph is strongly connected (the DPO MLE exists)."""
    from psipo_cli.methods.linalg import comparison_graph

    rng = np.random.default_rng(7)
    actions = list("abcde")
    pairs = [
        {"winner": actions[i], "loser": actions[j], "count": int(rng.integers(1, 4))}
        for i in range(5)
        for j in range(5)
        if i != j and rng.random() < 0.6
    ]
    problem = build_problem(
        {"name": "random-sc", "actions": actions, "pairs": pairs, "pi_ref": [0.3, 0.2, 0.2, 0.2, 0.1]}
    )
    graph = comparison_graph(problem.contexts[0].wins)
    assert graph.has_minimiser and len(set(graph.strong)) == 1
    return problem


ALL_SPECS = [
    method_spec("ipo"),
    method_spec("dpo"),
    method_spec("rlhf"),
    method_spec("rlhf", "rlhf-l2", rm_l2=0.1),
    method_spec("psipo", "psipo-identity", psi="identity"),
    method_spec("psipo", "psipo-logit", psi="logit"),
    method_spec("psipo", "psipo-log", psi="log"),
]


def test_full_batch_sgd_reaches_every_optimal_exact_case():
    # Every (preset or random strongly connected dataset) x objective x method x tau whose exact status is
    # `optimal`: full-batch SGD from pi_ref must land on the exact policy to 1e-6, and say `converged`.
    # lr 0.4 is below 2 / (largest curvature) for all of them (IPO's mean-loss Hessian has eigenvalue 4 on
    # paper-two-actions, so 0.5 would sit exactly at the edge of stability).
    problems = {name: preset(name) for name in ("paper-d1", "paper-d3", "paper-two-actions", "cycle", "bt-finite")}
    problems["random-sc"] = strongly_connected_problem()
    taus = [0.5, 2.0]
    settings = GradientSettings(lr=0.4, steps=10000, **FULL_SGD)
    checked = set()
    for name, problem in problems.items():
        objectives = (["dataset"] if problem.has_data else []) + (["population"] if problem.has_model else [])
        for objective in objectives:
            cases = []
            for spec in ALL_SPECS:
                try:
                    exact = solve_exact(problem, [spec], taus, objective)
                except InputError:  # psipo from data with unobserved pairs: no objective to optimise
                    continue
                cases += [(spec, r) for r in exact if r.status == "optimal"]
            if not cases:
                continue
            specs = list({spec.label: spec for spec, _ in cases}.values())
            _, runs = run_gradient(problem, specs, taus, settings, objective)
            got = {(r.label, r.tau): r for r in runs}
            for spec, ex in cases:
                r = got[spec.label, ex.tau]
                assert np.max(np.abs(r.policy - ex.policy)) < 1e-6, (name, objective, spec.label, ex.tau)
                assert r.status == "converged", (name, objective, spec.label, ex.tau, r.detail)
                assert r.grad_norm < 1e-6
                checked.add((name, spec.label))
    # The cases the issue names are among them.
    for case in [
        ("cycle", "dpo"),
        ("cycle", "rlhf"),
        ("random-sc", "dpo"),
        ("random-sc", "rlhf"),
        ("paper-d1", "rlhf-l2"),
        ("paper-two-actions", "psipo-identity"),
        ("bt-finite", "psipo-logit"),
    ]:
        assert case in checked, case
    assert all((name, "ipo") in checked for name in problems)


def test_full_batch_losses_match_exact_losses():
    # At the optimum the reported `loss` is the method's own objective, as the exact solver reports it.
    problem = strongly_connected_problem()
    specs = [method_spec("ipo"), method_spec("dpo"), method_spec("rlhf", rm_l2=0.2)]
    _, runs = run_gradient(problem, specs, [1.0], GradientSettings(lr=0.4, steps=4000, **FULL_SGD), "dataset")
    exact = {r.label: r for r in solve_exact(problem, specs, [1.0], "dataset")}
    for r in runs:
        assert r.loss == pytest.approx(exact[r.label].loss, rel=1e-9, abs=1e-12)


def tv(curve: np.ndarray, target: np.ndarray) -> np.ndarray:
    return 0.5 * np.abs(curve - target).sum(axis=-1)


def test_full_batch_sgd_approaches_diverged_dpo_limit():
    # paper-d1 has no DPO minimiser: the exact solver reports the limit (1, 0, 0) for every tau. Plain
    # gradient descent follows the max-margin direction (Soudry et al. 2018): the distance to the limit
    # falls monotonically along the curve and is small at the end (slower for larger tau).
    problem = preset("paper-d1")
    taus = [0.5, 1.0, 2.0]
    exact = {r.tau: r for r in solve_exact(problem, [method_spec("dpo")], taus, "dataset")}
    _, runs = run_gradient(
        problem, [method_spec("dpo")], taus, GradientSettings(lr=1.0, steps=5000, **FULL_SGD), "dataset"
    )
    for r in runs:
        assert exact[r.tau].status == "diverged"
        np.testing.assert_array_equal(exact[r.tau].policy, [1.0, 0.0, 0.0])
        d = tv(r.curve, exact[r.tau].policy)
        assert np.all(np.diff(d) <= 1e-15)
        assert d[-1] < {0.5: 1e-4, 1.0: 1e-3, 2.0: 0.02}[r.tau]
        assert r.status == "running"


def test_full_batch_sgd_follows_max_margin_limit():
    # A check of docs/maths.md §4: D1 on {a, b, c} plus one pair d -> e. Both a and d are unbeaten, but the max-margin
    # direction gives a margin 1 over c's component vs 1/2 for d, so the limit puts all mass on a. Early
    # on, d gains mass (it wins its only comparison); gradient descent must then hand it back to a.
    problem = build_problem(
        {
            "name": "d1-de",
            "actions": list("abcde"),
            "pairs": [
                {"winner": "a", "loser": "b"},
                {"winner": "b", "loser": "c"},
                {"winner": "a", "loser": "c"},
                {"winner": "d", "loser": "e"},
            ],
        }
    )
    (exact,) = solve_exact(problem, [method_spec("dpo")], [0.5], "dataset")
    assert exact.status == "diverged"
    np.testing.assert_allclose(exact.policy, [1, 0, 0, 0, 0], atol=1e-12)
    _, (r,) = run_gradient(
        problem, [method_spec("dpo")], [0.5], GradientSettings(lr=1.0, steps=20000, **FULL_SGD), "dataset"
    )
    d = tv(r.curve, exact.policy)
    assert np.all(np.diff(d) <= 1e-15) and d[-1] < 0.005
    ratio = r.curve[1:, 3] / r.curve[1:, 0]  # pi(d) / pi(a) -> 0, but only like a power of the step
    assert ratio[-1] < 0.05 * ratio[len(ratio) // 2]


# ----------------------------------------------------------------------------------------------------
# Streams: determinism, independence from batching (common random numbers), contexts
# ----------------------------------------------------------------------------------------------------


def assert_same_run(a, b):
    assert (a.label, a.tau, a.seed, a.context, a.status, a.detail) == (
        b.label,
        b.tau,
        b.seed,
        b.context,
        b.status,
        b.detail,
    )
    np.testing.assert_array_equal(a.policy, b.policy)
    np.testing.assert_array_equal(a.curve, b.curve)
    assert a.loss == b.loss and a.grad_norm == b.grad_norm


def test_same_seed_same_results_and_identical_curves_csv():
    settings = GradientSettings(steps=700, seeds=3)
    kwargs = {"solver": "gradient", "settings": settings, "rm_l2": 0.1}
    first = solve("bt-finite", ["dpo", "ipo", "rlhf"], [0.5, 1.0], **kwargs)
    second = solve("bt-finite", ["dpo", "ipo", "rlhf"], [0.5, 1.0], **kwargs)
    assert first.curves.to_csv(index=False).encode() == second.curves.to_csv(index=False).encode()
    for a, b in zip(first.runs, second.runs, strict=True):
        assert_same_run(a, b)
    other = solve("bt-finite", ["dpo"], [0.5], solver="gradient", settings=GradientSettings(steps=700, seeds=3, seed=1))
    assert not np.array_equal(other.runs[0].policy, first.runs[0].policy)


def test_batching_never_changes_a_run():
    # Runs of seed k share the stream (root, k, c), whatever else is in the call: taus together vs one at a
    # time, methods together vs alone, more seeds vs fewer — bit-identical per-run numbers. RLHF's reward
    # stage (shared across taus, early-stopped at rm_steps) included.
    problem = preset("bt-finite")
    specs = [method_spec("dpo"), method_spec("ipo"), method_spec("rlhf", rm_l2=0.05, rm_steps=300)]
    settings = GradientSettings(steps=800, seeds=3)
    _, together = run_gradient(problem, specs, [0.1, 1.0, 3.0], settings, "dataset")
    runs = {(r.label, r.tau, r.seed): r for r in together}
    for spec in specs:
        for tau in (1.0, 3.0):
            _, alone = run_gradient(problem, [spec], [tau], settings, "dataset")
            for r in alone:
                assert_same_run(r, runs[spec.label, tau, r.seed])
    _, fewer = run_gradient(problem, specs[:1], [0.1], GradientSettings(steps=800, seeds=2), "dataset")
    for r in fewer:
        assert_same_run(r, runs["dpo", 0.1, r.seed])


def test_methods_share_minibatches():
    # Common random numbers, checked through Prop. 4 on the trajectory: RLHF's reward stage (rm_l2 = 0) is
    # DPO's loss at tau = 1 on the rewards, with the same optimiser. If seed k's reward stage reads the
    # same minibatches as seed k's DPO run, its reward after rm_steps = S steps IS the DPO offset after S
    # steps, so the reported losses (mean BT loss at r vs mean DPO loss at delta) and gradients agree.
    problem = preset("bt-finite")
    settings = GradientSettings(steps=900, seeds=3)
    _, runs = run_gradient(problem, [method_spec("dpo"), method_spec("rlhf", rm_steps=900)], [1.0], settings, "dataset")
    dpo = {r.seed: r for r in runs if r.method == "dpo"}
    rlhf = {r.seed: r for r in runs if r.method == "rlhf"}
    for k in range(3):
        assert rlhf[k].loss == dpo[k].loss and rlhf[k].grad_norm == dpo[k].grad_norm
    assert len({round(r.loss, 12) for r in dpo.values()}) == 3  # and the seeds do differ


def test_minibatch_of_identical_rows_equals_full_batch():
    # With a single recorded comparison every minibatch row is that comparison, so the minibatch mean
    # gradient equals the full-batch gradient: same curve whatever the seed.
    problem = build_problem({"name": "one", "actions": ["a", "b"], "pairs": [{"winner": "a", "loser": "b"}]})
    _, runs = run_gradient(problem, [method_spec("dpo")], [1.0], GradientSettings(steps=300, seeds=3), "dataset")
    _, full = run_gradient(
        problem, [method_spec("dpo")], [1.0], GradientSettings(steps=300, seeds=1, batch_size=0), "dataset"
    )
    for r in runs:
        np.testing.assert_allclose(r.curve, full[0].curve, rtol=1e-13)


def test_adam_follows_the_optax_convention(random_W):
    # optax's Adam: m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; theta -= lr m_hat / (sqrt(v_hat) + eps), with the
    # bias corrections 1 - b^t, t from 1. Written out here on the full-batch DPO gradient of
    # methods.linalg.mean_pair_grad. 150 steps: the gradient is still ~1e-5 (much later it reaches the
    # rounding floor, where Adam amplifies 1e-17 differences and any two implementations part ways).
    from psipo_cli.methods.linalg import mean_pair_grad

    problem = build_problem(
        {
            "name": "w",
            "actions": list("abcd"),
            "pairs": [
                {"winner": "abcd"[w], "loser": "abcd"[l_], "count": float(random_W[w, l_])}
                for w, l_ in zip(*np.nonzero(random_W), strict=True)
            ],
        }
    )
    settings = GradientSettings(steps=150, batch_size=0, seeds=1, lr=0.05, b1=0.8, b2=0.99, adam_eps=1e-6)
    _, (run,) = run_gradient(problem, [method_spec("dpo")], [0.8], settings, "dataset")
    theta, m, v = np.zeros(4), np.zeros(4), np.zeros(4)
    for t in range(1, 151):
        g = mean_pair_grad(theta, random_W, get_method("dpo").pair_grad, 0.8)
        m = 0.8 * m + 0.2 * g
        v = 0.99 * v + 0.01 * g**2
        theta = theta - 0.05 * (m / (1 - 0.8**t)) / (np.sqrt(v / (1 - 0.99**t)) + 1e-6)
    np.testing.assert_allclose(run.policy, np.exp(theta) / np.exp(theta).sum(), rtol=1e-12)


def two_context_table(first: dict, second: dict) -> dict:
    return {"name": "two", "actions": ["a", "b", "c"], "contexts": [first, second]}


CTX_A = {
    "name": "x0",
    "pairs": [
        {"winner": "a", "loser": "b"},
        {"winner": "b", "loser": "c", "count": 2},
        {"winner": "c", "loser": "a"},
    ],
}
CTX_B = {
    "name": "x1",
    "pi_ref": [0.5, 0.25, 0.25],
    "pairs": [
        {"winner": "b", "loser": "a", "count": 3},
        {"winner": "a", "loser": "b"},
        {"winner": "c", "loser": "b"},
    ],
}
CTX_C = {"name": "x2", "pairs": [{"winner": "c", "loser": "a"}]}


def test_contexts_are_independent_lanes():
    # Context 0 of a two-context problem == the one-context problem made of it (stream (root, k, 0) in
    # both); context 1 does not depend on what context 0 holds (its own stream (root, k, 1)).
    specs = [method_spec("dpo"), method_spec("ipo"), method_spec("rlhf", rm_l2=0.1)]
    settings = GradientSettings(steps=600, seeds=2)
    both = build_problem(two_context_table(CTX_A, CTX_B))
    alone = build_problem(
        {"name": "one", "actions": ["a", "b", "c"], **{k: v for k, v in CTX_A.items() if k != "name"}}
    )
    swapped_first = build_problem(two_context_table(CTX_C, CTX_B))
    _, r_both = run_gradient(both, specs, [0.5, 2.0], settings, "dataset")
    _, r_alone = run_gradient(alone, specs, [0.5, 2.0], settings, "dataset")
    _, r_swap = run_gradient(swapped_first, specs, [0.5, 2.0], settings, "dataset")
    ctx0 = [r for r in r_both if r.context == 0]
    assert len(ctx0) == len(r_alone) == 12
    for a, b in zip(ctx0, r_alone, strict=True):
        assert_same_run(a, b)
    for a, b in zip([r for r in r_both if r.context == 1], [r for r in r_swap if r.context == 1], strict=True):
        assert_same_run(a, b)
    # The second context's pi_ref is honoured: IPO full batch lands on its exact solution.
    exact = {(r.label, r.tau, r.context): r.policy for r in solve_exact(both, specs[1:2], [0.5], "dataset")}
    _, full = run_gradient(both, specs[1:2], [0.5], GradientSettings(lr=0.4, steps=3000, **FULL_SGD), "dataset")
    for r in full:
        np.testing.assert_allclose(r.policy, exact["ipo", 0.5, r.context], atol=1e-9)


def test_sampled_problem_uses_dataset_k_for_seed_k():
    # bt-finite samples 20 comparisons per seed: full-batch SGD on seed k lands on the exact IPO solution of
    # dataset k (solve_exact with datasets=3), and the datasets differ.
    problem = preset("bt-finite")
    settings = GradientSettings(optimizer="sgd", batch_size=0, lr=0.4, steps=3000, seeds=3)
    _, runs = run_gradient(problem, [method_spec("ipo")], [1.0], settings, "dataset")
    exact = solve_exact(problem, [method_spec("ipo")], [1.0], "dataset", datasets=3)
    for r, e in zip(runs, exact, strict=True):
        assert r.seed == e.seed
        np.testing.assert_allclose(r.policy, e.policy, atol=1e-9)
    assert not np.allclose(runs[0].policy, runs[1].policy)


# ----------------------------------------------------------------------------------------------------
# RLHF's two stages, psipo details, pi_ref = 0, settings, progress
# ----------------------------------------------------------------------------------------------------


def test_rlhf_early_stopped_reward_model():
    # rm_steps = 40 full-batch SGD steps on the reward objective (written here with
    # methods.reward_model.rlhf.reward_gradient), then the policy stage converges to pi ∝ pi_ref exp(r/tau):
    # early stopping keeps the policy away from DPO's degenerate limit on paper-d1.
    problem = preset("paper-d1")
    W = problem.contexts[0].wins
    r = np.zeros(3)
    for _ in range(40):
        r = r - 0.5 * reward_gradient(r, W)
    settings = GradientSettings(optimizer="sgd", batch_size=0, lr=0.5, steps=4000, seeds=1)
    _, runs = run_gradient(problem, [method_spec("rlhf", rm_steps=40)], [1.0, 2.0], settings, "dataset")
    for run in runs:
        expected = np.exp(r / run.tau) / np.exp(r / run.tau).sum()
        np.testing.assert_allclose(run.policy, expected, atol=1e-9)
        assert run.loss == pytest.approx(reward_objective(r, W), rel=1e-12)
        assert run.grad_norm == pytest.approx(np.max(np.abs(reward_gradient(r, W))), rel=1e-9)
        # The reward model was stopped early: its own gradient is not small, and the status says so.
        assert run.status == "running" and "reward model: gradient norm" in run.detail
    # settings.rm_steps is the default the option overrides.
    _, same = run_gradient(
        problem,
        [method_spec("rlhf")],
        [1.0, 2.0],
        GradientSettings(optimizer="sgd", batch_size=0, lr=0.5, steps=4000, seeds=1, rm_steps=40),
        "dataset",
    )
    for a, b in zip(runs, same, strict=True):
        assert_same_run(a, b)


def test_psipo_clipped_detail_and_loss():
    # paper-two-actions with logit: Psi(1) infinite, P clipped at eps; the gradient run ascends the clipped
    # objective and reports -J on it, with the clipping in `detail`.
    problem = preset("paper-two-actions")
    settings = GradientSettings(steps=500, seeds=2, eps=1e-3)
    _, runs = run_gradient(problem, [method_spec("psipo")], [1.0], settings, "population")
    g, _ = clipped_target(
        problem.contexts[0].preferences, problem.contexts[0].mu, problem.contexts[0].pi_ref, "logit", 1e-3
    )
    assert len(runs) == 2
    for r in runs:
        assert r.detail.startswith("P clipped to [0.001, 1 - 0.001] where Psi(P) is infinite")
        assert r.loss == pytest.approx(-regularised_value(r.policy, g, problem.contexts[0].pi_ref, 1.0))
        assert r.policy[0] > 0.9
    # The spec's own eps overrides the settings.
    _, (r,) = run_gradient(
        problem, [method_spec("psipo", eps=1e-2)], [1.0], GradientSettings(steps=10, seeds=1), "population"
    )
    assert "[0.01, 1 - 0.01]" in r.detail


def test_zero_reference_probability_stays_zero():
    # An action with pi_ref = 0 (and mu = 0) has logit -inf: probability exactly 0 at every recorded step.
    problem = build_problem(
        {"name": "z", "actions": ["a", "b", "c"], "pi_ref": [0.5, 0.5, 0.0], "rewards": [1.0, 0.0, 2.0]}
    )
    specs = [method_spec("dpo"), method_spec("ipo"), method_spec("rlhf"), method_spec("psipo")]
    _, runs = run_gradient(problem, specs, [1.0], GradientSettings(steps=300, seeds=2), "population")
    for r in runs:
        assert np.all(r.curve[:, 2] == 0.0), r.label
        np.testing.assert_allclose(r.curve.sum(axis=1), 1.0)


def test_progress_reports_all_steps():
    calls = []
    run_gradient(
        preset("paper-d1"),
        [method_spec("rlhf", rm_steps=700), method_spec("dpo")],
        [1.0],
        GradientSettings(steps=1200, seeds=1),
        "dataset",
        progress=lambda d, t: calls.append((d, t)),
    )
    assert calls[-1] == (1900, 1900)  # both RLHF stages count
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert 2 < len(calls) < 20  # occasional, not every step


@pytest.mark.parametrize(
    ("field", "value", "flag"),
    [
        ("steps", 0, "--steps"),
        ("steps", 1.5, "--steps"),
        ("lr", 0.0, "--lr"),
        ("lr", float("nan"), "--lr"),
        ("batch_size", -1, "--batch-size"),
        ("optimizer", "rmsprop", "--optimizer"),
        ("seeds", 0, "--seeds"),
        ("seed", -3, "--seed"),
        ("b1", 1.0, "--b1"),
        ("b2", -0.1, "--b2"),
        ("adam_eps", 0, "--adam-eps"),
        ("rm_steps", 0, "--rm-steps"),
        ("eps", 0.5, "--eps"),
        ("records", True, "--records"),
        ("xtol", -1.0, "--xtol"),
        ("ztol", 0.0, "--ztol"),
        ("gtol", float("inf"), "--gtol"),
    ],
)
def test_settings_validation_names_the_flag(field, value, flag):
    with pytest.raises(InputError) as info:
        GradientSettings(**{field: value})
    assert info.value.key == flag


def test_spec_options_are_validated():
    problem = preset("paper-d1")
    with pytest.raises(InputError) as info:
        run_gradient(problem, [method_spec("rlhf", rm_steps=-2)], [1.0], GradientSettings(steps=5, seeds=1), "dataset")
    assert info.value.key == "--rm-steps"
    with pytest.raises(InputError) as info:
        run_gradient(problem, [method_spec("rlhf", rm_l2=-1.0)], [1.0], GradientSettings(steps=5, seeds=1), "dataset")
    assert info.value.key == "--rm-l2"


def test_overflow_is_reported_as_bad_learning_rate():
    # IPO's mean-loss Hessian on D1 has eigenvalue 2: SGD with lr 5 multiplies the error by -9 per step.
    with pytest.raises(InputError) as info:
        run_gradient(
            preset("paper-d1"),
            [method_spec("ipo")],
            [1.0],
            GradientSettings(optimizer="sgd", batch_size=0, lr=5.0, steps=2000, seeds=1),
            "dataset",
        )
    assert info.value.key == "--lr"
