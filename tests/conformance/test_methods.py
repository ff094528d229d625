"""Invariants every registered method must satisfy, parametrised over `psipo_cli.methods.METHODS`: a method
added to the registry gets them with no test written for it.

Expected values come from elsewhere than the code under test: central finite differences, the reference
objectives of `reference.losses` (written from the paper's definitions), and theorems (the KL-regularised
optimum is a softmax; a strictly convex objective's minimiser is where the gradient vanishes).
"""

from __future__ import annotations

import numpy as np
import pytest
from reference.losses import REFERENCE
from reference.routes import central_diff

from psipo_cli.config.settings import GradientSettings
from psipo_cli.methods import AVERAGE, DIVERGED, LIMIT, METHODS, OPTIMAL, Exact, Method
from psipo_cli.methods.pairwise.solver import implied_reward
from psipo_cli.problem import build_problem
from psipo_cli.solvers.exact import solve_exact
from psipo_cli.solvers.gradient import run_gradient
from psipo_cli.solvers.inputs import MethodInputs, method_inputs
from psipo_cli.solvers.runs import method_spec

NAMES = sorted(METHODS)
ACTIONS = ["a", "b", "c", "d"]
# Uneven counts on a strongly connected comparison graph: every pairwise loss attains its minimum.
W_CONNECTED = np.array([[0, 3, 1, 2], [1, 0, 2, 1], [2, 1, 0, 1], [1, 2, 1, 0]], float)
# Paper D1 plus a fourth action: a > b, b > c, a > c, d > c (logistic losses have no minimiser).
W_SEPARABLE = np.array([[0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0], [0, 0, 1, 0]], float)
REWARDS = [0.8, 0.1, -0.3, 0.4]  # Bradley–Terry preferences P = sigmoid(r_y - r_y'): Psi finite everywhere
PI_REF = np.array([0.1, 0.4, 0.3, 0.2])
PI_REF_ZERO = np.array([0.4, 0.3, 0.0, 0.3])
TAUS = [0.25, 1.0, 3.0]



def problem_for(method: Method, W: np.ndarray, pi_ref: np.ndarray) -> tuple[dict, str]:
    """A problem the method can run on, and its objective: the counts `W` as data for a family on
    comparisons; Bradley–Terry preferences for one on preferences (whose counts would leave pairs unseen)."""
    layer: dict = {"name": "conformance", "actions": ACTIONS, "pi_ref": pi_ref.tolist()}
    if method.family.on_comparisons:
        w, l_ = np.nonzero(W)
        layer["pairs"] = [
            {"winner": ACTIONS[i], "loser": ACTIONS[j], "count": float(W[i, j])} for i, j in zip(w, l_, strict=True)
        ]
        return layer, "dataset"
    layer["rewards"] = REWARDS
    return layer, "population"


def exact_runs(name: str, W: np.ndarray = W_CONNECTED, pi_ref: np.ndarray = PI_REF, taus=TAUS, settings=None):
    layer, objective = problem_for(METHODS[name], W, pi_ref)
    return solve_exact(build_problem(layer), [method_spec(name)], list(taus), objective, settings=settings)


#: Methods whose exact answer is the limit of averaged iterates (SPPO): not a stationary point of an objective,
#: and on the boundary of the simplex when `P` has a Condorcet winner (as the Bradley–Terry `P` here has).
AVERAGED = [n for n in NAMES if METHODS[n].exact is Exact.AVERAGE]


def reference_kwargs(name: str, W: np.ndarray, pi_ref: np.ndarray, tau: float) -> dict:
    """The reference objective's inputs for the same problem (the population P written out here)."""
    r = np.array(REWARDS)
    P = 1.0 / (1.0 + np.exp(-(r[:, None] - r[None, :])))
    return {"W": W, "pi_ref": pi_ref, "tau": tau, "P": P, "mu": pi_ref}


def test_every_method_has_a_reference_and_a_summary() -> None:
    for name, method in METHODS.items():
        assert name in REFERENCE, f"{name}: add an independent reference to tests/reference/losses.py"
        assert method.name == name and method.summary and "\n" not in method.summary
        assert isinstance(method.options, tuple) and all(isinstance(o, str) for o in method.options)


@pytest.mark.parametrize("name", [n for n in NAMES if METHODS[n].loss is not None])
def test_finite_differences_equal_the_analytic_derivatives(name: str) -> None:
    loss = METHODS[name].loss
    h = np.linspace(-3.0, 3.0, 13)
    for tau in TAUS:
        fd = central_diff(lambda x, tau=tau: loss.pair_loss(x, tau).sum(), h)
        np.testing.assert_allclose(loss.pair_grad(h, tau), fd, rtol=1e-6, atol=1e-8)
        # A loss of `tau h`: pair_loss(h, tau) is a positive multiple of margin(tau h) (the exact solver's
        # reduction to one implied reward), so their derivatives in h are proportional with a constant ratio.
        with np.errstate(invalid="ignore", divide="ignore"):  # 0 / 0 where both vanish (IPO at h = 1/(2 tau))
            ratio = loss.pair_grad(h, tau) / (tau * loss.margin_grad(tau * h))
        finite = np.isfinite(ratio)
        assert finite.sum() >= 10 and np.all(ratio[finite] > 0)
        np.testing.assert_allclose(ratio[finite], ratio[finite][0], rtol=1e-9)
    z = np.linspace(-4.0, 4.0, 17)
    np.testing.assert_allclose(loss.margin_grad(z), central_diff(lambda x: loss.margin(x).sum(), z), atol=1e-8)
    np.testing.assert_allclose(
        loss.margin_curv(z), central_diff(lambda x: loss.margin_grad(x).sum(), z), atol=1e-7
    )


@pytest.mark.parametrize("name", [n for n in NAMES if METHODS[n].loss is not None])
def test_closed_form_overrides_equal_the_generic_solver(name: str) -> None:
    loss = METHODS[name].loss
    if loss.implied_reward is None:
        pytest.skip(f"{name} has no closed-form override")
    rng = np.random.default_rng(5)
    for _ in range(5):
        W = rng.uniform(0.5, 4.0, size=(5, 5)) * (rng.random((5, 5)) < 0.7)
        np.fill_diagonal(W, 0.0)
        np.testing.assert_allclose(loss.implied_reward(W), implied_reward(W, loss), atol=1e-9)


@pytest.mark.parametrize("name", [n for n in NAMES if n not in AVERAGED])
def test_exact_answer_satisfies_the_first_order_conditions(name: str) -> None:
    # On a problem where every method attains its optimum, the reference objective's gradient in the
    # offsets vanishes at the exact offsets (on supp pi_ref; the objective is invariant to a common shift).
    for run in exact_runs(name):
        assert run.status == OPTIMAL, run.detail
        kwargs = reference_kwargs(name, W_CONNECTED, PI_REF, run.tau)
        delta = np.log(run.policy / PI_REF)
        grad = central_diff(lambda d, kwargs=kwargs: REFERENCE[name](d, **kwargs), delta, h=1e-5)
        np.testing.assert_allclose(grad, 0.0, atol=2e-6)


@pytest.mark.parametrize("name", NAMES)
def test_exact_answer_is_optimal_or_carries_its_limit_status(name: str) -> None:
    # Separable counts (logistic losses have no minimiser) and, for a family on preferences, a
    # deterministic order (logit Psi is infinite): either the optimum, or a limit status with its reason.
    method = METHODS[name]
    if method.family.on_comparisons:
        runs = exact_runs(name, W=W_SEPARABLE)
    else:
        layer = {"name": "order", "actions": ACTIONS, "pi_ref": PI_REF.tolist(), "order": ACTIONS}
        runs = solve_exact(build_problem(layer), [method_spec(name)], TAUS, "population")
    for run in runs:
        assert run.status in (OPTIMAL, DIVERGED, LIMIT, AVERAGE)
        if run.status != OPTIMAL:
            assert run.detail
        assert np.all(np.isfinite(run.policy)) and abs(run.policy.sum() - 1.0) < 1e-12


def short_gradient(name: str, W: np.ndarray, pi_ref: np.ndarray, **settings):
    layer, objective = problem_for(METHODS[name], W, pi_ref)
    base = {"steps": 200, "seeds": 2, "records": 5}
    return run_gradient(build_problem(layer), [method_spec(name)], TAUS, GradientSettings(**(base | settings)),
                        objective)[1]


@pytest.mark.parametrize("name", NAMES)
def test_pi_ref_zero_stays_zero_and_policies_sum_to_one(name: str) -> None:
    # On the population (mu uniform, wider than supp pi_ref, so the action pi_ref leaves out is compared),
    # with finite preferences and with a deterministic order (separable counts, infinite logit Psi).
    settings = GradientSettings(steps=200, seeds=2, records=5)
    for model in ({"rewards": REWARDS}, {"order": ACTIONS}):
        layer = {"name": "zero", "actions": ACTIONS, "pi_ref": PI_REF_ZERO.tolist(), "mu": [0.25] * 4, **model}
        problem, specs = build_problem(layer), [method_spec(name)]
        runs = solve_exact(problem, specs, TAUS, "population")
        runs += run_gradient(problem, specs, TAUS, settings, "population")[1]
        for run in runs:
            assert not np.isnan(run.policy).any()
            assert run.policy[2] == 0.0
            assert abs(run.policy.sum() - 1.0) < 1e-12
            if run.curve is not None:
                assert np.all(run.curve[:, 2] == 0.0) and np.allclose(run.curve.sum(axis=1), 1.0, atol=1e-12)


@pytest.mark.parametrize("name", [n for n in NAMES if n not in AVERAGED])
def test_full_batch_sgd_reaches_the_exact_answer(name: str) -> None:
    # The exact answer at the same settings (Nash-MD's depends on the step: `Method.settings`).
    settings = {"optimizer": "sgd", "batch_size": 0, "lr": 1.0, "steps": 6000, "seeds": 1}
    exact = {run.tau: run for run in exact_runs(name, settings=GradientSettings(**settings))}
    runs = short_gradient(name, W_CONNECTED, PI_REF, **settings)
    for run in runs:
        assert exact[run.tau].status == OPTIMAL
        np.testing.assert_allclose(run.policy, exact[run.tau].policy, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_tau_values_together_or_one_at_a_time_change_nothing(name: str) -> None:
    together = exact_runs(name, W=W_SEPARABLE) + exact_runs(name)
    alone = [run for tau in TAUS for run in exact_runs(name, W=W_SEPARABLE, taus=[tau])]
    alone = sorted(alone, key=lambda r: TAUS.index(r.tau)) + [r for t in TAUS for r in exact_runs(name, taus=[t])]
    for a, b in zip(together, alone, strict=True):
        assert a.tau == b.tau and a.status == b.status
        np.testing.assert_array_equal(a.policy, b.policy)
    grad_together = short_gradient(name, W_CONNECTED, PI_REF)
    layer, objective = problem_for(METHODS[name], W_CONNECTED, PI_REF)
    settings = GradientSettings(steps=200, seeds=2, records=5)
    for run in grad_together:
        one = run_gradient(build_problem(layer), [method_spec(name)], [run.tau], settings, objective)[1]
        match = next(r for r in one if r.seed == run.seed)
        np.testing.assert_array_equal(match.policy, run.policy)
        np.testing.assert_array_equal(match.curve, run.curve)
        assert match.status == run.status and match.loss == run.loss


def test_method_inputs_follow_the_family() -> None:
    # What a method sees is its family's declaration: counts for `on_comparisons`, preferences otherwise.
    for method in METHODS.values():
        layer, objective = problem_for(method, W_CONNECTED, PI_REF)

        inputs = method_inputs(build_problem(layer).contexts[0], method, objective, tuple(ACTIONS))
        assert isinstance(inputs, MethodInputs)
        assert (inputs.W is not None) == method.family.on_comparisons
        assert (inputs.P is not None) != method.family.on_comparisons


@pytest.mark.parametrize("name", [n for n in NAMES if METHODS[n].loss is not None])
def test_on_a_forest_each_pair_is_minimised_on_its_own(name: str) -> None:
    # The compared pairs form a forest (a path a - b - c plus d - c), both directions recorded: the mean
    # loss splits into one term per pair, so each implied-reward difference minimises its own 1-D term
    # W[x,y] f(h) + W[y,x] f(-h) (scipy, on the method's margin). The solution names its closed form.
    from scipy.optimize import minimize_scalar

    loss = METHODS[name].loss
    W = np.zeros((4, 4))
    W[0, 1], W[1, 0], W[1, 2], W[2, 1], W[3, 2], W[2, 3] = 3, 1, 2, 5, 1, 1
    z = implied_reward(W, loss)
    for x, y in ((0, 1), (1, 2), (3, 2)):
        best = minimize_scalar(lambda h, x=x, y=y: W[x, y] * loss.margin(h) + W[y, x] * loss.margin(-h),
                               bracket=(-1.0, 1.0), tol=1e-12).x
        assert z[x] - z[y] == pytest.approx(best, abs=1e-6)
    if loss.closed_form is not None:
        (run,) = exact_runs(name, W=W, taus=[1.0])
        assert "forest" in run.detail
