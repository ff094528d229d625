"""Exact answers on a preference dataset whose prompts have their own completions, as tidy tables.

The dataset analogue of `psipo_cli.api.solve` for `psipo run` / `psipo compare --problem DATA` when the
prompts do not share one completion list (the usual TRL dataset): every prompt is solved exactly on its own
comparisons (`psipo_cli.solvers.dataset.solve_dataset`, the empirical objective) and the answers are laid
out as the run tables of docs/outputs.md, built from flat arrays (no Python loop over prompts):

- `policy`: the `policy.csv` columns (`prob_lo = prob_hi = prob`: one deterministic solve);
- `metrics`: the `metrics.csv` columns; `kl = KL(pi || pi_ref)`, `entropy = -sum pi log pi` and the
  method's own `loss` per prompt, the metrics that need a preference model or a gradient run empty;
- `summary`: each metric averaged over prompts with equal weights (each distinct prompt is one context of
  weight `1 / m`, as a TOML problem without `weight`: the paper's `E_{x ~ rho}`, Eq. 6); `status` the
  prompts' common status, or `mixed` with the count of each in `detail`;
- `rewards`: the implied reward `pi ∝ pi_ref exp(r / tau)`, empty where it is infinite.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from psipo_cli.problem.datasets.data import PreferenceData
from psipo_cli.schema import EXACT, METRIC_COLUMNS, MIXED, POLICY_COLUMNS, REWARD_COLUMNS, SUMMARY_COLUMNS
from psipo_cli.solvers.runs import MethodSpec


@dataclass(frozen=True)
class DatasetFrames:
    """The tables of an exact run on a dataset (pandas frames; see the module docstring)."""

    policy: Any
    metrics: Any
    summary: Any
    rewards: Any


def segment_entropy(policy: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """``-sum_y pi(y) log pi(y)`` over each context's actions (last axis), with ``0 log 0 = 0``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(policy > 0, -policy * np.log(policy), 0.0)
    return np.add.reduceat(terms, offsets[:-1], axis=-1)


def status_summary(status: np.ndarray) -> tuple[str, str]:
    """The common status of the prompts, or `mixed` and ``"statuses over prompts: diverged 3, optimal 5"``."""
    names, counts = np.unique(status, return_counts=True)
    if len(names) == 1:
        return str(names[0]), ""
    return MIXED, "statuses over prompts: " + ", ".join(f"{n}: {c}" for n, c in zip(names, counts, strict=True))


def dataset_frames(
    data: PreferenceData, specs: Sequence[MethodSpec], taus: Sequence[float], solutions: Sequence[Any] | None = None
) -> DatasetFrames:
    """Solve every prompt of `data` exactly for each spec and tau, as tables (module docstring); `solutions`:
    the answers of `solve_dataset(data, specs, taus)` when they are at hand already."""
    import pandas as pd

    from psipo_cli.solvers.dataset import solve_dataset

    taus = [float(t) for t in taus]
    if solutions is None:
        solutions = solve_dataset(data, list(specs), taus)
    m, n, T = data.n_contexts, data.n_actions, len(taus)
    context_ids = np.asarray(data.context_ids, dtype=object)
    action_ids = np.asarray(data.action_ids, dtype=object)
    action_context = context_ids[data.action_context]
    # Rows: spec, then tau, then context (and action): the order of a TOML problem's tables.
    policy, metrics, summary, rewards = [], [], [], []
    for sol in solutions:
        entropy = segment_entropy(sol.policy, data.offsets)  # (T, m)
        prob = sol.policy.ravel()
        policy.append(pd.DataFrame({
            "method": sol.label, "tau": np.repeat(taus, n), "solver": EXACT, "context": np.tile(action_context, T),
            "action": np.tile(action_ids, T), "prob": prob, "prob_lo": prob, "prob_hi": prob,
        }))
        metrics.append(pd.DataFrame({
            "method": sol.label, "tau": np.repeat(taus, m), "solver": EXACT, "context": np.tile(context_ids, T),
            "status": sol.status.ravel(), "kl": sol.kl.ravel(), "entropy": entropy.ravel(),
            "loss": np.where(np.isfinite(sol.loss), sol.loss, np.nan).ravel(), "seeds": 1, "objective": "dataset",
            "detail": "",
        }))
        for t, tau in enumerate(taus):
            status, detail = status_summary(sol.status[t])
            loss = sol.loss[t]
            summary.append({
                "method": sol.label, "tau": tau, "solver": EXACT, "status": status, "kl": float(sol.kl[t].mean()),
                "entropy": float(entropy[t].mean()),
                "loss": float(loss.mean()) if np.isfinite(loss).all() else None, "seeds": 1, "objective": "dataset",
                "detail": detail,
            })
        reward = np.where(np.isfinite(sol.reward), sol.reward, np.nan)
        rewards.append(pd.DataFrame({
            "method": sol.label, "tau": np.repeat(taus, n), "solver": EXACT, "context": np.tile(action_context, T),
            "action": np.tile(action_ids, T), "reward": np.tile(reward, T),  # the same for every tau
        }))
    return DatasetFrames(
        policy=pd.concat(policy, ignore_index=True)[POLICY_COLUMNS],
        metrics=pd.concat(metrics, ignore_index=True).reindex(columns=METRIC_COLUMNS),
        summary=pd.DataFrame.from_records(summary).reindex(columns=SUMMARY_COLUMNS),
        rewards=pd.concat(rewards, ignore_index=True)[REWARD_COLUMNS],
    )
