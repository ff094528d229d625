"""χPO and f-DPO: logistic losses on a transformed potential (issue 12), exact and by gradient.

The losses are written out again here from their definitions (χPO arXiv 2407.13399 Eq. 9; TRL's
`f_divergence_type` logits); expected values come from one-pair conditions solved by brentq, scipy.optimize
multi-starts on those losses in the logits, and central differences — never from psipo's helpers.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from reference.routes import central_diff, problem_from
from scipy.optimize import brentq, minimize

import psipo_cli
from psipo_cli.config.settings import GradientSettings
from psipo_cli.methods import get_method
from psipo_cli.methods.pairwise.link_block import LinkBlock, LinkLane
from psipo_cli.methods.pairwise.linked import linked_grad, linked_loss
from psipo_cli.methods.streams import comparisons


def softplus(x: float) -> float:
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def logits(kind: str, dw: float, dl: float, alpha: float = 0.5) -> float:
    """TRL's logits before `beta`: χPO `phi(u_w) - phi(u_l)`, `phi(u) = u + log u`, `u = e^delta`; forward KL
    and alpha `(e^(-a dl) - e^(-a dw)) / a` (a = 1 for forward KL); JS `dw - dl - (softplus(dw) - softplus(dl))`."""
    if kind == "chi":
        return (math.exp(dw) + dw) - (math.exp(dl) + dl)
    if kind == "js":
        return dw - dl - (softplus(dw) - softplus(dl))
    a = 1.0 if kind == "forward-kl" else alpha
    return (math.exp(-a * dl) - math.exp(-a * dw)) / a


OPTIONS = {
    "chi": ("chipo", {}),
    "forward-kl": ("fdpo", {"f_divergence": "forward-kl"}),
    "js": ("fdpo", {"f_divergence": "js"}),
    "alpha": ("fdpo", {"f_divergence": "alpha", "f_alpha": 0.5}),
}


def loss_in_logits(theta: np.ndarray, W: np.ndarray, pi_ref: np.ndarray, kind: str, tau: float, clip=math.inf):
    """Mean over comparisons of `-log sigma(clip(tau logits))`, `pi = softmax(theta)`."""
    log_pi = theta - np.log(np.sum(np.exp(theta - theta.max()))) - theta.max()
    d = log_pi - np.log(pi_ref)
    w, l_ = np.nonzero(W)
    total = sum(
        W[a, b] * softplus(-min(max(tau * logits(kind, d[a], d[b]), -2 * clip), 2 * clip))
        for a, b in zip(w, l_, strict=True)
    )
    return total / W.sum()


def best_policy(W, pi_ref, kind, tau, clip=math.inf, starts=12, seed=3):
    n = W.shape[0]
    rng = np.random.default_rng(seed)
    best, value = None, math.inf
    for k in range(starts):
        x0 = np.zeros(n - 1) if k == 0 else rng.standard_normal(n - 1)

        def F(x):
            return loss_in_logits(np.concatenate([[0.0], x]), W, pi_ref, kind, tau, clip)

        x = minimize(F, x0, method="Nelder-Mead", options={"xatol": 1e-11, "fatol": 1e-15, "maxiter": 40000}).x
        x = minimize(F, x, method="BFGS", options={"gtol": 1e-12}).x
        if F(x) < value:
            theta = np.concatenate([[0.0], x])
            best, value = np.exp(theta - theta.max()) / np.sum(np.exp(theta - theta.max())), F(x)
    return best, value


STRONG = np.array([[0, 3, 1, 0], [1, 0, 2, 1], [2, 1, 0, 3], [1, 2, 1, 0]], dtype=float)
PI_REF = np.array([0.4, 0.3, 0.2, 0.1])


def exact(kind: str, W, pi_ref, tau: float, **extra):
    from support import exact_solution

    name, options = OPTIONS[kind]
    return exact_solution(name, W, pi_ref, tau, **options, **extra)


@pytest.mark.parametrize("kind", list(OPTIONS))
@pytest.mark.parametrize("tau", [0.2, 1.0, 5.0])
def test_one_pair_by_hand(kind: str, tau: float) -> None:
    """a beats b 3 times, b beats a once: the logistic loss of the potential is minimised where
    `tau logits = log 3` (its Bradley–Terry MLE); with `pi_ref = (0.6, 0.4)` the normalisation
    `0.6 e^da + 0.4 e^db = 1` gives `db` from `da`, and brentq solves the one remaining equation in `da`."""
    pi_ref = np.array([0.6, 0.4])
    W = np.array([[0, 3], [1, 0]], dtype=float)

    def db(da: float) -> float:
        return math.log((1 - 0.6 * math.exp(da)) / 0.4)

    da = brentq(lambda da: tau * logits(kind, da, db(da)) - math.log(3), -30.0, math.log(1 / 0.6) - 1e-15, xtol=1e-15)
    s = exact(kind, W, pi_ref, tau)
    assert s.status == "optimal"
    np.testing.assert_allclose(s.policy, [0.6 * math.exp(da), 0.4 * math.exp(db(da))], rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("kind", list(OPTIONS))
def test_matches_a_multistart_in_the_logits_and_the_potential_does_not_depend_on_tau(kind: str) -> None:
    potentials = []
    for tau in (0.3, 2.0):
        s = exact(kind, STRONG, PI_REF, tau)
        pi, value = best_policy(STRONG, PI_REF, kind, tau)
        assert s.status == "optimal"
        assert s.loss == pytest.approx(value, abs=1e-9)
        np.testing.assert_allclose(s.policy, pi, atol=2e-6)
        d = np.log(s.policy / PI_REF)
        potentials.append(np.array([tau * logits(kind, d[y], d[0]) for y in range(4)]))  # g_y - g_0
    # In the potential g = tau psi(delta) the loss is DPO's: g - g_0 is the Bradley–Terry MLE for every tau.
    np.testing.assert_allclose(potentials[0], potentials[1], atol=1e-8)


def test_separable_data_diverge_to_the_winner() -> None:
    """paper-d1 orders a > b > c: as for DPO there is no minimiser, and the losers get 0 for every tau."""
    for name in ("chipo", "fdpo"):
        frames = psipo_cli.solve("paper-d1", name, [0.1, 3.0], solver="exact")
        assert set(frames.metrics.status) == {"diverged"}
        np.testing.assert_array_equal(frames.policy.prob.to_numpy().reshape(2, 3), [[1, 0, 0], [1, 0, 0]])


def test_clipped_chipo_is_no_worse_than_a_multistart_and_says_the_minimisers_form_a_set() -> None:
    W = np.array([[0, 10, 0], [0, 0, 10], [1, 0, 0]], dtype=float)
    pi_ref = np.array([0.5, 0.3, 0.2])
    s = exact("chi", W, pi_ref, 0.5, r_max=1.0)
    _, value = best_policy(W, pi_ref, "chi", 0.5, clip=1.0, starts=20)
    assert s.status == "local"
    assert s.loss <= value + 1e-9
    d = np.log(s.policy / pi_ref)
    assert loss_in_logits(np.log(s.policy), W, pi_ref, "chi", 0.5, 1.0) == pytest.approx(s.loss, abs=1e-12)
    assert np.isfinite(d).all() and "the minimisers form a set" in s.detail


# ------------------------------------------------------------------------------------------------ gradient


@pytest.mark.parametrize(("kind", "clip"), [*((kind, math.inf) for kind in OPTIONS), ("chi", 0.4)])
def test_analytic_gradient_is_the_finite_difference_of_the_definition(kind: str, clip: float) -> None:
    name, options = OPTIONS[kind]
    loss = get_method(name).loss_at({**options, **({"r_max": clip} if clip < math.inf else {})})
    rng = np.random.default_rng(1)
    for tau in (0.3, 2.0):
        X = rng.normal(0.0, 0.7, 4)
        g = linked_grad(X, np.log(PI_REF), STRONG, loss, tau)
        fd = central_diff(lambda x, tau=tau: loss_in_logits(np.log(PI_REF) + x, STRONG, PI_REF, kind, tau, clip), X)
        np.testing.assert_allclose(g, fd, atol=1e-8)
        assert linked_loss(X, np.log(PI_REF), STRONG, loss, tau) == pytest.approx(
            loss_in_logits(np.log(PI_REF) + X, STRONG, PI_REF, kind, tau, clip), rel=1e-12
        )


def test_block_rows_are_each_lanes_gradient() -> None:
    """One `LinkBlock` holding lanes of three links and taus (full batch) gives each lane `linked_grad`."""
    specs = [("chi", 0.5, {}), ("js", 1.0, {}), ("alpha", 2.0, {}), ("chi", 0.7, {"r_max": 0.3})]
    data = comparisons(STRONG, "default")
    lanes, losses = [], []
    for kind, tau, extra in specs:
        name, options = OPTIONS[kind]
        loss = get_method(name).loss_at({**options, **extra})
        losses.append((loss, tau))
        lanes.append(LinkLane(loss, tau, data, None, np.log(PI_REF)))
    block = LinkBlock(lanes, 1, 4, GradientSettings(batch_size=0))
    X = np.random.default_rng(2).normal(0.0, 0.5, (6, 4))
    G = block.gradient(X, 0)
    for row, (loss, tau) in enumerate(losses):
        np.testing.assert_allclose(G[row], linked_grad(X[1 + row], np.log(PI_REF), STRONG, loss, tau), atol=1e-15)


@pytest.mark.parametrize("name", ["chipo", "fdpo"])
def test_full_batch_gradient_descent_reaches_the_exact_policy(name: str) -> None:
    problem = problem_from(STRONG, PI_REF)
    frames = psipo_cli.solve(
        problem, name, [0.5, 2.0], solver="both", optimizer="sgd", lr=0.5, steps=20000, batch_size=0, seeds=1
    )
    p = frames.policy
    for tau in (0.5, 2.0):
        e = p[(p.solver == "exact") & (p.tau == tau)].prob.to_numpy()
        g = p[(p.solver == "gradient") & (p.tau == tau)].prob.to_numpy()
        np.testing.assert_allclose(g, e, atol=1e-8)
    assert set(frames.metrics[frames.metrics.solver == "gradient"].status) == {"converged"}


def test_results_do_not_depend_on_which_methods_share_the_call() -> None:
    problem = problem_from(STRONG, PI_REF)
    kw = {"solver": "gradient", "steps": 600, "batch_size": 4, "seeds": 2}
    alone = psipo_cli.solve(problem, "fdpo", [0.5, 1.0], **kw).policy
    together = psipo_cli.solve(problem, ["dpo", "chipo", "fdpo", "simpo"], [0.5, 1.0], **kw).policy
    np.testing.assert_array_equal(
        alone.prob.to_numpy(), together[together.method == "fdpo"].prob.to_numpy()
    )
