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
