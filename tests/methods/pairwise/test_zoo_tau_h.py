"""EXO, DiscoPOP and SimPO: losses of `tau h` (issue 12), exact answers against independent routes.

Every loss is written out again here from its paper / TRL definition (scalar maths, no psipo code); expected
values are closed forms derived in the comments, or scipy.optimize multi-starts on those losses.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from reference.routes import TAUS, central_diff, one_policy, problem_from, softmax
from scipy.optimize import brentq, minimize
from support import exact_solution

import psipo_cli
from psipo_cli.errors import InputError
from psipo_cli.methods import get_method
from psipo_cli.methods.pairwise.solver import margin_gradient


def sig(x: float) -> float:
    return 0.5 * (1.0 + math.tanh(0.5 * x))


def log_sig(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x > -30 else x - math.log1p(math.exp(x))


def exo_f(x: float, eps: float) -> float:
    """TRL exo_pair: sigma(x) (log sigma(x) - log(1 - eps)) + sigma(-x) (log sigma(-x) - log eps)."""
    return sig(x) * (log_sig(x) - math.log(1 - eps)) + sig(-x) * (log_sig(-x) - math.log(eps))


def discopop_f(x: float, t: float = 0.05) -> float:
    """TRL discopop: -log sigma(x) (1 - sigma(x / t)) + e^-x sigma(x / t)."""
    m = sig(x / t)
    return -log_sig(x) * (1 - m) + math.exp(-x) * m


def simpo_f(x: float, gamma: float) -> float:
    """SimPO: -log sigma(x - gamma)."""
    return -log_sig(x - gamma)


def mean_loss(f, z: np.ndarray, W: np.ndarray) -> float:
    w, l_ = np.nonzero(W)
    return sum(W[a, b] * f(z[a] - z[b]) for a, b in zip(w, l_, strict=True)) / W.sum()


def multistart(f, W: np.ndarray, starts: int = 40, scale: float = 4.0, seed: int = 7) -> tuple[np.ndarray, float]:
    """The best of `starts` Nelder-Mead + BFGS minimisations of the mean loss (first coordinate pinned at 0:
    the loss depends on differences only)."""
    n = W.shape[0]
    rng = np.random.default_rng(seed)
    best, value = None, math.inf
    for k in range(starts):
        x0 = np.zeros(n - 1) if k == 0 else scale * rng.standard_normal(n - 1)

        def F(x: np.ndarray) -> float:
            return mean_loss(f, np.concatenate([[0.0], x]), W)

        x = minimize(F, x0, method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-14, "maxiter": 20000}).x
        x = minimize(F, x, method="BFGS", options={"gtol": 1e-11}).x
        if F(x) < value:
            best, value = np.concatenate([[0.0], x]), F(x)
    return best - best.mean(), value


STRONG = np.array([[0, 3, 1, 0], [1, 0, 2, 1], [2, 1, 0, 3], [1, 2, 1, 0]], dtype=float)  # strongly connected
PI_REF = np.array([0.4, 0.3, 0.2, 0.1])


@pytest.mark.parametrize(
    ("name", "options", "f"),
    [
        ("exo", {}, lambda x: exo_f(x, 1e-3)),
        ("exo", {"label_smoothing": 0.2}, lambda x: exo_f(x, 0.2)),
        ("discopop", {}, discopop_f),
        ("discopop", {"discopop_tau": 0.3}, lambda x: discopop_f(x, 0.3)),
        ("simpo", {"gamma": 0.5}, lambda x: simpo_f(x, 0.5)),
        ("simpo", {"gamma": 2.0}, lambda x: simpo_f(x, 2.0)),
    ],
)
def test_pair_loss_and_gradient_are_the_definition(name: str, options: dict, f) -> None:
    loss = get_method(name).loss_at(options)
    for tau in (0.1, 1.0, 3.0):
        for h in np.linspace(-40.0, 40.0, 81) / tau:
            assert loss.pair_loss(np.array([h]), tau)[0] == pytest.approx(f(tau * h), rel=1e-12, abs=1e-300)
            fd = central_diff(lambda x, tau=tau: f(tau * x[0]), np.array([h]), 1e-6 / tau)[0]
            assert loss.pair_grad(np.array([h]), tau)[0] == pytest.approx(fd, rel=1e-6, abs=1e-8)


@pytest.mark.parametrize(("name", "options"), [("exo", {}), ("discopop", {}), ("simpo", {}), ("simpo", {"gamma": 1.5})])
def test_implied_reward_does_not_depend_on_tau(name: str, options: dict) -> None:
    """Losses of `tau h`: `tau delta*` is the same `z*` for every tau, and `pi ∝ pi_ref exp(z* / tau)`."""
    solutions = get_method(name).solve_exact(_inputs(STRONG, PI_REF, name), TAUS, **options)
    z = solutions[0].reward
    for tau, s in zip(TAUS, solutions, strict=True):
        np.testing.assert_allclose(s.reward, z, atol=1e-12)
        np.testing.assert_allclose(tau * s.offsets, z, atol=1e-9)


def _inputs(W: np.ndarray, pi_ref: np.ndarray, name: str):
    from psipo_cli.solvers.inputs import method_inputs

    problem = problem_from(W, pi_ref)
    return method_inputs(problem.contexts[0], get_method(name), "dataset", problem.actions)


# ------------------------------------------------------------------------------------------------ EXO


@pytest.mark.parametrize("eps", [1e-3, 0.05, 0.3])
@pytest.mark.parametrize(("a", "b"), [(3, 1), (1, 4), (2, 2), (5, 0)])
def test_exo_one_pair_closed_form(eps: float, a: int, b: int) -> None:
    """One pair, `a` wins of y0 and `b` of y1: `a f'(x) = b f'(-x)` with `f'(x) = s(1-s)(x - c)`,
    `c = logit(1 - eps)`, and `s(1-s)` even, so `a (x - c) = b (-x - c)`: `x = (a - b) c / (a + b)`."""
    W = np.array([[0, a], [b, 0]], dtype=float)
    c = math.log((1 - eps) / eps)
    s = exact_solution("exo", W, [0.5, 0.5], 0.7, label_smoothing=eps)
    assert s.status == "local"
    assert s.reward[0] - s.reward[1] == pytest.approx((a - b) * c / (a + b), abs=1e-9)


def test_exo_matches_a_multistart_on_its_definition() -> None:
    s = exact_solution("exo", STRONG, PI_REF, 0.5)
    z, value = multistart(lambda x: exo_f(x, 1e-3), STRONG, scale=6.0)
    assert s.status == "local"
    assert s.loss == pytest.approx(value, abs=1e-10)
    np.testing.assert_allclose(s.reward, z, atol=1e-5)


def test_exo_breaks_the_symmetry_of_a_cycle() -> None:
    """A 3-cycle y0 > y1 > y2 > y0, one comparison each, small eps: `z = 0` (the symmetric point, loss
    `f(0) = KL(Bern(1/2) || Bern(1 - eps))`) is not the minimum; rotating the actions maps minimisers to
    minimisers, so the reported minimiser (not symmetric) has rotated copies with the same loss."""
    W = np.array([[0, 1, 0], [0, 0, 1], [1, 0, 0]], dtype=float)
    s = exact_solution("exo", W, np.ones(3) / 3, 1.0)
    symmetric = exo_f(0.0, 1e-3)
    _, value = multistart(lambda x: exo_f(x, 1e-3), W, scale=6.0)
    assert value < symmetric - 0.1
    assert s.loss == pytest.approx(value, abs=1e-10)
    z = s.reward
    assert np.ptp(z) > 1.0  # not the symmetric point
    for k in (1, 2):
        rotated = np.roll(z, k)
        assert mean_loss(lambda x: exo_f(x, 1e-3), rotated, W) == pytest.approx(s.loss, abs=1e-12)
    assert "not unique" in s.detail


def test_exo_refuses_zero_label_smoothing() -> None:
    with pytest.raises(InputError) as info:
        exact_solution("exo", STRONG, PI_REF, 1.0, label_smoothing=0.0)
    assert info.value.key == "--label-smoothing" and "exo" in info.value.reason


# ------------------------------------------------------------------------------------------------ DiscoPOP


def test_discopop_gradient_at_pi_ref_points_the_wrong_way() -> None:
    """`f'(0)` by hand: `m(0) = 1/2`, `m'(0) = 1/(4 t)`, `softplus(0) = log 2`, `sigma(0) = 1/2`:
    `f'(0) = m'(0) (1 - log 2) - (1/2)(1/2) - (1/2) = (1 - log 2)/(4 t) - 3/4` (0.784 at t = 0.05) > 0,
    so the gradient of the loss at `pi_ref` (h = 0) raises the loser and lowers the winner."""
    t = 0.05
    expected = (1 - math.log(2)) / (4 * t) - 0.75
    assert expected > 0
    loss = get_method("discopop").loss_at({})
    assert loss.margin_grad(np.array([0.0]))[0] == pytest.approx(expected, rel=1e-12)
    assert central_diff(lambda x: discopop_f(x[0]), np.zeros(1))[0] == pytest.approx(expected, rel=1e-7)


def test_discopop_gradient_descent_from_pi_ref_ends_at_the_wrong_way_minimum() -> None:
    """paper-d1 (a > b, b > c, a > c, once each): no minimiser (type A), the exact answer is `diverged` to
    `[1, 0, 0]`. In `z = tau delta` the mean loss is `[f(z_a - z_b) + f(z_b - z_c) + f(z_a - z_c)] / 3`; at 0 its
    gradient is `(2 f'(0), 0, -2 f'(0)) / 3` with `f'(0) > 0`, and the reflection `z -> -z` with a and c swapped
    maps the loss to itself, so gradient descent stays on `z = (-y, 0, y)`: it lowers the winner a, raises the
    loser c, and stops where `d/dy [2 f(-y) + f(-2 y)] = 0`, i.e. `f'(-y) + f'(-2 y) = 0` (brentq on the
    definition's derivative): the order reverses, `pi(c) > pi(b) > pi(a)`, for every tau."""

    def df(x: float) -> float:
        return central_diff(lambda v: discopop_f(v[0]), np.array([x]))[0]

    y = brentq(lambda y: df(-y) + df(-2 * y), 1e-3, 5.0, xtol=1e-13)
    frames = psipo_cli.solve(
        "paper-d1", "discopop", [0.5, 2.0], solver="both", steps=20000, lr=0.05, optimizer="sgd", batch_size=0,
        seeds=1,
    )
    m = frames.metrics.set_index(["tau", "solver"])
    for tau in (0.5, 2.0):
        assert m.loc[(tau, "exact"), "status"] == "diverged"
        assert "stops instead at a finite local minimum" in m.loc[(tau, "exact"), "detail"]
        assert "on 3 of the 3 separating comparisons" in m.loc[(tau, "exact"), "detail"]
        assert m.loc[(tau, "gradient"), "status"] == "converged"
        p = frames.policy[(frames.policy.solver == "gradient") & (frames.policy.tau == tau)].prob.to_numpy()
        assert p[2] > p[1] > p[0]
        z = tau * np.log(p / (1 / 3))
        np.testing.assert_allclose(z - z[1], [-y, 0.0, y], atol=1e-6)
        exact = frames.policy[(frames.policy.solver == "exact") & (frames.policy.tau == tau)].prob.to_numpy()
        np.testing.assert_array_equal(exact, [1.0, 0.0, 0.0])


def test_discopop_matches_a_multistart_on_its_definition() -> None:
    s = exact_solution("discopop", STRONG, PI_REF, 0.5)
    z, value = multistart(discopop_f, STRONG, scale=2.0)
    assert s.status == "local"
    assert s.loss == pytest.approx(value, abs=1e-10)
    np.testing.assert_allclose(s.reward, z, atol=1e-5)


# ------------------------------------------------------------------------------------------------ SimPO


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize(("a", "b"), [(3, 1), (1, 4), (2, 2)])
def test_simpo_one_pair_closed_form_ignores_pi_ref(gamma: float, a: int, b: int) -> None:
    """One pair: `a sigma(gamma - x) = b sigma(gamma + x)` (stationarity of `a f(x) + b f(-x)`). With `u = e^x`,
    `g = e^gamma`: `a (1 + 1/(u g)) = b (1 + u/g)`, i.e. `b u^2 + (b - a) g u - a = 0`, `u > 0` the positive
    root. SimPO reads `log pi`, not `pi_ref`: `pi = softmax(x / tau)` whatever `pi_ref` (on its support)."""
    g = math.exp(gamma)
    u = (-(b - a) * g + math.sqrt((b - a) ** 2 * g * g + 4 * a * b)) / (2 * b)
    x = math.log(u)
    W = np.array([[0, a], [b, 0]], dtype=float)
    for tau in (0.3, 2.0):
        pi = one_policy(problem_from(W, [0.9, 0.1]), "simpo", tau, gamma=gamma)
        np.testing.assert_allclose(pi, softmax(np.array([x, 0.0]) / tau), atol=1e-12)


def test_simpo_uses_only_the_support_of_pi_ref() -> None:
    """An action outside `supp pi_ref` keeps probability 0; the others follow `softmax(z / tau)` with `z` the
    minimiser of the definition (scipy) on the comparisons between supported actions."""
    W = np.array([[0, 3, 1], [1, 0, 2], [2, 1, 0]], dtype=float)
    z, _ = multistart(lambda x: simpo_f(x, 0.5), W[:2, :2], starts=3)
    pi = one_policy(problem_from(W[:2, :2], [0.7, 0.3]), "simpo", 0.5)
    np.testing.assert_allclose(pi, softmax(z / 0.5), atol=1e-7)
    W3 = np.zeros((3, 3))
    W3[:2, :2] = W[:2, :2]
    pi3 = one_policy(problem_from(W3, [0.9, 0.1, 0.0]), "simpo", 0.5)
    np.testing.assert_allclose(pi3, [*softmax(z / 0.5), 0.0], atol=1e-7)


def test_simpo_matches_a_multistart_and_diverges_like_dpo() -> None:
    s = exact_solution("simpo", STRONG, PI_REF, 1.0)  # z* does not depend on the reference
    z, value = multistart(lambda x: simpo_f(x, 0.5), STRONG, starts=3)
    assert s.status == "optimal" and s.loss == pytest.approx(value, abs=1e-10)
    np.testing.assert_allclose(s.reward, z, atol=1e-6)
    frames = psipo_cli.solve("paper-d1", "simpo", [0.1, 1.0], solver="exact")
    assert set(frames.metrics.status) == {"diverged"}
    np.testing.assert_array_equal(frames.policy.prob.to_numpy().reshape(2, 3), [[1, 0, 0], [1, 0, 0]])


@pytest.mark.parametrize(("name", "lr"), [("exo", 0.5), ("simpo", 0.1)])
def test_full_batch_gradient_descent_reaches_the_exact_policy(name: str, lr: float) -> None:
    """On strongly connected data EXO's best minimiser is where gradient descent from pi_ref goes here, and
    SimPO is convex; SimPO's run uses the uniform reference as the exact solver does."""
    frames = psipo_cli.solve(
        problem_from(STRONG, PI_REF), name, [2.0, 5.0], solver="both", optimizer="sgd", lr=lr, steps=60000,
        batch_size=0, seeds=1,
    )
    p = frames.policy
    for tau in (2.0, 5.0):
        e = p[(p.solver == "exact") & (p.tau == tau)].prob.to_numpy()
        g = p[(p.solver == "gradient") & (p.tau == tau)].prob.to_numpy()
        np.testing.assert_allclose(g, e, atol=1e-7)
    assert set(frames.metrics[frames.metrics.solver == "gradient"].status) == {"converged"}


def test_discopop_gradient_descent_stops_at_a_worse_local_minimum_and_the_exact_detail_says_so() -> None:
    """On STRONG, gradient descent from pi_ref converges to a stationary point of DiscoPOP's loss (BFGS on the
    definition started there does not move it) whose loss is higher than the exact answer's."""
    tau = 2.0
    frames = psipo_cli.solve(
        problem_from(STRONG, PI_REF), "discopop", tau, solver="both", optimizer="sgd", lr=0.01, steps=40000,
        batch_size=0, seeds=1,
    )
    m = frames.metrics.set_index("solver")
    assert m.loc["gradient", "status"] == "converged"
    assert "gradient descent from pi_ref (z = 0) ends at a different local minimum" in m.loc["exact", "detail"]
    g = frames.policy[frames.policy.solver == "gradient"].prob.to_numpy()
    z = tau * np.log(g / PI_REF)
    z -= z.mean()
    polished = minimize(lambda x: mean_loss(discopop_f, x, STRONG), z, method="BFGS", options={"gtol": 1e-12}).x
    np.testing.assert_allclose(polished - polished.mean(), z, atol=1e-6)
    assert mean_loss(discopop_f, z, STRONG) > m.loc["exact", "loss"] + 1e-3


def test_cli_refuses_exo_without_label_smoothing_in_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "psipo_cli", "run", "exo", "--label-smoothing", "0", "--solver", "exact", "--out",
         str(tmp_path / "out")], capture_output=True, text=True, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[3])},
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["psipo: --label-smoothing = 0.0: exo needs 0 < label smoothing < 0.5"]
    assert not (tmp_path / "out").exists()


def test_experiment_zoo_discopop_wrong_way() -> None:
    """`psipo compare experiments/zoo-discopop-wrong-way.toml`: the claim of its header, through the real
    command (the reversed order is derived in `test_discopop_gradient_descent_from_pi_ref_ends_...`)."""
    import json

    root = Path(__file__).resolve().parents[3]
    result = subprocess.run(
        [sys.executable, "-m", "psipo_cli", "compare", str(root / "experiments" / "zoo-discopop-wrong-way.toml"),
         "--no-save", "--format", "json"], capture_output=True, text=True, cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    policy, metrics = pd.DataFrame(doc["policy"]), pd.DataFrame(doc["metrics"])
    status = metrics.set_index(["method", "solver", "tau"])
    for tau in (0.1, 0.5, 1.0, 2.0):
        rows = policy[(policy.tau == tau) & (policy.method == "discopop")]
        exact = rows[rows.solver == "exact"].prob.to_numpy()
        gradient = rows[rows.solver == "gradient"].prob.to_numpy()
        np.testing.assert_array_equal(exact, [1.0, 0.0, 0.0])
        assert gradient[2] > gradient[1] > gradient[0]
        assert status.loc[("discopop", "exact", tau), "status"] == "diverged"
        assert "ranks the loser above the winner" in status.loc[("discopop", "exact", tau), "detail"]
        assert status.loc[("discopop", "gradient", tau), "status"] == "converged"
        dpo = policy[(policy.tau == tau) & (policy.method == "dpo") & (policy.solver == "gradient")].prob.to_numpy()
        assert dpo[0] > dpo[1] > dpo[2]


def test_gradient_flow_that_starts_stopped_returns_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # Found by the numerics fuzzer (it ran for minutes): EXO on two balanced pairs, a0 vs a4 and a1 vs a4 each
    # won once either way (counts 1e-203 and 1e-199, up to a relative 1e-13 from rewards 1e-13 apart). The
    # mean loss's gradient at z = 0 is below FLOW_GTOL (the counts balance: f'(0) (W[w, l] - W[l, w]) ~ 1e-12),
    # so by the flow's own definition it has stopped at its start, z = 0: nothing to integrate.
    from psipo_cli.methods.pairwise import flow

    calls = []

    def counted(*args: object, **kwargs: object) -> np.ndarray:
        calls.append(1)
        return margin_gradient(*args, **kwargs)

    W = np.zeros((5, 5))
    W[0, 4], W[4, 0] = 1e-203 * (1 + 2e-13), 1e-203
    W[1, 4], W[4, 1] = 1e-199 * (1 + 5e-12), 1e-199
    loss = get_method("exo").loss_at({})
    assert np.max(np.abs(margin_gradient(np.zeros(5), W, loss))) < flow.FLOW_GTOL
    monkeypatch.setattr(flow, "margin_gradient", counted)
    np.testing.assert_array_equal(flow.gradient_flow(W, loss), np.zeros(5))
    assert len(calls) <= 2  # the stopping test at the start (LSODA took over 10^6 gradient evaluations)
