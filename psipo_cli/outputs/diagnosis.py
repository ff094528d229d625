"""What `psipo diagnose` writes: `report.md`, `methods.csv`, `pairs.csv` and two figures, from the diagnosis
document (`psipo_cli.diagnose.summarise`) and the per-prompt KL values behind it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from psipo_cli.outputs.formatting import fmt_num
from psipo_cli.problem.datasets.data import count_text

#: Columns of `methods.csv` and `pairs.csv` (the records of the JSON document's `methods` and `pairs`).
METHOD_COLUMNS = [
    "method", "tau", "prompts_not_attained", "prompts_not_attained_count", "completions_zeroed",
    "completions_zeroed_count", "prompts_with_zeroed", "kl_mean", "kl_median", "kl_p90", "kl_infinite",
]
PAIR_COLUMNS = ["tau", "method_a", "method_b", "favourite_differs", "tv_mean", "tv_median", "tv_p90"]
KL_BINS = 30


def frames(doc: Mapping[str, Any]) -> tuple[Any, Any]:
    """`methods.csv` and `pairs.csv` as frames."""
    import pandas as pd

    return (pd.DataFrame(list(doc["methods"]), columns=METHOD_COLUMNS),
            pd.DataFrame(list(doc["pairs"]), columns=PAIR_COLUMNS))


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def table_text(doc: Mapping[str, Any]) -> str:
    """The terminal view: counts, then one line per method × tau."""
    cmp = doc["comparisons_per_prompt"]
    lines = [
        f"{doc['prompts']:,} prompts, {doc['completions']:,} completions, {count_text(doc['comparisons'])} "
        f"comparisons ({count_text(cmp['median'])} per prompt, median), {count_text(doc['ties'])} ties",
        f"{'method':<12}{'tau':>6}{'not attained':>14}{'zeroed':>10}{'KL mean':>10}{'KL median':>11}"
        f"{'KL p90':>10}",
    ]
    for r in doc["methods"]:
        lines.append(f"{r['method']:<12}{r['tau']:>6g}{_pct(r['prompts_not_attained']):>14}"
                     f"{_pct(r['completions_zeroed']):>10}{fmt_num(r['kl_mean']):>10}{fmt_num(r['kl_median']):>11}"
                     f"{fmt_num(r['kl_p90']):>10}")
    return "\n".join(lines) + "\n"


def report_text(doc: Mapping[str, Any], figures: Sequence[str]) -> str:
    """`report.md`: the dataset, the per-method table, the between-method table, the figures."""
    data, cmp, comp = doc["dataset"], doc["comparisons_per_prompt"], doc["completions_per_prompt"]
    lines = [
        "# psipo diagnose", "",
        "What each method's exact optimum does to every prompt of the dataset (each prompt solved on its own "
        "comparisons, the empirical objective; arXiv 2310.12036 §4.2: where a prompt's comparisons are "
        "deterministic, DPO's optimum is not attained at any tau and its limit sends the losers to 0, while "
        "IPO's is attained).", "",
        "## Dataset", "",
        f"- `{data['path']}` ({data['format']}, {data['bytes']:,} bytes, sha256 `{data['sha256']}`); "
        f"{data['rows_read']:,} rows read, {data['rows_skipped']:,} skipped",
        f"- {doc['prompts']:,} prompts, {doc['completions']:,} completions, {count_text(doc['comparisons'])} "
        f"comparisons, {count_text(doc['ties'])} ties",
        f"- comparisons per prompt: min {count_text(cmp['min'])}, median {count_text(cmp['median'])}, mean "
        f"{count_text(cmp['mean'])}, p90 {count_text(cmp['p90'])}, max {count_text(cmp['max'])}",
        f"- completions per prompt: min {count_text(comp['min'])}, median {count_text(comp['median'])}, max "
        f"{count_text(comp['max'])}", "",
        "## Per method and tau", "",
        "Fractions of prompts (not attained: status other than `optimal`; with a zero: a completion at "
        "probability 0, where log(pi / pi_ref) = -inf) and of completions (zeroed); KL(pi || pi_ref) over "
        "prompts.", "",
        "| method | tau | not attained | zeroed | with a zero | KL mean | KL median | KL p90 | KL infinite |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in doc["methods"]:
        lines.append(f"| {r['method']} | {r['tau']:g} | {_pct(r['prompts_not_attained'])} | "
                     f"{_pct(r['completions_zeroed'])} ({r['completions_zeroed_count']:,}) | "
                     f"{_pct(r['prompts_with_zeroed'])} | {fmt_num(r['kl_mean'])} | {fmt_num(r['kl_median'])} | "
                     f"{fmt_num(r['kl_p90'])} | {_pct(r['kl_infinite'])} |")
    if doc["pairs"]:
        lines += ["", "## Between methods", "",
                  "Fraction of prompts whose most likely completions differ; total variation between the "
                  "two policies over prompts.", "",
                  "| tau | methods | favourites differ | TV mean | TV median | TV p90 |",
                  "|---:|---|---:|---:|---:|---:|"]
        for r in doc["pairs"]:
            lines.append(f"| {r['tau']:g} | {r['method_a']} vs {r['method_b']} | {_pct(r['favourite_differs'])} | "
                         f"{fmt_num(r['tv_mean'])} | {fmt_num(r['tv_median'])} | {fmt_num(r['tv_p90'])} |")
    if figures:
        lines += ["", "## Figures", ""] + [f"![{Path(f).stem}]({f})" for f in figures]
    lines += ["", "Numbers: `diagnosis.json`, `methods.csv`, `pairs.csv`; the run: `config.json`, `manifest.json`."]
    return "\n".join(lines) + "\n"


def render_figures(directory: Path, doc: Mapping[str, Any], kl: np.ndarray, labels: Sequence[str],
                   taus: Sequence[float]) -> list[str]:
    """`figures/kl_histograms.png` (KL over prompts, a panel per method and tau) and
    `figures/not_attained_vs_tau.png` (fraction of prompts not attained against tau, one line per method);
    returns their paths relative to `directory`. `kl` is (methods, taus, prompts)."""
    from psipo_cli.outputs.figures import method_colors, new_figure, save_figure

    colors = method_colors(list(labels))
    fig, axes, _ = new_figure(len(labels), len(taus), share=True)
    finite = kl[np.isfinite(kl)]
    top = float(finite.max()) if len(finite) and finite.max() > 0 else 1.0
    bins = np.linspace(0.0, top, KL_BINS + 1)
    for s, label in enumerate(labels):
        for t, tau in enumerate(taus):
            ax = axes[s, t]
            values = kl[s, t][np.isfinite(kl[s, t])]
            ax.hist(values, bins=bins, color=colors[label])
            ax.set_title(f"{label}, tau = {tau:g}", fontsize=9)
            if s == len(labels) - 1:
                ax.set_xlabel("KL(pi || pi_ref)")
            if t == 0:
                ax.set_ylabel("prompts")
    fig.suptitle("KL of each prompt's exact answer")
    paths = [save_figure(fig, directory / "figures" / "kl_histograms.png")]

    fig, axes, _ = new_figure(1, 1, legend_items=0)
    ax = axes[0, 0]
    # Methods often coincide (RLHF and DPO without ridge): distinct dashes and markers keep each visible.
    for i, label in enumerate(labels):
        rows = sorted((r["tau"], r["prompts_not_attained"]) for r in doc["methods"] if r["method"] == label)
        ax.plot([x for x, _ in rows], [y for _, y in rows], marker="osD^v"[i % 5], markersize=7 - i % 3 * 1.5,
                linestyle=("-", "--", ":", "-.")[i % 4], label=label, color=colors[label])
    ax.set_xscale("log")
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("tau")
    ax.set_ylabel("fraction of prompts not attained")
    ax.legend(fontsize=8)
    fig.suptitle("Prompts whose optimum is not attained")
    paths.append(save_figure(fig, directory / "figures" / "not_attained_vs_tau.png"))
    return [p.relative_to(directory).as_posix() for p in paths]
