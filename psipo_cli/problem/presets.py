"""Built-in problems (docs/files.md), written as the same tables a problem file holds."""

from __future__ import annotations

from typing import Any

from psipo_cli.errors import InputError
from psipo_cli.problem.model import Problem

PRESETS: dict[str, dict[str, Any]] = {
    "paper-d1": {
        "description": "Paper §5.4 (Figure 1): D1 = {(a, b), (b, c), (a, c)}, each pair once; "
        "the total order a > b > c as the preference model.",
        "actions": ["a", "b", "c"],
        "order": ["a", "b", "c"],
        "pairs": [
            {"winner": "a", "loser": "b"},
            {"winner": "b", "loser": "c"},
            {"winner": "a", "loser": "c"},
        ],
    },
    "paper-d3": {
        "description": "Our reading of the paper's D3 (§5.4, Figure 2): {(a, b), (b, a), (b, c)}. "
        "The printed D3 = {(a, b), (b, a)} leaves c out of every loss and cannot produce the effect "
        "the paper describes (pi(c) -> 0); the pair (b, c) is added. No preference model.",
        "notes": ["deviates from the printed D3: adds the pair (b, c)"],
        "actions": ["a", "b", "c"],
        "pairs": [
            {"winner": "a", "loser": "b"},
            {"winner": "b", "loser": "a"},
            {"winner": "b", "loser": "c"},
        ],
    },
    "paper-two-actions": {
        "description": "Paper §5.3.1: two actions, p(y1 > y2) = 1, uniform pi_ref = mu, no data "
        "(population objectives). IPO's optimum is pi(y1) = sigmoid(1 / (2 tau)).",
        "actions": ["y1", "y2"],
        "preferences": [[0.5, 1.0], [0.0, 0.5]],
    },
    "cycle": {
        "description": "D2: the non-transitive cycle a > b > c > a, deterministic, each pair once.",
        "actions": ["a", "b", "c"],
        "preferences": [[0.5, 1.0, 0.0], [0.0, 0.5, 1.0], [1.0, 0.0, 0.5]],
        "pairs": [
            {"winner": "a", "loser": "b"},
            {"winner": "b", "loser": "c"},
            {"winner": "c", "loser": "a"},
        ],
    },
    "bt-finite": {
        "description": "Bradley-Terry model with rewards (1, 0.5, 0, -0.5) and a sampled dataset of 20 "
        "comparisons from mu = pi_ref = uniform (one dataset per seed for gradient runs).",
        "actions": ["a", "b", "c", "d"],
        "rewards": [1.0, 0.5, 0.0, -0.5],
        "sample": {"n": 20, "seed": 0},
    },
}


def preset_table(name: str) -> dict[str, Any]:
    """The TOML-shaped table of a preset (a copy, with its name)."""
    if name not in PRESETS:
        raise InputError("problem", name, f"unknown preset or missing file (presets: {', '.join(PRESETS)})")
    import copy

    return {"name": name, **copy.deepcopy(PRESETS[name])}


def preset(name: str) -> Problem:
    from psipo_cli.problem.loading import build_problem

    return build_problem(preset_table(name), source=f"preset:{name}")
