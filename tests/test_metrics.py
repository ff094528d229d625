"""The metrics of the exact runs (`psipo_cli.metrics`), checked by hand and against scipy.

Expected values are derived by hand (in a comment), from a loss written out from its definition, or from a
theorem of the paper — never with the code under test; the conventions relied on are listed in
`tests/reference/routes.py`.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from reference.routes import (
    TAUS,
    ipo_loss,
    kl,
    policies,
    problem_from,
    random_simplex,
    random_W,
    softmax,
)

import psipo_cli
from psipo_cli.methods import METHODS
from psipo_cli.metrics import t_interval


def metric_row(frames, method: str, tau: float):
    df = frames.metrics
    return df[(df.method == method) & (df.tau == tau)].iloc[0]


def test_metrics_dpo_paper_d1() -> None:
    """pi = (1, 0, 0), pi_ref = mu = uniform, P = order a > b > c.
    win_rate_ref = pi^T P pi_ref = (1/2 + 1 + 1) / 3 = 5/6; kl = log 3; entropy = 0.
    The population DPO optimum (expected counts of a total order: separable) is the same (1, 0, 0): tv 0."""
    frames = psipo_cli.solve("paper-d1", "dpo", 0.1)
    row = metric_row(frames, "dpo", 0.1)
    assert row.win_rate_ref == pytest.approx(5 / 6, abs=1e-15)
    assert row.win_rate_mu == pytest.approx(5 / 6, abs=1e-15)
    assert row.kl == pytest.approx(math.log(3), abs=1e-15)
    assert row.entropy == pytest.approx(0.0, abs=1e-15)
    assert row.tv_to_optimum == pytest.approx(0.0, abs=1e-15)
    assert row.reward is None or np.isnan(row.reward)


@pytest.mark.parametrize("tau", TAUS)
def test_metrics_ipo_paper_d1_by_hand(tau: float) -> None:
    """IPO on D1: pi ∝ exp((1, 0, -1) / (3 tau)). Its population optimum is pi_ref exp(P(y > mu) / tau)
    with P(y > mu) = (5/6, 1/2, 1/6): the same gaps 1/(3 tau), so tv_to_optimum = 0."""
    frames = psipo_cli.solve("paper-d1", "ipo", tau)
    row = metric_row(frames, "ipo", tau)
    pi = softmax(np.array([1.0, 0.0, -1.0]) / (3 * tau))
    P = np.array([[0.5, 1, 1], [0, 0.5, 1], [0, 0, 0.5]])
    u = np.full(3, 1 / 3)
    assert row.win_rate_ref == pytest.approx(pi @ P @ u, rel=1e-10)
    assert row.kl == pytest.approx(float(np.sum(pi * np.log(3 * pi))), rel=1e-10)
    assert row.entropy == pytest.approx(float(-np.sum(pi * np.log(pi))), rel=1e-10)
    assert row.tv_to_optimum == pytest.approx(0.0, abs=1e-12)


def test_metrics_reward_and_tv_on_bradley_terry() -> None:
    """bt-finite population: every method's exact population solution is its own optimum (tv = 0);
    reward = pi^T r; DPO/RLHF/psipo-logit all give pi_ref exp(r / tau)."""
    r = np.array([1.0, 0.5, 0.0, -0.5])
    tau = 0.5
    frames = psipo_cli.solve(
        "bt-finite", list(METHODS), tau, objective="population", psi="logit"
    )
    for method in METHODS:
        row = metric_row(frames, method, tau)
        assert row.tv_to_optimum == pytest.approx(0.0, abs=1e-9)
        pi = policies(frames)[(method, tau)]
        assert row.reward == pytest.approx(float(pi @ r), rel=1e-12)
    expected = softmax(r / tau)
    np.testing.assert_allclose(policies(frames)[("dpo", tau)], expected, rtol=1e-8)
    assert metric_row(frames, "dpo", tau).reward == pytest.approx(float(expected @ r), rel=1e-8)


def test_metrics_kl_and_entropy_random() -> None:
    rng = np.random.default_rng(17)
    n = 5
    W = random_W(rng, n, 0.8, both_ways=True)
    pi_ref = random_simplex(rng, n)
    frames = psipo_cli.solve(problem_from(W, pi_ref), "ipo", 0.4)
    pi = next(iter(policies(frames).values()))
    row = frames.metrics.iloc[0]
    assert row.kl == pytest.approx(kl(pi, pi_ref), rel=1e-12)
    assert row.entropy == pytest.approx(float(-np.sum(pi * np.log(pi))), rel=1e-12)
    assert row.loss == pytest.approx(ipo_loss(np.log(pi / pi_ref), W, 0.4), rel=1e-8, abs=1e-12)


def test_t_interval_against_scipy() -> None:
    from scipy import stats

    rng = np.random.default_rng(18)
    for S in (2, 3, 10):
        x = rng.normal(size=(S, 4))
        mean, lo, hi = t_interval(x)
        sem = x.std(axis=0, ddof=1) / math.sqrt(S)
        ref_lo, ref_hi = stats.t.interval(0.95, S - 1, loc=x.mean(axis=0), scale=sem)
        np.testing.assert_allclose(mean, x.mean(axis=0), rtol=1e-14)
        np.testing.assert_allclose(lo, ref_lo, rtol=1e-12)
        np.testing.assert_allclose(hi, ref_hi, rtol=1e-12)
    # By hand, S = 2: t_{0.975, 1} = 12.7062047..., values 1 and 3: sd = sqrt(2), half = t * sqrt(2)/sqrt(2).
    _, lo, hi = t_interval(np.array([1.0, 3.0]))
    assert float(hi) - 2.0 == pytest.approx(12.706204736174707, rel=1e-12)
    assert float(lo) == pytest.approx(2.0 - 12.706204736174707, rel=1e-12)
    # One sample: no interval (not a zero-width one, which would read as a deterministic result).
    mean, lo, hi = t_interval(np.array([[0.3, 0.7]]))
    np.testing.assert_array_equal(mean, [0.3, 0.7])
    assert np.isnan(lo).all() and np.isnan(hi).all()


def test_t_quantile_table_is_scipys_stdtrit_bit_for_bit() -> None:
    # The intervals' quantile comes from a table (no scipy import); every entry, and the first value past
    # the table (which asks scipy), must be exactly what scipy.special.stdtrit returns, so that the CSVs
    # are the same bytes with or without the table.
    from scipy.special import stdtrit

    from psipo_cli.student_t import T_975, t_quantile_975

    assert len(T_975) >= 100
    for dof in range(1, len(T_975) + 2):
        assert t_quantile_975(dof) == float(stdtrit(dof, 0.975)), dof
    # By hand (standard tables): t_{0.975, 1} = tan(0.475 pi) = 12.7062..., t_{0.975, 9} = 2.2622...
    assert t_quantile_975(1) == pytest.approx(math.tan(0.475 * math.pi), rel=1e-13)
    assert t_quantile_975(9) == pytest.approx(2.262157, abs=1e-6)


def test_gradient_solve_with_seed_intervals_imports_no_scipy() -> None:
    # A gradient solve's statistics need only the t quantile: importing scipy.special for it cost about
    # 0.15 s per process (its array-API layer loads numpy.f2py and numpy.testing).
    import subprocess
    import sys

    code = ("import sys, psipo_cli; f = psipo_cli.solve('paper-d1', ['dpo', 'ipo'], [0.5, 1.0], solver='gradient', "
            "steps=20, seeds=3); assert f.policy.prob_lo.notna().all(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'scipy'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out == "[]\n"
