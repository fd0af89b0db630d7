"""``mtl-search refine``: retrain the front with more seeds, to see which wins are real."""

from __future__ import annotations

import argparse

from mtl_search.cli.common import add_precision_option, add_study_arguments, dump_json, whole_number
from mtl_search.threads import MAX_THREADS, THREADS_HELP, with_threads


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "refine",
        help="retrain the Pareto front with more seeds and record mean ± std",
        description="Retrain every trial of the study's Pareto front with K more training seeds (the same candidate, "
        "training.seed changed) on the study's own data, and record per task the mean and standard deviation of the "
        "validation and test metrics. `pareto` then shows mean ± std. The front is still chosen on validation; test is "
        "only reported.",
    )
    add_study_arguments(parser, formats=("table", "json"))
    parser.add_argument(
        "--seeds",
        metavar="K",
        type=whole_number(1),
        default=3,
        help="extra training seeds per front trial, trained as one population where the candidate fuses (default: 3)",
    )
    parser.add_argument(
        "--device", metavar="NAME", default=None, help="torch device: auto (default), cpu, cuda, cuda:1"
    )
    parser.add_argument("--threads", metavar="N", type=whole_number(1, MAX_THREADS), default=None, help=THREADS_HELP)
    add_precision_option(
        parser,
        None,
        "training precision of the extra seeds: fp32, bf16 or fp16 (default: each "
        "trial's own, as the search trained it)",
    )
    parser.set_defaults(handler=main)


@with_threads
def main(args: argparse.Namespace) -> int:
    from mtl_search.cli.pareto import print_front
    from mtl_search.errors import UserError
    from mtl_search.search.hypervolume import store_hypervolume
    from mtl_search.records.study import StudyRecord
    from mtl_search.search.study import load_existing, pareto_trials

    # the study first: a missing one is refused before torch loads (seconds)
    study = load_existing(args.study, args.storage)
    from mtl_search.export.bundle import reload_data
    from mtl_search.analysis.refine import refine_front
    from mtl_search.training import resolve_device

    device = resolve_device(args.device)
    if not pareto_trials(study):
        raise UserError(f"study {args.study!r}: no completed trial yet, so no front to refine")
    data = reload_data(StudyRecord.read(study))

    def progress(number: int, record: dict, retrained: bool) -> None:
        if args.format == "table":
            print(
                f"trial {number}: retrained with seeds {record['seeds'][1:]}"
                if retrained
                else f"trial {number}: kept its refinement with {len(record['seeds']) - 1} seeds {record['seeds'][1:]} "
                f"(--seeds {args.seeds} asks for no more)"
            )
            for failure in record.get("diverged", []):
                print(f"trial {number}: seed {failure['seed']} diverged ({failure['reason']}); left out of the means")

    records = refine_front(study, data, args.seeds, device=device, on_trial=progress, precision=args.precision)
    store_hypervolume(study)
    if args.format == "json":
        print(dump_json({str(number): record for number, record in records.items()}))
    else:
        print_front(study)
    return 0
