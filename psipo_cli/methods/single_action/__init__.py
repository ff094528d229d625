"""The `single-action` family: losses that are sums of a term of the winner's offset and one of the loser's
(NCA, BCO, SPPO-hard, APO-zero, KTO) — and APO-down, which is not, and has no exact optimum."""
