"""``mtl-search pareto``: the Pareto front of a study."""

from __future__ import annotations

import argparse
import csv
import io
import json
from typing import Any

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
        "of every objective and a one-line architecture summary; after `mtl-search baselines`, each trial's "
        "Delta-m and per-task change against single-task networks, and the reference models' metrics.",
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
    from mtl_search.records.references import ReferenceRecord
    from mtl_search.search.study import study_objectives

    objectives = study_objectives(study)
    rows = front_rows(study)
    if not rows:
        print(f"study {study.study_name}: no completed trial yet, so no front")
        print_search_summary(study)
        return
    references = ReferenceRecord.read(study)
    names = [o.name for o in objectives]
    arrows = [f"{n} {'↑' if o.direction == 'maximize' else '↓'}" for n, o in zip(names, objectives)]
    # with parameter count as an objective, its column already shows it
    params = [] if any(o.kind == "cost" and o.metric == "params" for o in objectives) else ["params"]
    # Delta-m and each task's change against its single-task network, once `baselines` trained them
    compared = list(dict.fromkeys(o.task for o in objectives if o.kind == "task")) if references else []
    transfer_columns = ["Δm %", *[f"Δ {task} %" for task in compared]] if compared else []
    table_rows = [
        [
            row["number"],
            *objective_cells(row, objectives),
            *([row["n_params"]] if params else []),
            *(transfer_cells(row, compared) if compared else []),
            _kept(row),
            _with_learned(row),
        ]
        for row in rows
    ]
    print_rows_table(
        f"Pareto front of {study.study_name} ({len(rows)} of {len(study.trials)} trials; validation)",
        ["trial", *arrows, *params, *transfer_columns, "epoch", "architecture"],
        table_rows,
    )
    if any(row.get("refined") for row in rows):
        print(
            "refined trials: the search's own run; mean ± std over n training seeds (mtl-search refine). The front and "
            "export --pick use the search's own run, one seed for every trial: read the means for the seed noise."
        )
    if references is not None:
        print_references(references, objectives, rows)
    for line in conditional_notes(study):  # entire-space tasks: their metrics are not over every row
        print(line)
    print_search_summary(study)


def transfer_cells(row: dict, tasks: list[str]) -> list[str]:
    """Delta-m, then each task's change in percent; a task worse than its single-task network
    (negative transfer) carries a "*"."""
    changes = row.get("task_change") or {}
    cells = [_percent(row.get("delta_m"))]
    for task in tasks:
        change = changes.get(task)
        cells.append(_percent(change) + (" *" if change is not None and change < 0 else ""))
    return cells


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:+.2f}"


def print_references(references: Any, objectives: list, rows: list[dict]) -> None:
    """The stored reference models' metrics beside the front, and what Delta-m means."""
    from mtl_search.cli.common import format_value

    from mtl_search.analysis.references import reference_rows

    table = [
        [
            label,
            objective.name,
            format_value(model.validation.get(objective.metric)),
            format_value(model.test.get(objective.metric)) if model.test else "-",
            size,
            f"{model.seconds:.1f}" if model.seconds is not None else "-",
        ]
        for label, objective, model, size in reference_rows(references, objectives)
    ]
    print_rows_table(
        "References (one model per task)", ["model", "objective", "validation", "test", "size", "seconds"], table
    )
    if references.sized_like_trial is not None:
        print(
            f"single-task networks: sized like the front's median network (trial {references.sized_like_trial}, "
            f"{references.parameter_budget} parameters) and trained with its settings"
        )
    if references.gbdt_skipped and references.gbdt_skipped != "not asked for":
        print(f"no LightGBM references: {references.gbdt_skipped}")
    if references.single_task:
        worse = sorted({task for row in rows for task in row.get("negative_transfer") or []})
        print(
            "Δm: mean over tasks of each task's relative change against its single-task network, in percent, "
            "positive = better (validation; test in --format json). * negative transfer: worse than the "
            "single-task network" + (f" ({', '.join(worse)} on some front trials)" if worse else " (none on the front)")
        )


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
    # after `mtl-search baselines`: Delta-m and each task's change (percent, validation) at the end
    tasks = list(dict.fromkeys(o.task for o in objectives if o.kind == "task"))
    compared = tasks if any(row.get("delta_m") is not None for row in rows) else []
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
            *(["delta_m", *[f"{task} change" for task in compared], "delta_m_test"] if compared else []),
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
                *(
                    [
                        _blank_if_none(row["delta_m"]),
                        *[_blank_if_none(row["task_change"].get(task)) for task in compared],
                        _blank_if_none(row["delta_m_test"]),
                    ]
                    if compared
                    else []
                ),
            ]
        )
    return buffer.getvalue()


def _blank_if_none(value: Any) -> Any:
    return "" if value is None else value


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
