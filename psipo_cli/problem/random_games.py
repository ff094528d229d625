"""Random preference problems (`psipo problem random`): the random preference matrices of game-theoretic
studies of preference learning (e.g. the tabular simulations of Zhou et al., extragradient preference
optimisation, and of Munos et al., arXiv 2312.00886), written as problem files.

Kinds (`n` actions, uniform `pi_ref = mu`, no data: the population objective):

- `bt`: Bradley–Terry, `P[y, y'] = sigmoid(r_y - r_y')` with rewards `r ~ N(0, 1)` (transitive);
- `nontransitive`: every pair independent, `P[y, y'] ~ U(0, 1)` for `y > y'` and `P[y', y] = 1 - P[y, y']`
  (in general neither transitive nor cyclic: a Condorcet winner may exist);
- `cyclic`: a generalised rock–paper–scissors: with the actions on a circle, `y` beats each of the next
  `ceil(n / 2) - 1` actions with probability `1/2 + m`, `m ~ U(0, 1/2)` per pair (and loses to the previous
  ones); for even `n` the opposite action ties. No action beats every other one: no Condorcet winner.

The same `(n, kind, seed)` gives the same file, byte for byte (numpy's `default_rng(seed)`; values rounded to
6 decimals, so that `P + P^T = 1` holds in the written decimals).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from psipo_cli.errors import InputError

KINDS = ("bt", "nontransitive", "cyclic")
DIGITS = 6


def random_table(actions: int, kind: str, seed: int) -> dict[str, Any]:
    """The problem table (TOML layout, docs/files.md) of a random game of `actions` actions of `kind`."""
    if isinstance(actions, bool) or not isinstance(actions, int) or actions < 2:
        raise InputError("--actions", actions, "must be an integer >= 2")
    if kind not in KINDS:
        raise InputError("--kind", kind, f"must be one of {', '.join(KINDS)}")
    if kind == "cyclic" and actions < 3:
        raise InputError("--actions", actions, "a cyclic game needs at least 3 actions")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError("--seed", seed, "must be a non-negative integer")
    rng = np.random.default_rng(seed)
    n = actions
    names = [f"y{i}" for i in range(n)]
    table: dict[str, Any] = {
        "name": f"random-{kind}-{n}-seed{seed}",
        "description": f"psipo problem random --actions {n} --kind {kind} --seed {seed}",
        "actions": names,
    }
    if kind == "bt":
        table["rewards"] = [round(float(r), DIGITS) for r in rng.standard_normal(n)]
        return table
    P = np.full((n, n), 0.5)
    lower = np.tril_indices(n, -1)
    if kind == "nontransitive":
        P[lower] = np.round(rng.uniform(0.0, 1.0, len(lower[0])), DIGITS)
    else:
        i, j = lower  # i > j: i is (i - j) steps after j on the circle
        ahead = (j - i) % n  # steps from i forward to j
        margin = np.round(rng.uniform(0.0, 0.5, len(i)), DIGITS)
        sign = np.where(ahead < n - ahead, 1.0, np.where(ahead > n - ahead, -1.0, 0.0))
        P[lower] = np.round(0.5 + sign * margin, DIGITS)
    P[lower[1], lower[0]] = np.round(1.0 - P[lower], DIGITS)
    table["preferences"] = [[float(v) for v in row] for row in P]
    return table


def table_toml(table: dict[str, Any]) -> str:
    """A problem table of strings, lists of strings, lists of numbers and matrices as TOML text."""
    lines = []
    for key, value in table.items():
        if isinstance(value, str):
            lines.append(f"{key} = {_string(value)}")
        elif value and isinstance(value[0], list):
            rows = ",\n".join("  [" + ", ".join(repr(v) for v in row) + "]" for row in value)
            lines.append(f"{key} = [\n{rows},\n]")
        else:
            lines.append(f"{key} = [" + ", ".join(_string(v) if isinstance(v, str) else repr(v) for v in value) + "]")
    return "\n".join(lines) + "\n"


def _string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


__all__ = ["KINDS", "random_table", "table_toml"]
