"""Solvers layer: exact dispatch and the vectorised gradient engine (DESIGN §2-3)."""
