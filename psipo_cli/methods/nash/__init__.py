"""The `game` family: the Nash equilibrium of the KL-regularised preference game (Munos et al., arXiv
2312.00886), its certificate, and the unregularised answers (maximal lottery, Condorcet winner)."""
