"""The data model of a tabular preference problem (docs/maths.md §1).

A problem has a finite action set shared by every context. Each context carries its reference policy
`pi_ref`, its behaviour policy `mu`, optionally a preference model `P[y, y'] = p*(y ≻ y')`, and optionally a
dataset, seen only through its win-count matrix `W[w, l]` (a tabular policy cannot see more of it).
Arrays are validated on construction (see `psipo_cli.problem.validate`) and never modified afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from psipo_cli.numerics import sigmoid

DEFAULT_CONTEXT = "default"
MODEL_KINDS = ("preferences", "rewards", "order")


@dataclass(frozen=True)
class Sample:
    """Draw `n` comparisons from `mu × mu` (distinct pairs) and the preference model.

    Dataset number `k` of a context with index `c` is drawn from
    ``default_rng(SeedSequence([seed, k, c]))``: the problem file alone fixes the data.
    """

    n: int
    seed: int


@dataclass(frozen=True, eq=False)
class Context:
    """One context `x`: its policies, preference model and data (all arrays of length `n` or `(n, n)`)."""

    name: str
    weight: float
    pi_ref: np.ndarray
    mu: np.ndarray
    preferences: np.ndarray | None = None
    rewards: np.ndarray | None = None
    model: str | None = None
    wins: np.ndarray | None = None
    sample: Sample | None = None

    @property
    def has_model(self) -> bool:
        return self.preferences is not None

    @property
    def has_data(self) -> bool:
        return self.wins is not None or self.sample is not None


@dataclass(frozen=True, eq=False)
class Problem:
    """A tabular preference problem: named actions and one or more contexts."""

    name: str
    actions: tuple[str, ...]
    contexts: tuple[Context, ...]
    description: str = ""
    source: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)
    # Every file read to build the problem, in reading order: (absolute path, sha256 of its bytes).
    files: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    # The `psipo_cli.problem.datasets.PreferenceData` the problem was read from (a preference dataset), or
    # None: it names the contexts' prompts and the actions' completions, and `problem_table` records the
    # file (path, size, sha256) instead of the arrays.
    dataset: Any = None

    @property
    def n_actions(self) -> int:
        return len(self.actions)

    @property
    def context_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.contexts)

    @property
    def has_model(self) -> bool:
        return all(c.has_model for c in self.contexts)

    @property
    def has_data(self) -> bool:
        return all(c.has_data for c in self.contexts)

    @property
    def is_sampled(self) -> bool:
        return any(c.sample is not None for c in self.contexts)

    def with_contexts(self, contexts: tuple[Context, ...]) -> Problem:
        return replace(self, contexts=contexts)


def order_matrix(rank: np.ndarray) -> np.ndarray:
    """Deterministic preferences of a strict total order: `P[y, y'] = 1` if `y` ranks before `y'`.

    ``rank[y]`` is the position of action `y` (0 = best).
    """
    rank = np.asarray(rank)
    P = (rank[:, None] < rank[None, :]).astype(float)
    np.fill_diagonal(P, 0.5)
    return P


def bradley_terry_matrix(rewards: np.ndarray) -> np.ndarray:
    """Bradley–Terry preferences `P[y, y'] = sigmoid(r_y - r_y')`, computed stably."""
    r = np.asarray(rewards, dtype=float)
    with np.errstate(over="ignore"):  # |r_y - r_y'| beyond 1.8e308 is inf, and sigmoid(±inf) is exactly 1 or 0
        return sigmoid(r[:, None] - r[None, :])


def expected_wins(mu: np.ndarray, preferences: np.ndarray, diagonal: bool = False) -> np.ndarray:
    """Population win counts `W[w, l] = mu(w) mu(l) P[w, l]` off the diagonal (docs/maths.md §2.5).

    The diagonal is dropped unless `diagonal`: a comparison of an action with itself has `h = 0` and carries no
    signal for a loss of `h`; a loss of single actions sees it (`W[y, y] = mu(y)^2 / 2`, the action both winner
    and loser).
    """
    W = np.outer(mu, mu) * preferences
    if diagonal:
        np.fill_diagonal(W, 0.5 * np.asarray(mu, float) ** 2)
    else:
        np.fill_diagonal(W, 0.0)
    return W


def draw_wins(ctx: Context, dataset: int, context_index: int) -> np.ndarray:
    """Win counts of dataset number `dataset` for a context with a `sample` spec.

    Each comparison draws `(y, y')` from `mu × mu` restricted to `y ≠ y'` and lets `y` win with
    probability `P[y, y']`.
    """
    assert ctx.sample is not None and ctx.preferences is not None
    n = len(ctx.mu)
    rng = np.random.default_rng(np.random.SeedSequence([ctx.sample.seed, dataset, context_index]))
    pair_p = np.outer(ctx.mu, ctx.mu)
    np.fill_diagonal(pair_p, 0.0)
    pair_p = pair_p.ravel() / pair_p.sum()
    idx = np.searchsorted(np.cumsum(pair_p), rng.random(ctx.sample.n) * pair_p.sum(), side="right")
    idx = np.minimum(idx, n * n - 1)
    y, y2 = np.divmod(idx, n)
    first_wins = rng.random(ctx.sample.n) < ctx.preferences[y, y2]
    w = np.where(first_wins, y, y2)
    l_ = np.where(first_wins, y2, y)
    W = np.zeros((n, n))
    np.add.at(W, (w, l_), 1.0)
    return W


def realise(problem: Problem, dataset: int = 0) -> Problem:
    """The problem with dataset number `dataset` drawn for every context that samples its data."""
    if not problem.is_sampled:
        return problem
    contexts = tuple(
        replace(c, wins=draw_wins(c, dataset, i)) if c.sample is not None else c
        for i, c in enumerate(problem.contexts)
    )
    return problem.with_contexts(contexts)


def problem_table(problem: Problem, files: bool = False) -> dict:
    """A JSON-safe description of the problem as solved (recorded in `config.json`).

    With `files`, also the files it was read from (`[{path, sha256}]`: the TOML file, then any
    `pairs_csv`). Off by default: the rest of the table says what the problem *is*, whatever the
    directory it was read from (sweeps hash it to recognise a problem across machines).

    A problem read from a preference dataset is recorded by the dataset (`datasets.dataset_record`: its
    path, size in bytes, SHA-256, layout and counts) instead of its arrays, which may be huge.
    """
    if problem.dataset is not None:
        from psipo_cli.problem.datasets import dataset_record

        table: dict[str, Any] = {
            "name": problem.name,
            "source": problem.source,
            "description": problem.description,
            "dataset": dataset_record(problem.dataset),
        }
        if files:
            table["files"] = [{"path": path, "sha256": digest} for path, digest in problem.files]
        return table

    def arr(x: np.ndarray | None) -> list | None:
        return None if x is None else np.asarray(x).tolist()

    table = {
        "name": problem.name,
        "source": problem.source,
        "description": problem.description,
        "actions": list(problem.actions),
        "contexts": [
            {
                "name": c.name,
                "weight": c.weight,
                "pi_ref": arr(c.pi_ref),
                "mu": arr(c.mu),
                "model": c.model,
                "preferences": arr(c.preferences),
                "rewards": arr(c.rewards),
                "wins": arr(c.wins),
                "sample": None if c.sample is None else {"n": c.sample.n, "seed": c.sample.seed},
            }
            for c in problem.contexts
        ],
    }
    if files:
        table["files"] = [{"path": path, "sha256": digest} for path, digest in problem.files]
    return table
