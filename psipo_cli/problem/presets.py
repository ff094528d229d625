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


#: The paper's names of its datasets (arXiv 2310.12036 §5.4): D1 and D3 of Figures 1-2, and D2, the cycle.
ALIASES: dict[str, str] = {"D1": "paper-d1", "D2": "cycle", "D3": "paper-d3"}


def preset_name(spec: Any) -> str | None:
    """The preset `spec` names (a preset's own name, or an alias in `ALIASES`, any case), else None."""
    if not isinstance(spec, str):
        return None
    return spec if spec in PRESETS else ALIASES.get(spec.upper())


def presets_text() -> str:
    """The presets and aliases, for error messages."""
    return ", ".join(PRESETS) + "; aliases " + ", ".join(f"{a} = {n}" for a, n in ALIASES.items())


def preset_table(name: str) -> dict[str, Any]:
    """The TOML-shaped table of a preset or alias (a copy, with the preset's own name)."""
    import copy

    canonical = _canonical(name)
    return {"name": canonical, **copy.deepcopy(PRESETS[canonical])}


def preset(name: str) -> Problem:
    """The built-in problem `name` (a preset or an alias)."""
    from psipo_cli.problem.loading import build_problem

    return build_problem(preset_table(name), source=f"preset:{_canonical(name)}")


def _canonical(name: str) -> str:
    from psipo_cli.errors import did_you_mean

    canonical = preset_name(name)
    if canonical is None:
        raise InputError("problem", name, f"not a preset nor a file{did_you_mean(name, [*PRESETS, *ALIASES])} "
                                          f"(presets: {presets_text()})")
    return canonical
