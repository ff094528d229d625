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
# ----------------------------------------------------------------------------------- the loss zoo (issue 12)
def test_zoo_label_smoothing_bounds_cdpo_and_unbounds_rdpo() -> None:
    policy, metrics = compare("zoo-label-smoothing")
    status = metrics.set_index(["method", "solver", "tau"])["status"]
    for tau in TAUS:
        assert status[("dpo", "exact", tau)] == "diverged"
        assert status[("rdpo-0.1", "exact", tau)] == "unbounded"
        assert status[("rdpo-0.1", "gradient", tau)] == "running"
        for eps in (0.1, 0.25):
            # cDPO on D1 is DPO on (1-e) W + e W^T: every pair compared both ways, so the BT MLE exists (attained,
            # interior), and the smoothed data tie more as e grows (pi(a) falls towards pi_ref's 1/3).
            assert status[(f"cdpo-{eps}", "exact", tau)] == "optimal"
            assert probs(policy, f"cdpo-{eps}", "exact", tau).min() > 0.0
        assert probs(policy, "cdpo-0.25", "exact", tau)["a"] < probs(policy, "cdpo-0.1", "exact", tau)["a"] < 1.0
    detail = metrics[(metrics.method == "rdpo-0.1") & (metrics.solver == "exact")]["detail"].iloc[0]
    assert "into {a}" in detail


def test_zoo_flip_noise_rdpo_recovers_the_reward() -> None:
    # P = e + (1 - 2e) sigma(r_i - r_j): the de-noised counts are sigma(r_i - r_j) exactly, so rDPO's implied
    # reward is r (up to a constant) and pi = pi_ref exp(r / tau) / Z with the uniform pi_ref of the file.
    policy, _ = compare("zoo-flip-noise")
    r = np.array([1.0, 0.2, -0.4, -0.8])
    for tau in (0.5, 1.0, 2.0):
        expected = np.exp(r / tau) / np.exp(r / tau).sum()
        np.testing.assert_allclose(probs(policy, "rdpo-0.2", "exact", tau).to_numpy(), expected, atol=1e-9)
        # DPO fits the noisy P: a smaller spread than r's (its implied reward difference a - d is
        # logit-like of P(a > d) = 0.715 < sigma(1.8) = 0.858).
        dpo = probs(policy, "dpo", "exact", tau).to_numpy()
        assert tau * np.log(dpo[0] / dpo[3]) < 1.8 - 0.5


def test_zoo_hinge_set_gradient_flow_point() -> None:
    # Gradient flow from pi_ref reaches r = (1, 0, -1) (derived by hand in tests/methods/pairwise): the exact
    # policy is softmax(r / tau) on the uniform pi_ref of D1, status set for both losses.
    policy, metrics = compare("zoo-hinge-set")
    status = metrics.set_index(["method", "solver", "tau"])["status"]
    for tau in TAUS:
        expected = np.exp(np.array([1.0, 0.0, -1.0]) / tau)
        for method in ("hinge", "gpo-truncated-quadratic"):
            assert status[(method, "exact", tau)] == "set"
            np.testing.assert_allclose(probs(policy, method, "exact", tau).to_numpy(), expected / expected.sum(),
                                       atol=1e-9)


def test_zoo_every_loss_of_tau_h_is_rlhf_with_its_own_reward() -> None:
    # pi_tau ∝ pi_ref exp(z* / tau) with z* free of tau: z* read off the smallest tau predicts every other tau.
    policy, _ = compare("zoo-implied-reward")
    pi_ref = np.array([0.1, 0.2, 0.3, 0.4])
    rewards = {}
    for method in policy.method.unique():
        z = 0.1 * np.log(probs(policy, method, "exact", 0.1).to_numpy() / pi_ref)
        for tau in (0.5, 1.0, 2.0):
            w = pi_ref * np.exp(z / tau)
            np.testing.assert_allclose(probs(policy, method, "exact", tau).to_numpy(), w / w.sum(), atol=1e-9)
        rewards[method] = z - z.mean()
    # The loss, not tau, sets the reward. GPO's (x - 1)^2 is IPO's (x - 1/2)^2 at twice the margin
    # (z = 2 z_IPO); the truncated quadratic is the squared loss wherever every margin is below 1 (here).
    np.testing.assert_allclose(rewards["gpo-squared"], 2 * rewards["ipo"], atol=1e-9)
    np.testing.assert_allclose(rewards["gpo-truncated-quadratic"], rewards["gpo-squared"], atol=1e-9)
    others = ["dpo", "cdpo", "rdpo", "hinge", "gpo-exponential", "gpo-squared", "gpo-savage"]
    spreads = [round(float(np.ptp(rewards[m])), 3) for m in others]
    assert len(set(spreads)) == len(others)


# Which losses send a never-winning action to 0 (experiments/zoo-never-wins.toml): a > b twice, b > a once,
# a > c, b > c, uniform pi_ref; c never wins.
NEVER_WINS_PAIRS = [("a", "b", 2.0), ("b", "a", 1.0), ("a", "c", 1.0), ("b", "c", 1.0)]


def never_wins_loss(method: str, pi: dict[str, np.ndarray], tau: float) -> np.ndarray:
    """The dataset loss of `method` at the policies `pi` (arrays of masses per action, any shape), written from
    the losses' definitions (NCA arXiv 2402.05369, BCO arXiv 2404.04656, ORPO arXiv 2403.07691 with TRL's beta
    0.1) with -log sigma(x) = log(1 + e^-x): a mass of exactly 0 gives the loss's limit (its terms -> 0)."""
    with np.errstate(divide="ignore"):
        delta = {a: np.log(p * 3.0) for a, p in pi.items()}  # log(pi / pi_ref), pi_ref = 1/3
        log_odds = {a: np.log(p) - np.log1p(-p) for a, p in pi.items()}
    total = np.zeros(np.shape(pi["a"]))
    for w, lo, count in NEVER_WINS_PAIRS:
        if method == "bco":
            term = np.logaddexp(0, -tau * delta[w]) + np.logaddexp(0, tau * delta[lo])
        elif method == "nca":
            term = np.logaddexp(0, -tau * delta[w]) + 0.5 * np.logaddexp(0, tau * delta[w]) \
                + 0.5 * np.logaddexp(0, tau * delta[lo])
        else:  # orpo
            term = -np.log(pi[w]) + 0.1 * np.logaddexp(0, -(log_odds[w] - log_odds[lo]))
        total = total + count * term
    return total


def never_wins_grid_minimum(method: str, tau: float) -> dict[str, float]:
    """The minimiser of `never_wins_loss` on a grid of the simplex that holds the face pi(c) = 0 exactly."""
    c = np.concatenate([[0.0], np.geomspace(1e-6, 0.98, 400)])[:, None]
    share = np.linspace(1e-4, 1 - 1e-4, 4001)[None, :]  # pi(a) / (pi(a) + pi(b))
    pi = {"a": (1 - c) * share, "b": (1 - c) * (1 - share), "c": c + 0 * share}
    loss = never_wins_loss(method, pi, tau)
    i, j = np.unravel_index(np.argmin(loss), loss.shape)
    return {a: float(p[i, j]) for a, p in pi.items()}


def test_zoo_never_winning_action_to_zero_for_every_tau_or_not() -> None:
    policy, metrics = compare("zoo-never-wins")
    taus = [0.25, 0.5, 2.0, 4.0]
    # Derived from each loss (not from the solver):
    # - DPO, SimPO, GPO exponential (losses f(tau h) with f decreasing and no finite minimiser): {a, b} beats
    #   c and c never wins, so the infimum pushes z_c -> -inf: pi(c) = 0 (status diverged). Within {a, b} the
    #   implied reward is the BT MLE of 2 : 1, z_a - z_b = log 2 for DPO: pi(a) / pi(b) = 2^(1 / tau).
    # - CPO: scaling pi(a), pi(b) by 1 / (1 - pi(c)) keeps log pi_a - log pi_b and raises log pi_a, log pi_b,
    #   lowering every term, so pi(c) = 0 at the optimum for every tau.
    # - APO-zero: the loss is const + sum_y (L_y - W_y) sigma(tau delta_y): c (L - W = 2 > 0) wants
    #   sigma -> 0, i.e. pi(c) = 0, for every tau.
    # - NCA and BCO, tau > 1: the per-action optima (sigma(tau delta_y) = 2 W / (3 W + L) for NCA,
    #   W / (W + L) for BCO) leave mass over: (1.5^(1/tau) + 1) / 3 < 1 and (3^(1/tau) + 1) / 3 < 1 at
    #   tau = 2, 4, while c's loss has slope 0 at pi(c) = 0 (it is ~ u^tau); with pi(c) = 0 the multiplier
    #   would be <= 0, putting a and b at or below their optima: the masses could not sum to 1. So pi(c) > 0.
    #   For tau < 1 c's slope at 0 is +inf; that the optimum is then at pi(c) = 0 is checked on a grid.
    # - ORPO (no tau): checked on a grid of the loss written from its definition.
    # - IPO and cDPO: finite implied rewards (IPO's squared loss; cDPO's smoothed counts compare every pair
    #   both ways), so pi(c) = pi_ref(c) e^(z_c / tau) / Z > 0; SPPO-hard's (delta_c + 1 / (2 tau))^2 -> inf
    #   as pi(c) -> 0, so pi(c) > 0 for every tau.
    to_zero = {"dpo", "simpo", "gpo-exponential", "cpo", "orpo", "apo-zero"}
    below_one = {"nca", "bco"}
    kept = {"ipo", "cdpo", "sppo-hard"}
    status = metrics.set_index(["method", "solver", "tau"])["status"]
    for tau in taus:
        for method in to_zero | below_one | kept:
            pi_c = probs(policy, method, "exact", tau)["c"]
            if method in to_zero or (method in below_one and tau < 1):
                assert pi_c == 0.0, (method, tau)
            else:
                assert pi_c > 1e-6, (method, tau)
        pi = probs(policy, "dpo", "exact", tau)
        assert pi["a"] / pi["b"] == pytest.approx(2 ** (1 / tau), rel=1e-9)
        assert status[("dpo", "exact", tau)] == "diverged"
    # The independent route for the non-convex ones: the grid's minimiser is on the face pi(c) = 0 exactly
    # where the solver says 0, and near the solver's policy everywhere (grid steps 2.5e-4 in the share).
    for method in ("nca", "bco", "orpo"):
        for tau in taus:
            best = never_wins_grid_minimum(method, tau)
            exact = probs(policy, method, "exact", tau)
            assert (best["c"] == 0.0) == (exact["c"] == 0.0), (method, tau)
            for action in "abc":
                assert best[action] == pytest.approx(exact[action], abs=0.01), (method, tau, action)


def test_zoo_lists_every_offline_loss() -> None:
    # experiments/zoo.toml is the whole offline zoo on one problem: every registered method of the pairwise,
    # pairwise-link, single-action and reference-free families (so a new loss has to join it).
    import tomllib

    from psipo_cli.methods import method_table

    offline = {r["method"] for r in method_table()
               if r["family"] in {"pairwise", "pairwise-link", "single-action", "reference-free"}}
    with open(EXPERIMENTS / "zoo.toml", "rb") as handle:
        listed = {m if isinstance(m, str) else m["method"] for m in tomllib.load(handle)["methods"]}
    assert len(offline) >= 15 and offline <= listed
