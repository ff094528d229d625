"""Gradient runs on a preference dataset whose prompts have their own completions, in chunks of prompts.

The engine (`psipo_cli.solvers.gradient.run_gradient`) runs a `Problem`, whose contexts share one action
list. The prompts of a dataset are independent problems (the objectives of arXiv 2310.12036, Eqs. 6-7, are
sums over contexts), so the prompts with comparisons are grouped by their number of completions and each
group is run in chunks of prompts: a chunk is a `Problem` whose contexts are those prompts, over `n`
positional actions (the prompt's completions in dataset order), with the prompt's own `pi_ref` and win
counts. No padding is needed, so a prompt's lanes are exactly those of the same prompt as a TOML problem.
The number of prompts per chunk is chosen from the engine's memory estimate (`resources`), so that each
call stays under the resource guard.

Seeds: the minibatch stream of prompt `c` (its index in the dataset, the order of `contexts.csv`) and seed
`k` is ``SeedSequence([seed, k, c])``, the stream of context `c` of a TOML problem. So prompt `c` gives the
numbers of context `c` of a TOML problem that lists the prompts in dataset order (and prompt 0, or any
prompt with the full batch, the numbers of its own one-context TOML problem), whatever the chunking.

A prompt without comparisons (one completion, or only ties) has nothing for a gradient to fit: it keeps
`pi = pi_ref` (the engine's starting point, where every method's gradient is zero), status `converged`,
loss, KL, gradient norm and noise 0, as the exact solver keeps `pi_ref` there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from psipo_cli.config.settings import GradientSettings
from psipo_cli.dataset_run import DatasetFrames, segment_entropy, status_summary
from psipo_cli.problem.datasets.data import PreferenceData
from psipo_cli.schema import (
    CONVERGED,
    GRADIENT,
    METRIC_COLUMNS,
    METRIC_NAMES,
    POLICY_COLUMNS,
    REWARD_COLUMNS,
    SUMMARY_COLUMNS,
)
from psipo_cli.solvers.dataset import DatasetSolution
from psipo_cli.solvers.runs import MethodSpec

#: The share of the available memory one chunk's engine call may use (the guard refuses more than all of it).
MEMORY_SHARE = 0.5
#: The most memory one chunk's engine call may use (bytes), whatever is available: the engine's arrays are
#: (lanes, actions) and (stream chunk, lanes, batch), so past a few thousand lanes a larger chunk is no faster.
CHUNK_BYTES = 5e8
NO_COMPARISONS = "no comparisons: nothing for a gradient to fit, pi = pi_ref"


class Chunks:
    """The prompts of `data` with comparisons, grouped by action count, and their comparisons by prompt."""

    def __init__(self, data: PreferenceData) -> None:
        self.data = data
        m = data.n_contexts
        self.order = np.argsort(data.context, kind="stable")
        self.bounds = np.searchsorted(data.context[self.order], np.arange(m + 1))
        self.compared = np.diff(self.bounds) > 0
        sizes = np.diff(data.offsets)
        # Groups in increasing size, prompts in dataset order within a group.
        self.groups = [np.flatnonzero(self.compared & (sizes == n)) for n in np.unique(sizes[self.compared])]

    def problem(self, contexts: np.ndarray) -> Any:
        """The `Problem` of `contexts` (dataset indices, all of one size `n`): actions ``y0 .. y{n-1}`` (each
        prompt's completions in dataset order), `pi_ref = mu` the prompt's, `W` its win counts, weight 1."""
        from psipo_cli.problem.model import Context, Problem

        data = self.data
        n = int(data.offsets[contexts[0] + 1] - data.offsets[contexts[0]])
        lengths = self.bounds[contexts + 1] - self.bounds[contexts]
        # The comparison rows of the chunk's prompts, prompt by prompt (a vectorised concatenation of ranges).
        first = np.repeat(self.bounds[contexts] - np.cumsum(lengths) + lengths, lengths)
        rows = self.order[first + np.arange(lengths.sum())]
        slot = np.repeat(np.arange(len(contexts)), lengths)
        base = data.offsets[data.context[rows]]
        W = np.zeros((len(contexts), n, n))
        np.add.at(W, (slot, data.winner[rows] - base, data.loser[rows] - base), data.count[rows])
        span = data.offsets[contexts][:, None] + np.arange(n)
        pi = np.exp(data.log_pi_ref[span])
        pi /= pi.sum(axis=1, keepdims=True)
        pi.setflags(write=False)
        W.setflags(write=False)
        ctx = [Context(name=data.context_ids[c], weight=1.0, pi_ref=pi[i], mu=pi[i], wins=W[i])
               for i, c in enumerate(contexts)]
        return Problem(name="chunk", actions=tuple(f"y{j}" for j in range(n)), contexts=tuple(ctx))

    def plan(
        self, specs: list[MethodSpec], taus: list[float], settings: GradientSettings, max_contexts: int | None
    ) -> list[tuple[np.ndarray, float]]:
        """The chunks (dataset indices of their prompts) and each one's estimated seconds. A chunk of a group
        holds `floor(budget / M)` prompts (at least one), `M` the memory estimate of the group's prompt with
        the most distinct compared pairs alone: the estimate grows linearly with the prompts, so the chunk's
        estimate stays under `budget` (`MEMORY_SHARE` of the available memory, at most `CHUNK_BYTES`); at
        most `max_contexts` prompts."""
        from psipo_cli.solvers.gradient import estimate_resources

        pairs = np.bincount(self.data.context, minlength=self.data.n_contexts)  # distinct pairs per prompt
        chunks = []
        for group in self.groups:
            widest = group[np.argmax(pairs[group])]
            one = estimate_resources(self.problem(np.array([widest])), specs, taus, settings, "dataset")
            budget = CHUNK_BYTES if one.available is None else min(CHUNK_BYTES, MEMORY_SHARE * one.available)
            size = max(1, int(budget // one.memory))
            if max_contexts is not None:
                size = min(size, max_contexts)
            chunks += [(part, one.seconds * len(part)) for part in np.array_split(group, -(-len(group) // size))]
        return chunks


def gradient_dataset_frames(
    data: PreferenceData,
    specs: Sequence[MethodSpec],
    taus: Sequence[float],
    settings: GradientSettings,
    progress: Callable[[float, float], None] | None = None,
    max_contexts: int | None = None,
    exact: Sequence[DatasetSolution] | None = None,
) -> DatasetFrames:
    """Every prompt of `data` by gradient descent, chunk by chunk (module docstring), as the tables of
    `psipo_cli.dataset_run.dataset_frames` with `solver = gradient`: `policy` the seed mean with its 95%
    Student-t interval, `metrics` per prompt as for a TOML problem's gradient run, `summary` the prompts'
    equal-weight mean of each metric (empty where a prompt lacks it), `rewards` empty (the implied reward is
    the exact solver's). `progress(done, total)` is called in estimated seconds over all chunks;
    `max_contexts` caps the prompts per chunk (the results do not depend on it); `exact`, the exact answers
    of the same specs and taus (`solve_dataset`, for ``--solver both``), fills `tv_to_exact` as for a TOML
    problem (the seed mean of `TV(pi_k, pi_exact)`; 0 on a prompt without comparisons)."""
    import pandas as pd

    from psipo_cli.api import metrics_frame, policy_frame
    from psipo_cli.metrics import summarise
    from psipo_cli.solvers.gradient import run_gradient

    specs, taus = list(specs), [float(t) for t in taus]
    chunks = Chunks(data)
    plan = chunks.plan(specs, taus, settings, max_contexts)
    total, done = sum(seconds for _, seconds in plan), 0.0
    policy = [_untouched_policy(data, chunks, specs, taus)]
    metrics = [_untouched_metrics(data, chunks, specs, taus, settings.seeds, exact is not None)]
    for contexts, seconds in plan:
        def advance(steps: int, of: int, base: float = done, share: float = seconds) -> None:
            if progress is not None:
                progress(base + share * steps / max(of, 1), total)

        problem = chunks.problem(contexts)
        _, runs = run_gradient(problem, specs, taus, settings, "dataset", progress=advance, streams=contexts)
        frame = policy_frame(problem, runs)
        n = problem.n_actions
        # Rows are (spec, tau, context, action); put each prompt's own completion ids in place of y0..y{n-1}.
        slot = np.tile(np.arange(n), len(frame) // n)
        where = np.asarray(data.offsets)[np.repeat(np.tile(contexts, len(frame) // (n * len(contexts))), n)]
        frame["action"] = np.asarray(data.action_ids, dtype=object)[where + slot]
        frame["at"] = where + slot
        policy.append(frame)
        rows = summarise(problem, runs + _exact_runs(exact or [], taus, contexts, data.offsets), {})
        metrics.append(metrics_frame(problem, [row for row in rows if row.solver == GRADIENT], "dataset"))
        done += seconds
    order = _row_order(data, specs, taus)
    policy_frame = _sorted(pd.concat(policy, ignore_index=True), order, "at")[POLICY_COLUMNS]
    metrics_frame = _sorted(pd.concat(metrics, ignore_index=True), order, "context").reindex(columns=METRIC_COLUMNS)
    return DatasetFrames(
        policy=policy_frame,
        metrics=metrics_frame,
        summary=_summary(metrics_frame, settings.seeds),
        rewards=pd.DataFrame(columns=REWARD_COLUMNS),
    )


def _untouched_policy(data: PreferenceData, chunks: Chunks, specs: list[MethodSpec], taus: list[float]) -> Any:
    """Policy rows of the prompts without comparisons: `pi_ref` (module docstring)."""
    import pandas as pd

    actions = np.flatnonzero(~chunks.compared[data.action_context])
    prob = np.exp(data.log_pi_ref[actions])
    rows = len(specs) * len(taus)
    return pd.DataFrame({
        "method": np.repeat([s.label for s in specs], len(taus) * len(actions)),
        "tau": np.tile(np.repeat(taus, len(actions)), len(specs)), "solver": GRADIENT,
        "context": np.tile(np.asarray(data.context_ids, dtype=object)[data.action_context[actions]], rows),
        "action": np.tile(np.asarray(data.action_ids, dtype=object)[actions], rows),
        "prob": np.tile(prob, rows), "prob_lo": np.tile(prob, rows), "prob_hi": np.tile(prob, rows),
        "at": np.tile(actions, rows),
    })


def _untouched_metrics(
    data: PreferenceData, chunks: Chunks, specs: list[MethodSpec], taus: list[float], seeds: int, exact: bool
) -> Any:
    """Metric rows of the prompts without comparisons: at `pi_ref`, loss, KL, gradient and noise 0."""
    import pandas as pd

    contexts = np.flatnonzero(~chunks.compared)
    entropy = segment_entropy(np.exp(data.log_pi_ref), data.offsets)[contexts]
    rows = len(specs) * len(taus)
    return pd.DataFrame({
        "method": np.repeat([s.label for s in specs], len(taus) * len(contexts)),
        "tau": np.tile(np.repeat(taus, len(contexts)), len(specs)), "solver": GRADIENT,
        "context": np.tile(np.asarray(data.context_ids, dtype=object)[contexts], rows), "status": CONVERGED,
        "kl": 0.0, "entropy": np.tile(entropy, rows), "loss": 0.0, "grad_norm": 0.0, "noise": 0.0,
        "tv_to_exact": 0.0 if exact else np.nan, "seeds": seeds, "objective": "dataset", "detail": NO_COMPARISONS,
    })


def _exact_runs(
    exact: Sequence[DatasetSolution], taus: list[float], contexts: np.ndarray, offsets: np.ndarray
) -> list[Any]:
    """The exact answers on a chunk's prompts as `RunResult`s of its `Problem` (context `i` = `contexts[i]`),
    for `summarise`'s `tv_to_exact`."""
    from psipo_cli.solvers.runs import EXACT, RunResult

    return [
        RunResult(sol.label, sol.method, tau, EXACT, 0, i, sol.policy[t, offsets[c] : offsets[c + 1]],
                  str(sol.status[t, c]), float(sol.loss[t, c]))
        for sol in exact for t, tau in enumerate(taus) for i, c in enumerate(contexts)
    ]


def _row_order(data: PreferenceData, specs: list[MethodSpec], taus: list[float]) -> dict[str, dict[Any, int]]:
    """Rank of each label and tau, and of each context id: (spec, tau, context), the rows of a TOML problem."""
    return {"method": {s.label: i for i, s in enumerate(specs)}, "tau": {t: i for i, t in enumerate(taus)},
            "context": {c: i for i, c in enumerate(data.context_ids)}}


def _sorted(frame: Any, order: dict[str, dict[Any, int]], last: str) -> Any:
    """`frame` in (spec, tau, `last`) order: `last` the context (its dataset index) or `at`, the global action
    index (contexts in dataset order, each prompt's completions in order)."""
    keys = [frame[col].map(order[col]).to_numpy() for col in ("method", "tau")]
    keys.append(frame[last].map(order["context"]).to_numpy() if last == "context" else frame[last].to_numpy())
    return frame.iloc[np.lexsort(keys[::-1])].reset_index(drop=True)


def _summary(metrics: Any, seeds: int) -> Any:
    """Per label and tau, each metric's mean over the prompts with equal weights (the paper's `E_{x ~ rho}`,
    Eq. 6; empty where a prompt lacks it), the prompts' common status or `mixed` with the counts."""
    import pandas as pd

    records = []
    for (label, tau), rows in metrics.groupby(["method", "tau"], sort=False):
        status, detail = status_summary(rows["status"].to_numpy())
        values = {name: (None if rows[name].isna().any() else float(rows[name].mean())) for name in METRIC_NAMES}
        records.append({"method": label, "tau": tau, "solver": GRADIENT, "status": status, **values, "seeds": seeds,
                        "objective": "dataset", "detail": detail})
    return pd.DataFrame.from_records(records).reindex(columns=SUMMARY_COLUMNS)
