"""``report.md``: what was run, the comparison table, the figures, and what the exact solver found.

The findings are generated from the policy and metrics frames — one sentence per method about its exact
solution (``DPO diverged for every tau: pi(b) = pi(c) = 0.``), then a note wherever the last gradient step
is not where the exact solver says the objective leads, saying whether the gradient run is still moving.
This module formats; every number in it comes from the frames.

The config is read leniently (a missing key is left out, or taken from the frames): ``command``; the
problem (see `figures.problem_info`); ``description`` (of the experiment); ``methods`` (names, or tables
with ``method``/``label`` and their options as further keys or under ``options``); ``tau``; ``solver``;
``objective`` (``auto`` is replaced by the objective the frames record); the gradient settings as a
table under ``gradient`` or ``settings``, or as the flat keys ``steps, lr, batch_size, optimizer, seeds,
seed, rm_steps, eps`` that `psipo_cli.solvers.experiment.RunConfig` records.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from psipo_cli.outputs.figures import problem_info, problem_title
from psipo_cli.outputs.formatting import (
    LOGIT_GAP_COLUMNS,
    METRIC_COLUMNS,
    REWARD_COLUMNS,
    SOCIAL_CHOICE_COLUMNS,
    SUMMARY_COLUMNS,
    fmt_list,
    fmt_num,
    fmt_policy,
    fmt_prob,
    fmt_tau,
    is_missing,
    method_prose,
    records,
    unique,
)
from psipo_cli.outputs.tables import (
    Comparison,
    ComparisonRow,
    SolverCell,
    comparison_rows,
    describe_policy,
    one_minus_note,
)
from psipo_cli.schema import GAUGE_NOTE

if TYPE_CHECKING:
    import pandas as pd

#: Total variation between the gradient's last step and the exact solution above which they "disagree".
DISAGREEMENT_TV = 0.01
#: A probability at or below this is reported as zero in the findings (the exact solver's zeros are 0.0).
ZERO = 1e-12


#: The run directory's further tables the report quotes (absent in directories of older versions).
REPORT_TABLES = ("summary", "rewards", "logit_gap", "social_choice")

#: Gradient settings recorded as flat config keys (as `RunConfig` does).
GRADIENT_KEYS = ("optimizer", "lr", "steps", "batch_size", "seeds", "seed", "rm_steps", "eps")

FIGURE_CAPTIONS = {
    "curves": "Learning curves (seed mean and 95% CI; exact solution dashed)",
    "policy_vs_tau": "Exact policy against tau (gradient results as points with 95% CI)",
    "frontier": "KL(pi || pi_ref) against the win rate over pi_ref",
}


def _md(text: Any) -> str:
    """A value safe inside a markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _config_value(config: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        if config.get(key) not in (None, "", [], {}):
            return config[key]
    return None


def _describe_methods(config: Mapping[str, Any], policy: pd.DataFrame) -> str:
    methods = config.get("methods")
    if not methods:
        return ", ".join(unique(policy["method"]))
    if isinstance(methods, str | Mapping):
        methods = [methods]
    parts = []
    for m in methods:
        if not isinstance(m, Mapping):
            parts.append(str(m))
            continue
        label = m.get("label") or m.get("method") or "?"
        options = dict(m.get("options") or {})  # a table, or (key, value) pairs as in `MethodSpec`
        options.update({k: v for k, v in m.items() if k not in ("method", "label", "options")})
        opts = ", ".join(f"{k} = {v}" for k, v in options.items() if v is not None)
        base = m.get("method")
        detail = ", ".join(x for x in (base if base and base != label else "", opts) if x)
        parts.append(f"{label} ({detail})" if detail else str(label))
    return ", ".join(parts)


def _gradient_settings(config: Mapping[str, Any]) -> str:
    settings = _config_value(config, "gradient", "settings")
    if not isinstance(settings, Mapping):
        settings = {k: config[k] for k in GRADIENT_KEYS if k in config}
    return ", ".join(
        f"{k} = {v}" for k, v in settings.items() if v is not None and not isinstance(v, Mapping | list)
    )


def _what_was_run(
    config: Mapping[str, Any], policy: pd.DataFrame, metrics: pd.DataFrame, command: str
) -> list[str]:
    info = problem_info(config)
    name = info["name"] or "problem"
    lines = [f"- **Command**: `psipo {command}`" if command else None]
    if config.get("description"):
        lines.append(f"- **Experiment**: {config['description']}")
    source = info["source"]
    lines.append(f"- **Problem**: {name}" + (f" (`{source}`)" if source and source != name else ""))
    if info["description"]:
        lines.append(f"  — {info['description']}")
    lines += dataset_lines(config)
    lines.append(f"- **Methods**: {_describe_methods(config, policy)}")
    taus = config.get("tau") or config.get("taus") or sorted(unique(float(t) for t in policy["tau"]))
    taus = taus if isinstance(taus, list | tuple) else [taus]
    lines.append(f"- **tau** (DPO's beta): {', '.join(fmt_tau(t) for t in taus)}")
    solver = config.get("solver") or ", ".join(unique(policy["solver"]))
    lines.append(f"- **Solver**: {solver}")
    # The objective the solvers used (the frames know it), rather than a configured "auto".
    objective = ""
    if "objective" in metrics.columns and len(metrics):
        objective = ", ".join(str(o) for o in unique(metrics["objective"]) if not is_missing(o))
    objective = objective or str(config.get("objective") or "")
    if objective:
        lines.append(f"- **Objective**: {objective}")
    settings = _gradient_settings(config)
    if settings and "gradient" in set(policy["solver"]):
        lines.append(f"- **Gradient settings**: {settings}")
    lines.append("- Everything resolved is in `config.json`; versions and command line in `manifest.json`.")
    return [line for line in lines if line]


def dataset_lines(config: Mapping[str, Any]) -> list[str]:
    """The dataset a run read (``problem_resolved.dataset`` of `config.json`): file, layout, SHA-256, counts
    and the rows skipped by ``--skip-bad-rows`` (with the first few reasons); none for other problems."""
    table = config.get("problem_resolved")
    record = table.get("dataset") if isinstance(table, Mapping) else None
    if not isinstance(record, Mapping):
        return []
    from psipo_cli.problem.datasets.data import count_text

    lines = [
        f"- **Dataset**: `{record.get('path')}` ({record.get('format')}, {record.get('bytes'):,} bytes, sha256 "
        f"`{record.get('sha256')}`): {record.get('prompts'):,} prompt(s), {record.get('completions'):,} "
        f"completions, {count_text(record.get('comparisons'))} comparisons, {count_text(record.get('ties'))} "
        f"ties; {record.get('rows_read'):,} rows read, {record.get('rows_skipped'):,} skipped"
        + (" (--skip-bad-rows)" if record.get("rows_skipped") else "")
    ]
    lines += [f"  - skipped: {_md(str(line))}" for line in record.get("skipped") or ()]
    return lines


# -- findings -------------------------------------------------------------------------------------------
def _tau_list(taus: Sequence[float]) -> str:
    return "tau = " + fmt_list([fmt_tau(t) for t in taus])


def _zero_clause(zeros: Sequence[str]) -> str:
    return " = ".join(f"pi({a})" for a in zeros) + " = 0"


def _context_finding(comparison: Comparison, rows: list[ComparisonRow]) -> str:
    """The exact solver's story for one method in one context, as a clause (no subject, no full stop)."""
    actions = comparison.actions
    exact = [(r.tau, r.cells["exact"]) for r in rows if "exact" in r.cells]
    if not exact:
        return "was not solved exactly (gradient runs only)"
    taus = [t for t, _ in exact]
    statuses = [c.status for _, c in exact]
    every = "for every tau" if len(exact) > 1 else f"at tau = {fmt_tau(taus[0])}"
    probs = [[(float(p) if not is_missing(p) else float("nan")) for p in c.probs] for _, c in exact]
    zeros = [a for k, a in enumerate(actions) if all(p[k] <= ZERO for p in probs)]
    same = all(max(abs(x - y) for x, y in zip(p, probs[0], strict=True)) < 1e-9 for p in probs)
    if len(set(statuses)) > 1:
        groups = {s: [t for t, st in zip(taus, statuses, strict=True) if st == s] for s in unique(statuses)}
        text = "is " + "; ".join(f"{s} at {_tau_list(ts)}" for s, ts in groups.items())
        if zeros:
            text += f", and {_zero_clause(zeros)} {every}"
        return text
    status = statuses[0]
    if status in ("diverged", "limit"):
        verb = "diverged" if status == "diverged" else "reaches its limit policy"
        text = f"{verb} {every}"
        if zeros:
            text += f": {_zero_clause(zeros)}"
            if same and len(exact) > 1:
                text += ", whatever tau"
        else:
            text += f"; limit policy {fmt_policy(actions, probs[0])}"
        return text
    if status == "unbounded":
        text = f"is unbounded below {every} (the loss goes to -inf; no optimum)"
        if zeros:
            text += f": gradient flow's policy tends to {fmt_policy(actions, probs[0])}, {_zero_clause(zeros)}"
        return text
    heads = {
        "optimal": f"is optimal {every}",
        # One point of a set of minimisers, or the best of several local minima: what is reported and why is
        # in the detail (`exact_details`).
        "set": f"has a set of minimisers {every}; reported: the point gradient flow from pi_ref reaches",
        "local": f"is not convex; reported {every}: the best local minimum of a multi-start search",
    }
    if status in heads:
        interior = all(p > ZERO for row in probs for p in row)
        text = heads[status]
        text += " and stays strictly inside the simplex" if interior else ""
        if len(exact) == 1:
            return text + f": pi = {fmt_policy(actions, probs[0])}"
        if same:
            return text + f"; the policy does not depend on tau: {fmt_policy(actions, probs[0])}"
        top = max(range(len(actions)), key=lambda k: probs[0][k])  # the favourite at the smallest tau
        first, last = probs[0][top], probs[-1][top]
        verb = "falls" if last < first else "rises"
        text += (
            f"; pi({actions[top]}) {verb} from {fmt_prob(first)} at tau = {fmt_tau(taus[0])}"
            f" to {fmt_prob(last)} at tau = {fmt_tau(taus[-1])}"
        )
        if zeros:
            text += f", with {_zero_clause(zeros)} throughout"
        return text
    return f"ended with status {status} {every}"


def method_findings(comparison: Comparison) -> dict[str, str]:
    """One sentence per method about what the exact solver found (all its taus and contexts)."""
    out = {}
    for method in unique(r.method for r in comparison.rows):
        clauses = []
        for context in comparison.contexts:
            rows = [r for r in comparison.rows if r.method == method and r.context == context]
            if rows:
                clause = _context_finding(comparison, rows)
                several = len(comparison.contexts) > 1
                clauses.append(f"in context {context} it {clause}" if several else clause)
        subject = method_prose(method)
        if len(clauses) > 1:
            out[method] = f"{subject}: " + "; ".join(clauses) + "."
        else:
            out[method] = f"{subject} {clauses[0]}."
    return out


def _tv(a: Sequence[Any], b: Sequence[Any]) -> float | None:
    if any(is_missing(x) for x in (*a, *b)):
        return None
    return 0.5 * sum(abs(float(x) - float(y)) for x, y in zip(a, b, strict=True))


def _setting(config: Mapping[str, Any], key: str) -> Any:
    """A gradient setting from the config: under ``gradient``/``settings`` or as a flat key (None if absent)."""
    settings = _config_value(config, "gradient", "settings")
    if isinstance(settings, Mapping) and key in settings:
        return settings[key]
    return config.get(key)


def _is_tie(detail: str) -> bool:
    """Whether an exact `diverged` detail reports a tie between winning components (the split between them
    is then the ridge path's limit, not something the data decide)."""
    return re.search(r"\btie", detail or "", flags=re.IGNORECASE) is not None


def _remedies(config: Mapping[str, Any]) -> str:
    """What reduces the minibatch noise floor, leaving out what the run already used."""
    schedule = str(_setting(config, "lr_schedule") or "constant")
    average = str(_setting(config, "average") or "none")
    options = ["`--batch-size 0` (full batch: exact gradients)"]
    if schedule == "constant":
        options.append("a decaying `--lr-schedule` (inverse-time, cosine, exponential)")
    if average == "none":
        options.append("iterate averaging (`--average polyak` or `ema`)")
    options.append("a smaller `--lr`")
    used = [f"--lr-schedule {schedule}"] * (schedule != "constant") + [f"--average {average}"] * (average != "none")
    return (f"even with `{'`, `'.join(used)}`, " if used else "") + "it shrinks with " + fmt_list(options)


def _measured(values: Mapping[str, Any] | None) -> str:
    """The measured size of the noise floor of one gradient cell (`tv_to_exact`, `noise` in metrics.csv)."""
    values = values or {}
    parts = []
    if not is_missing(values.get("tv_to_exact")):
        parts.append(
            f"each run's last iterate lies {fmt_num(values['tv_to_exact'])} in total variation from the exact "
            "optimum of its own data (mean over seeds, `tv_to_exact`)"
        )
    if not is_missing(values.get("noise")):
        parts.append(f"the runs' own end-of-run fluctuation is {fmt_num(values['noise'])} (`noise`)")
    if not parts:
        return "its size was not measured"
    return "measured: " + " and ".join(parts)


def gap_cause(
    gradient: SolverCell, exact: SolverCell, batch_size: Any, values: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
) -> tuple[str, str]:
    """Why the last gradient step and the exact answer differ: a key and the explanation.

    The causes told apart: (a) the run has not finished (status `running` or `stalled`); (b) the minibatch
    noise floor of a constant step: a run that says `converged`, with minibatches, next to a unique exact
    optimum (`optimal`); (c) an optimum the data do not pin down, named only where the exact solver says so:
    an unattained infimum (`diverged`, a limit at infinite offsets), a tie between winning components whose
    split the data leave open, a `limit` of clipped preferences, or an `optimal` answer that is one of a set
    (several connected components, each with a free constant, under Adam, which does not keep the canonical
    gauge; `--optimizer sgd` does).
    """
    config = config or {}
    g, e = gradient.status, exact.status
    minibatch = batch_size is None or (not isinstance(batch_size, bool) and batch_size != 0)
    infimum = (
        "the exact answer is the limit of an unattained infimum (status diverged: some offsets go to infinity, "
        "the policy converges), so a run can only approach it, ever more slowly"
    )
    tie = (
        "the data do not pin down the split between tied winning components "
        f"(exact: {exact.detail}): the exact answer takes the ridge path's limit, a gradient run's split is the "
        "optimiser's"
    )
    unbounded = (
        "the loss is unbounded below (status unbounded: it goes to -inf, no optimum): a run never stops, its "
        "offsets grow without bound, and the exact policy is the limit of gradient flow"
    )
    if g == "running":
        why = "the gradient run is still moving (status running)"
        why += f" — {gradient.detail}" if gradient.detail else ""
        why += ": more steps may close the gap"
        if e == "diverged":
            why += f"; {infimum}" + (f", and {tie}" if _is_tie(exact.detail) else "")
        if e == "unbounded":
            why += f"; {unbounded}"
        return "running", why
    if g == "stalled":
        detail = f" — {gradient.detail}" if gradient.detail else ""
        return "stalled", (
            f"the gradient run is stalled (status stalled){detail}: its steps no longer change the iterate, so "
            "it stopped where it was, not at the optimum"
        )
    if g == "mixed":
        return "mixed", (
            f"the seeds' gradient statuses differ ({gradient.detail or 'see metrics.csv'}); `runs.csv` has each "
            "seed's status and final policy"
        )
    if g != "converged":
        return g, f"gradient status {g} (see `detail` in metrics.csv)"
    if e == "optimal" and GAUGE_NOTE in exact.detail and str(_setting(config, "optimizer") or "adam") != "sgd":
        noise = "; minibatch noise adds to it" if minibatch else ""
        some = re.search(r"\(in \d+ of \d+ datasets\)", exact.detail)
        where = f" {some.group(0)}" if some else ""
        return "gauge", (
            f"the data leave a choice: the comparison graph has several connected components{where}, the loss fixes "
            "log(pi/pi_ref) only up to a constant on each, so the optimal policies form a set; the exact answer "
            "is the canonical one (zero offset sum per component, which plain gradient descent from pi_ref "
            f"keeps), and Adam's per-coordinate steps move the sums: its split between components is the "
            f"optimiser's{noise}"
        )
    if e == "optimal":
        if minibatch:
            batch = "" if batch_size is None else f" (batch size {batch_size})"
            return "noise", (
                "minibatch noise floor: the runs stopped drifting (status converged) but a constant step with "
                f"minibatches{batch} keeps the iterate jittering around the exact optimum, which is unique "
                f"(status optimal) — not an unfinished run, nor a choice the data leave; {_measured(values)}; "
                f"{_remedies(config)}"
            )
        return "unexplained", (
            "the full-batch run says converged, yet the exact optimum is unique (status optimal): the gap is "
            "neither minibatch noise nor a choice the data leave; see `detail` and the settings (RLHF's "
            "`--rm-steps` stops the reward model early)"
        )
    if e == "diverged":
        return "set", tie if _is_tie(exact.detail) else (
            f"{infimum}; the status rule calls a run converged once it slows below its jitter"
        )
    if e == "set":
        return "set-valued", (
            f"the minimisers form a set (exact: {exact.detail}): the exact answer is the point gradient flow "
            "from pi_ref reaches, a run with finite steps (Adam, minibatches) stops at another point of it"
        )
    if e == "local":
        return "local", (
            f"the loss is not convex (exact: {exact.detail}): a gradient run can end at another local minimum "
            "than the best one the multi-start search found"
        )
    if e == "unbounded":
        return "unbounded", unbounded
    if e == "limit":
        return "limit", (
            "the exact answer is a limit (status limit: Psi(P) is infinite, the optimum of P clipped to "
            "[eps, 1 - eps] as eps → 0), while the gradient run optimises P clipped at a fixed `--eps`"
        )
    if e == "mixed":
        noise = " (with minibatches, their noise floor)" if minibatch else ""
        return "mixed-exact", (
            f"the exact status differs over the datasets ({exact.detail}): the draws with an unattained "
            f"infimum have a limit no run reaches, the others a unique optimum{noise}"
        )
    return e, f"exact status {e} (see `detail` in metrics.csv)"


def gradient_notes(
    comparison: Comparison,
    threshold: float = DISAGREEMENT_TV,
    metrics: pd.DataFrame | None = None,
    config: Mapping[str, Any] | None = None,
) -> list[str]:
    """Where the last gradient step and the exact solution differ by more than `threshold` in total
    variation, per method and cause (`gap_cause`): at which taus, by how much, and why.

    `metrics` (the metrics frame) gives the measured size of a noise floor; `config` the batch size (a
    minibatch run is assumed when it is unknown) and the schedule and averaging in use.
    """
    if not {"exact", "gradient"} <= set(comparison.solvers):
        return []
    config = config or {}
    batch_size = _setting(config, "batch_size")
    values: dict[tuple[str, float, str], dict[str, Any]] = {}
    if metrics is not None:
        for rec in records(metrics, METRIC_COLUMNS):
            if rec["solver"] == "gradient":
                values[(rec["method"], float(rec["tau"]), rec["context"])] = rec
    several = len(comparison.contexts) > 1
    notes = []
    compared = 0
    for method in unique(r.method for r in comparison.rows):
        by_cause: dict[str, list[tuple[float, str, float, str]]] = {}
        for r in comparison.rows:
            if r.method != method or not {"exact", "gradient"} <= set(r.cells):
                continue
            compared += 1
            tv = _tv(r.cells["gradient"].probs, r.cells["exact"].probs)
            if tv is not None and tv > threshold:
                key, why = gap_cause(
                    r.cells["gradient"], r.cells["exact"], batch_size, values.get((method, r.tau, r.context)), config
                )
                by_cause.setdefault(key, []).append((r.tau, r.context, tv, why))
        for items in by_cause.values():
            worst = max(items, key=lambda item: item[2])
            where = ", ".join(fmt_tau(t) + (f" ({c})" if several else "") for t, c, _, _ in items)
            at = fmt_tau(worst[0]) + (f" ({worst[1]})" if several else "")
            size = (
                f"by {fmt_num(worst[2])}" if len(items) == 1 else f"by up to {fmt_num(worst[2])}"
            ) + " in total variation" + ("" if len(items) == 1 else f" (at tau = {at})")
            notes.append(
                f"- {method_prose(method)} at tau = {where}: the last gradient step differs from the exact "
                f"solution {size}; {worst[3]}."
            )
    if compared and not notes:
        notes.append(
            f"- Gradient and exact agree to within {fmt_num(threshold)} in total variation for every method "
            "and tau."
        )
    return notes


# -- why: details, implied rewards, the preference model, the support of mu ---------------------------
#: Methods whose loss sees the data only through pairs drawn from mu (an action outside supp mu is unseen).
PAIRWISE = ("dpo", "ipo", "rlhf")


def exact_details(comparison: Comparison) -> list[str]:
    """The exact solver's `detail` per method and context (components that lose, closed forms, ties, ...),
    the taus that share a detail grouped."""
    several = len(comparison.contexts) > 1
    lines = []
    for method in unique(r.method for r in comparison.rows):
        for context in comparison.contexts:
            by_detail: dict[tuple[str, str], list[float]] = {}
            for r in comparison.rows:
                cell = r.cells.get("exact")
                if r.method == method and r.context == context and cell is not None and cell.detail:
                    by_detail.setdefault((cell.status, cell.detail), []).append(r.tau)
            for (status, detail), taus in by_detail.items():
                where = f" in context {context}" if several else ""
                lines.append(f"- {method_prose(method)}{where} ({status}, {_tau_list(taus)}): {_md(detail)}.")
    return lines


def reward_table(rewards: pd.DataFrame | None, actions: Sequence[str]) -> list[str]:
    """The implied reward of each exact answer (``rewards.csv``) as a markdown table: one row per method
    and context, or per tau where the reward changes with tau. Empty when no reward was recorded."""
    if rewards is None or not len(rewards):
        return []
    recs = records(rewards, REWARD_COLUMNS)
    if all(rec["reward"] is None for rec in recs):
        return []
    several = len(unique(rec["context"] for rec in recs)) > 1
    cells: dict[tuple[str, str], dict[float, dict[str, str]]] = {}
    for rec in recs:
        row = cells.setdefault((rec["method"], rec["context"]), {}).setdefault(float(rec["tau"]), {})
        row[rec["action"]] = fmt_num(rec["reward"])
    header = ["method", *(["context"] if several else []), "tau", *actions]
    lines = ["| " + " | ".join(_md(h) for h in header) + " |", "| " + " | ".join(["---"] * len(header)) + " |"]
    for (method, context), by_tau in cells.items():
        spelled = {tau: tuple(row.get(a, "-") for a in actions) for tau, row in by_tau.items()}
        groups = [("every tau", next(iter(spelled.values())))] if len(set(spelled.values())) == 1 else [
            (fmt_tau(tau), values) for tau, values in sorted(spelled.items())
        ]
        for tau_text, values in groups:
            line = [method, *([context] if several else []), tau_text, *values]
            lines.append("| " + " | ".join(_md(c) for c in line) + " |")
    return lines


def model_notes(logit_gap: pd.DataFrame | None) -> list[str]:
    """Per context whose preferences are not Bradley–Terry: how far DPO/RLHF and ΨPO-logit are apart
    (``logit_gap.csv``); the paper's Prop. 1, which makes them equal, needs Bradley–Terry."""
    if logit_gap is None or not len(logit_gap):
        return []
    recs = records(logit_gap, LOGIT_GAP_COLUMNS)
    lines = []
    for context in unique(rec["context"] for rec in recs):
        rows = [rec for rec in recs if rec["context"] == context]
        model = rows[0]["model"]
        given = (
            "as a total `order` (the deterministic limit of Bradley–Terry)" if model == "order"
            else f"as `{model}`, not Bradley–Terry"
        )
        head = (
            f"- Context {context}: the preference model is given {given}. The paper's Prop. 1 (DPO and RLHF "
            "optimise the same policy as ΨPO with Psi = logit) needs Bradley–Terry;"
        )
        tvs = [(float(rec["tv"]), rec["tau"]) for rec in rows if not is_missing(rec["tv"])]
        if tvs and max(tv for tv, _ in tvs) <= ZERO:
            lines.append(
                f"{head} here their population optima coincide (total variation at most {ZERO:g} at every tau)."
            )
        elif tvs:
            spelled = ", ".join(f"{fmt_num(tv)} at tau = {fmt_tau(tau)}" for tv, tau in tvs)
            lines.append(
                f"{head} here the population optima of DPO/RLHF and ΨPO-logit differ by {spelled} "
                "(total variation)."
            )
    return lines


def social_choice_section(social: pd.DataFrame | None) -> list[str]:
    """Per non-transitive context (``social_choice.csv``): the majority relation's cycle, then each action's
    score and rank under RLHF/DPO (Bradley–Terry fit), IPO (`P(y ≻ mu)`) and Nash (the maximal lottery, its
    `tau -> 0` limit), and the lottery's support."""
    if social is None or not len(social):
        return []
    recs = records(social, SOCIAL_CHOICE_COLUMNS)
    lines = [
        "The preferences are non-transitive: their majority relation (y over y' when P(y ≻ y') > 1/2) has a "
        "cycle, so no ranking — and no Bradley–Terry reward — agrees with every majority. Each objective "
        "then picks its own ranking: RLHF and DPO the Bradley–Terry reward "
        "fitted to the comparisons mu(w) mu(l) P(w ≻ l), IPO the Borda-like score P(y ≻ mu), Nash learning "
        "as tau -> 0 the maximal lottery (the unregularised equilibrium; `social_choice.csv`). Rank 1 is the "
        "best.",
        "",
    ]
    for context in unique(rec["context"] for rec in recs):
        rows = [rec for rec in recs if rec["context"] == context]
        support = [rec["action"] for rec in rows if not is_missing(rec["lottery"]) and float(rec["lottery"]) > ZERO]
        winner = [rec["action"] for rec in rows if rec["condorcet"] == 1]
        condorcet = (f"{winner[0]} is the Condorcet winner (it beats every other action) and gets the whole "
                     "lottery" if winner else "there is no Condorcet winner")
        lines += [
            f"Context {context}: majority cycle {rows[0]['cycle']}; {condorcet}; the maximal lottery's support "
            f"(the equilibrium's as tau -> 0) is {{{', '.join(support)}}}.",
            "",
            "| action | RLHF/DPO reward | rank | IPO P(y ≻ mu) | rank | Nash lottery (tau -> 0) | rank |",
            "|---|---|---|---|---|---|---|",
        ]
        for rec in rows:
            cells = [
                rec["action"], fmt_num(rec["bradley_terry"]), _rank(rec["bradley_terry_rank"]), fmt_num(rec["borda"]),
                _rank(rec["borda_rank"]), fmt_prob(rec["lottery"]), _rank(rec["lottery_rank"]),
            ]
            lines.append("| " + " | ".join(_md(c) for c in cells) + " |")
        if all(is_missing(rec["bradley_terry"]) for rec in rows):
            lines += ["", "The Bradley–Terry fit has no finite optimum here (a comparison separates two strongly "
                      "connected components of the comparison graph): RLHF and DPO diverge."]
        lines.append("")
    return lines[:-1]


def _rank(value: Any) -> str:
    return "-" if is_missing(value) else str(int(value))


def _base_methods(config: Mapping[str, Any], policy: pd.DataFrame) -> set[str]:
    """The methods (not labels) that ran: from the config's ``methods``, else the labels themselves."""
    methods = config.get("methods")
    if not methods:
        return set(unique(policy["method"]))
    if isinstance(methods, str | Mapping):
        methods = [methods]
    return {str(m.get("method") or m.get("label")) if isinstance(m, Mapping) else str(m) for m in methods}


def support_notes(config: Mapping[str, Any], policy: pd.DataFrame, objective: str) -> list[str]:
    """Every action outside supp mu (`mu = 0 < pi_ref`, from the recorded problem) in a context whose
    comparisons are drawn from mu (population objective, or sampled data), when a pairwise method ran.

    The pairwise losses never see such an action, so their minimiser is not unique there (the paper's
    Theorem 2 assumes supp mu = supp pi_ref; App. A.2): psipo's gauge keeps its reference offset, where
    ΨPO-identity's optimum `pi ∝ pi_ref exp(g / tau)` scores it by `g(y) = sum_y' mu(y') P(y ≻ y')`.
    """
    table = config.get("problem_resolved")
    if not isinstance(table, Mapping) or not (_base_methods(config, policy) & set(PAIRWISE)):
        return []
    actions = list(table.get("actions") or [])
    by_outside: dict[tuple[str, ...], list[str]] = {}  # contexts that share the same actions outside supp mu
    for ctx in table.get("contexts") or []:
        mu, pi_ref = ctx.get("mu"), ctx.get("pi_ref")
        if not (mu and pi_ref) or (objective != "population" and not ctx.get("sample")):
            continue
        outside = tuple(a for a, m, p in zip(actions, mu, pi_ref, strict=True) if m == 0 and p > 0)
        if outside:
            by_outside.setdefault(outside, []).append(str(ctx.get("name")))
    lines = []
    for outside, contexts in by_outside.items():
        names = fmt_list([f"`{a}`" for a in outside])
        them, verb = ("it", "lies") if len(outside) == 1 else ("them", "lie")
        where = f"Context {contexts[0]}" if len(contexts) == 1 else f"Contexts {fmt_list(contexts)}"
        lines.append(
            f"- {where}: {names} {verb} outside supp mu (mu = 0 < pi_ref). No comparison drawn from mu "
            f"involves {them}, so the losses of IPO, DPO and RLHF never see {them} and their minimiser is not "
            "unique there (the paper's Theorem 2 assumes supp mu = supp pi_ref; App. A.2): psipo keeps "
            f"{them} at the reference offset, where gradient training from pi_ref leaves {them}. ΨPO-identity's "
            f"optimum pi ∝ pi_ref exp(g / tau), g(y) = sum_y' mu(y') P(y ≻ y'), scores {them} and differs there."
        )
    return lines


def weighted_table(summary: pd.DataFrame | None) -> list[str]:
    """The context-weighted summary (``summary.csv``) as a markdown table."""
    if summary is None or not len(summary):
        return []
    columns = [
        ("kl", "KL"), ("entropy", "entropy"), ("loss", "loss"), ("win_rate_ref", "win rate"),
        ("reward", "reward"), ("tv_to_optimum", "TV to optimum"),
    ]
    recs = records(summary, SUMMARY_COLUMNS)
    shown = [(key, name) for key, name in columns if any(rec.get(key) is not None for rec in recs)]
    header = ["method", "tau", "solver", *(name for _, name in shown), "status"]
    lines = [
        "| " + " | ".join(header) + " |",
        "| " + " | ".join(["---", "---:", "---", *(["---:"] * len(shown)), "---"]) + " |",
    ]
    for rec in recs:
        cells = [rec["method"], fmt_tau(rec["tau"]), rec["solver"], *(fmt_num(rec[k]) for k, _ in shown)]
        lines.append("| " + " | ".join(_md(c) for c in [*cells, rec["status"]]) + " |")
    return lines


# -- the table ------------------------------------------------------------------------------------------
def markdown_table(comparison: Comparison) -> list[str]:
    """The comparison as a markdown table: method × tau (× context), each solver's policy, KL, win rate
    (when known) and status."""
    several = len(comparison.contexts) > 1
    header = ["method", "tau", *(["context"] if several else [])]
    align = ["---", "---:", *(["---"] if several else [])]
    for solver in comparison.solvers:
        header += [f"{solver} policy", f"{solver} KL"]
        align += ["---", "---:"]
        if comparison.has_win_rate:
            header.append(f"{solver} win rate")
            align.append("---:")
        header.append(f"{solver} status")
        align.append("---")
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    for r in comparison.rows:
        cells = [r.method, fmt_tau(r.tau), *([r.context] if several else [])]
        for solver in comparison.solvers:
            cell = r.cells.get(solver)
            if cell is None:
                cells += ["-"] * (3 + comparison.has_win_rate)
                continue
            cells += [describe_policy(comparison.actions, cell), fmt_num(cell.kl)]
            if comparison.has_win_rate:
                cells.append(fmt_num(cell.win_rate))
            cells.append(cell.status)
        lines.append("| " + " | ".join(_md(c) for c in cells) + " |")
    return lines


# -- the report -----------------------------------------------------------------------------------------
def build_report(
    policy: pd.DataFrame,
    metrics: pd.DataFrame,
    config: Mapping[str, Any] | None = None,
    figures: Sequence[str | Path] = (),
    command: str | None = None,
    base_dir: str | Path | None = None,
    tables: Mapping[str, pd.DataFrame | None] | None = None,
) -> str:
    """The text of ``report.md``.

    Parameters
    ----------
    policy, metrics : DataFrame
        The run's frames (as in `psipo_cli.api.Frames`).
    config : Mapping, optional
        The resolved config (see the module docstring for the keys read).
    figures : paths of the figures written; linked relative to `base_dir` (the run directory) when they
        lie under it, else as ``figures/<name>``.
    command : the psipo command (default ``config["command"]``).
    base_dir : the directory the report is written to.
    tables : the further frames of the run by file stem (``summary``, ``rewards``, ``logit_gap``,
        ``social_choice``, as in `psipo_cli.api.Frames`); a missing one leaves its section out.
    """
    config = config or {}
    tables = tables or {}
    command = command or str(config.get("command") or "")
    comparison = comparison_rows(policy, metrics)
    title = problem_title(config)
    lines = [f"# psipo {command}: {title}" if command else f"# psipo: {title}", ""]
    lines += ["## What was run", "", *_what_was_run(config, policy, metrics, command), ""]

    lines += ["## What the exact solver found", ""]
    lines += [f"- {sentence}" for sentence in method_findings(comparison).values()]
    lines.append("")
    objective = next((str(o) for o in unique(metrics["objective"]) if not is_missing(o)), "") if (
        "objective" in metrics.columns) else ""
    rewards = reward_table(tables.get("rewards"), comparison.actions)
    if rewards:
        rewards = [
            "Implied reward r of each exact answer, pi ∝ pi_ref exp(r / tau): RLHF's fitted reward, tau * delta "
            "for DPO and IPO, g(y) for ΨPO (`rewards.csv`; `-` where it is infinite: a diverged answer).",
            "",
            *rewards,
        ]
    caveats = model_notes(tables.get("logit_gap")) + support_notes(config, policy, objective)
    blocks = [block for block in (exact_details(comparison), rewards, caveats) if block]
    if blocks:
        lines += ["## Why", ""]
        for block in blocks:
            lines += [*block, ""]
    social = social_choice_section(tables.get("social_choice"))
    if social:
        lines += ["## Social choice", "", *social, ""]
    notes = gradient_notes(comparison, metrics=metrics, config=config)
    if notes:
        lines += ["## Gradient against exact (last step)", "", *notes, ""]

    results = markdown_table(comparison)
    lines += ["## Results", "", *results, ""]
    note = one_minus_note(results)
    if note is not None:
        lines += [note, ""]
    if "gradient" in comparison.solvers:
        lines += ["Gradient results are seed means at the last step; their 95% CIs are in `policy.csv`, each "
                  "seed's final result in `runs.csv`.", ""]
    weighted = weighted_table(tables.get("summary")) if len(comparison.contexts) > 1 else []
    if weighted:
        lines += [
            "## Weighted over contexts",
            "",
            "The paper's objective is an expectation over contexts, E_{x ~ rho}: each metric averaged over the "
            "contexts with their weights rho (`summary.csv`; the largest `grad_norm`). A metric empty in any "
            "context stays empty; a status that differs between contexts is `mixed` (counts in `detail`).",
            "",
            *weighted,
            "",
        ]

    lines += ["## Figures", ""]
    names = {Path(f).stem.split("-")[0] for f in figures}
    for f in figures:
        path = Path(f)
        link = f"figures/{path.name}"
        if base_dir is not None:
            try:
                link = path.resolve().relative_to(Path(base_dir).resolve()).as_posix()
            except ValueError:
                pass
        stem = path.stem
        caption = FIGURE_CAPTIONS.get(stem.split("-")[0], stem)
        if "-" in stem and stem.split("-")[0] in FIGURE_CAPTIONS:
            caption += f", context {stem.split('-', 1)[1]}"
        lines += [f"![{caption}]({link})", ""]
    if "curves" not in names and "gradient" in comparison.solvers:
        lines += ["No learning curves were drawn (`psipo plot RUN_DIR` draws them from the saved CSVs).", ""]
    elif "curves" not in names:
        lines += ["No learning curves: there was no gradient run.", ""]
    if "frontier" not in names and not comparison.has_win_rate:
        lines += [
            "No KL / win-rate frontier: the problem has no preference model, so the win rate against "
            "pi_ref is unknown.",
            "",
        ]
    return "\n".join(lines).rstrip("\n") + "\n"


def dataset_report(config: Mapping[str, Any], summary: pd.DataFrame, files: Sequence[str]) -> str:
    """``report.md`` of a run on a dataset whose prompts have their own completions (every prompt solved
    exactly and/or by gradient descent): what was run, the dataset, the summary over prompts, the files written."""
    command = str(config.get("command") or "")
    taus = ", ".join(fmt_tau(t) for t in config.get("tau") or [])
    lines = [f"# psipo {command}: {problem_title(config)}", "", "## What was run", "",
             f"- **Command**: `psipo {command}`", *dataset_lines(config),
             f"- **Methods**: {_describe_methods(config, summary)}", f"- **tau** (DPO's beta): {taus}",
             f"- **Solver**: {config.get('solver') or 'exact'}, every prompt on its own comparisons (objective: "
             "dataset)"]
    settings = _gradient_settings(config)
    if settings and "gradient" in set(summary["solver"]):
        lines.append(f"- **Gradient settings**: {settings}")
    lines += ["- Everything resolved is in `config.json`; versions and command line in `manifest.json`.", "",
             "## Summary over prompts", "",
             "Each metric averaged over the prompts with equal weights (the paper's E_{x ~ rho}, Eq. 6); the "
             "status is the prompts' common one, or `mixed` with the count of each.", "",
             *weighted_table(summary), ""]
    mixed = [rec for rec in records(summary, SUMMARY_COLUMNS) if rec.get("detail")]
    lines += [f"- {rec['method']}, tau = {fmt_tau(rec['tau'])}{_solver_note(rec, summary)}: {_md(str(rec['detail']))}"
              for rec in mixed]
    lines += ["", "## Files", "", "Per prompt and completion: " + ", ".join(f"`{f}`" for f in files)
              + " (`contexts` and `actions` map the short ids to the prompts and completions).", ""]
    return "\n".join(lines)


def _solver_note(rec: Mapping[str, Any], summary: pd.DataFrame) -> str:
    """``", gradient"`` when the summary holds more than one solver (the rows would read alike), else ``""``."""
    return f", {rec['solver']}" if summary["solver"].nunique() > 1 else ""


def render_report(
    config: Mapping[str, Any] | None,
    policy: pd.DataFrame,
    metrics: pd.DataFrame,
    figures: Sequence[str | Path] = (),
    base_dir: str | Path | None = None,
    tables: Mapping[str, pd.DataFrame | None] | None = None,
) -> str:
    """`build_report` with the config first (the order `render_frames` takes its arguments in)."""
    return build_report(policy, metrics, config, figures, base_dir=base_dir, tables=tables)


def rewrite_report(run_dir: str | Path) -> Path:
    """Rewrite ``run_dir/report.md`` from the run's CSV files, ``config.json`` and ``figures/*.png``."""
    from psipo_cli.outputs.figures import FIGURE_STEMS, load_run_frames

    run_dir = Path(run_dir)
    frames = load_run_frames(run_dir)
    order = {stem: i for i, stem in enumerate(FIGURE_STEMS)}
    figures = sorted(
        (run_dir / "figures").glob("*.png"), key=lambda p: (order.get(p.stem.split("-")[0], 99), p.name)
    )
    tables = {stem: frames.get(stem) for stem in REPORT_TABLES}
    text = build_report(frames["policy"], frames["metrics"], frames["config"], figures, base_dir=run_dir,
                        tables=tables)
    target = run_dir / "report.md"
    with open(target, "w", encoding="utf-8", newline="\n") as handle:
        handle.write(text)
    return target
