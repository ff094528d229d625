"""The single-action and reference-free families: exact answers against independent routes.

Routes: per-action closed forms derived by hand (below), scipy.optimize on the losses of
`tests/reference/losses.py` (written from TRL's loss branches, nothing from psipo_cli), the KKT condition at the
simplex's boundary derived by hand, and central finite differences for the gradients.
"""

from __future__ import annotations

import numpy as np
import pytest
from reference.losses import REFERENCE
from reference.routes import central_diff
from scipy.optimize import minimize

from psipo_cli.config.settings import GradientSettings
from psipo_cli.errors import InputError
from psipo_cli.methods import METHODS
from psipo_cli.methods.actions import offsets_gradient, offsets_loss
from psipo_cli.problem import build_problem
from psipo_cli.schema import LOCAL, OPTIMAL, SET, UNDEFINED
from psipo_cli.solvers.exact import solve_exact
from psipo_cli.solvers.gradient import run_gradient
from psipo_cli.solvers.runs import method_spec

ACTIONS = ["a", "b", "c", "d"]


def layer_of(W: np.ndarray, pi_ref: np.ndarray) -> dict:
    w, l_ = np.nonzero(W)
    return {"name": "t", "actions": ACTIONS[: len(pi_ref)], "pi_ref": pi_ref.tolist(), "pairs": [
        {"winner": ACTIONS[i], "loser": ACTIONS[j], "count": float(W[i, j])} for i, j in zip(w, l_, strict=True)]}


def exact(name: str, W: np.ndarray, pi_ref: np.ndarray, taus: list[float], **options):
    return solve_exact(build_problem(layer_of(W, pi_ref)), [method_spec(name, **options)], taus, "dataset")


def scipy_best(name: str, W: np.ndarray, pi_ref: np.ndarray, tau: float, starts: int = 12, **kw) -> tuple:
    """The best of `starts` BFGS runs on the reference loss in the offsets (the policy is their softmax)."""
    rng = np.random.default_rng(3)
    best = (np.inf, None)
    for k in range(starts):
        x0 = np.zeros(len(pi_ref)) if k == 0 else rng.normal(0.0, 2.0, len(pi_ref))
        res = minimize(lambda d: REFERENCE[name](d, W=W, tau=tau, pi_ref=pi_ref, **kw), x0, method="BFGS",
                       options={"gtol": 1e-10, "maxiter": 20000})
        if res.fun < best[0]:
            best = (res.fun, res.x)
    z = np.log(pi_ref) + best[1]
    p = np.exp(z - z.max())
    return best[0], p / p.sum()


# W_y (row sums) and L_y (column sums): a 6/4, b 4/6, c 4/4, d 4/4.
W4 = np.array([[0, 3, 1, 2], [1, 0, 2, 1], [2, 1, 0, 1], [1, 2, 1, 0]], float)
PI4 = np.array([0.1, 0.4, 0.3, 0.2])


@pytest.mark.parametrize("name", ["nca", "bco", "sppo-hard", "cpo", "orpo"])
@pytest.mark.parametrize("tau", [0.3, 1.0, 4.0])
def test_exact_equals_a_multi_start_optimiser_on_the_loss_from_its_definition(name: str, tau: float) -> None:
    W = np.array([[0, 2, 1], [1, 0, 3], [2, 1, 0]], float)
    pi_ref = np.array([0.5, 0.3, 0.2])
    for Wc, ref in ((W, pi_ref), (W4, PI4)):
        (run,) = exact(name, Wc, ref, [tau])
        value, policy = scipy_best(name, Wc, ref, tau)
        assert run.status in (OPTIMAL, LOCAL)
        assert run.loss <= value + 1e-9
        np.testing.assert_allclose(run.policy, policy, atol=2e-5)


def balanced_reference(r: np.ndarray) -> np.ndarray:
    """A pi_ref with sum pi_ref = 1 and sum pi_ref r = 1 (r on both sides of 1): then the per-action optima
    `pi = pi_ref r` are feasible, so the normalisation does not bind and each action's term is at its own
    global minimum — the sum is at its global minimum."""
    up, down = r > 1 + 1e-12, r < 1 - 1e-12
    gap = np.where(up | down, np.abs(r - 1.0), 1.0)
    # Each side contributes sum c (r - 1) = +1 and -1; an action with r = 1 contributes 0 at any weight.
    c = np.where(up, 1.0 / gap / up.sum(), 0.0) + np.where(down, 1.0 / gap / down.sum(), 0.0)
    c = np.where(up | down, c, 1.0)
    return c / c.sum()


def test_per_action_closed_forms_when_the_normalisation_does_not_bind() -> None:
    # Wins and losses per action (W_y, L_y) of a 3-action dataset.
    W = np.array([[0, 3, 2], [1, 0, 1], [1, 2, 0]], float)
    Wy, Ly = W.sum(axis=1), W.sum(axis=0)  # 5, 2, 3 wins; 2, 5, 3 losses
    tau = 0.7
    # BCO: sigma(tau d) = W/(W+L)  =>  e^{tau d} = W/L  =>  pi/pi_ref = (W/L)^{1/tau}.
    # NCA: sigma(tau d) = 2W/(3W+L)  =>  e^{tau d} = 2W/(W+L).
    # SPPO-hard: d = (W-L)/(2 tau (W+L)).
    ratios = {
        "bco": (Wy / Ly) ** (1.0 / tau),
        "nca": (2.0 * Wy / (Wy + Ly)) ** (1.0 / tau),
        "sppo-hard": np.exp((Wy - Ly) / (2.0 * tau * (Wy + Ly))),
    }
    for name, r in ratios.items():
        if not (np.any(r > 1) and np.any(r < 1)):
            continue
        pi_ref = balanced_reference(r)
        (run,) = exact(name, W, pi_ref[:3], [tau])
        assert run.status == OPTIMAL
        np.testing.assert_allclose(run.policy, pi_ref * r, rtol=1e-10)


def test_nca_on_the_population_with_pi_ref_mu_and_tau_one() -> None:
    # W = mu mu^T P with the diagonal (P[y,y] = 1/2): W_y = mu_y p_y, L_y = mu_y (1 - p_y), p_y = P(y > mu),
    # sum W = 1/2. The per-action optimum sigma(d) = 2W/(3W+L) = 2p/(1+2p) gives e^d = 2p and
    # pi = mu e^d = 2 mu p, which sums to 2 * 1/2 = 1: the constraint is slack and this is the optimum.
    r = np.array([0.8, 0.1, -0.3, 0.4])
    P = 1.0 / (1.0 + np.exp(-(r[:, None] - r[None, :])))
    mu = np.array([0.1, 0.4, 0.3, 0.2])
    layer = {"name": "pop", "actions": ACTIONS, "pi_ref": mu.tolist(), "rewards": r.tolist()}
    (run,) = solve_exact(build_problem(layer), [method_spec("nca")], [1.0], "population")
    np.testing.assert_allclose(run.policy, 2.0 * mu * (P @ mu), rtol=1e-10)


# d never wins (it loses to a, b and c); a, b, c form a cycle.
W_NEVER = np.array([[0, 2, 1, 1], [1, 0, 2, 1], [2, 1, 0, 1], [0, 0, 0, 0]], float)


@pytest.mark.parametrize("name,taus", [
    ("nca", [0.2, 0.5, 0.9]), ("bco", [0.2, 0.5, 0.9]), ("apo-zero", [0.2, 1.0, 5.0]), ("cpo", [0.2, 1.0, 5.0]),
    ("orpo", [1.0]),
])
def test_never_winning_actions_go_to_zero(name: str, taus: list[float]) -> None:
    # By hand for NCA: d's term is phi_d = tau L_d softplus(tau d)/2 / N, phi_d' / (pi_ref e^d) ~
    # tau^2 L_d e^{(tau-1) d} / (2 N pi_ref) -> +inf as d -> -inf for tau < 1, above any multiplier: mass 0.
    # BCO likewise (phi_d' = tau L_d sigma(tau d) / N). For APO-zero, CPO and ORPO (every tau) the scipy
    # route on the loss from its definition confirms it.
    for run in exact(name, W_NEVER, PI4, taus):
        assert run.policy[3] == 0.0, (run.tau, run.detail)
        value, policy = scipy_best(name, W_NEVER, PI4, run.tau, starts=6)
        assert policy[3] < 1e-3 and run.loss <= value + 1e-8


@pytest.mark.parametrize("name", ["nca", "bco", "sppo-hard"])
def test_methods_that_keep_never_winning_actions(name: str) -> None:
    # SPPO-hard's loss is +inf at d -> -inf: every compared action keeps mass for every tau. NCA and BCO with
    # tau > 1: phi_d' / (pi_ref e^d) -> 0 as d -> -inf, and here the multiplier is positive, so d keeps mass
    # (BCO does not send never-winning actions to 0 for every tau; the scipy route agrees).
    tau = 3.0
    (run,) = exact(name, W_NEVER, PI4, [tau])
    _, policy = scipy_best(name, W_NEVER, PI4, tau)
    assert run.policy[3] > 1e-3 and policy[3] > 1e-3
    np.testing.assert_allclose(run.policy, policy, atol=2e-5)


def test_apo_zero_is_one_hot_on_the_single_net_winner() -> None:
    # phi_y = W_y + (L_y - W_y) sigma(tau d_y): only a has W > L (6 > 4), so only its term falls with its mass.
    for run in exact("apo-zero", W4, PI4, [0.1, 1.0, 10.0]):
        assert run.status == OPTIMAL
        np.testing.assert_array_equal(run.policy, [1.0, 0.0, 0.0, 0.0])


def test_kto_is_a_fixed_point_of_its_reference_point() -> None:
    # One net-desirable action (a): at any fixed z0 the optimum is one-hot on a (as APO-zero), so
    # z0 = KL(one-hot || pi_ref) = -log pi_ref(a) = log 10.
    (run,) = exact("kto", W4, PI4, [1.0])
    np.testing.assert_array_equal(run.policy, [1.0, 0.0, 0.0, 0.0])
    assert "2.30259" in run.detail
    # A dataset without a one-hot answer: the answer minimises KTO's loss at its own z0 (scipy, z0 fixed) and
    # z0 = KL(pi || pi_ref).
    W = np.array([[0, 3, 1], [2, 0, 3], [1, 1, 0]], float)  # wins 4, 5, 2; losses 3, 4, 4
    pi_ref = np.array([0.5, 0.3, 0.2])
    (run,) = exact("kto", W, pi_ref, [2.0])
    p = run.policy
    m = p > 0
    z0 = float(np.sum(p[m] * np.log(p[m] / pi_ref[m])))
    _, policy = scipy_best("kto", W, pi_ref, 2.0, z0=z0)
    np.testing.assert_allclose(p, policy, atol=2e-5)
    assert f"{z0:.6g}" in run.detail


def test_apo_down_has_no_exact_answer() -> None:
    (run,) = exact("apo-down", W4, PI4, [1.0])
    assert run.status == UNDEFINED and "no exact answer" in run.detail
    np.testing.assert_array_equal(run.policy, PI4)


def test_orpo_ignores_tau_and_says_so() -> None:
    runs = exact("orpo", W4, PI4, [0.1, 5.0])
    np.testing.assert_array_equal(runs[0].policy, runs[1].policy)
    assert all("tau is ignored" in r.detail for r in runs)


@pytest.mark.parametrize("name", ["cpo", "orpo"])
def test_reference_free_loss_with_every_winner_outside_supp_pi_ref_is_a_set(name: str) -> None:
    # Found by the numerics fuzzer. pi_ref = (1, 0, 0, 0), and mu samples only a2 and a3 (a2 always wins: the
    # order a0 > a1 > a2 > a3): every comparison's winner, a2, has log-probability -inf for every policy on
    # supp pi_ref, so it is left out (a constant the policy cannot change) and nothing is left: the loss, a
    # sum over no comparisons, is 0 for every policy. The minimisers are the whole simplex on supp pi_ref,
    # which here is one point, pi_ref itself.
    pi_ref = np.array([1.0, 0.0, 0.0, 0.0])
    problem = build_problem({"name": "p", "actions": ["a0", "a1", "a2", "a3"], "pi_ref": pi_ref.tolist(),
                             "mu": [0.0, 0.0, 0.5, 0.5], "order": ["a0", "a1", "a2", "a3"]})
    runs = solve_exact(problem, [method_spec(name)], [1e-4, 1.0], "population")
    for run in runs:
        assert run.status == SET
        np.testing.assert_array_equal(run.policy, pi_ref)
        assert run.loss == 0.0
        assert "no comparison is won by an action in supp pi_ref" in run.detail
        assert "never win at probability exactly 0" not in run.detail  # pi_ref's action keeps all the mass
    # A gradient run has no comparison to sample: refused with the reason, as the detail says.
    with pytest.raises(InputError, match="every comparison is won by an action outside supp pi_ref"):
        run_gradient(problem, [method_spec(name)], [1.0], GradientSettings(steps=5), "population")


@pytest.mark.parametrize("name", ["nca", "bco", "sppo-hard", "apo-zero", "apo-down", "kto", "cpo", "orpo"])
def test_the_exact_gradient_in_the_offsets_equals_finite_differences(name: str) -> None:
    # Of psipo's own loss, and of the reference loss from its definition (KTO: z0 held at its value at x).
    method = METHODS[name]
    loss = method.family.loss_at(method, {})
    W = np.array([[0, 2, 1, 1], [1, 0, 2, 0], [2, 1, 0, 3], [0, 1, 1, 0]], float)
    pi_ref = np.array([0.3, 0.2, 0.4, 0.1])
    log_ref = np.log(pi_ref)
    x = np.array([0.3, -0.2, 0.1, 0.5])
    for tau in (0.5, 2.0):
        g = offsets_gradient(x, W, loss, tau, log_ref)
        fixed = {}
        if loss.uses_kl:
            p = np.exp(log_ref + x) / np.exp(log_ref + x).sum()
            fixed = {"z0": max(0.0, float(np.sum(p * np.log(p / pi_ref))))}
        ref = central_diff(lambda d, t=tau, kw=fixed: REFERENCE[name](d, W=W, tau=t, pi_ref=pi_ref, **kw), x, h=1e-6)
        np.testing.assert_allclose(g, ref, atol=1e-7)
        if not loss.uses_kl:
            own = central_diff(lambda d, tau=tau: offsets_loss(d, W, loss, tau, log_ref), x, h=1e-6)
            np.testing.assert_allclose(g, own, atol=1e-7)


def test_minibatch_runs_are_byte_identical_and_do_not_depend_on_the_company() -> None:
    problem = build_problem(layer_of(W4, PI4))
    settings = GradientSettings(steps=300, seeds=2, records=5, batch_size=4)
    specs = [method_spec("nca"), method_spec("kto"), method_spec("orpo")]
    _, together = run_gradient(problem, [method_spec("dpo"), *specs], [0.5, 2.0], settings, "dataset")
    _, again = run_gradient(problem, [method_spec("dpo"), *specs], [0.5, 2.0], settings, "dataset")
    for a, b in zip(together, again, strict=True):
        assert a.policy.tobytes() == b.policy.tobytes() and a.curve.tobytes() == b.curve.tobytes()
    for spec in specs:
        _, alone = run_gradient(problem, [spec], [2.0, 0.5], settings, "dataset")
        for run in alone:
            match = next(r for r in together if r.method == run.method and r.tau == run.tau and r.seed == run.seed)
            assert match.policy.tobytes() == run.policy.tobytes()


def test_full_batch_gradient_reaches_the_boundary_answers_in_the_limit() -> None:
    # APO-zero's one-hot optimum is a limit of the softmax: the gradient run's mass on a grows towards 1.
    problem = build_problem(layer_of(W4, PI4))
    short, long = (run_gradient(problem, [method_spec("apo-zero")], [1.0], GradientSettings(
        optimizer="sgd", lr=1.0, steps=steps, batch_size=0, seeds=1), "dataset")[1][0] for steps in (500, 8000))
    assert 0.9 < short.policy[0] < long.policy[0] < 1.0


def test_method_options_are_checked() -> None:
    with pytest.raises(InputError):
        exact("cpo", W4, PI4, [1.0], cpo_alpha=-1.0)
    with pytest.raises(InputError):
        exact("kto", W4, PI4, [1.0], kto_desirable_weight=0.0)
    (a,), (b,) = exact("kto", W4, PI4, [1.0]), exact("kto", W4, PI4, [1.0], kto_desirable_weight=1.0)
    np.testing.assert_array_equal(a.policy, b.policy)


def test_an_action_in_no_comparison_takes_the_slack_as_a_set() -> None:
    # BCO on a > b 3 times, b > a once, c never compared, pi_ref = (0.1, 0.1, 0.8), tau = 1: the per-action
    # optima are e^d = W/L, pi = (0.1 * 3, 0.1 / 3) = (0.3, 1/30), summing to 1/3 < 1. c's loss is 0 whatever
    # its mass, so it takes the remaining 2/3 and every split of that slack among such actions is optimal.
    W = np.zeros((3, 3))
    W[0, 1], W[1, 0] = 3.0, 1.0
    (run,) = exact("bco", W, np.array([0.1, 0.1, 0.8]), [1.0])
    assert run.status == "set" and "does not depend" in run.detail
    np.testing.assert_allclose(run.policy, [0.3, 1.0 / 30.0, 2.0 / 3.0], rtol=1e-9)


def test_the_block_gradient_is_the_exact_gradient_at_full_batch() -> None:
    from psipo_cli.methods.single_action.block import ActionBlock, ActionLane
    from psipo_cli.methods.streams import comparisons

    W = np.array([[0, 2, 1, 1], [1, 0, 2, 0], [2, 1, 0, 3], [0, 1, 1, 0]], float)
    pi_ref = np.array([0.3, 0.2, 0.4, 0.1])
    names = ["nca", "nca", "kto", "cpo", "orpo", "apo-down"]
    losses = [METHODS[m].family.loss_at(METHODS[m], {}) for m in names]
    taus = [0.5, 2.0, 1.5, 0.7, 1.0, 3.0]
    data = comparisons(W, "t")
    lanes = [ActionLane(loss, tau, data, None, np.log(pi_ref)) for loss, tau in zip(losses, taus, strict=True)]
    block = ActionBlock(lanes, 0, 4, GradientSettings(batch_size=0))
    X = np.random.default_rng(1).normal(0.0, 0.5, (len(lanes), 4))
    G = block.gradient(X, 0)
    for k, (loss, tau) in enumerate(zip(losses, taus, strict=True)):
        np.testing.assert_allclose(G[k], offsets_gradient(X[k], W, loss, tau, np.log(pi_ref)), rtol=1e-12,
                                   atol=1e-15)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_cpo_closed_form_on_paper_d1(alpha: float) -> None:
    # D1: a > b, b > c, a > c once each. c never wins: mass 0. With pi(a) = p, pi(b) = 1 - p and tau = 1,
    # softplus(-log(p / (1 - p))) = -log p, so 3 L = -log p - alpha (2 log p + log(1 - p)); its zero derivative
    # (1 + 2 alpha) / p = alpha / (1 - p) gives p = (1 + 2 alpha) / (1 + 3 alpha).
    W = np.array([[0, 1, 1], [0, 0, 1], [0, 0, 0]], float)
    (run,) = exact("cpo", W, np.full(3, 1.0 / 3.0), [1.0], cpo_alpha=alpha)
    p = (1.0 + 2.0 * alpha) / (1.0 + 3.0 * alpha)
    np.testing.assert_allclose(run.policy, [p, 1.0 - p, 0.0], rtol=1e-12, atol=0.0)
    assert run.status == OPTIMAL


def test_no_false_certificate_when_the_bracket_starts_above_total_mass_one() -> None:
    # Found by a random hunt comparing exact and gradient answers. A population with mu = (1.6e-247, 0, 0, 1):
    # the comparisons are a3 against itself, plus a0 beating a3 with weight 1.6e-247. NCA's terms of a3 as
    # winner and as loser are -log sigma(tau u) - log sigma(-tau u), u = log(pi(a3) / pi_ref(a3)), least at
    # u = 0 with value 2 log 2 (sigma(x) sigma(-x) peaks at x = 0); a0's terms (weight 1e-247) and a1 (in no
    # comparison) change the loss by less than a double resolves. So the minimum is 2 log 2 with pi(a3) =
    # pi_ref(a3). psipo reported `optimal` ("certified by the multiplier nu = -2e+300") at pi(a3) = 1/2, loss
    # 1.4465: at the bracket's low end every winner's mass fell off the grid and was taken as 1.
    pi_ref = [0.20735646671673755, 0.4019366044091059, 0.0, 0.3907069288741565]
    problem = build_problem({"name": "p", "actions": ["a0", "a1", "a2", "a3"], "pi_ref": pi_ref,
                             "mu": [1.6072390049293386e-247, 0.0, 0.0, 1.0],
                             "rewards": [-0.449101041657494, -0.3148698302908136, 0.4279347286913697,
                                         0.1758142975441721]})
    (run,) = solve_exact(problem, [method_spec("nca")], [2.0], "population")
    assert run.loss == pytest.approx(2 * np.log(2), rel=1e-12)
    assert run.policy[3] == pytest.approx(pi_ref[3], rel=1e-9)
    # A certificate would have to give the exact-arithmetic optimum: a0's own terms, -log sigma(tau u) -
    # 1/2 log sigma(-tau u), are least at sigma(tau u) = 2/3, u = log(2) / tau, so pi(a0) = sqrt(2) pi_ref(a0);
    # a1 takes what is left. psipo reports `local` here (the loss cannot resolve a0's terms).
    if run.status == OPTIMAL:
        a0 = np.sqrt(2.0) * pi_ref[0]
        np.testing.assert_allclose(run.policy, [a0, 1 - a0 - pi_ref[3], 0.0, pi_ref[3]], atol=1e-9)
