"""The `Block` protocol of the gradient engine (`psipo_cli.solvers.gradient.blocks`): a block whose target
moves with the policy — what a game method needs — runs through the shipped `optimise` unchanged.

The expected answer is computed here by a fixed-point iteration written from its definition, not by the
engine.
"""

from __future__ import annotations

import numpy as np

from psipo_cli.config.settings import GradientSettings
from psipo_cli.solvers.gradient import KLBlock, KLLane, lane_softmax, optimise


class SelfPlayBlock:
    """Ascent on `E_pi r - tau KL(pi || pi_ref)` with the moving target `r = P pi_current` (each lane plays
    against its own current policy): read from `X` at every step, as the protocol allows."""

    def __init__(self, P: np.ndarray, log_pi_ref: np.ndarray, tau: float) -> None:
        self.P, self.log_pi_ref, self.tau = P, log_pi_ref, tau
        self.start, self.stop = 0, log_pi_ref.shape[0]

    def dead_rows(self) -> list[int]:
        return []

    def reset_streams(self) -> None:
        pass

    def prepare(self, count: int) -> None:
        pass

    def gradient(self, X: np.ndarray, i: int) -> np.ndarray:
        Xb = X[self.start : self.stop]
        pi = lane_softmax(self.log_pi_ref, Xb)
        q = pi @ self.P.T - self.tau * Xb  # r(y) = sum_y' P[y, y'] pi(y'), minus tau delta
        return -pi * (q - np.sum(pi * q, axis=1, keepdims=True))


def fixed_point(P: np.ndarray, pi_ref: np.ndarray, tau: float) -> np.ndarray:
    """`pi = pi_ref exp(P pi / tau) / Z` by damped iteration (a contraction for this tau)."""
    pi = pi_ref.copy()
    for _ in range(5000):
        new = pi_ref * np.exp(P @ pi / tau)
        pi = 0.5 * pi + 0.5 * new / new.sum()
    return pi


def test_a_block_whose_target_moves_with_the_policy_reaches_its_fixed_point() -> None:
    P = np.array([[0.5, 0.9, 0.2], [0.1, 0.5, 0.7], [0.8, 0.3, 0.5]])  # a cyclic preference
    pi_ref = np.array([0.5, 0.3, 0.2])
    tau = 1.0
    log_pi_ref = np.log(pi_ref)[None, :]
    settings = GradientSettings(optimizer="sgd", lr=1.0, steps=4000, batch_size=0, seeds=1)
    limit, support = np.array([settings.steps]), np.ones((1, 3), dtype=bool)
    phase = optimise([SelfPlayBlock(P, log_pi_ref, tau)], limit, support, settings, None, None, lambda k: None)
    pi = lane_softmax(log_pi_ref, phase.X)[0]
    np.testing.assert_allclose(pi, fixed_point(P, pi_ref, tau), atol=1e-9)
    # Not the answer of the fixed target r = P pi_ref (the KL block's): the target did move.
    kl = KLBlock([KLLane(tau, P @ pi_ref, log_pi_ref[0])], 0)
    kl.set_rewards((P @ pi_ref)[None, :])
    fixed = optimise([kl], limit, support, settings, None, None, lambda k: None)
    assert np.max(np.abs(lane_softmax(log_pi_ref, fixed.X)[0] - pi)) > 1e-3


class _SelfPlayLanes:
    """`SelfPlayBlock` over several lanes with their own tau, built by `LanePlan.block_lane`'s builder."""

    def __init__(self, lanes: list, start: int, n: int, settings: GradientSettings) -> None:
        self.lanes, self.start, self.stop = lanes, start, start + len(lanes)
        self.P = lanes[0].P
        self.log_pi_ref = np.stack([lane.log_pi_ref for lane in lanes])
        self.tau = np.array([[lane.tau] for lane in lanes])

    dead_rows = SelfPlayBlock.dead_rows
    reset_streams = SelfPlayBlock.reset_streams
    prepare = SelfPlayBlock.prepare
    gradient = SelfPlayBlock.gradient


class _SelfPlayFamily:
    """A family whose lanes live in a block it defines (`plan.block_lane`), next to the engine's own."""

    name, on_comparisons, reward_stage, exact = "self-play", False, False, None

    def gradient_lanes(self, method, plan, tau, options):
        from types import SimpleNamespace

        P = np.asarray(plan.inputs.P, float)
        lane = SimpleNamespace(P=P, tau=tau, log_pi_ref=plan.log_pi_ref)
        return plan.block_lane("self-play", _SelfPlayLanes, (tau,), lane), None

    def gradient_report(self, method, run, report):
        P, tau = np.asarray(run.inputs.P, float), run.tau
        log_pi_ref = np.log(np.asarray(run.inputs.pi_ref, float))[None]

        def grad(x: np.ndarray) -> np.ndarray:
            pi = lane_softmax(log_pi_ref, x[None])[0]
            q = P @ pi - tau * x
            return -pi * (q - pi @ q)

        report.stage("offsets", grad, run.lane, tau)
        return 0.0


def test_a_family_block_runs_beside_the_engine_blocks(monkeypatch) -> None:
    """`LanePlan.block_lane`: a family's own block gets its rows after the KL lanes, its runs report their
    own lanes (here next to a ΨPO run, whose answer must not change), and each tau reaches its fixed point."""
    from psipo_cli import methods
    from psipo_cli.methods.spec import Method
    from psipo_cli.problem import get_problem
    from psipo_cli.solvers.gradient import run_gradient
    from psipo_cli.solvers.runs import MethodSpec

    monkeypatch.setitem(methods.METHODS, "self-play", Method("self-play", "test", _SelfPlayFamily()))
    problem = get_problem("cycle")
    P, pi_ref = problem.contexts[0].preferences, problem.contexts[0].pi_ref
    settings = GradientSettings(optimizer="sgd", lr=1.0, steps=4000, batch_size=0, seeds=1)
    taus = [1.0, 2.0]
    _, alone = run_gradient(problem, [MethodSpec("psipo")], taus, settings, "population")
    _, runs = run_gradient(problem, [MethodSpec("psipo"), MethodSpec("self-play")], taus, settings, "population")
    for a, b in zip(alone, runs[:2], strict=True):
        np.testing.assert_array_equal(a.policy, b.policy)
    for run in runs[2:]:
        assert run.method == "self-play" and run.status == "converged"
        np.testing.assert_allclose(run.policy, fixed_point(P, pi_ref, run.tau), atol=1e-9)
