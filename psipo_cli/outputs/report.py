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
seed, rm_steps, eps`` that `psipo_cli.cli.config.RunConfig` records.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from psipo_cli.outputs.figures import problem_info, problem_title
from psipo_cli.outputs.formatting import (
    fmt_list,
    fmt_num,
    fmt_policy,
    fmt_prob,
    fmt_tau,
    is_missing,
    method_prose,
    unique,
)
from psipo_cli.outputs.tables import Comparison, ComparisonRow, comparison_rows, describe_policy

if TYPE_CHECKING:
    import pandas as pd

#: Total variation between the gradient's last step and the exact solution above which they "disagree".
DISAGREEMENT_TV = 0.01
#: A probability at or below this is reported as zero in the findings (the exact solver's zeros are 0.0).
ZERO = 1e-12

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
    if status == "optimal":
        interior = all(p > ZERO for row in probs for p in row)
        text = f"is optimal {every}"
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


def gradient_notes(comparison: Comparison, threshold: float = DISAGREEMENT_TV) -> list[str]:
    """Where the last gradient step and the exact solution differ by more than `threshold` in total
    variation, per method: at which taus, by how much, and whether the gradient run is still moving."""
    if not {"exact", "gradient"} <= set(comparison.solvers):
        return []
    several = len(comparison.contexts) > 1
    notes = []
    compared = 0
    for method in unique(r.method for r in comparison.rows):
        by_status: dict[str, list[tuple[float, str, float]]] = {}
        for r in comparison.rows:
            if r.method != method or not {"exact", "gradient"} <= set(r.cells):
                continue
            compared += 1
            tv = _tv(r.cells["gradient"].probs, r.cells["exact"].probs)
            if tv is not None and tv > threshold:
                by_status.setdefault(r.cells["gradient"].status, []).append((r.tau, r.context, tv))
        for status, items in by_status.items():
            worst = max(items, key=lambda item: item[2])
            where = ", ".join(fmt_tau(t) + (f" ({c})" if several else "") for t, c, _ in items)
            if status == "running":
                why = "the gradient run is still moving (status running): more steps may close the gap"
            elif status == "converged":
                why = (
                    "the gradient run has stopped (status converged) at a different point: an optimiser "
                    "effect (e.g. Adam's split where the data leave a choice), not an unfinished run"
                )
            else:
                why = f"gradient status {status} (see `detail` in metrics.csv)"
            notes.append(
                f"- {method_prose(method)} at tau = {where}: the last gradient step differs from the exact "
                f"solution by up to {fmt_num(worst[2])} in total variation (at tau = {fmt_tau(worst[0])}); "
                f"{why}."
            )
    if compared and not notes:
        notes.append(
            f"- Gradient and exact agree to within {fmt_num(threshold)} in total variation for every method "
            "and tau."
        )
    return notes


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
    """
    config = config or {}
    command = command or str(config.get("command") or "")
    comparison = comparison_rows(policy, metrics)
    title = problem_title(config)
    lines = [f"# psipo {command}: {title}" if command else f"# psipo: {title}", ""]
    lines += ["## What was run", "", *_what_was_run(config, policy, metrics, command), ""]

    lines += ["## What the exact solver found", ""]
    lines += [f"- {sentence}" for sentence in method_findings(comparison).values()]
    lines.append("")
    notes = gradient_notes(comparison)
    if notes:
        lines += ["## Gradient against exact (last step)", "", *notes, ""]

    lines += ["## Results", "", *markdown_table(comparison), ""]
    if "gradient" in comparison.solvers:
        lines += ["Gradient results are seed means at the last step; their 95% CIs are in `policy.csv`.", ""]

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
    if "curves" not in names:
        lines += ["No learning curves: there was no gradient run.", ""]
    if "frontier" not in names and not comparison.has_win_rate:
        lines += [
            "No KL / win-rate frontier: the problem has no preference model, so the win rate against "
            "pi_ref is unknown.",
            "",
        ]
    return "\n".join(lines).rstrip("\n") + "\n"


def render_report(
    config: Mapping[str, Any] | None,
    policy: pd.DataFrame,
    metrics: pd.DataFrame,
    figures: Sequence[str | Path] = (),
    base_dir: str | Path | None = None,
) -> str:
    """`build_report` with the config first (the order `render_frames` takes its arguments in)."""
    return build_report(policy, metrics, config, figures, base_dir=base_dir)


def rewrite_report(run_dir: str | Path) -> Path:
    """Rewrite ``run_dir/report.md`` from the run's CSV files, ``config.json`` and ``figures/*.png``."""
    from psipo_cli.outputs.figures import FIGURE_STEMS, load_run_frames

    run_dir = Path(run_dir)
    frames = load_run_frames(run_dir)
    order = {stem: i for i, stem in enumerate(FIGURE_STEMS)}
    figures = sorted(
        (run_dir / "figures").glob("*.png"), key=lambda p: (order.get(p.stem.split("-")[0], 99), p.name)
    )
    text = build_report(frames["policy"], frames["metrics"], frames["config"], figures, base_dir=run_dir)
    target = run_dir / "report.md"
    with open(target, "w", encoding="utf-8", newline="\n") as handle:
        handle.write(text)
    return target
