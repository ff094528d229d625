"""Reward model + policy: fit a reward on the comparisons, then the KL-regularised policy (paper Eqs. 2-3)."""
