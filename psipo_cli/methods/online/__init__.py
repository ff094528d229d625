"""The online / self-play family: methods whose opponent is the current policy (or its mixture with pi_ref),
chasing the equilibrium of the KL-regularised preference game (`family`, `updates`, `block`)."""
