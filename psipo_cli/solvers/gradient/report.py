"""A run's `RunResult`: its reported policy and curve, and the status rules applied to each of its stages.

The method's family decides which stages a run has and what its loss is (`Family.gradient_report`); it
calls `StageReport.stage` once per stage, with the exact gradient of that stage's objective.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from psipo_cli.config.settings import GradientSettings
from psipo_cli.methods import get_method
from psipo_cli.methods.linalg import log_of
from psipo_cli.schema import CONVERGED, RUNNING, STALLED
from psipo_cli.solvers.gradient.blocks import lane_softmax
from psipo_cli.solvers.gradient.plan import KL, PAIR, REWARD, Lane, Run
from psipo_cli.solvers.gradient.status import kl_trapped, moving, reasons, stalled
from psipo_cli.solvers.runs import GRADIENT, RunResult


@dataclass
class PhaseResult:
    """What one phase of the engine leaves, per lane (row)."""

    X: np.ndarray  # final offsets (L, n)
    moved: np.ndarray  # (L, n) |mean over window B - mean over window A| of the centred iterate
    jitter: np.ndarray  # (L, n) pooled standard deviation of the centred iterate within the two windows
    average: np.ndarray  # (L, n) mean of the (uncentred) iterate over window B
    curves: np.ndarray | None  # (T, L, n) policies at the recorded steps
    averaged: np.ndarray | None  # (L, n) the Polyak / EMA average of the offsets; None without averaging
    noise: np.ndarray | None  # (L,) largest standard deviation of pi_y over window B (policy phase only)
    elapsed: np.ndarray  # (L,) the stage's summed learning rate `sum_t lr_t` (its optimisation time)

    def point(self, row: int) -> np.ndarray:
        """The offsets a stage reports: its Polyak / EMA average with averaging, else the last iterate."""
        return self.X[row] if self.averaged is None else self.averaged[row]


class StageReport:
    """The status of one run, stage by stage (`stage`), and its reported point and policy."""

    def __init__(
        self, run: Run, phases: dict[str, PhaseResult], rows: dict[str, int], settings: GradientSettings,
        actions: Sequence[str],
    ) -> None:
        self.phases, self.rows, self.settings, self.actions = phases, rows, settings, actions
        self.stochastic = settings.batch_size > 0
        self.pi_ref = np.asarray(run.inputs.pi_ref, float)
        self.tau = run.tau
        self.support = self.pi_ref > 0
        self.stalls: list[str] = []
        self.reasons: list[str] = []
        self.notes: list[str] = []
        self.grad_norm: float | None = None
        phase, row = self._where(run.lane)
        self.curve = np.ascontiguousarray(phase.curves[:, row, :])
        delta = phase.point(row)
        self.policy = self.curve[-1].copy() if phase.averaged is None else lane_softmax(
            log_of(self.pi_ref)[None], delta[None]
        )[0]
        self.noise = float(phase.noise[row]) if phase.noise is not None else float("nan")

    def _where(self, lane: Lane) -> tuple[PhaseResult, int]:
        """The phase result and row holding `lane` (phase 2: each pool's lanes from its first row, `rows`)."""
        if lane.pool == REWARD:
            return self.phases[REWARD], lane.index
        return self.phases[PAIR], self.rows[lane.pool] + lane.index

    def point(self, lane: Lane) -> np.ndarray:
        """The offsets (or rewards) `lane` reports."""
        phase, row = self._where(lane)
        return phase.point(row)

    def note(self, text: str) -> None:
        """A sentence for the detail, before the status clauses ("" adds nothing)."""
        if text:
            self.notes.append(text)

    def stage(
        self, what: str, gradient: Callable[[np.ndarray], np.ndarray], lane: Lane, scale: float,
        reward: np.ndarray | None = None,
    ) -> float:
        """Apply the status rules to the stage held by `lane`; return the inf-norm of its exact gradient at
        the reported point (the run's `grad_norm` is its first stage's).

        `scale` is the unit of rule 1 (tau for offsets, 1 for rewards). Rule 2 applies to deterministic
        stages (KL lanes; pairwise lanes at full batch), at the reported point — and, for Adam without
        averaging, also at the mean iterate of the last window (`status.reasons`). A KL stage passes its
        `reward`: where rules 1 and 2 hold, its closed-form optimum tells a vanished gradient from an
        arrival (`status.kl_trapped`).
        """
        phase, row = self._where(lane)
        settings = self.settings
        x = phase.point(row)
        g = gradient(x)
        gnorm = float(np.max(np.abs(g)))
        is_moving, why = moving(phase.moved[row], phase.jitter[row], scale, settings)
        rule2 = None
        if lane.pool == KL or not self.stochastic:  # KL lanes are exact whatever the batch size
            rule2 = gnorm
            if settings.optimizer == "adam" and phase.averaged is None:
                rule2 = min(gnorm, float(np.max(np.abs(gradient(phase.average[row])))))
        stage_reasons = reasons(what, is_moving, why, rule2, settings)
        self.reasons += stage_reasons
        stall = stalled(gradient, x, g, self.support, float(phase.elapsed[row]), scale, settings)
        if not stall and not stage_reasons and reward is not None:
            stall = kl_trapped(x, reward, self.pi_ref, self.tau, self.actions)
        if stall:
            self.stalls.append(f"{what} stalled: {stall}")
        if self.grad_norm is None:
            self.grad_norm = gnorm
        return gnorm


def report_run(
    run: Run, phases: dict[str, PhaseResult], rows: dict[str, int], settings: GradientSettings,
    actions: Sequence[str],
) -> RunResult:
    """One run's `RunResult`: reported policy, curve, the method's own loss and exact gradient, status
    (`actions` name the problem's actions in its detail)."""
    method = get_method(run.spec.method)
    report = StageReport(run, phases, rows, settings, actions)
    with np.errstate(over="ignore", invalid="ignore"):  # non-finite values are reported, not warned about
        loss = method.family.gradient_report(method, run, report)
    return RunResult(
        label=run.spec.label,
        method=run.spec.method,
        tau=run.tau,
        solver=GRADIENT,
        seed=run.seed,
        context=run.context,
        policy=report.policy,
        status=STALLED if report.stalls else RUNNING if report.reasons else CONVERGED,
        loss=float(loss),
        detail="; ".join(report.notes + report.stalls + report.reasons),
        grad_norm=float("nan") if report.grad_norm is None else report.grad_norm,
        curve=report.curve,
        noise=report.noise,
    )
