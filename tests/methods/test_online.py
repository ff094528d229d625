"""The online / self-play methods (`psipo_cli.methods.online`): their tabular updates in the gradient engine, the
loss gradients, and their exact stationary points.

Every expected value is computed here from the method's definition, not by the code under test: each update
is written again in log-probability space with explicit normalisation (Nash-MD, arXiv 2312.00886 Eq. 9; INPO,
arXiv 2407.00617; SPPO's multiplicative weights, arXiv 2405.00675; EGPO's extragradient), loss gradients by
central differences of the loss written from its definition, stationary points by iterating the written
update to convergence, and the 2-action case by hand.
"""

from __future__ import annotations

import numpy as np
import pytest
from reference.routes import central_diff

from psipo_cli.config.settings import GradientSettings
from psipo_cli.problem import build_problem
from psipo_cli.solvers.exact import solve_exact
from psipo_cli.solvers.gradient import run_gradient
from psipo_cli.solvers.runs import method_spec

# A non-transitive (cyclic) preference: 0 beats 1, 1 beats 2, 2 beats 0, with uneven margins.
P = np.array([[0.5, 0.9, 0.2], [0.1, 0.5, 0.7], [0.8, 0.3, 0.5]])
PI_REF = np.array([0.5, 0.3, 0.2])
ACTIONS = ["a", "b", "c"]


def problem(P_: np.ndarray = P, pi_ref: np.ndarray = PI_REF):
    n = len(pi_ref)
    names = ACTIONS[:n]
    return build_problem({"name": "cyc", "actions": names, "pi_ref": pi_ref.tolist(), "preferences": P_.tolist()})


def normalise(logp: np.ndarray) -> np.ndarray:
    e = np.exp(logp - logp.max())
    return e / e.sum()


# -- the updates, written from their definitions ------------------------------------------------------------
def mix(pi: np.ndarray, b: float) -> np.ndarray:
    """Geometric mixture `pi^(1-b) pi_ref^b`, normalised."""
    return normalise((1 - b) * np.log(pi) + b * np.log(PI_REF))


def nash_md_step(pi: np.ndarray, eta: float, tau: float, b: float, P_: np.ndarray = P) -> np.ndarray:
    """`log pi' = (1 - eta tau) log pi + eta tau log pi_ref + eta P pi_mu`, `pi_mu = mix_b(pi)`."""
    return normalise((1 - eta * tau) * np.log(pi) + eta * tau * np.log(PI_REF) + eta * P_ @ mix(pi, b))


def sppo_step(pi: np.ndarray, eta: float) -> np.ndarray:
    """Multiplicative weights `pi' ∝ pi exp(eta P pi)`."""
    return normalise(np.log(pi) + eta * P @ pi)


def egpo_step(pi: np.ndarray, eta: float, tau: float) -> np.ndarray:
    """Half step `∝ pi^(1-eta tau) pi_ref^(eta tau) exp(eta P pi)`, full step from `pi` with `P pi_half`."""
    base = (1 - eta * tau) * np.log(pi) + eta * tau * np.log(PI_REF)
    half = normalise(base + eta * P @ pi)
    return normalise(base + eta * P @ half)


def iterate(step, steps: int, pi: np.ndarray = PI_REF) -> np.ndarray:
    for _ in range(steps):
        pi = step(pi)
    return pi


def engine_with(name: str, tau: float, options: dict, **settings) -> object:
    base = {"seeds": 1, "batch_size": 0, "records": 5}
    s = GradientSettings(**(base | settings))
    (run,) = run_gradient(problem(), [method_spec(name, **options)], [tau], s, "population")[1]
    return run


# -- mirror descent (batch 0) equals the written update, step for step ---------------------------------------
@pytest.mark.parametrize(
    ("name", "options", "step"),
    [
        ("nash-md", {}, lambda pi: nash_md_step(pi, 0.3, 0.5, 0.3 * 0.5)),  # default mixture eta tau
        ("nash-md", {"mixture": 0.4}, lambda pi: nash_md_step(pi, 0.3, 0.5, 0.4)),
        ("nash-md-pg", {}, lambda pi: nash_md_step(pi, 0.3, 0.5, 0.5)),
        ("ipo-md", {}, lambda pi: nash_md_step(pi, 0.3, 0.5, 0.125)),
        ("inpo", {}, lambda pi: nash_md_step(pi, 0.3, 0.5, 0.0)),
        ("online-ipo", {}, lambda pi: nash_md_step(pi, 0.3, 0.5, 0.0)),
        ("sppo", {}, lambda pi: sppo_step(pi, 0.3)),
        ("egpo", {}, lambda pi: egpo_step(pi, 0.3, 0.5)),
    ],
)
def test_md_is_the_method_s_tabular_update(name, options, step) -> None:
    run = engine_with(name, 0.5, options, optimizer="md", lr=0.3, steps=40)
    np.testing.assert_allclose(run.policy, iterate(step, 40), rtol=0, atol=1e-12)


def test_md_follows_a_decreasing_step_and_nash_md_s_mixture_moves_with_it() -> None:
    # inverse-time: eta_t = lr / (1 + k t / T), k = 1 / lr_final - 1; Nash-MD's mixture is eta_t tau.
    T, lr, final, tau = 30, 0.8, 0.1, 0.7
    k = 1 / final - 1
    pi = PI_REF
    for t in range(1, T + 1):
        eta = lr / (1 + k * t / T)
        pi = nash_md_step(pi, eta, tau, eta * tau)
    run = engine_with("nash-md", tau, {}, optimizer="md", lr=lr, steps=T, lr_schedule="inverse-time",
                      lr_final=final)
    np.testing.assert_allclose(run.policy, pi, rtol=0, atol=1e-12)


# -- loss gradients (sgd, batch 0) by finite differences -----------------------------------------------------
def softmax_offsets(x: np.ndarray) -> np.ndarray:
    return normalise(np.log(PI_REF) + x)


def ipo_expected_loss(x: np.ndarray, weights: np.ndarray, tau: float) -> float:
    """IPO's square loss `(h(w, l) - 1/(2 tau))^2` in expectation over pairs `(y, y')` drawn from `weights`
    (held fixed) and labels `y ≻ y'` with probability `P[y, y']`."""
    total = 0.0
    for y in range(3):
        for z in range(3):
            h = x[y] - x[z]
            # label y > z with probability P[y, z]: loss (h - 1/(2 tau))^2, else (-h - 1/(2 tau))^2
            pyz = P[y, z]
            total += weights[y] * weights[z] * (pyz * (h - 0.5 / tau) ** 2 + (1 - pyz) * (-h - 0.5 / tau) ** 2)
    return total


def pg_objective(x: np.ndarray, m: np.ndarray, tau: float) -> float:
    """Minus `P(pi_x ≻ m) - tau KL(pi_x || pi_ref)` with `m` held fixed."""
    pi = softmax_offsets(x)
    return -(pi @ P @ m - tau * np.sum(pi * np.log(pi / PI_REF)))


@pytest.mark.parametrize(("name", "b"), [("online-ipo", 0.0), ("ipo-md", 0.125)])
def test_sgd_on_online_ipo_is_the_detached_square_loss(name, b) -> None:
    # The pairs' distribution m = mix_b(pi) is detached (stop-gradient): the step is minus the gradient of
    # the expected loss at fixed weights; the targets of IPO-MD are the same labels on mixture pairs.
    tau, lr, x = 0.6, 0.05, np.zeros(3)
    for _ in range(4):
        m = mix(softmax_offsets(x), b)
        grad = central_diff(lambda z, m=m: ipo_expected_loss(z, m, tau), x, h=1e-6)
        x = x - lr * grad
    run = engine_with(name, tau, {}, optimizer="sgd", lr=lr, steps=4)
    np.testing.assert_allclose(run.policy, softmax_offsets(x), rtol=0, atol=1e-9)


@pytest.mark.parametrize(("name", "b"), [("nash-md-pg", 0.5), ("nash-md", 0.05 * 0.6)])
def test_sgd_on_nash_md_is_the_policy_gradient_against_the_mixture(name, b) -> None:
    tau, lr, x = 0.6, 0.05, np.zeros(3)
    for _ in range(4):
        m = mix(softmax_offsets(x), b)
        x = x - lr * central_diff(lambda z, m=m: pg_objective(z, m, tau), x, h=1e-6)
    run = engine_with(name, tau, {}, optimizer="sgd", lr=lr, steps=4)
    np.testing.assert_allclose(run.policy, softmax_offsets(x), rtol=0, atol=1e-9)


def test_sgd_on_sppo_is_the_policy_gradient_of_the_win_rate() -> None:
    lr, x = 0.2, np.zeros(3)
    for _ in range(4):
        pi0 = softmax_offsets(x)
        x = x - lr * central_diff(lambda z, pi0=pi0: -(softmax_offsets(z) @ P @ pi0), x, h=1e-6)
    run = engine_with("sppo", 1.0, {}, optimizer="sgd", lr=lr, steps=4)
    np.testing.assert_allclose(run.policy, softmax_offsets(x), rtol=0, atol=1e-9)


# -- sampled pairs --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["online-ipo", "ipo-md", "nash-md-pg", "sppo", "egpo"])
@pytest.mark.parametrize("optimizer", ["sgd", "md"])
def test_sampled_pairs_estimate_the_exact_step_without_bias(name, optimizer) -> None:
    # The first step from pi_ref: its mean over many independent seeds is the batch-0 step (the estimate is
    # unbiased); 400 seeds x 64 pairs leave a Monte Carlo error of about 1e-3 on these offsets.
    tau, lr = 0.5, 0.1
    exact = engine_with(name, tau, {}, optimizer=optimizer, lr=lr, steps=1)
    s = GradientSettings(optimizer=optimizer, lr=lr, steps=1, batch_size=64, seeds=400, records=2)
    runs = run_gradient(problem(), [method_spec(name)], [tau], s, "population")[1]
    x = np.mean([np.log(r.policy / PI_REF) for r in runs], axis=0)
    x_exact = np.log(exact.policy / PI_REF)
    np.testing.assert_allclose(x - x.mean(), x_exact - x_exact.mean(), atol=6e-3)
    # and the samples do differ between seeds
    assert np.ptp([r.policy[0] for r in runs]) > 1e-3


def test_sampled_runs_are_byte_identical_for_the_same_seed() -> None:
    s = GradientSettings(optimizer="adam", lr=0.05, steps=300, batch_size=8, seeds=2, records=5)
    specs = [method_spec(m) for m in ("online-ipo", "nash-md", "egpo")]
    a = run_gradient(problem(), specs, [0.5, 1.0], s, "population")[1]
    b = run_gradient(problem(), specs, [0.5, 1.0], s, "population")[1]
    for x, y in zip(a, b, strict=True):
        assert x.policy.tobytes() == y.policy.tobytes() and x.curve.tobytes() == y.curve.tobytes()
    assert not np.array_equal(a[0].policy, a[1].policy)  # two seeds, two streams


# -- stationary points ----------------------------------------------------------------------------------------
def equilibrium_by_iteration(tau: float, steps: int = 20000) -> np.ndarray:
    """`pi*_tau` by the written extragradient (a different algorithm from the solver's Newton)."""
    return iterate(lambda pi: egpo_step(pi, 0.2, tau), steps)


def exact(name: str, tau: float, settings: GradientSettings | None = None, **options):
    (run,) = solve_exact(problem(), [method_spec(name, **options)], [tau], "population", settings=settings)
    return run


@pytest.mark.parametrize("name", ["online-ipo", "inpo", "egpo"])
def test_self_play_methods_stop_at_the_regularised_equilibrium(name) -> None:
    tau = 0.4
    run = exact(name, tau)
    assert run.status == "optimal" and "equilibrium" in run.detail
    np.testing.assert_allclose(run.policy, equilibrium_by_iteration(tau), atol=1e-10)


@pytest.mark.parametrize(("name", "b"), [("ipo-md", 0.125), ("nash-md-pg", 0.5), ("ipo-md", 0.3)])
def test_a_mixture_b_stops_at_the_tempered_point(name, b) -> None:
    # Iterate the mixture update with a small step to its fixed point, and compare; it is not pi*_tau.
    tau = 0.4
    fixed = iterate(lambda pi: nash_md_step(pi, 0.2, tau, b), 20000)
    run = exact(name, tau, mixture=b)
    np.testing.assert_allclose(run.policy, fixed, atol=1e-10)
    assert np.abs(fixed - equilibrium_by_iteration(tau)).sum() > 1e-2
    assert f"b = {b:g}" in run.detail


def test_two_actions_by_hand() -> None:
    # With two actions (P pi)_0 - (P pi)_1 = p - 1/2 for every pi, so T_tau is constant: every stationary
    # point, whatever the mixture, is log(pi_0 / pi_1) = log(ref_0 / ref_1) + (p - 1/2) / tau; and SPPO puts
    # everything on the winner (a Condorcet winner).
    p, ref, tau = 0.8, np.array([0.3, 0.7]), 0.25
    P2 = np.array([[0.5, p], [1 - p, 0.5]])
    expected = 1 / (1 + np.exp(-(np.log(0.3 / 0.7) + (p - 0.5) / tau)))
    prob = build_problem({"name": "two", "actions": ["a", "b"], "pi_ref": ref.tolist(), "preferences": P2.tolist()})
    for name in ("online-ipo", "ipo-md", "nash-md", "nash-md-pg", "inpo", "egpo"):
        (run,) = solve_exact(prob, [method_spec(name)], [tau], "population")
        assert run.policy[0] == pytest.approx(expected, abs=1e-12), name
    (run,) = solve_exact(prob, [method_spec("sppo")], [tau], "population")
    np.testing.assert_array_equal(run.policy, [1.0, 0.0])
    assert run.status == "average" and "Condorcet winner" in run.detail


# -- the claims -----------------------------------------------------------------------------------------------
def test_online_ipo_reaches_the_regularised_equilibrium() -> None:
    tau = 0.4
    run = engine_with("online-ipo", tau, {}, optimizer="sgd", lr=0.5, steps=6000)
    assert run.status == "converged"
    np.testing.assert_allclose(run.policy, equilibrium_by_iteration(tau), atol=1e-7)


def test_nash_md_with_a_constant_step_stops_at_a_biased_point_and_a_decreasing_step_removes_the_bias() -> None:
    tau, eta = 0.4, 1.0  # eta tau = 0.4: the theory's update, mixture 0.4
    target = equilibrium_by_iteration(tau)
    biased = iterate(lambda pi: nash_md_step(pi, 0.2, tau, eta * tau), 20000)  # its fixed point
    constant = engine_with("nash-md", tau, {}, optimizer="md", lr=eta, steps=4000)
    np.testing.assert_allclose(constant.policy, biased, atol=1e-9)
    bias = np.abs(constant.policy - target).sum()
    assert bias > 0.02  # 0.034 in TV x 2 here
    settings = GradientSettings(optimizer="md", lr=eta, lr_schedule="inverse-time", lr_final=1e-4)
    run = exact("nash-md", tau, settings)
    np.testing.assert_allclose(run.policy, target, atol=1e-10)  # the eta -> 0 limit
    decreasing = engine_with("nash-md", tau, {}, optimizer="md", lr=eta, steps=20000,
                             lr_schedule="inverse-time", lr_final=1e-4)
    assert np.abs(decreasing.policy - target).sum() < bias / 20


def test_sppo_s_last_iterate_spirals_on_a_cycle_while_its_average_converges() -> None:
    # Multiplicative weights on a cycle: the last iterate moves out to the boundary; the average of the
    # iterates tends to the maximal lottery. The lottery of this P is the unique solution of P pi = 1/2 on
    # the simplex (all three actions in its support): (A pi = 0 with A = P - 1/2) written out here.
    A = P - 0.5
    M = np.vstack([A[:2], np.ones(3)])
    lottery = np.linalg.solve(M, [0.0, 0.0, 1.0])
    assert np.all(lottery > 0)
    T = 4000
    run = engine_with("sppo", 1.0, {}, optimizer="md", lr=0.1, steps=T, records=20 * T)
    assert len(run.curve) == T + 1  # every iterate recorded
    average = run.curve[1:].mean(axis=0)
    assert np.abs(average - lottery).sum() < 0.03
    # The last iterate spirals outwards: its KL from the lottery (the potential that multiplicative weights
    # increases in a zero-sum game) grows from quarter to quarter, and it comes close to the vertices.
    kl = np.sum(lottery * np.log(lottery / run.curve[1:]), axis=1)
    quarters = kl.reshape(4, -1).mean(axis=1)
    assert np.all(np.diff(quarters) > 0) and quarters[-1] > 1.5 * quarters[0]  # 0.23 -> 0.37 here
    assert run.curve[-T // 4 :].max() > 0.8  # the lottery's largest mass is 4/9
    assert run.status == "running"
    (ex,) = solve_exact(problem(), [method_spec("sppo")], [1.0], "population")
    assert ex.status == "average" and "does not converge" in ex.detail
    np.testing.assert_allclose(ex.policy, lottery, atol=1e-9)


# -- the gap curves, the optimiser choice, data ---------------------------------------------------------------
def gap_by_hand(pi: np.ndarray, tau: float) -> float:
    """`2 [tau log sum_y pi_ref(y) exp((P pi)_y / tau) + tau KL(pi || pi_ref)] - 1`: the duality gap (the
    best response's value, twice, minus the game's value 1)."""
    return 2 * (tau * np.log(np.sum(PI_REF * np.exp(P @ pi / tau))) + tau * np.sum(pi * np.log(pi / PI_REF))) - 1


def test_gap_curves_follow_every_gradient_run_and_gap_png_is_drawn(tmp_path) -> None:
    import subprocess
    import sys

    from psipo_cli import solve

    tau = 0.5
    frames = solve(problem(), ["online-ipo", "ipo"], tau, solver="gradient", optimizer="sgd", batch_size=0, lr=0.2,
                   steps=300, seeds=1, records=20)
    gap = frames.gap_curves
    assert set(gap.method) == {"online-ipo", "ipo"}
    for run in frames.runs:
        rows = gap[gap.method == run.method].sort_values("step")
        assert list(rows.step) == sorted(set(frames.curves.step))
        expected = [gap_by_hand(pi, tau) for pi in run.curve]
        np.testing.assert_allclose(rows["mean"], expected, rtol=1e-6, atol=1e-12)
    online = gap[gap.method == "online-ipo"]["mean"].to_numpy()
    assert online[0] > 1e-3 and online[-1] < 1e-6  # online IPO closes the gap
    out = tmp_path / "out"
    subprocess.run([sys.executable, "-m", "psipo_cli", "run", "online-ipo", "--problem", "cycle", "--tau", "1",
                    "--steps", "50", "--seeds", "2", "--out", str(out), "-q"], check=True, capture_output=True)
    run_dir = next(out.iterdir())
    assert (run_dir / "figures" / "gap.png").is_file()
    assert (run_dir / "gap_curves.csv").read_text().startswith("step,method,tau,context,mean,lo,hi")


def test_md_is_refused_for_a_method_without_a_mirror_descent_update() -> None:
    from psipo_cli.errors import InputError

    s = GradientSettings(optimizer="md", steps=5, seeds=1)
    with pytest.raises(InputError, match="dpo has no mirror-descent update"):
        run_gradient(problem(), [method_spec("dpo")], [1.0], s, "population")


def test_on_data_the_online_methods_play_the_empirical_preferences() -> None:
    # Win counts with every pair observed: P_hat = W / (W + W^T); online IPO's answer is the equilibrium of
    # P_hat (by the written extragradient), not of a population model.
    W = np.array([[0, 9, 2], [1, 0, 7], [8, 3, 0]], float)
    pairs = [{"winner": ACTIONS[i], "loser": ACTIONS[j], "count": float(W[i, j])}
             for i in range(3) for j in range(3) if W[i, j]]
    data = build_problem({"name": "data", "actions": ACTIONS, "pi_ref": PI_REF.tolist(), "pairs": pairs})
    P_hat = W / (W + W.T + np.eye(3))
    np.fill_diagonal(P_hat, 0.5)
    tau = 0.5
    pi = PI_REF
    for _ in range(20000):
        base = (1 - 0.2 * tau) * np.log(pi) + 0.2 * tau * np.log(PI_REF)
        half = normalise(base + 0.2 * P_hat @ pi)
        pi = normalise(base + 0.2 * P_hat @ half)
    (run,) = solve_exact(data, [method_spec("online-ipo")], [tau], "dataset")
    np.testing.assert_allclose(run.policy, pi, atol=1e-10)


def test_stationary_points_hold_on_a_random_10_action_game_from_tau_1e_3_to_10() -> None:
    # The certificate recomputed here: pi = T_tau(mix_b(pi)) in the max-norm of the log-odds on the actions
    # that keep mass (at tau = 1e-3 some underflow to 0 and must then be beaten: their T-logit is lowest).
    rng = np.random.default_rng(3)
    n = 10
    upper = np.triu(rng.random((n, n)), 1)
    P10 = upper + np.tril(1 - upper.T, -1)
    np.fill_diagonal(P10, 0.5)
    ref = rng.dirichlet(np.ones(n))
    prob = build_problem({"name": "random", "actions": [f"y{i}" for i in range(n)], "pi_ref": ref.tolist(),
                          "preferences": P10.tolist()})
    taus = [1e-3, 1e-2, 0.1, 1.0, 10.0]
    for name, b in (("online-ipo", 0.0), ("ipo-md", 0.125), ("nash-md-pg", 0.5), ("egpo", 0.0)):
        for run in solve_exact(prob, [method_spec(name)], taus, "population"):
            pi, tau = run.policy, run.tau
            assert run.status == "optimal" and np.all(np.isfinite(pi)) and pi.sum() == pytest.approx(1, abs=1e-12)
            kept = pi > 0
            log_m = np.full(n, -np.inf)
            log_m[kept] = (1 - b) * np.log(pi[kept] / ref[kept]) + np.log(ref[kept])
            m = normalise(log_m)
            logits = np.log(ref) + P10 @ m / tau
            odds = np.log(pi[kept]) - logits[kept]
            assert np.ptp(odds) < 1e-9 * max(1.0, 1 / tau), (name, tau)
            if not kept.all():
                assert logits[~kept].max() < logits[kept].min()


def test_the_dense_tau_grid_of_the_figures_uses_the_run_s_step() -> None:
    # policy_vs_tau.png's exact Nash-MD curve is the run's: with lr = 1 its mixture at tau = 0.5 is 0.5.
    from psipo_cli.api import tau_grid

    tau = 0.5
    fixed = iterate(lambda pi: nash_md_step(pi, 0.2, tau, 0.5), 20000)
    grid = tau_grid(problem(), [method_spec("nash-md")], [tau], "population", settings=GradientSettings(lr=1.0))
    rows = grid[grid.tau == tau].sort_values("action")
    np.testing.assert_allclose(rows["prob"], fixed, atol=1e-10)
