"""`psipo diagnose DATA`: what each method's exact optimum does to every prompt of a preference dataset.

The paper's warning (arXiv 2310.12036, §4.2): with few comparisons per prompt the empirical preferences are
deterministic almost everywhere, so DPO's optimum ignores the KL term there — its infimum is not attained and
the limit policy sends the losing completions to probability 0, for every tau — while IPO's optimum
(Eq. 17) is attained at every tau. This module measures that on a dataset, from the exact answers of
`psipo_cli.solvers.dataset.solve_dataset` (every prompt solved on its own comparisons, the empirical
objective), as pure functions over flat arrays:

- per method × tau: the fraction of prompts whose optimum is not attained (status other than `optimal`),
  the number and fraction of completions at probability exactly 0, the distribution over prompts of
  `KL(pi || pi_ref)` (mean, median, 90th percentile, infinite ones);
- per tau and pair of methods: the fraction of prompts whose most likely completions differ and the total
  variation `TV(pi_a, pi_b) = 1/2 sum_y |pi_a(y) - pi_b(y)|` between them (mean over prompts).

Prompts are independent (the objectives are sums over contexts), so prompts can be solved in chunks
anywhere (`diagnose_chunk`; `psipo diagnose --jobs N`, `--executor dask`) and the per-prompt results
concatenated: the numbers do not depend on the chunking.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations, pairwise
from typing import Any

import numpy as np

from psipo_cli.problem.datasets.data import PreferenceData, SourceRecord, summary
from psipo_cli.solvers.runs import MethodSpec

DEFAULT_METHODS = ("rlhf", "dpo", "ipo")
KL_QUANTILE = 0.9


@dataclass(frozen=True, eq=False)
class PromptResults:
    """Per-prompt answers of a run of prompts (`S` method specs, `T` taus, `m` prompts, `P` pairs of specs).

    Attributes
    ----------
    not_attained : bool (S, T, m)
        The prompt's optimum is not attained (exact status other than `optimal`: `diverged`, `limit`).
    zeroed : int64 (S, T, m)
        Completions of the prompt at probability exactly 0.
    kl : float64 (S, T, m)
        `KL(pi || pi_ref)` of the prompt's answer.
    favourite : int64 (S, T, m)
        The prompt's most likely completion (local index; the first of equal maxima).
    tv : float64 (P, T, m)
        `TV(pi_a, pi_b)` for each pair `(a, b)` of `combinations(range(S), 2)`.
    """

    not_attained: np.ndarray
    zeroed: np.ndarray
    kl: np.ndarray
    favourite: np.ndarray
    tv: np.ndarray


def segment_sum(x: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """``sum x[..., offsets[c]:offsets[c + 1]]`` over the last axis for every (non-empty) segment `c`."""
    return np.add.reduceat(x, offsets[:-1], axis=-1)


def segment_first_argmax(x: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """The local index of the first maximum of each segment of the last axis of `x`."""
    sizes = np.diff(offsets)
    top = np.maximum.reduceat(x, offsets[:-1], axis=-1)
    local = np.arange(x.shape[-1]) - np.repeat(offsets[:-1], sizes)
    # Positions that are not a maximum get a local index past every segment, so the minimum is the first one.
    hit = np.where(x == np.repeat(top, sizes, axis=-1), local, np.iinfo(np.int64).max)
    return np.minimum.reduceat(hit, offsets[:-1], axis=-1)


def subset(data: PreferenceData, lo: int, hi: int) -> PreferenceData:
    """Contexts `lo:hi` of `data` as a dataset of their own (indices renumbered from 0)."""
    a, b = int(data.offsets[lo]), int(data.offsets[hi])
    keep = (data.context >= lo) & (data.context < hi)
    return PreferenceData(
        context=data.context[keep] - lo,
        winner=data.winner[keep] - a,
        loser=data.loser[keep] - a,
        count=data.count[keep],
        offsets=data.offsets[lo:hi + 1] - a,
        log_pi_ref=data.log_pi_ref[a:b],
        context_ids=data.context_ids[lo:hi],
        context_texts=data.context_texts[lo:hi],
        action_ids=data.action_ids[a:b],
        action_texts=data.action_texts[a:b],
        ties=data.ties[lo:hi],
        source=SourceRecord(data.source.path, data.source.sha256, data.source.format, 0),
    )


def prompt_results(data: PreferenceData, specs: Sequence[MethodSpec], taus: Sequence[float]) -> PromptResults:
    """The per-prompt answers of every spec and tau on `data` (exact solver, empirical objective)."""
    from psipo_cli.solvers.dataset import solve_dataset

    solutions = solve_dataset(data, list(specs), list(taus))
    policy = np.stack([s.policy for s in solutions])  # (S, T, n)
    pairs = list(combinations(range(len(specs)), 2))
    tv = (0.5 * segment_sum(np.abs(policy[[a for a, _ in pairs]] - policy[[b for _, b in pairs]]), data.offsets)
          if pairs else np.empty((0, len(taus), data.n_contexts)))
    return PromptResults(
        not_attained=np.stack([~s.attained for s in solutions]),
        zeroed=segment_sum((policy == 0.0).astype(np.int64), data.offsets),
        kl=np.stack([s.kl for s in solutions]),
        favourite=segment_first_argmax(policy, data.offsets),
        tv=tv,
    )


@dataclass(frozen=True)
class ChunkTask:
    """Prompts `lo:hi` of a dataset to diagnose (sent to a worker as it is: the arrays, not a path)."""

    chunk_id: str
    data: PreferenceData
    specs: tuple[MethodSpec, ...]
    taus: tuple[float, ...]


@dataclass(frozen=True)
class ChunkOutput:
    chunk_id: str
    results: PromptResults


def diagnose_chunk(task: ChunkTask) -> ChunkOutput:
    """One chunk of prompts (this runs in the worker)."""
    return ChunkOutput(task.chunk_id, prompt_results(task.data, task.specs, task.taus))


def chunk_bounds(m: int, chunks: int) -> list[tuple[int, int]]:
    """`chunks` contiguous, near-equal runs of `m` prompts (fewer when `m < chunks`)."""
    edges = np.unique(np.linspace(0, m, max(1, min(chunks, m)) + 1).round().astype(int))
    return [(int(a), int(b)) for a, b in pairwise(edges)]


def concatenate(parts: Sequence[PromptResults]) -> PromptResults:
    """The per-prompt results of consecutive chunks, as one."""
    return PromptResults(**{key: np.concatenate([getattr(p, key) for p in parts], axis=-1)
                            for key in ("not_attained", "zeroed", "kl", "favourite", "tv")})


def _quantiles(values: np.ndarray) -> dict[str, float]:
    return {"min": float(values.min()), "median": float(np.median(values)), "mean": float(values.mean()),
            "p90": float(np.quantile(values, KL_QUANTILE)), "max": float(values.max())}


def summarise(data: PreferenceData, results: PromptResults, specs: Sequence[MethodSpec],
              taus: Sequence[float]) -> dict[str, Any]:
    """The diagnosis document (`psipo diagnose --format json`).

    Keys: `prompts`, `completions`, `comparisons` (sum of counts), `ties`, `comparisons_per_prompt` and
    `completions_per_prompt` (min, median, mean, p90, max), `dataset` (path, sha256, format, rows read and
    skipped), `methods` — one record per spec × tau: `method` (the label), `tau`, `prompts_not_attained`
    (fraction of prompts), `prompts_not_attained_count`, `completions_zeroed` (fraction of all completions),
    `completions_zeroed_count`, `prompts_with_zeroed` (fraction of prompts with a completion at 0, where
    `log(pi / pi_ref) = -inf`: the implied reward is infinite), `kl_mean`, `kl_median`, `kl_p90` (over
    prompts, each weighted equally), `kl_infinite` (fraction of prompts with an infinite `KL(pi || pi_ref)`:
    0 whenever `pi_ref > 0` on every completion, as on every dataset psipo reads — the KL of the limit policy
    is at most `log(1 / min pi_ref)`) — and `pairs` — per tau and pair of specs: `tau`, `method_a`,
    `method_b`, `favourite_differs` (fraction of prompts), `tv_mean`, `tv_median`, `tv_p90`.
    """
    counts = summary(data)
    m, n = data.n_contexts, data.n_actions
    per_prompt = np.bincount(data.context, weights=data.count, minlength=m)
    doc: dict[str, Any] = {
        "prompts": m,
        "completions": n,
        "comparisons": counts["comparisons"],
        "ties": counts["ties"],
        "comparisons_per_prompt": _quantiles(per_prompt),
        "completions_per_prompt": _quantiles(np.diff(data.offsets).astype(float)),
        "dataset": {k: counts[k] for k in ("path", "sha256", "format", "rows_read", "rows_skipped", "bytes")},
    }
    methods = []
    for s, spec in enumerate(specs):
        for t, tau in enumerate(taus):
            kl = results.kl[s, t]
            finite = kl[np.isfinite(kl)]
            methods.append({
                "method": spec.label,
                "tau": float(tau),
                "prompts_not_attained": float(results.not_attained[s, t].mean()),
                "prompts_not_attained_count": int(results.not_attained[s, t].sum()),
                "completions_zeroed": float(results.zeroed[s, t].sum() / n),
                "completions_zeroed_count": int(results.zeroed[s, t].sum()),
                "prompts_with_zeroed": float((results.zeroed[s, t] > 0).mean()),
                "kl_mean": float(finite.mean()) if len(finite) else None,
                "kl_median": float(np.median(finite)) if len(finite) else None,
                "kl_p90": float(np.quantile(finite, KL_QUANTILE)) if len(finite) else None,
                "kl_infinite": float(1.0 - len(finite) / m),
            })
    pairs = []
    for p, (a, b) in enumerate(combinations(range(len(specs)), 2)):
        for t, tau in enumerate(taus):
            tv = results.tv[p, t]
            pairs.append({
                "tau": float(tau),
                "method_a": specs[a].label,
                "method_b": specs[b].label,
                "favourite_differs": float((results.favourite[a, t] != results.favourite[b, t]).mean()),
                "tv_mean": float(tv.mean()),
                "tv_median": float(np.median(tv)),
                "tv_p90": float(np.quantile(tv, KL_QUANTILE)),
            })
    doc["methods"] = methods
    doc["pairs"] = pairs
    return doc


def diagnose(data: PreferenceData, specs: Sequence[MethodSpec], taus: Sequence[float], executor: Any = None,
             chunks: int = 1) -> tuple[dict[str, Any], PromptResults]:
    """The diagnosis of `data` (`summarise`) and the per-prompt results behind it.

    With an `executor` (`psipo_cli.sweep.executors`: inline, process pool, Dask), the prompts are cut into
    `chunks` contiguous runs solved by `diagnose_chunk` wherever the executor runs them; the results are
    put back in prompt order, so they do not depend on `chunks` or the executor.
    """
    specs, taus = tuple(specs), tuple(float(t) for t in taus)
    if executor is None:
        results = prompt_results(data, specs, taus)
    else:
        bounds = chunk_bounds(data.n_contexts, chunks)
        tasks = [ChunkTask(str(i), subset(data, lo, hi), specs, taus) for i, (lo, hi) in enumerate(bounds)]
        done = {out.chunk_id: out.results for out in executor.results(tasks, diagnose_chunk)}
        results = concatenate([done[task.chunk_id] for task in tasks])
    return summarise(data, results, specs, taus), results
