"""``mtl-search pareto``: the Pareto front of a study."""

from __future__ import annotations

import argparse
import csv
import io
import json

import optuna

from mtl_search.cli.common import (
    GENERATOR_META,
    add_study_arguments,
    dump_json,
    print_rows_table,
    warn_of_trials_without_limits,
    write_html_page,
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "pareto",
        help="show the Pareto front of a study",
        description="Show the non-dominated trials of a study: trial number, validation value "
        "of every objective and a one-line architecture summary.",
    )
    add_study_arguments(parser, formats=("table", "json", "csv"))
    parser.add_argument(
        "--html", metavar="PATH", default=None, help="also write an interactive plotly figure of the front"
    )
    parser.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    from mtl_search.search.study import load_existing

    study = load_existing(args.study, args.storage)
    warn_of_trials_without_limits(study, "pareto")
    if args.html:
        write_front_html(study, args.html)
    if args.format == "json":
        print(front_json(study))
    elif args.format == "csv":
        print(front_csv(study), end="")
    else:
        print_front(study)
    if args.html:
        print(f"wrote {args.html}")
    return 0


def print_front(study: optuna.Study) -> None:
    from mtl_search.analysis.front import conditional_notes, front_rows
    from mtl_search.cli.search_summary import objective_cells, print_search_summary
    from mtl_search.search.study import study_objectives

    objectives = study_objectives(study)
    rows = front_rows(study)
    if not rows:
        print(f"study {study.study_name}: no completed trial yet, so no front")
        print_search_summary(study)
        return
    names = [o.name for o in objectives]
    arrows = [f"{n} {'↑' if o.direction == 'maximize' else '↓'}" for n, o in zip(names, objectives)]
    # with parameter count as an objective, its column already shows it
    params = [] if any(o.kind == "cost" and o.metric == "params" for o in objectives) else ["params"]
    table_rows = [
        [
            row["number"],
            *objective_cells(row, objectives),
            *([row["n_params"]] if params else []),
            _kept(row),
            _with_learned(row),
        ]
        for row in rows
    ]
    print_rows_table(
        f"Pareto front of {study.study_name} ({len(rows)} of {len(study.trials)} trials; validation)",
        ["trial", *arrows, *params, "epoch", "architecture"],
        table_rows,
    )
    if any(row.get("refined") for row in rows):
        print(
            "refined trials: the search's own run; mean ± std over n training seeds (mtl-search refine). The front and "
            "export --pick use the search's own run, one seed for every trial: read the means for the seed noise."
        )
    for line in conditional_notes(study):  # entire-space tasks: their metrics are not over every row
        print(line)
    print_search_summary(study)


def _kept(row: dict) -> str:
    """The epoch whose weights the trial returns, of the epochs it trained ("-" before training.checkpoint)."""
    return f"{row['kept_epoch']}/{row['training'].get('epochs', '?')}" if row.get("kept_epoch") else "-"


def _with_learned(row: dict) -> str:
    return row["summary"] + (f" | {row['learned']}" if row.get("learned") else "")


def front_json(study: optuna.Study) -> str:
    from mtl_search.analysis.front import front_rows

    return dump_json(front_rows(study))


def front_csv(study: optuna.Study) -> str:
    from mtl_search.analysis.front import front_rows
    from mtl_search.search.study import study_objectives

    objectives = study_objectives(study)
    names = [o.name for o in objectives]
    rows = front_rows(study)
    # after `mtl-search refine`: mean and std over the training seeds beside the search's own run
    refined = [o for o in objectives if o.kind == "task"] if any(row.get("refined") for row in rows) else []
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        [
            "number",
            *names,
            *[f"{o.name} {part}" for o in refined for part in ("mean", "std", "n")],
            "family",
            "n_params",
            "kept_epoch",
            "summary",
            "architecture",
        ]
    )
    for row in rows:
        stats = [
            ((row.get("refined") or {}).get("validation", {}).get(o.task, {}).get(o.metric) or {}).get(part, "")
            for o in refined
            for part in ("mean", "std", "n")
        ]
        writer.writerow(
            [
                row["number"],
                *[row["values"][n] for n in names],
                *stats,
                row["family"],
                row["n_params"],
                row["kept_epoch"],
                row["summary"],
                json.dumps(row["architecture"], sort_keys=True),
            ]
        )
    return buffer.getvalue()


def write_front_html(study: optuna.Study, path: str) -> None:
    from mtl_search.visualization.pareto import parallel_coordinates_figure, pareto_figure

    figures = [pareto_figure(study)]
    if len(study.directions) > 2:
        figures.append(parallel_coordinates_figure(study))
    parts = [
        figure.to_html(full_html=False, include_plotlyjs="inline" if i == 0 else False)
        for i, figure in enumerate(figures)
    ]
    html = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'>{GENERATOR_META}<title>{study.study_name} Pareto front</title>"
        f"</head><body>{''.join(parts)}</body></html>"
    )
    write_html_page(path, html, "--html")
