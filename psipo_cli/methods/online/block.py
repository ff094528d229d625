"""The gradient engine's block of the online methods (`LanePlan.block_lane`; `solvers.gradient.blocks.Block`).

Each step reads the current policy of every lane from `X` and forms the method's target from it (the opponent
moves with the policy). What the engine applies with step `lr_t`:

- `--batch-size 0`: the exact expectation — the score `g` (`updates.score`) under `--optimizer md` (the
  method's mirror-descent update), else the expected loss gradient (`updates.centred`: policy gradient, or
  online IPO's `(4/tau) m (g - m·g)`);
- `--batch-size B`: `B` pairs per step and lane with Bernoulli labels `o ~ P[y, y']`. `pg`: `y ~ pi`,
  `y' ~ m`, the REINFORCE estimate `-(o - 1/2) (e_y - pi)` plus the exact KL gradient `tau pi (X - pi·X)`;
  `ipo`: `y, y' ~ m`, winner and loser by the label, IPO's square-loss gradient `2 (h - 1/(2 tau)) (e_w -
  e_l)`; `md`: `y` uniform on `supp pi_ref`, `y' ~ m`, the unbiased estimate `n_s 1[y = k] o` of `(P m)_k`
  in the score (drawing `y` from `pi` would need weights `1 / pi_k`). Each estimate averages over the batch;
  its expectation is the batch-0 direction.

The uniforms of seed `k` in context `c` come from `np.random.default_rng(SeedSequence([seed, k, c, 1]))`,
drawn in chunks of steps in sequence (the chunk size does not change them) and shared by every lane of that
stream (common random numbers: running tau values together or alone gives the same bytes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from psipo_cli.methods.linalg import softmax_policy
from psipo_cli.methods.online import updates
from psipo_cli.methods.online.family import IPO_LOSS, OnlineRule

#: Spawn key of the online streams (after `[seed, k, c]`), apart from the comparison streams of `streams`.
STREAM_KEY = 1


@dataclass(eq=False)
class OnlineLane:
    """One run of an online method: its rule, preferences `P` (n, n), `tau` (0 for SPPO), `--mixture` (None:
    the rule's default), reference and minibatch stream `(k, c)` (None at full batch)."""

    rule: OnlineRule
    P: np.ndarray
    tau: float
    mixture: float | None
    log_pi_ref: np.ndarray
    stream: tuple[int, int] | None


def lane_mixture(lane: OnlineLane, lr_t: float) -> float:
    """The mixture `b` of a step with learning rate `lr_t`: `--mixture`, else Nash-MD's `min(1, lr_t tau)`,
    else 0."""
    if lane.mixture is not None:
        return float(lane.mixture)
    return min(1.0, lr_t * lane.tau) if lane.rule.step_mixture else 0.0


def final_mixture(lane: OnlineLane, settings: Any) -> float:
    """The mixture of a run's last step (the one its stationarity is judged by)."""
    from psipo_cli.config.schedules import factor

    lr_T = settings.lr * factor(settings.lr_schedule, settings.steps, settings.steps, settings.lr_final)
    return lane_mixture(lane, float(lr_T))


def build_block(lanes: list[OnlineLane], start: int, n: int, settings: Any) -> OnlineBlock:
    """`LanePlan.block_lane`'s builder."""
    return OnlineBlock(lanes, start, n, settings)


class _Group:
    """The lanes of one rule (`OnlineRule`), rows `idx` of the block: each step computes one rule's
    direction for all of them at once."""

    def __init__(self, rule: OnlineRule, idx: np.ndarray, lanes: list[OnlineLane]) -> None:
        self.rule, self.idx = rule, idx
        self.ipo, self.extragradient = rule.loss == IPO_LOSS, rule.extragradient
        self.P = np.stack([lane.P for lane in lanes])
        self.log_pi_ref = np.stack([lane.log_pi_ref for lane in lanes])
        self.support = np.isfinite(self.log_pi_ref)
        self.n_support = self.support.sum(axis=1, keepdims=True)
        self.tau = np.array([[lane.tau] for lane in lanes])
        self.fixed_b = np.array([[lane_mixture(lane, 0.0)] for lane in lanes])  # without Nash-MD's step mixture
        self.step_b = np.array([[rule.step_mixture and lane.mixture is None] for lane in lanes])
        self.any_step_b = bool(self.step_b.any())


class OnlineBlock:
    """Online lanes `[start, start + L)` of `X` (module docstring), in groups of one rule each."""

    def __init__(self, lanes: list[OnlineLane], start: int, n: int, settings: Any) -> None:
        from psipo_cli.config.schedules import factor

        self.lanes, self.start, self.stop, self.n = lanes, start, start + len(lanes), n
        rules = list(dict.fromkeys(lane.rule for lane in lanes))
        self.groups = []
        for rule in rules:
            idx = np.array([i for i, lane in enumerate(lanes) if lane.rule == rule])
            self.groups.append(_Group(rule, idx, [lanes[i] for i in idx]))
        self.md = settings.optimizer == "md"
        self.lr, self.T = settings.lr, settings.steps
        self.schedule, self.final = settings.lr_schedule, settings.lr_final
        self.factor = factor
        self.batch = settings.batch_size
        self.seed = settings.seed
        self.streams = sorted({lane.stream for lane in lanes if lane.stream is not None})
        self.of_stream = np.array([self.streams.index(lane.stream) if lane.stream else 0 for lane in lanes])
        self.G = np.zeros((len(lanes), n))
        self.group_streams = [self.of_stream[group.idx] for group in self.groups]
        self.reset_streams()

    def dead_rows(self) -> list[int]:
        return []  # P, tau and the reference are finite: so is every score

    def reset_streams(self) -> None:
        self.t0, self._count = 0, 0
        self.rngs = [np.random.default_rng(np.random.SeedSequence([self.seed, k, c, STREAM_KEY]))
                     for k, c in self.streams]

    def prepare(self, count: int) -> None:
        """The uniforms of the next `count` steps: per stream `(count, 2, 3, B)` (two batches for the
        extragradient's two evaluations; three uniforms per pair: `y`, `y'`, the label), stacked as
        `(count, streams, 2, 3, B)`; a group's lanes read their streams' rows at each step."""
        self.t0 += self._count  # the steps of the previous chunk
        self._count = count
        if self.batch > 0:
            self.uniforms = np.stack([rng.random((count, 2, 3, self.batch)) for rng in self.rngs], axis=1)

    def rate(self, t: int) -> float:
        """The learning rate `lr_t` of step `t` (the optimiser's: `schedules.factor`)."""
        return self.lr * self.factor(self.schedule, t, self.T, self.final)

    def mixtures(self, group: _Group, t: int) -> np.ndarray:
        """`b` of the group's lanes at step `t` (lanes, 1)."""
        if not group.any_step_b:
            return group.fixed_b
        return np.where(group.step_b, np.minimum(1.0, self.rate(t) * group.tau), group.fixed_b)

    def direction(self, group: _Group, X: np.ndarray, b: np.ndarray, u: np.ndarray | None,
                  opponent: np.ndarray) -> np.ndarray:
        """What the optimiser applies at the group's offsets `X` against the opponent `mix_b` of the offsets
        `opponent` (module docstring); `u` (lanes, 3, B) the step's uniforms, None at full batch."""
        pi = softmax_policy(group.log_pi_ref, X)
        m = updates.mixture(group.log_pi_ref, opponent, b)
        if u is None:
            g = updates.score(X, group.P, m, group.tau, group.support)
            if self.md:
                return g
            return 4.0 / group.tau * updates.centred(m, g) if group.ipo else updates.centred(pi, g)
        return self._sampled(group, X, pi, m, u)

    def _sampled(self, group: _Group, X: np.ndarray, pi: np.ndarray, m: np.ndarray, u: np.ndarray) -> np.ndarray:
        L, n, B = X.shape[0], self.n, self.batch
        lanes = np.arange(L)[:, None]
        if self.md:
            first = np.where(group.support, 1.0 / group.n_support, 0.0)  # uniform on supp pi_ref
        else:
            first = m if group.ipo else pi
        y, y2 = draw(first, u[:, 0]), draw(m, u[:, 1])
        o = u[:, 2] < group.P[lanes, y, y2]  # y beats y'
        flat = (lanes * n + y).ravel()
        if self.md:
            wins = np.bincount(flat, o.ravel().astype(float), L * n).reshape(L, n)
            estimate = group.n_support * wins / B  # E = (P m)_k
            return np.where(group.support, group.tau * X - estimate, 0.0)
        if group.ipo:  # winner and loser by the label, 2 (h - 1/(2 tau)) (e_w - e_l) averaged
            w, loser = np.where(o, y, y2), np.where(o, y2, y)
            c = (2.0 * (X[lanes, w] - X[lanes, loser] - 0.5 / group.tau) / B).ravel()
            return (np.bincount((lanes * n + w).ravel(), c, L * n)
                    - np.bincount((lanes * n + loser).ravel(), c, L * n)).reshape(L, n)
        # policy gradient: -(o - 1/2)(e_y - pi) averaged, plus the exact KL gradient tau pi (X - pi·X)
        r = (o - 0.5).astype(float)
        pg = -np.bincount(flat, r.ravel(), L * n).reshape(L, n) / B + pi * r.mean(axis=1, keepdims=True)
        return pg + group.tau * updates.centred(pi, np.where(group.support, X, 0.0))

    def gradient(self, X: np.ndarray, i: int) -> np.ndarray:
        """The block's direction at the `i`-th step of the current chunk, group by group. EGPO lanes take it
        from `X` against the opponent at the half step `X - lr_t d(X)` (extragradient: `pi_{t+1} ∝
        pi_t^(1 - eta tau) pi_ref^(eta tau) exp(eta P pi_{t+1/2})`)."""
        t = self.t0 + i + 1
        Xb = X[self.start : self.stop]
        for k, group in enumerate(self.groups):
            Xg = Xb[group.idx]
            b = self.mixtures(group, t)
            u = None if self.batch == 0 else self.uniforms[i, self.group_streams[k]]
            d = self.direction(group, Xg, b, None if u is None else u[:, 0], Xg)
            if group.extragradient:
                half = Xg - self.rate(t) * d
                d = self.direction(group, Xg, b, None if u is None else u[:, 1], half)
            self.G[group.idx] = d
        return self.G


def draw(q: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF draws: row `l` of `q` (L, n) at the uniforms `u` (L, B) -> action indices (L, B)."""
    cum = np.cumsum(q, axis=1)
    idx = (cum[:, None, :] <= u[:, :, None] * cum[:, -1:, None]).sum(axis=2)
    return np.minimum(idx, q.shape[1] - 1)
