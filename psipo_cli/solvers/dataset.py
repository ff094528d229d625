"""Exact solutions on a preference dataset (`PreferenceData`): every prompt solved, results as flat arrays.

Each context of a dataset is its own tabular problem over its own actions (paper §2: the dataset of context
`x` is the pairs drawn given `x`; the objectives of paper Eqs. 2-4, 6 and 17 are sums over contexts, so their
optima are the per-context optima). The answers are exactly those of the per-context exact solvers
(`Method.solve_exact`) on each context's win counts `W[w, l]` and `pi_ref`, the empirical objective, as for a
TOML problem with `pairs`; they are returned as arrays indexed like the dataset's own (global action indices,
context indices), so that nothing per context is a Python object.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from psipo_cli.methods import get_method
from psipo_cli.methods.flat import FlatInputs
from psipo_cli.methods.linalg import Pairs
from psipo_cli.problem.datasets.data import PreferenceData
from psipo_cli.schema import OPTIMAL
from psipo_cli.solvers.runs import MethodSpec, check_options


@dataclass(frozen=True, eq=False)
class DatasetSolution:
    """The exact answer of one method spec on every context of a dataset, for each tau.

    `T = len(taus)`, `n` = the dataset's actions (global indices: context `c` holds
    ``data.offsets[c]:data.offsets[c + 1]``), `m` = its contexts.

    Attributes
    ----------
    label, method : str
        The spec's label and method name.
    taus : tuple of float
    policy : float64 (T, n)
        `pi(y | x)` of every action for each tau; sums to 1 over each context's actions. Under `diverged`
        (and `limit`) the limit policy, with exact zeros on the actions it abandons.
    status : str array (T, m)
        `optimal`, `diverged` or `limit` (`psipo_cli.schema.EXACT_STATUSES`), per tau and context.
    loss : float64 (T, m)
        The method's own objective on the context at the answer (its infimum when not attained), as
        `Solution.loss`. A context without comparisons has loss 0 (an empty sum).
    kl : float64 (T, m)
        `KL(pi || pi_ref)` of each context's policy (finite: `pi_ref > 0` on every action of a dataset).
    reward : float64 (n,)
        The implied reward, `pi ∝ pi_ref exp(reward / tau)` (`Solution.reward`; the same for every tau for
        these methods); NaN on the contexts where it is not finite (`diverged`, `limit`).

    A context whose loss sees none of its actions (a single completion, or only ties) keeps `pi = pi_ref`
    (the canonical gauge, offsets 0), status `optimal`, loss 0 and KL 0.
    """

    label: str
    method: str
    taus: tuple[float, ...]
    policy: np.ndarray
    status: np.ndarray
    loss: np.ndarray
    kl: np.ndarray
    reward: np.ndarray

    @property
    def attained(self) -> np.ndarray:
        """bool (T, m): the context's optimum is attained (status `optimal`)."""
        return self.status == OPTIMAL


def flat_inputs(data: PreferenceData) -> FlatInputs:
    """The dataset as the methods' flat input: its comparisons as `Pairs` whose segments are its contexts."""
    pairs = Pairs(data.winner, data.loser, data.count, data.n_actions, data.action_context, data.n_contexts)
    return FlatInputs(pairs, data.offsets, data.log_pi_ref, data.context_ids, data.action_ids)


def solve_dataset(data: PreferenceData, specs: Sequence[MethodSpec], taus: Sequence[float]) -> list[DatasetSolution]:
    """The exact answer of every spec on every context of `data`, for each tau (one `DatasetSolution` per spec,
    in order), through each method family's `solve_dataset` (all contexts at once, `psipo_cli.methods.flat`).

    Raises
    ------
    InputError
        For a bad option value (`check_options`), or ΨPO on a context with a compared action left
        uncompared with another (`P_hat` undefined there; the error names the context).
    """
    taus = tuple(float(t) for t in taus)
    for spec in specs:
        check_options(spec)
    flat = flat_inputs(data)
    node = flat.pairs.node_segment
    out = []
    for spec in specs:
        method = get_method(spec.method)
        answer = method.family.solve_dataset(method, flat, taus, method.option_values(dict(spec.options)))
        with np.errstate(divide="ignore"):
            log_ratio = np.where(answer.policy > 0, np.log(answer.policy) - data.log_pi_ref, 0.0)
        kl = np.stack([np.bincount(node, weights=row, minlength=data.n_contexts) for row in answer.policy * log_ratio])
        out.append(DatasetSolution(spec.label, spec.method, taus, answer.policy, answer.status.astype(str),
                                   answer.loss, kl, answer.reward))
    return out
