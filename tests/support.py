"""Calling the shipped exact solvers on raw arrays, for tests: the family's `solve_exact`, one tau."""

from __future__ import annotations

from typing import Any

import numpy as np

from psipo_cli.methods import Solution, get_method
from psipo_cli.solvers.inputs import MethodInputs


def exact_solution(name: str, *arrays: Any, **options: Any) -> Solution:
    """The exact `Solution` of method `name` at one tau, through its family's driver.

    Arguments as the method sees a context: `(W, pi_ref, tau)` for a family on comparisons,
    `(pi_ref, mu, P, tau)` for one on preferences.
    """
    method = get_method(name)
    if method.family.on_comparisons:
        W, pi_ref, tau = arrays
        inputs = MethodInputs(np.asarray(pi_ref, float), np.asarray(pi_ref, float), W=np.asarray(W, float))
    else:
        pi_ref, mu, P, tau = arrays
        inputs = MethodInputs(np.asarray(pi_ref, float), np.asarray(mu, float), P=np.asarray(P, float))
    return method.solve_exact(inputs, [tau], **options)[0]
