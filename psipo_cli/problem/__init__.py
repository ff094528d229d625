"""Problem layer: data model, presets, loading and validation (DESIGN §1, §6)."""

from __future__ import annotations

from pathlib import Path

from psipo_cli.problem.loading import build_problem, load_problem
from psipo_cli.problem.model import (
    DEFAULT_CONTEXT,
    Context,
    Problem,
    Sample,
    bradley_terry_matrix,
    expected_wins,
    order_matrix,
    problem_table,
    realise,
)
from psipo_cli.problem.presets import PRESETS, preset

__all__ = [
    "DEFAULT_CONTEXT",
    "PRESETS",
    "Context",
    "Problem",
    "Sample",
    "bradley_terry_matrix",
    "build_problem",
    "expected_wins",
    "get_problem",
    "load_problem",
    "order_matrix",
    "preset",
    "problem_table",
    "realise",
]


def get_problem(spec: str | Path | Problem | dict) -> Problem:
    """A problem from a preset name, a TOML file, an inline table, or a `Problem` (returned as is)."""
    if isinstance(spec, Problem):
        return spec
    if isinstance(spec, dict):
        return build_problem(spec, source="inline")
    text = str(spec)
    if text in PRESETS:
        return preset(text)
    return load_problem(text)
