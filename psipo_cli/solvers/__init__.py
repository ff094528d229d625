"""Solvers layer: exact dispatch and the vectorised gradient engine (docs/maths.md §2-3)."""
