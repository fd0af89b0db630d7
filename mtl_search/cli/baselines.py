"""``mtl-search baselines``: train the reference models a front is read against."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mtl_search.cli.common import add_study_arguments, dump_json, whole_number
from mtl_search.threads import MAX_THREADS, THREADS_HELP, with_threads


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "baselines",
        help="train single-task networks (and LightGBM) per task to compare the front with",
        description="Train, on the study's own data and split, one single-task network per task (each as large "
        "as the front's median network and trained with its settings) and, when LightGBM is installed, one "
        "gradient-boosted model per task. Their metrics are stored with the study (replacing earlier ones); "
        "`pareto` and `report` then show each front trial's Delta-m and per-task change against the "
        "single-task networks, and draw the references on the front figure.",
    )
    add_study_arguments(parser, formats=("table", "json"))
    parser.add_argument(
        "--no-gbdt", action="store_true", help="train the single-task networks only, even with LightGBM installed"
    )
    parser.add_argument(
        "--device", metavar="NAME", default=None, help="torch device: auto (default), cpu, cuda, cuda:1"
    )
    parser.add_argument("--threads", metavar="N", type=whole_number(1, MAX_THREADS), default=None, help=THREADS_HELP)
    parser.set_defaults(handler=main)


@with_threads
def main(args: argparse.Namespace) -> int:
    from mtl_search.search.study import load_existing

    # the study first: a missing one is refused before torch loads (seconds)
    study = load_existing(args.study, args.storage)
    from mtl_search.cli.pareto import print_front
    from mtl_search.export.bundle import reload_data
    from mtl_search.records.study import StudyRecord
    from mtl_search.search.references import sizing_trial
    from mtl_search.training import resolve_device

    device = resolve_device(args.device)
    sizing_trial(study)  # no front yet: refused before the data is read
    data = reload_data(StudyRecord.read(study))
    record = train_and_report(study, data, device=device, gbdt=not args.no_gbdt, quiet=args.format != "table")
    if args.format == "json":
        print(dump_json(record.to_attrs()))
    else:
        print_front(study)
    return 0


def train_and_report(study: Any, data: Any, *, device: Any, gbdt: bool, quiet: bool, command: str = "baselines") -> Any:
    """Train and store the references; one line per model trained unless ``quiet``, and one
    note on stderr when LightGBM was wanted but could not run."""
    from mtl_search.search.references import train_references

    def progress(label: str, task: str, model: Any) -> None:
        if quiet:
            return
        size = f"{model.n_params} parameters" if model.n_params is not None else f"{model.trees} trees"
        print(f"{label} for {task}: {size}, {model.seconds:.1f} s")

    record = train_references(study, data, device=device, gbdt=gbdt, on_model=progress)
    if gbdt and record.gbdt_skipped:
        print(f"mtl-search {command}: note: LightGBM skipped: {record.gbdt_skipped}", file=sys.stderr)
    return record
