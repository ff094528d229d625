"""RLHF's exact solver (paper Eqs. 2-3): equal to DPO without a ridge, the ridge's effects.

Expected values are derived by hand (in a comment), from a loss written out from its definition, or from a
theorem of the paper — never with the code under test; the conventions relied on are listed in
`tests/reference/routes.py`.
"""

from __future__ import annotations

import itertools
import math
from functools import partial

import numpy as np
import pytest
from reference.routes import (
    WIDE_TAUS,
    bfgs,
    policies,
    preset_objectives,
    random_simplex,
    random_W,
    reward_grad,
    reward_loss,
    statuses,
    tilt,
)
from support import exact_solution

import psipo_cli
from psipo_cli.problem import get_problem, realise


@pytest.mark.parametrize(("name", "objective"), preset_objectives())
def test_rlhf_without_ridge_equals_dpo_on_presets(name: str, objective: str) -> None:
    """Prop. 4: with rm_l2 = 0, pi_ref exp(r_hat / tau) is DPO's minimiser (or the same limit)."""
    frames = psipo_cli.solve(name, ["rlhf", "dpo"], WIDE_TAUS[::3], objective=objective, rm_l2=0.0)
    pol, st = policies(frames), statuses(frames)
    for tau in WIDE_TAUS[::3]:
        np.testing.assert_allclose(pol[("rlhf", tau)], pol[("dpo", tau)], atol=1e-9, rtol=1e-7)
        assert st[("rlhf", tau)] == st[("dpo", tau)]


def test_rlhf_without_ridge_equals_dpo_on_random_data() -> None:
    rng = np.random.default_rng(7)
    seen = set()
    for _ in range(40):
        n = int(rng.integers(2, 7))
        W = random_W(rng, n, 0.6, both_ways=bool(rng.random() < 0.4))
        pi_ref = random_simplex(rng, n)
        for tau in (0.01, 1.0, 50.0):
            a, b = exact_solution("rlhf", W, pi_ref, tau, rm_l2=0.0), exact_solution("dpo", W, pi_ref, tau)
            assert a.status == b.status
            seen.add(a.status)
            np.testing.assert_allclose(a.policy, b.policy, atol=1e-9, rtol=1e-7)
    assert seen == {"optimal", "diverged"}


def test_rlhf_ridge_matches_a_generic_solve() -> None:
    """RLHF with rm_l2 > 0: the ridge reward model is strictly convex; BFGS on the raw objective."""
    rng = np.random.default_rng(8)
    for _ in range(20):
        n = int(rng.integers(2, 7))
        W = random_W(rng, n, 0.6)
        pi_ref = random_simplex(rng, n)
        l2 = float(rng.choice([1e-3, 0.1, 2.0]))
        tau = float(rng.choice([0.3, 1.0, 5.0]))
        r = bfgs(partial(reward_loss, W=W, l2=l2), partial(reward_grad, W=W, l2=l2), n)
        sol = exact_solution("rlhf", W, pi_ref, tau, rm_l2=l2)
        assert sol.status == "optimal"
        np.testing.assert_allclose(sol.policy, tilt(pi_ref, r / tau), atol=1e-7)


RIDGE_GRID = [1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0, 1e3]


@pytest.mark.parametrize("name", ["paper-d1", "paper-d3", "cycle", "bt-finite"])
def test_rlhf_ridge_stays_inside_and_shrinks_to_pi_ref(name: str) -> None:
    """rm_l2 > 0: the reward model is finite, so pi > 0 wherever pi_ref > 0; the ridge solution's norm is
    non-increasing in rm_l2 (compare the optimality of r(l1) and r(l2): F(r1) + l1|r1|^2/2 <= F(r2) +
    l1|r2|^2/2 and vice versa; adding gives (l1 - l2)(|r1|^2 - |r2|^2) <= 0), and it tends to 0, so
    pi -> pi_ref."""
    for tau in (0.1, 1.0):
        norms, kls = [], []
        for l2 in RIDGE_GRID:
            frames = psipo_cli.solve(name, "rlhf", tau, rm_l2=l2)
            pi = next(iter(policies(frames).values()))
            assert np.all(pi > 0), (l2, pi)
            assert frames.metrics.iloc[0].status == "optimal"
            kls.append(frames.metrics.iloc[0].kl)
            ctx = realise(get_problem(name)).contexts[0]
            r = exact_solution("rlhf", np.asarray(ctx.wins), ctx.pi_ref, tau, rm_l2=l2).offsets * tau
            norms.append(np.linalg.norm(r))
        assert all(b <= a * (1 + 1e-9) for a, b in itertools.pairwise(norms)), norms
        assert kls[-1] <= 1e-5 * max(kls) or max(kls) == 0.0


def test_rlhf_ridge_kl_monotone_on_d1() -> None:
    """On D1 the reversal a <-> c (with r -> -r) maps the data to themselves, so r = (x, 0, -x) with x
    non-increasing in rm_l2 (norm argument above); KL(softmax(r / tau) || uniform) increases with x, so it
    decreases monotonically along an increasing rm_l2 grid."""
    for tau in (0.1, 1.0, 10.0):
        kls = [psipo_cli.solve("paper-d1", "rlhf", tau, rm_l2=l2).metrics.iloc[0].kl for l2 in RIDGE_GRID]
        assert all(b <= a + 1e-15 for a, b in itertools.pairwise(kls)), kls
        assert kls[-1] < 1e-4 * kls[0]


def test_rlhf_ridge_kl_is_not_monotone_on_d3() -> None:
    """Documented fact, not a bug: on D3 the ridge path first moves mass to b (which has the extra win)
    and only then back towards pi_ref; the rm_l2 -> 0 limit is (1/2, 1/2, 0), KL = log(3/2), while at
    rm_l2 = 0.1, tau = 0.1 the policy is about (0.15, 0.85, 0) (checked with Nelder-Mead on the raw
    objective while writing this test), KL about 0.68."""
    kl_small = psipo_cli.solve("paper-d3", "rlhf", 0.1, rm_l2=1e-6).metrics.iloc[0].kl
    kl_mid = psipo_cli.solve("paper-d3", "rlhf", 0.1, rm_l2=0.1).metrics.iloc[0].kl
    assert kl_small == pytest.approx(math.log(1.5), abs=1e-4)
    assert kl_mid > kl_small + 0.2


def test_rlhf_large_ridge_asymptotics() -> None:
    """For large rm_l2 the reward model is one gradient step from 0: the mean loss has gradient
    -(1/2) b / N at r = 0 (sigmoid(0) = 1/2, b = wins - losses, N = sum W), so
    r = b / (2 N rm_l2) + O(rm_l2^-2) and pi -> pi_ref exp(b / (2 N rm_l2 tau))."""
    rng = np.random.default_rng(9)
    for _ in range(10):
        n = int(rng.integers(2, 7))
        W = random_W(rng, n, 0.7)
        pi_ref = random_simplex(rng, n)
        b, N = W.sum(1) - W.sum(0), W.sum()
        l2, tau = 1e4, 0.5
        pi = exact_solution("rlhf", W, pi_ref, tau, rm_l2=l2).policy
        approx = tilt(pi_ref, b / (2 * N * l2 * tau))
        assert np.max(np.abs(pi - approx)) < 1e-7  # the error is O(l2^-2)
        assert np.max(np.abs(approx - pi_ref)) > 1e-6  # ... and the first-order term is visible
