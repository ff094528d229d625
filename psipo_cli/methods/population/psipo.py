"""Population ΨPO (paper Eq. 6): maximise `sum_y pi(y) g(y) - tau KL(pi || pi_ref)`,
`g(y) = sum_y' mu(y') Psi(P[y, y'])`. Optimum (paper Eq. 7): `pi* ∝ pi_ref exp(g / tau)`.

Where `Psi(P)` is infinite (`logit` or `log` at `P ∈ {0, 1}`) the optimum is the `eps -> 0` limit of the
problem with `P` clipped to `[eps, 1 - eps]` (the README's "Exact solutions"): `g = a L + b + o(1)` with
`L = log((1 - eps) / eps)`, so all mass goes to `argmax a` (within `supp pi_ref`), spread there as
`pi_ref exp(b / tau)` — a policy that does not depend on `tau` outside that set.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from psipo_cli.errors import InputError
from psipo_cli.methods.flat import FlatAnswer, FlatInputs, segment_softmax
from psipo_cli.methods.kl import kl_gradient, regularised_value
from psipo_cli.methods.population.family import POPULATION
from psipo_cli.methods.population.psi import PsiFn, evaluate_psi, resolve_psi
from psipo_cli.methods.solution import LIMIT, OPTIMAL, Solution
from psipo_cli.methods.spec import Method
from psipo_cli.numerics import softmax

TIE_TOL = 1e-12


def targets(P: np.ndarray, mu: np.ndarray, psi: PsiFn, psi_name: str = "psi") -> tuple[np.ndarray, np.ndarray]:
    """`(a, b)` with `g = a L + b`: `a(y)` sums `±mu(y')` over the infinite terms, `b(y)` the finite ones.

    Only `y'` in `supp mu` enter `g` (`0 * Psi` is 0 even where `Psi` is infinite).
    """
    values = evaluate_psi(psi, P, psi_name)
    weights = np.where(mu > 0, mu, 0.0)[None, :]
    infinite = np.isinf(values) & (weights > 0)
    a = np.sum(np.where(infinite, np.sign(values) * weights, 0.0), axis=1)
    with np.errstate(invalid="ignore"):  # inf * 0 where mu = 0: masked out just below
        finite_terms = values * weights
    b = np.sum(np.where(infinite | (weights == 0), 0.0, finite_terms), axis=1)
    return a, b


def solve(pi_ref: np.ndarray, mu: np.ndarray, P: np.ndarray, tau: float, psi: str = "logit") -> Solution:
    """Exact population ΨPO. `loss = -J(pi)`; under `status = "limit"`, minus the finite part `b` of `J`.

    The implied reward is `g` (paper Eq. 7: `pi* ∝ pi_ref exp(g / tau)`); under `limit` it is infinite
    somewhere and left as None.
    """
    psi_name, psi = psi, resolve_psi(psi)
    a, b = targets(P, mu, psi, psi_name)
    support = pi_ref > 0
    infinite_terms = bool(np.any(np.isinf(evaluate_psi(psi, P, psi_name))[np.ix_(support, mu > 0)]))
    top = support & (a >= a[support].max() - TIE_TOL)
    policy = np.zeros_like(pi_ref)
    with np.errstate(divide="ignore"):
        policy[top] = softmax(np.log(pi_ref[top]) + b[top] / tau)
    if not infinite_terms:
        return Solution(
            policy=policy,
            status=OPTIMAL,
            loss=-regularised_value(policy, b, pi_ref, tau),
            offsets=b / tau,
            reward=b,
        )
    dropped = int(np.sum(support & ~top))
    # The infinite a L term is the same on `top`: the finite part of J is J with b alone.
    return Solution(
        policy=policy,
        status=LIMIT,
        loss=-regularised_value(policy, b, pi_ref, tau),
        detail=f"Psi is infinite on some pairs: the limit puts probability 0 on {dropped} action(s) for every tau",
    )

def solve_flat(flat: FlatInputs, taus: Sequence[float], psi: str = "logit") -> FlatAnswer:
    """`solve` on the empirical preferences `(P_hat, mu_hat)` (`empirical_preferences`) of every context of a
    dataset at once, for each tau.

    Per context `x`, with `C` its comparisons: `mu_hat(y)` is the share of appearances of `y`, and for compared
    `y != y'`, `P_hat[y, y'] = W[y, y'] / (W[y, y'] + W[y', y])`; every other entry (the diagonal, pairs with an
    action never compared) is 1/2. So `g(y) = sum_{y' compared with y} mu_hat(y') Psi(P_hat[y, y'])
    + Psi(1/2) (1 - sum_{y' compared with y} mu_hat(y'))` (the rest of `mu_hat`'s mass is `y` itself, or all
    of it for an action never compared), split into `a L + b` where `Psi` is infinite, as `targets` does. A
    context without comparisons keeps `pi_ref` (loss 0, reward 0).

    Raises
    ------
    InputError
        Keyed `contexts[<id>].pairs`, for the first context with two compared actions never compared with
        each other (`P_hat` is undefined there), as `empirical_preferences`.
    """
    pairs, offsets, m = flat.pairs, flat.offsets, flat.n_contexts
    n, w, l_, c = pairs.n, pairs.winner, pairs.loser, pairs.count
    # Unordered compared pairs (i < j): total count and the count of i's wins.
    lo, hi = np.minimum(w, l_), np.maximum(w, l_)
    keys, where = np.unique(lo * n + hi, return_inverse=True)
    i, j = keys // n, keys % n
    total = np.bincount(where, weights=c, minlength=len(keys))
    wins_i = np.bincount(where, weights=np.where(w == lo, c, 0.0), minlength=len(keys))
    seg = pairs.node_segment[i]
    appearances = np.bincount(w, weights=c, minlength=n) + np.bincount(l_, weights=c, minlength=n)
    totals = pairs.totals
    has = totals > 0
    mu = appearances / np.where(has, 2.0 * totals, 1.0)[pairs.node_segment]
    seen = appearances > 0
    k = np.bincount(pairs.node_segment[seen], minlength=m)
    complete = np.bincount(seg, minlength=m) == k * (k - 1) // 2
    if not complete.all():
        bad = int(np.argmin(complete))
        span = flat.span(bad)
        local = (pairs.segment == bad)
        W = np.zeros((span.stop - span.start,) * 2)
        np.add.at(W, (w[local] - span.start, l_[local] - span.start), c[local])
        try:
            empirical_preferences(W, flat.action_ids[span])
        except InputError as exc:
            raise InputError(f"contexts[{flat.context_ids[bad]}].pairs", exc.value, exc.reason) from None
    psi_fn = resolve_psi(psi)
    values = evaluate_psi(psi_fn, np.concatenate([wins_i / total, 1.0 - wins_i / total, [0.5]]), psi)
    v_ij, v_ji, v_half = values[: len(keys)], values[len(keys) : 2 * len(keys)], values[-1]
    # Each ordered pair (y, y') adds mu(y') Psi(P[y, y']) to g(y): infinite values to a, finite ones to b.
    rows = np.concatenate([i, j])
    cols = np.concatenate([j, i])
    vals = np.concatenate([v_ij, v_ji])
    inf = np.isinf(vals)
    a = np.bincount(rows, weights=np.where(inf, np.sign(vals) * mu[cols], 0.0), minlength=n)
    b = np.bincount(rows, weights=np.where(inf, 0.0, vals * mu[cols]), minlength=n)
    rest = 1.0 - np.bincount(rows, weights=mu[cols], minlength=n)
    if np.isinf(v_half):
        a += np.sign(v_half) * rest
    else:
        b += v_half * rest
    a, b = np.where(has[pairs.node_segment], a, 0.0), np.where(has[pairs.node_segment], b, 0.0)
    infinite = (np.bincount(pairs.node_segment[rows[inf]], minlength=m) > 0) | (has & bool(np.isinf(v_half)))
    top = a >= np.repeat(np.maximum.reduceat(a, offsets[:-1]), np.diff(offsets)) - TIE_TOL
    T = len(taus)
    policy = segment_softmax(
        np.stack([np.where(top, flat.log_pi_ref + b / tau, -np.inf) for tau in taus]), offsets
    )
    with np.errstate(divide="ignore"):
        log_ratio = np.where(policy > 0, np.log(policy) - flat.log_pi_ref, 0.0)
    taus_ = np.asarray(taus, float)[:, None]
    node = pairs.node_segment
    gain = np.stack([np.bincount(node, weights=row, minlength=m) for row in policy * b])
    kl = np.stack([np.bincount(node, weights=row, minlength=m) for row in policy * log_ratio])
    status = np.where(infinite, LIMIT, OPTIMAL)[None, :].repeat(T, axis=0)
    return FlatAnswer(policy, status, taus_ * kl - gain, np.where(infinite[node], np.nan, b))


def empirical_preferences(W: np.ndarray, actions: tuple[str, ...] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`(P_hat, mu_hat)` from win counts: `P_hat = W / (W + W^T)`, `mu_hat` = share of appearances.

    Every pair of distinct actions in `supp mu_hat` must have been compared at least once.
    """
    totals = W + W.T
    mu_hat = (W.sum(axis=0) + W.sum(axis=1)) / (2.0 * W.sum())
    seen = mu_hat > 0
    missing = np.argwhere(seen[:, None] & seen[None, :] & (totals == 0) & ~np.eye(len(mu_hat), dtype=bool))
    missing = missing[missing[:, 0] < missing[:, 1]]
    if len(missing):
        raise InputError(
            "pairs",
            [tuple(actions[i] if actions else int(i) for i in p) for p in missing[:5]],
            "psipo from data needs every pair of compared actions observed (unobserved pairs shown)",
        )
    with np.errstate(invalid="ignore"):
        P_hat = np.where(totals > 0, W / np.where(totals > 0, totals, 1.0), 0.5)
    return P_hat, mu_hat


def clipped_target(
    P: np.ndarray, mu: np.ndarray, pi_ref: np.ndarray, psi_name: str, eps: float
) -> tuple[np.ndarray, str]:
    """`g(y) = sum_{y'} mu(y') Psi(P[y, y'])` with `P` clipped to `[eps, 1 - eps]` where `Psi(P)` is infinite:
    the target the gradient engine ascends `J` with (paper Eq. 6).

    Only the entries where `Psi` is infinite are clipped, so a finite problem is solved exactly as posed.
    Columns outside `supp mu` do not enter (`0 * Psi` is 0 even where `Psi` is infinite, as in the exact
    solver). Returns `g` and a note for the run's `detail` (empty when nothing relevant was clipped).
    """
    psi = resolve_psi(psi_name)
    values = evaluate_psi(psi, P, psi_name)
    infinite = np.isinf(values)
    note = ""
    if infinite.any():
        P_used = np.where(infinite, np.clip(P, eps, 1.0 - eps), P)
        values = evaluate_psi(psi, P_used, psi_name)
        if np.isinf(values).any():
            raise InputError("--eps", eps, f"Psi {psi_name!r} is still infinite on P clipped to [eps, 1-eps]")
        if infinite[np.ix_(pi_ref > 0, mu > 0)].any():
            note = f"P clipped to [{eps:g}, 1 - {eps:g}] where Psi(P) is infinite"
    weights = np.where(mu > 0, mu, 0.0)
    g = np.where(weights[None, :] > 0, values, 0.0) @ weights
    return np.where(pi_ref > 0, g, 0.0), note


def population_loss(policy: np.ndarray, g: np.ndarray, pi_ref: np.ndarray, tau: float) -> float:
    """`-J(pi) = -(E_pi g - tau KL(pi || pi_ref))` (paper Eq. 6), the objective ΨPO minimises."""
    return -regularised_value(policy, g, pi_ref, tau)


def population_gradient(delta: np.ndarray, g: np.ndarray, pi_ref: np.ndarray, tau: float) -> np.ndarray:
    """`dJ / d delta` at the offsets `delta` (`kl.kl_gradient` with `r = g`)."""
    return kl_gradient(delta, g, pi_ref, tau)


PSIPO = Method("psipo", "General PsiPO objective (paper Eq. 6) with --psi", POPULATION, options=("psi", "eps"))
