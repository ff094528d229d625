"""The hinge loss `max(0, 1 - tau h)` of SLiC (Zhao et al. 2023, arXiv 2305.10425) and RSO (Liu et al. 2023,
arXiv 2309.06657; TRL `hinge`, "beta is the reciprocal of the margin"): GPO's `hinge` function.

Minimal on the half-line `tau h >= 1`, so its minimisers form a polyhedron (`Exact.SET`): the exact answer
is the point sub-gradient flow from pi_ref reaches (`polyhedral.hinge_flow`); on the paper's D1 it is
`r_a - r_b = r_b - r_c = 1`.
"""

from __future__ import annotations

from psipo_cli.methods.pairwise.family import PAIRWISE
from psipo_cli.methods.pairwise.gpo import HINGE as LOSS
from psipo_cli.methods.spec import Method

HINGE = Method("hinge", "SLiC / RSO hinge loss max(0, 1 - tau h) (arXiv 2305.10425, 2309.06657)", PAIRWISE,
               trl="hinge", loss=LOSS, formula="max(0, 1 - tau h)")
