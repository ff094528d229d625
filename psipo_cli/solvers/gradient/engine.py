"""The vectorised gradient engine: `run_gradient` (paper §5.4's experiments, every run as one lane).

Every run of a call — method spec × tau × seed × context — is one *lane*: a row of the parameter array
`X` of shape `(lanes, n)` holding the offsets `delta = logits - log pi_ref` (Adam/SGD on the offsets is
Adam/SGD on the logits: they differ by a constant). All lanes advance together; inside the step loop
there is no Python loop over runs or pairs, only over the (at most two) lane *blocks* (`blocks`):

- a **pairwise block** (DPO, IPO, and stage 1 of RLHF — the Bradley–Terry reward model, which is DPO's
  loss with `tau = 1` plus the ridge term `rm_l2 r`): each step gathers `h = X[lane, w] - X[lane, l]`
  for the lane's comparisons, applies the method's `pair_grad` (one call per method, on a slice of
  lanes) and scatter-adds `f'(h) (e_w - e_l)` with `np.bincount` on flattened `lane * n + action`
  indices;
- a **KL block** (stage 2 of RLHF and population ΨPO): the deterministic gradient of
  `J = E_pi r - tau KL(pi || pi_ref)`, `dJ/dtheta = pi (q - E_pi q)`, `q = r - tau delta`.

Random streams (`streams`)
--------------------------
The minibatches of seed `k` in context `c` come from
``np.random.default_rng(np.random.SeedSequence([settings.seed, k, c]))``: the *seed index* (and the context
index) select the stream, so that a run's stream does not depend on which other runs share the call: every
lane of seed `k` and context `c` (any method, any tau) reads the same stream (common random numbers), and
running tau values together or one at a time, or one method or several, gives bit-identical per-run numbers
(tested). The stream is read in blocks of `STREAM_CHUNK` steps of `batch_size` uniforms each, mapped to
comparisons by `searchsorted` on the cumulative comparison probabilities `W[w, l] / sum W` (pairs in
`np.nonzero(W)` order); uniforms are drawn sequentially, so the block size does not change the draws either.
RLHF's reward stage reads the stream from its start, as DPO's run of the same seed does. Deterministic lanes
(full batch, KL block) read no stream; identical deterministic lanes (e.g. the seeds of a problem whose data
are not sampled) are computed once and reported once per seed.

Contexts are independent lanes with their own streams. Because the context index enters the seed
sequence, context `c` of a multi-context problem reproduces a one-context problem only for `c = 0`
(the same holds for sampled datasets, `problem.model.draw_wins`); a context's results never depend on
the other contexts. `run_gradient(..., streams=...)` gives the contexts other stream indices (a dataset's
prompts run in chunks keep their index in the dataset, `psipo_cli.dataset_gradient`).

Status (`status`)
-----------------
Each run is `converged`, `running` or `stalled` by the rule stated in `psipo_cli.solvers.gradient.status`:
the averaged iterate has stopped moving between two late windows (measured against its own jitter), the
full gradient is small for deterministic stages, and the optimiser could reach the optimum at all. The
engine only accumulates the window statistics that rule reads (`status.WindowStats`) while it steps.

Schedules and averaging (`schedules`, `optim`)
----------------------------------------------
`lr_schedule` multiplies `lr` by `s(t)` (`psipo_cli.config.schedules`: constant, inverse-time, cosine,
exponential; each stage of `T` steps runs its own schedule from `s(0) = 1` to `s(T) = lr_final`). The
status rule reads a decaying step on the optimiser's own clock `elapsed(t) = integral_0^t s`: the windows
A and B are the iterates whose clock lies in the same fractions of `elapsed(T)` as above (with the constant
schedule exactly the step windows), so that a decaying step reads as a slower clock, not as arrival; and
the jitter of each window is its standard deviation about the window's least-squares linear trend on that
clock, so that the smooth (accelerating or decelerating) trend of a diverging run is not mistaken for
noise. Measured with the decaying schedules (10 seeds x tau in {0.1, 0.5, 1, 2}, `lr_final` 0.01): DPO on
separable paper-d1/d3 data 32 to 2500 jitters (`running`), IPO on paper-d1/d3 at most 3.6 with cosine and
exponential (`converged`); on `cycle` (a minimiser at 0) up to 19, so a few of those runs read
`running`; inverse-time, which spends most of its steps at a tiny rate, leaves a slowly mixing random walk
that rule 1 reports as `running` in a quarter of the IPO runs (literally true, as above).

`average` reports the policy of averaged offsets, `softmax(log pi_ref + xbar)` (offsets, not
probabilities, are averaged: the loss is convex in them for DPO and IPO), over the iterates
`t0 <= t <= T`, `t0 = floor(average_start T) + 1`: `polyak` the uniform mean, `ema` the weights
`(1 - ema_decay) ema_decay^(T - t)` divided by their sum `1 - ema_decay^(T - t0 + 1)`. RLHF averages
both stages (its policy stage uses the averaged reward model). The curves stay the raw iterate. Rule 1
reads the raw iterate's windows (which are averages already); rules 2 and the stall rule, `loss` and
`grad_norm` are evaluated at the reported (averaged) point.

`RunResult.noise` is the largest over actions of the standard deviation of `pi_y` of the raw iterate
over window B (sampled at most `NOISE_SAMPLES` times, evenly): for a converged minibatch run its
minibatch noise floor; for deterministic lanes the optimiser's own oscillation (~0 at convergence); for a
still-moving run it includes the drift within the window.

Resources (`resources`)
-----------------------
Memory does not grow with the number of steps: the windows, the averages and the record grid are decided
by arithmetic on the step index, the curves are on the fixed log grid. `run_gradient` first estimates the
memory and time of the call (`estimate_resources`, `psipo_cli.solvers.gradient.resources`) and refuses with an
`InputError` a call that would not fit in the available memory; `steps` above 2**53 are not
representable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from psipo_cli.config.schedules import elapsed
from psipo_cli.config.settings import GradientSettings
from psipo_cli.errors import InputError
from psipo_cli.methods import get_method
from psipo_cli.methods.streams import STREAM_CHUNK
from psipo_cli.problem import Problem
from psipo_cli.solvers.gradient.blocks import Block, KLBlock, PairBlock
from psipo_cli.solvers.gradient.optim import Averager, Optimiser
from psipo_cli.solvers.gradient.plan import KL, PAIR, REWARD, LanePlan, build_plan, spec_options
from psipo_cli.solvers.gradient.report import PhaseResult, report_run
from psipo_cli.solvers.gradient.resources import Resources, estimate, rows_bound
from psipo_cli.solvers.gradient.resources import check as check_resources
from psipo_cli.solvers.gradient.status import WindowStats, intervals
from psipo_cli.solvers.gradient.trace import Trace, record_grid
from psipo_cli.solvers.runs import MethodSpec, RunResult


class _Events:
    """What happens besides the step itself, and when: window sums, the average, curve points and noise
    samples. Per step the loop makes one comparison with the next event's step."""

    def __init__(self, stats: WindowStats, averager: Averager, trace: Trace | None, T: int) -> None:
        self.stats, self.averager, self.trace, self.T = stats, averager, trace, T
        self.windows = intervals(stats.starts, stats.ends)
        self.windows.append((T + 1, T + 2))  # sentinel
        self.window = 0

    def __call__(self, X: np.ndarray, t: int) -> int:
        """Do what step `t` calls for; return the step of the next event."""
        while t >= self.windows[self.window][1]:
            self.window += 1
        lo = self.windows[self.window][0]
        if t >= lo:
            self.stats.accumulate(X, t)
        if t >= self.averager.first:
            self.averager.add(X, t)
        if self.trace is not None:
            self.trace.observe(X, t)  # window B is a window: every step of it (the noise samples) is an event
        if t + 1 >= lo or t + 1 >= self.averager.first:
            return t + 1
        upcoming = min(lo, self.averager.first)
        return upcoming if self.trace is None else min(upcoming, self.trace.next_record(self.T))


def optimise(
    blocks: list[Block],
    limit: np.ndarray,
    support: np.ndarray,
    settings: GradientSettings,
    record: np.ndarray | None,
    log_pi_ref: np.ndarray | None,
    progress: Callable[[int], None],
) -> PhaseResult:
    """Run the optimiser on every lane from `X = 0` for `max(limit)` steps (lane `i` stops after `limit[i]`).

    Records `lane_softmax(log_pi_ref, X)` at the steps in `record` (`trace.Trace`), accumulates the window
    statistics of the status rule (`status.WindowStats`), the Polyak / EMA average (`optim.Averager`) and
    (policy phase) the spread of the policy over window B. Memory is O(L n) plus the curves, whatever the
    number of steps: which step falls in which window is decided by arithmetic on the step index.
    """
    L, n = support.shape
    T = int(limit.max())
    X = np.zeros((L, n))
    optimiser = Optimiser(settings, limit, (L, n))
    stats = WindowStats(limit, support, settings)
    averager = Averager(settings, limit, (L, n))
    trace = None
    if record is not None:
        assert log_pi_ref is not None and optimiser.frozen is None
        trace = Trace(record, log_pi_ref, int(stats.starts[1, 0]), int(stats.ends[1, 0]), X)
    events = _Events(stats, averager, trace, T)
    if events.windows[0][0] == 0:
        stats.accumulate(X, 0)
    _steps(blocks, X, optimiser, events, averager, settings, progress)
    moved, jitter, average = stats.result()
    spent = settings.lr * elapsed(settings.lr_schedule, limit, limit, settings.lr_final)
    curves = None if trace is None else trace.curves
    noise = None if trace is None else trace.noise()
    return PhaseResult(X, moved, jitter, average, curves, averager.result(), noise, spent)


def _steps(
    blocks: list[Block],
    X: np.ndarray,
    optimiser: Optimiser,
    events: _Events,
    averager: Averager,
    settings: GradientSettings,
    progress: Callable[[int], None],
) -> None:
    """The step loop: per chunk of `STREAM_CHUNK` steps the blocks draw their minibatches, then per step the
    gradient of every block, the optimiser's step and (when due) the events. Rows whose gradient is not
    finite at the start are held at 0."""
    T = optimiser.T
    G = np.zeros_like(X)
    dead_rows = [row for block in blocks for row in block.dead_rows()]
    single = blocks[0] if len(blocks) == 1 else None
    for block in blocks:
        block.reset_streams()
    step = optimiser.stepper()
    t, upcoming = 0, 1  # the first step is an event: `events` finds the next one
    while t < T:
        count = min(STREAM_CHUNK, T - t)
        for block in blocks:
            block.prepare(count)
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is checked once per chunk below
            for i in range(count):
                t += 1
                if single is not None:
                    G = single.gradient(X, i)
                else:
                    for block in blocks:
                        G[block.start : block.stop] = block.gradient(X, i)
                if dead_rows:
                    G[dead_rows] = 0.0
                X -= step(G, t)
                if t >= upcoming:
                    upcoming = events(X, t)
        if not np.all(np.isfinite(X)):
            raise InputError("--lr", settings.lr, "the iterates overflowed: use a smaller learning rate")
        averager.flush()
        progress(count)


def run_gradient(
    problem: Problem,
    specs: list[MethodSpec],
    taus: list[float],
    settings: GradientSettings,
    objective: str,
    progress: Callable[[int, int], None] | None = None,
    streams: Sequence[int] | None = None,
) -> tuple[np.ndarray, list[RunResult]]:
    """Run every spec × tau × seed × context by gradient descent, all lanes together.

    Parameters
    ----------
    problem : Problem
        Seed `k` trains on `realise(problem, k)` (its own dataset when the problem samples one).
    specs, taus : the methods (with options) and KL coefficients.
    settings : GradientSettings
    objective : `dataset` or `population` (`solvers.inputs.resolve_objective`), the same objective as the
        exact solver (`solvers.inputs.method_inputs`).
    progress : callable(done, total), optional
        Called every `STREAM_CHUNK` steps and at the end; `total` counts the steps of both RLHF stages.
    streams : sequence of int, optional
        The stream index of each context: context `c` reads ``SeedSequence([settings.seed, k, streams[c]])``
        (default `c`, its position). A dataset run in chunks of prompts passes each prompt's index in the
        dataset, so that a prompt's stream does not depend on the chunk it falls in.

    Returns
    -------
    steps : int array
        The recorded step grid (`record_grid`): starts at 0, ends at `settings.steps`.
    runs : list of RunResult
        One per (spec, tau, seed `k`, context `c`), in that nesting order, `solver = "gradient"`. `policy`
        is the final policy; `curve` the policy at each recorded step, shape `(len(steps), n)` (RLHF: its
        policy stage). `loss` is the method's own objective at the final iterate — dpo/ipo the mean pair
        loss on `W`; rlhf the reward model's `mean BT loss + rm_l2/2 ||r||^2`; psipo `-J(pi)` on the
        clipped `P` — and `grad_norm` the inf-norm of its exact (full-batch) gradient there. `status` is
        `converged`, `running` or `stalled` (module docstring).

    Notes
    -----
    - Pairwise methods minimise the mean per-comparison loss `f(delta_w - delta_l; tau)`; a step draws
      `batch_size` rows with replacement, row `(w, l)` with probability `W[w, l] / sum W`.
    - RLHF: stage 1 fits `r` (from 0) on the same minibatches with the Bradley–Terry loss plus
      `rm_l2 r` for `rm_steps` steps; stage 2 ascends the exact `J = E_pi r - tau KL(pi || pi_ref)` from
      `pi_ref` for `steps` steps with a fresh optimiser state. The reward stage does not depend on tau and
      is run once per (spec, seed, context).
    - ΨPO ascends the same `J` with `r = g`, `g(y) = sum_y' mu(y') Psi(P[y, y'])`, `P` clipped where
      `Psi(P)` is infinite (`psipo.clipped_target`).
    - Actions with `pi_ref = 0` keep probability 0 (their logit is `-inf`).
    """
    check_resources(estimate_resources(problem, specs, taus, settings, objective))
    plan = build_plan(problem, specs, taus, settings, objective, streams)
    n = problem.n_actions
    phase1 = max((lane.limit for lane in plan.pools[REWARD]), default=0)
    advance = _counter(progress, phase1 + settings.steps)
    phases = {REWARD: _reward_phase(plan, n, settings, advance)}
    steps_grid = record_grid(settings.steps, settings.records)
    phases[PAIR] = _policy_phase(plan, phases[REWARD], n, settings, steps_grid, advance)
    rows = _policy_rows(plan)
    return steps_grid, [report_run(run, phases, rows, settings, problem.actions) for run in plan.runs]


def _policy_rows(plan: LanePlan) -> dict[str, int]:
    """The first row of each phase-2 pool in the policy phase's `X`: pairwise lanes, KL lanes, then the
    pools the families define, in first-use order."""
    rows, start = {}, 0
    for pool, lanes in plan.pools.items():
        if pool != REWARD:
            rows[pool], start = start, start + len(lanes)
    return rows


def _counter(progress: Callable[[int, int], None] | None, total: int) -> Callable[[int], None]:
    """`advance(count)`: adds `count` steps done and reports `(done, total)` to `progress`."""
    done = 0

    def advance(count: int) -> None:
        nonlocal done
        done += count
        if progress is not None:
            progress(done, total)

    return advance


def _reward_phase(plan: LanePlan, n: int, settings: GradientSettings, advance: Callable[[int], None]) -> Any:
    """Phase 1: the reward-model lanes (each stops at its own `limit`, RLHF's rm_steps); None if none."""
    lanes = plan.pools[REWARD]
    if not lanes:
        return None
    block = PairBlock(lanes, 0, n, settings.batch_size, settings.seed)
    limit = np.array([lane.limit for lane in lanes])
    support = np.stack([np.isfinite(lane.log_pi_ref) for lane in lanes])
    return optimise([block], limit, support, settings, None, None, advance)


def _policy_phase(
    plan: LanePlan,
    stage1: PhaseResult | None,
    n: int,
    settings: GradientSettings,
    steps_grid: np.ndarray,
    advance: Callable[[int], None],
) -> PhaseResult:
    """Phase 2: every policy lane (pairwise block, KL block, then one block per pool a family defines),
    `steps` steps, curves recorded. A KL lane fed by a reward lane ascends `J` with that lane's reported
    reward."""
    pair_lanes, kl_lanes = plan.pools[PAIR], plan.pools[KL]
    blocks: list[Block] = []
    if pair_lanes:
        blocks.append(PairBlock(pair_lanes, 0, n, settings.batch_size, settings.seed))
    if kl_lanes:
        kl_block = KLBlock(kl_lanes, len(pair_lanes))
        rewards = np.zeros((0, n)) if stage1 is None else stage1.X if stage1.averaged is None else stage1.averaged
        kl_block.set_rewards(
            np.stack([rewards[lane.stage1] if lane.reward is None else lane.reward for lane in kl_lanes])
        )
        blocks.append(kl_block)
    start = len(pair_lanes) + len(kl_lanes)
    for pool, builder in plan.builders.items():
        lanes = plan.pools[pool]
        blocks.append(builder(lanes, start, n, settings))
        start += len(lanes)
    lanes = [lane for pool, pool_lanes in plan.pools.items() if pool != REWARD for lane in pool_lanes]
    log_pi_ref = np.stack([lane.log_pi_ref for lane in lanes])
    limit = np.full(len(log_pi_ref), settings.steps)
    return optimise(blocks, limit, np.isfinite(log_pi_ref), settings, steps_grid, log_pi_ref, advance)


def estimate_resources(
    problem: Problem, specs: list[MethodSpec], taus: list[float], settings: GradientSettings, objective: str
) -> Resources:
    """Memory and time of `run_gradient(problem, specs, taus, settings, objective)`, before any work
    (`resources`; lane counts are upper bounds: identical deterministic lanes are merged later)."""
    contexts, seeds = len(problem.contexts), settings.seeds
    per_spec = len(taus) * seeds * contexts
    reward_specs = [spec for spec in specs if get_method(spec.method).family.reward_stage]
    return estimate(
        lanes=len(specs) * per_spec,
        reward_lanes=len(reward_specs) * seeds * contexts,
        n=problem.n_actions,
        rows=rows_bound(problem, objective, settings.batch_size),
        streams=seeds * contexts,
        groups=len(specs) * len(taus) * contexts,
        records=min(settings.records + 2, settings.steps + 1),
        steps=settings.steps,
        reward_steps=max((spec_options(spec, settings)["rm_steps"] for spec in reward_specs), default=0),
        chunk=STREAM_CHUNK if settings.batch_size > 0 else 0,
        grid=settings.records,
    )
