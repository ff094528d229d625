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
from psipo_cli.methods.kl import kl_divergence
from psipo_cli.problem.datasets.data import PreferenceData
from psipo_cli.schema import OPTIMAL
from psipo_cli.solvers.inputs import data_inputs
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


def context_wins(data: PreferenceData) -> list[np.ndarray]:
    """Each context's win-count matrix `W[w, l]` over its own actions (local indices), as a list."""
    order = np.argsort(data.context, kind="stable")
    ctx, w, l_, c = data.context[order], data.winner[order], data.loser[order], data.count[order]
    bounds = np.searchsorted(ctx, np.arange(data.n_contexts + 1))
    sizes = np.diff(data.offsets)
    out = []
    for k in range(data.n_contexts):
        s, e, base = bounds[k], bounds[k + 1], data.offsets[k]
        W = np.zeros((sizes[k], sizes[k]))
        np.add.at(W, (w[s:e] - base, l_[s:e] - base), c[s:e])
        out.append(W)
    return out


def solve_dataset(data: PreferenceData, specs: Sequence[MethodSpec], taus: Sequence[float]) -> list[DatasetSolution]:
    """The exact answer of every spec on every context of `data`, for each tau (one `DatasetSolution` per spec,
    in order).

    Raises
    ------
    InputError
        For a bad option value (`check_options`), or ΨPO on a context with a compared action left
        uncompared with another (`P_hat` undefined there; the error names the context).
    """
    taus = tuple(float(t) for t in taus)
    for spec in specs:
        check_options(spec)
    wins = context_wins(data)
    pi_ref = np.exp(data.log_pi_ref)
    out = []
    for spec in specs:
        method = get_method(spec.method)
        options = method.option_values(dict(spec.options))
        T, n, m = len(taus), data.n_actions, data.n_contexts
        policy, reward = np.empty((T, n)), np.full(n, np.nan)
        status = np.full((T, m), OPTIMAL, dtype=object)
        loss, kl = np.zeros((T, m)), np.zeros((T, m))
        for c, W in enumerate(wins):
            span = slice(data.offsets[c], data.offsets[c + 1])
            p_ref = pi_ref[span] / pi_ref[span].sum()
            if not W.any():
                policy[:, span], reward[span] = p_ref, 0.0
                continue
            names = data.action_ids[span]
            inputs = data_inputs(method, W, p_ref, data.context_ids[c], names, p_ref)
            for t, sol in enumerate(method.family.solve_exact(method, inputs, taus, options)):
                policy[t, span], status[t, c], loss[t, c] = sol.policy, sol.status, sol.loss
                kl[t, c] = kl_divergence(sol.policy, p_ref)
                if sol.reward is not None:
                    reward[span] = sol.reward
        out.append(DatasetSolution(spec.label, spec.method, taus, policy, status.astype(str), loss, kl, reward))
    return out
