"""DPO's exact solver (paper Eq. 4, Prop. 4): the minimiser when it exists, the status otherwise.

Expected values are derived by hand (in a comment), from a loss written out from its definition, or from a
theorem of the paper — never with the code under test; the conventions relied on are listed in
`tests/reference/routes.py`.
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest
from reference.routes import (
    WIDE_TAUS,
    bfgs,
    canonical,
    dpo_grad,
    dpo_loss,
    one_policy,
    policies,
    problem_from,
    random_simplex,
    random_W,
    strongly_connected,
    tilt,
)
from support import exact_solution

import psipo_cli


@pytest.mark.parametrize("tau", WIDE_TAUS)
def test_dpo_paper_d1_diverges_to_the_top_action(tau: float) -> None:
    """D1 orders a > b > c with no comparison going back: no minimiser, every action but a -> 0."""
    frames = psipo_cli.solve("paper-d1", "dpo", tau)
    pi = next(iter(policies(frames).values()))
    np.testing.assert_array_equal(pi, [1.0, 0.0, 0.0])
    row = frames.metrics.iloc[0]
    assert row.status == "diverged"
    assert row.loss == pytest.approx(0.0, abs=1e-15)  # infimum: every separated comparison -> 0


@pytest.mark.parametrize("tau", WIDE_TAUS)
def test_dpo_paper_d3(tau: float) -> None:
    """D3 = {a>b, b>a, b>c}: {a, b} is strongly connected and beats c, so pi(c) = 0; inside {a, b} one win
    each gives r_a = r_b, so pi(a) = pi(b) = 1/2. Infimum of the mean loss: the separated b>c goes to 0,
    a>b and b>a stay at log 2 each: 2 log 2 / 3."""
    frames = psipo_cli.solve("paper-d3", "dpo", tau)
    pi = next(iter(policies(frames).values()))
    assert pi[2] == 0.0
    assert pi[0] == pytest.approx(pi[1], abs=1e-15)
    assert pi[0] == pytest.approx(0.5, abs=1e-12)
    row = frames.metrics.iloc[0]
    assert row.status == "diverged"
    assert row.loss == pytest.approx(2 * math.log(2) / 3, rel=1e-9)


@pytest.mark.parametrize("tau", [1e-3, 0.1, 1.0, 1e3])
def test_dpo_notes_step_5_union(tau: float) -> None:
    """D1 over {a, b, c} and a single d > e. Max-margin u: (1, 0, -1) on D1 (margins 1), (1/2, -1/2) on
    {d, e}: a alone has the largest u, so all mass goes to a, for every tau."""
    W = np.zeros((5, 5))
    W[0, 1] = W[1, 2] = W[0, 2] = W[3, 4] = 1
    for method in ("dpo", "rlhf"):
        pi = one_policy(problem_from(W), method, tau)
        np.testing.assert_array_equal(pi, [1.0, 0, 0, 0, 0])


def test_dpo_optimal_matches_bfgs_on_the_raw_loss() -> None:
    rng = np.random.default_rng(5)
    checked = 0
    for _ in range(25):
        n = int(rng.integers(2, 7))
        W = random_W(rng, n, 0.6, both_ways=True)
        pi_ref = random_simplex(rng, n)
        tau = float(rng.choice([0.2, 1.0, 4.0]))
        sol = exact_solution("dpo", W, pi_ref, tau)
        assert sol.status == "optimal"
        loss = partial(dpo_loss, W=W, tau=tau)
        grad = partial(dpo_grad, W=W, tau=tau)
        delta = canonical(bfgs(loss, grad, n), W)
        np.testing.assert_allclose(sol.policy, tilt(pi_ref, delta), atol=1e-7)
        np.testing.assert_allclose(sol.offsets, delta, atol=1e-6)
        assert sol.loss == pytest.approx(dpo_loss(delta, W, tau), rel=1e-9)
        checked += 1
    assert checked == 25


def test_dpo_status_follows_strong_connectivity() -> None:
    """A minimiser exists iff every comparison is inside a strongly connected component (docs/maths.md §2.2)."""
    rng = np.random.default_rng(6)
    seen = set()
    for _ in range(60):
        W = random_W(rng, int(rng.integers(2, 7)), 0.5)
        status = exact_solution("dpo", W, np.full(W.shape[0], 1 / W.shape[0]), 1.0).status
        assert status == ("optimal" if strongly_connected(W) else "diverged")
        seen.add(status)
    assert seen == {"optimal", "diverged"}
