"""``mtl-search report``: one self-contained HTML page about a study."""

from __future__ import annotations

import argparse

from mtl_search.cli.common import add_storage_option, write_html_page


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report",
        help="write an HTML report of a study (front, families, architectures, training)",
        description="Write one self-contained HTML file: how the trials were spent, the Pareto front (refined trials "
        "as mean ± std), hypervolume over trials, the best value per family, the architecture of each front trial, "
        "loss weights and training curves, the task affinity, the trials that failed or were over a limit with their "
        "reasons, and the data and space that were searched. The figures are also attached to the study for optuna-dashboard.",
    )
    parser.add_argument("study", metavar="STUDY", help="study name (see `mtl-search studies`)")
    parser.add_argument(
        "--out", metavar="PATH", default="report.html", help="HTML file to write (default: report.html)"
    )
    add_storage_option(parser)
    parser.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    from mtl_search.search.study import load_existing

    # the study first: a missing one is refused before torch loads (seconds)
    study = load_existing(args.study, args.storage)
    from mtl_search.dashboard.figures import attach_figures
    from mtl_search.visualization.report import report_html

    page = report_html(study)
    target = write_html_page(args.out, page, "--out")
    attach_figures(study)
    print(f"wrote {target} ({len(page) // 1024} KiB)")
    return 0
