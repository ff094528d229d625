"""Each experiment file runs, and the numbers behind each claim of the paper hold.

The experiments run through the real command (`psipo compare FILE --format json`), with their own settings
(the paper's: Adam, lr 0.01, batch 9, 18,000 steps, 10 seeds, unless the file says otherwise).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import brentq
from scipy.special import expit

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"


def compare(name: str, *flags: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    result = subprocess.run(
        [sys.executable, "-m", "psipo_cli", "compare", str(EXPERIMENTS / f"{name}.toml"), "--no-save",
         "--format", "json", *flags],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    return pd.DataFrame(doc["policy"]), pd.DataFrame(doc["metrics"])


def probs(policy: pd.DataFrame, method: str, solver: str, tau: float, context: str = "default") -> pd.Series:
    rows = policy[(policy.method == method) & (policy.solver == solver) & (policy.tau == tau)
                  & (policy.context == context)]
    return rows.set_index("action")["prob"]


TAUS = [0.1, 0.5, 1.0, 2.0]


def test_paper_fig1_dpo_ignores_tau_ipo_does_not() -> None:
    policy, metrics = compare("paper-fig1")
    for tau in TAUS:
        assert probs(policy, "dpo", "gradient", tau)["a"] >= 0.99
        assert list(probs(policy, "dpo", "exact", tau)) == [1.0, 0.0, 0.0]
        # IPO on D1: delta = Lap^+ b / (2 tau) with Lap = 3I - 11^T, b = (2, 0, -2): gaps 1/(3 tau).
        z = np.exp(np.array([1.0, 0.0, -1.0]) / (3 * tau))
        exact = probs(policy, "ipo", "exact", tau)
        assert exact.to_numpy() == pytest.approx(z / z.sum(), abs=1e-12)
        assert np.abs(probs(policy, "ipo", "gradient", tau) - exact).max() <= 0.01
    status = metrics.set_index(["method", "solver", "tau"])["status"]
    assert all(status[("dpo", "exact", t)] == "diverged" for t in TAUS)
    assert all(status[("dpo", "gradient", t)] == "running" for t in TAUS)
    assert all(status[("ipo", "exact", t)] == "optimal" for t in TAUS)


def test_paper_fig2_dpo_sends_c_to_zero() -> None:
    policy, _ = compare("paper-fig2")
    for tau in TAUS:
        assert probs(policy, "dpo", "gradient", tau)["c"] < 0.01
        # The tie a <-> b is one strongly connected component that beats c: the limit splits it evenly.
        assert list(probs(policy, "dpo", "exact", tau)) == pytest.approx([0.5, 0.5, 0.0], abs=1e-12)
        ipo = probs(policy, "ipo", "exact", tau)
        assert ipo["c"] > 0.0
        assert np.abs(probs(policy, "ipo", "gradient", tau) - ipo).max() <= 0.01


def test_paper_two_actions_ipo_closed_form() -> None:
    policy, metrics = compare("paper-two-actions")
    status = metrics.set_index(["method", "solver", "tau"])["status"]
    for tau in TAUS:
        # g(y1) = 3/4, g(y2) = 1/4 under mu uniform: pi*(y1) = sigmoid((3/4 - 1/4) / tau) = sigmoid(1/(2 tau)).
        assert probs(policy, "ipo", "exact", tau)["y1"] == pytest.approx(expit(1 / (2 * tau)), abs=1e-12)
        assert abs(probs(policy, "ipo", "gradient", tau)["y1"] - expit(1 / (2 * tau))) <= 0.01
        for method in ("rlhf", "dpo"):
            assert probs(policy, method, "exact", tau)["y1"] == 1.0
            assert status[(method, "exact", tau)] == "diverged"
        assert probs(policy, "psipo-logit", "exact", tau)["y1"] == 1.0
        assert status[("psipo-logit", "exact", tau)] == "limit"


def test_rlhf_reward_regularisation() -> None:
    policy, metrics = compare("rlhf-reward-regularisation")
    kl = metrics[metrics.solver == "exact"].set_index(["method", "tau"])["kl"]
    for tau in TAUS:
        dpo = probs(policy, "dpo", "exact", tau)
        assert probs(policy, "rlhf-l2=0", "exact", tau).to_numpy() == pytest.approx(dpo.to_numpy(), abs=1e-12)
        assert probs(policy, "rlhf-l2=0", "gradient", tau)["a"] >= 0.99
        for label, l2 in (("rlhf-l2=0.1", 0.1), ("rlhf-l2=1", 1.0)):
            # By symmetry the ridge reward on D1 is r = (x, 0, -x). Its mean loss
            # [2 softplus(-x) + softplus(-2x)] / 3 + l2 x^2 is stationary where
            # l2 x = (sigma(-x) + sigma(-2x)) / 3; then pi ∝ exp(r / tau).
            x = brentq(lambda v, l2=l2: l2 * v - (expit(-v) + expit(-2 * v)) / 3, 0.0, 10.0, xtol=1e-14)
            z = np.exp(np.array([x, 0.0, -x]) / tau - x / tau)
            exact = probs(policy, label, "exact", tau)
            assert exact.to_numpy() == pytest.approx(z / z.sum(), rel=1e-8, abs=1e-14)
            assert exact.min() > 0.0  # strictly inside the simplex
            assert np.abs(probs(policy, label, "gradient", tau) - exact).max() <= 0.01
        # More ridge, less reward spread, closer to pi_ref (on D1 the spread is monotone by symmetry).
        assert kl[("rlhf-l2=1", tau)] < kl[("rlhf-l2=0.1", tau)] < kl[("rlhf-l2=0", tau)]


def test_finite_sample_bt_approaches_population_optimum() -> None:
    _, metrics = compare("finite-sample-bt")
    tv = metrics.set_index(["method", "solver", "tau", "context"])["tv_to_optimum"]
    for method in ("rlhf", "dpo", "ipo"):
        for tau in TAUS:
            small, mid, large = (tv[(method, "exact", tau, f"n={n}")] for n in (10, 100, 1000))
            assert small > mid > large
    seeds = metrics.set_index(["method", "solver", "tau", "context"])["seeds"]
    assert (seeds == 10).all()  # exact and gradient both average over the same 10 datasets


def test_compare_without_arguments_writes_everything(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "psipo_cli", "compare", "--out", str(tmp_path), "--format", "path"],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    run_dir = Path(result.stdout.strip())
    for name in ("policy.csv", "metrics.csv", "curves.csv", "tau_grid.csv", "report.md", "config.json"):
        assert (run_dir / name).is_file()
    for figure in ("curves.png", "policy_vs_tau.png", "frontier.png"):
        data = (run_dir / "figures" / figure).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    report = (run_dir / "report.md").read_text()
    assert "DPO diverged for every tau" in report


def test_nash_online_who_reaches_the_regularised_equilibrium() -> None:
    # The file's problem written out: pi*_tau by iterating the extragradient update from its definition.
    P = np.array([[0.5, 0.9, 0.2], [0.1, 0.5, 0.7], [0.8, 0.3, 0.5]])
    pi_ref = np.array([0.5, 0.3, 0.2])

    def equilibrium(tau: float) -> np.ndarray:
        pi = pi_ref
        for _ in range(20000):
            base = (1 - 0.2 * tau) * np.log(pi) + 0.2 * tau * np.log(pi_ref)
            half = np.exp(base + 0.2 * P @ pi)
            half /= half.sum()
            pi = np.exp(base + 0.2 * P @ half)
            pi /= pi.sum()
        return pi

    policy, metrics = compare("nash-online")
    m = metrics.set_index(["method", "solver", "tau"])
    for tau in (0.25, 1.0):
        target = equilibrium(tau)
        for method in ("online-ipo", "inpo", "egpo"):
            for solver in ("exact", "gradient"):
                assert probs(policy, method, solver, tau).to_numpy() == pytest.approx(target, abs=1e-9)
            assert m.loc[(method, "gradient", tau), "nash_gap"] < 1e-12
        for method in ("ipo-md", "nash-md", "nash-md-pg"):  # tempered points: their own exact answer
            exact = probs(policy, method, "exact", tau).to_numpy()
            assert probs(policy, method, "gradient", tau).to_numpy() == pytest.approx(exact, abs=1e-9)
            assert m.loc[(method, "gradient", tau), "nash_gap"] > 1e-7
        assert m.loc[("sppo", "exact", tau), "status"] == "average"
        assert m.loc[("sppo", "gradient", tau), "status"] == "running"
def test_nash_cycle_dpo_ipo_rlhf_miss_the_equilibrium() -> None:
    policy, metrics = compare("nash-cycle")
    P = np.array([[0.5, 1.0, 0.0], [0.0, 0.5, 1.0], [1.0, 0.0, 0.5]])
    pi_ref = np.array([0.6, 0.3, 0.1])
    m = metrics.set_index(["method", "tau"])
    for tau in [0.01, 0.1, 0.5, 1.0, 2.0]:
        # Each pair is won once round the cycle: every pairwise loss is minimised at zero implied reward (the
        # sum of h round the cycle is 0, and the losses are symmetric), so DPO, IPO and RLHF return pi_ref.
        # Their gap is then Gap(pi_ref) = 2 tau KL(pi_ref || T(pi_ref)), T(pi) = softmax(log pi_ref + P pi / tau).
        t = pi_ref * np.exp(P @ pi_ref / tau)
        t /= t.sum()
        gap = 2 * tau * np.sum(pi_ref * np.log(pi_ref / t))
        for method in ("dpo", "ipo", "rlhf"):
            np.testing.assert_allclose(probs(policy, method, "exact", tau), pi_ref, atol=1e-12)
            assert m.loc[(method, tau), "nash_gap"] == pytest.approx(gap, rel=1e-9)
        # nash: the fixed point of T, checked by applying T written here.
        star = probs(policy, "nash", "exact", tau).to_numpy()
        image = pi_ref * np.exp(P @ star / tau)
        np.testing.assert_allclose(star, image / image.sum(), rtol=1e-10)
        assert m.loc[("nash", tau), "nash_gap"] < 1e-15 < gap
        assert ("diverges" in m.loc[("nash", tau), "detail"]) == (tau <= 0.1)


def test_nash_cycle_plain_iteration_diverges_where_rho_exceeds_one() -> None:
    # T's Jacobian at pi* has eigenvalues ± i rho and 0, so undamped iteration pi <- T(pi) moves away from pi*
    # when rho > 1 (and converges when rho < 1), and the damped (1 - a) pi + a T(pi) converges locally iff
    # a < 2 / (1 + rho^2) (|1 - a + i a rho| < 1).
    from psipo_cli.methods.nash.equilibrium import solve_equilibrium

    P = np.array([[0.5, 1.0, 0.0], [0.0, 0.5, 1.0], [1.0, 0.0, 0.5]])
    pi_ref = np.array([0.6, 0.3, 0.1])

    def iterate(tau: float, a: float, start: np.ndarray, steps: int) -> np.ndarray:
        pi = start
        for _ in range(steps):
            t = pi_ref * np.exp(P @ pi / tau - np.max(P @ pi / tau))
            pi = (1 - a) * pi + a * t / t.sum()
        return pi

    for tau in (0.1, 0.01):
        e = solve_equilibrium(P, pi_ref, tau)
        assert e.certificate.rho > 1
        start = e.policy + 1e-6 * np.array([1.0, -1.0, 0.0])
        assert np.abs(iterate(tau, 1.0, start, 2000) - e.policy).max() > 1e-3  # undamped: away from pi*
        bound = 2 / (1 + e.certificate.rho**2)
        assert np.abs(iterate(tau, 0.8 * bound, start, 40000) - e.policy).max() < 1e-9
        assert np.abs(iterate(tau, min(1.0, 1.25 * bound), start, 40000) - e.policy).max() > 1e-3
    e = solve_equilibrium(P, pi_ref, 2.0)
    assert e.certificate.rho < 1
    assert np.abs(iterate(2.0, 1.0, pi_ref, 2000) - e.policy).max() < 1e-12
