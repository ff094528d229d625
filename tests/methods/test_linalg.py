"""The comparison graphs of `psipo_cli.methods.linalg`: dense and sparse routes agree.

Every expected value here is derived by hand (the derivation is in a comment), or computed from a loss
written out in this file from its definition (finite differences, scipy.optimize on the raw loss), or
read off a theorem of the paper. Nothing is computed with the helpers of the code under test.

Conventions of the code under test that the tests rely on (the README's "Exact solutions"):
- offsets `delta = log(pi / pi_ref)`, policies `pi ∝ pi_ref exp(delta)`;
- dataset losses are means over the recorded comparisons (same minimiser as the sums);
- RLHF's reward model is `mean_{(w,l)} -log sigmoid(r_w - r_l) + (rm_l2 / 2) ||r||^2`;
- canonical gauge: offsets sum to zero on each weakly connected component, zero on absent actions.
"""

from __future__ import annotations

import numpy as np
import pytest


def test_dense_and_sparse_comparison_graphs_give_the_same_components(monkeypatch: pytest.MonkeyPatch) -> None:
    # Small graphs use a boolean transitive closure, large ones scipy's csgraph: on random graphs both
    # must induce the same partitions (labels themselves may differ) and the same separating comparisons.
    import psipo_cli.methods.linalg as pairwise

    rng = np.random.default_rng(7)
    for _ in range(200):
        n = int(rng.integers(2, 25))
        W = (rng.random((n, n)) < rng.random() * 0.3) * rng.integers(1, 4, (n, n)).astype(float)
        np.fill_diagonal(W, 0.0)
        dense = pairwise.comparison_graph(W)
        monkeypatch.setattr(pairwise, "DENSE_GRAPH_UP_TO", 0)
        sparse = pairwise.comparison_graph(W)
        monkeypatch.undo()
        for a, b in ((dense.strong, sparse.strong), (dense.weak, sparse.weak)):
            assert np.array_equal(a[:, None] == a[None, :], b[:, None] == b[None, :])
        assert np.array_equal(dense.separating, sparse.separating)


def test_rlhf_fit_whose_curvatures_span_hundreds_of_decades_does_not_fail() -> None:
    # Found by a random fuzzer run: a population with rewards (0, -106.8, 623.2, 762.7) and mu = pi_ref with
    # pi_ref(a3) = 3.6e-33. The Bradley-Terry fit's Newton Hessians are Laplacians with curvature weights
    # W sigma'(z_w - z_l) from 1e-47 down to 1e-249: singular in floating point (LinAlgError). In exact
    # arithmetic RLHF's optimum is pi ∝ pi_ref exp(r / tau) with the true rewards; at tau = 1e-4 a3's weight
    # beats a2's by 1e-32 exp(139.5 / 1e-4), so the answer is one-hot on a3.
    import warnings

    from psipo_cli import api
    from psipo_cli.problem import build_problem

    pi_ref = [0.35810291749026846, 0.35810291749026846, 0.28379416501946303, 3.581029174902685e-33]
    problem = build_problem({"name": "wide", "actions": ["a0", "a1", "a2", "a3"], "pi_ref": pi_ref,
                             "rewards": [-1.175494351e-35, -106.7794144095145, 623.2425928989853, 762.7354779588406]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frames = api.solve(problem, "rlhf", [1e-4], solver="exact", objective="population")
    np.testing.assert_array_equal(frames.policy.sort_values("action")["prob"].to_numpy(), [0.0, 0.0, 0.0, 1.0])


def test_a_laplacian_singular_in_floating_point_gets_its_least_squares_solution() -> None:
    # The Laplacian of one edge, not grounded, is exactly singular (as a grounded one becomes in floating
    # point when its weights span hundreds of decades): x0 - x1 = 1 has the least-norm solution (1/2, -1/2).
    from psipo_cli.methods.linalg import _dense_solve

    A = np.array([[1.0, -1.0], [-1.0, 1.0]])
    np.testing.assert_allclose(_dense_solve(A, np.array([1.0, -1.0])), [0.5, -0.5])
