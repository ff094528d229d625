"""The `reference-free` family: losses of the log-probabilities themselves plus a negative log-likelihood of
the winner (CPO, ORPO)."""
