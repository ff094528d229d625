"""The names psipo's tables are made of, each written once: solvers, statuses and the columns of every
table (`docs/outputs.md` documents them). No imports: every layer (solvers, metrics, outputs, sweep) reads
its names from here.
"""

from __future__ import annotations

# -- solvers ----------------------------------------------------------------------------------------------
EXACT = "exact"
GRADIENT = "gradient"
#: The order of solver rows in every table (exact first).
SOLVER_ORDER = (EXACT, GRADIENT)

# -- statuses ---------------------------------------------------------------------------------------------
#: Exact solver (README, "What the exact solver reports").
OPTIMAL = "optimal"  # the objective attains its optimum; the policy is it (first-order conditions hold)
DIVERGED = "diverged"  # no minimiser on the data: the policy is the limit of every minimising sequence
LIMIT = "limit"  # the population objective is infinite (Psi(0) or Psi(1) infinite): the eps -> 0 limit
UNBOUNDED = "unbounded"  # the loss goes to -inf (rDPO on deterministic data): no optimum, no limit policy
SET = "set"  # the minimisers form a set: the policy is one documented point of it (the detail says which)
LOCAL = "local"  # not convex: the policy is the best point of a documented multi-start search
AVERAGE = "average"  # the last iterate need not converge (SPPO on a cycle): the policy is the limit of its average
UNDEFINED = "undefined"  # no exact answer (APO-down): the infimum's limit policy depends on the path
#: Gradient engine (README, "Gradient statuses").
CONVERGED = "converged"
RUNNING = "running"
STALLED = "stalled"
#: A summary over contexts whose statuses differ.
MIXED = "mixed"
EXACT_STATUSES = (OPTIMAL, DIVERGED, LIMIT, UNBOUNDED, SET, LOCAL, AVERAGE, UNDEFINED)
GRADIENT_STATUSES = (CONVERGED, RUNNING, STALLED)

# -- columns ----------------------------------------------------------------------------------------------
METRIC_NAMES = (
    "kl", "entropy", "loss", "win_rate_ref", "win_rate_mu", "reward", "tv_to_optimum", "grad_norm", "noise",
    "tv_to_exact", "nash_gap", "exploitability",
)
POLICY_COLUMNS = ["method", "tau", "solver", "context", "action", "prob", "prob_lo", "prob_hi"]
METRIC_COLUMNS = ["method", "tau", "solver", "context", "status", *METRIC_NAMES, "seeds", "objective", "detail"]
CURVE_COLUMNS = ["step", "method", "tau", "context", "action", "mean", "lo", "hi"]
#: The duality gap of the regularised game (`nash_gap`) at each recorded step of a gradient run.
GAP_CURVE_COLUMNS = ["step", "method", "tau", "context", "mean", "lo", "hi"]
TAU_GRID_COLUMNS = ["method", "tau", "context", "action", "prob", "kl", "win_rate_ref", "status"]
SUMMARY_COLUMNS = [c for c in METRIC_COLUMNS if c != "context"]
REWARD_COLUMNS = ["method", "tau", "solver", "context", "action", "reward"]
RUN_COLUMNS = [
    "method", "tau", "solver", "context", "seed", "action", "prob", "status", "loss", "grad_norm", "noise", "detail"
]
LOGIT_GAP_COLUMNS = ["tau", "context", "model", "dpo_status", "psipo_logit_status", "tv"]
#: A run on a preference dataset: each context id's prompt and each action id's completion.
CONTEXT_TABLE_COLUMNS = ["context", "prompt", "completions", "comparisons", "ties"]
ACTION_TABLE_COLUMNS = ["context", "action", "completion", "pi_ref", "wins", "losses"]
#: The ranking each objective induces on a non-transitive model (`psipo_cli.methods.nash.social`): rank 1 is
#: the best; `cycle` lists the majority relation's cycles (the same on every row of a context); `condorcet` is
#: 1 on the Condorcet winner, if any, else 0.
SOCIAL_CHOICE_COLUMNS = [
    "context", "action", "cycle", "condorcet", "bradley_terry", "bradley_terry_rank", "borda", "borda_rank",
    "lottery", "lottery_rank",
]

#: The layout of every CSV file a run directory may hold, by file stem (`runs.csv` holds `Frames.per_seed`).
FRAME_COLUMNS: dict[str, list[str]] = {
    "policy": POLICY_COLUMNS,
    "metrics": METRIC_COLUMNS,
    "curves": CURVE_COLUMNS,
    "gap_curves": GAP_CURVE_COLUMNS,
    "tau_grid": TAU_GRID_COLUMNS,
    "summary": SUMMARY_COLUMNS,
    "rewards": REWARD_COLUMNS,
    "runs": RUN_COLUMNS,
    "logit_gap": LOGIT_GAP_COLUMNS,
    "contexts": CONTEXT_TABLE_COLUMNS,
    "actions": ACTION_TABLE_COLUMNS,
    "social_choice": SOCIAL_CHOICE_COLUMNS,
}

#: Columns that hold names (methods, solvers, contexts, actions, statuses). They are read back as strings
#: whatever they look like: an action called "1" or "NA" must stay that string.
TEXT_COLUMNS = (
    "method", "solver", "context", "action", "status", "objective", "detail", "model", "dpo_status",
    "psipo_logit_status", "prompt", "completion", "cycle",
)

#: `results.csv` of a sweep: the keys of a cell row, the policy, the metrics (those of `metrics.csv` that a
#: sweep reports), then `context_weight`; swept settings go after `n` (`psipo_cli.sweep.compute`).
RESULT_KEYS = ["problem", "n", "method", "tau", "solver", "context", "action"]
RESULT_POLICY = ["prob", "prob_lo", "prob_hi"]
RESULT_METRICS = [
    "status", "kl", "entropy", "loss", "win_rate_ref", "win_rate_mu", "reward", "tv_to_optimum", "grad_norm",
    "nash_gap", "exploitability", "seeds", "objective", "detail",
]

#: The start of the note on an exact answer that is one point of a set of optimal policies (the report
#: recognises answers by it).
GAUGE_NOTE = "the comparisons leave"
