"""Outputs layer: run directories, terminal tables, JSON/CSV records, figures, report.

It formats and writes what the solvers and metrics computed; it does no maths and never imports the CLI.
pandas, matplotlib and rich are imported inside the functions that use them, so importing this package
costs the CLI nothing at start-up.

Typical use by a command::

    with RunDirectory(out, "compare", name, config, argv=argv, seeds=seeds) as rd:
        rd.write_frames(frames.policy, frames.metrics, frames.curves, tau_grid=grid)
        figures = render_figures(rd.path)  # from the CSVs just written, as `psipo plot` does
        rd.write_text("report.md", build_report(frames.policy, frames.metrics, config, figures,
                                                base_dir=rd.path))
    print(rd.path)  # now the final directory

and ``psipo plot RUN_DIR`` is `render_figures(RUN_DIR)` (`rewrite_report(RUN_DIR)` redoes report.md).
"""

from __future__ import annotations

from psipo_cli.outputs.figures import (
    load_run_frames,
    plot_curves,
    plot_frontier,
    plot_policy_vs_tau,
    problem_info,
    problem_title,
    render_figures,
    render_frames,
    tau_grid_frame,
    write_figures,
)
from psipo_cli.outputs.formatting import (
    CURVE_COLUMNS,
    FRAME_COLUMNS,
    METRIC_COLUMNS,
    POLICY_COLUMNS,
    TAU_GRID_COLUMNS,
    csv_text,
    read_frame,
)
from psipo_cli.outputs.report import build_report, render_report, rewrite_report
from psipo_cli.outputs.rundir import DEFAULT_ROOT, RunDirectory, run_dir_name
from psipo_cli.outputs.tables import (
    comparison_rows,
    comparison_table,
    json_document,
    metric_records,
    policy_csv,
    policy_records,
    summary_records,
    summary_table,
)

__all__ = [
    "CURVE_COLUMNS",
    "DEFAULT_ROOT",
    "FRAME_COLUMNS",
    "METRIC_COLUMNS",
    "POLICY_COLUMNS",
    "TAU_GRID_COLUMNS",
    "RunDirectory",
    "build_report",
    "comparison_rows",
    "comparison_table",
    "csv_text",
    "json_document",
    "load_run_frames",
    "metric_records",
    "plot_curves",
    "plot_frontier",
    "plot_policy_vs_tau",
    "policy_csv",
    "policy_records",
    "problem_info",
    "problem_title",
    "read_frame",
    "render_figures",
    "render_frames",
    "render_report",
    "rewrite_report",
    "run_dir_name",
    "summary_records",
    "summary_table",
    "tau_grid_frame",
    "write_figures",
]
