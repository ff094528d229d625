"""Population ΨPO (paper Eq. 6): KL-regularised maximisation of `g(y) = sum_y' mu(y') Psi(P[y, y'])`."""
