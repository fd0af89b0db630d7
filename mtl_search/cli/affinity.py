"""``mtl-search affinity``: the task affinities measured for affinity seeding."""

from __future__ import annotations

import argparse

from mtl_search.cli.common import add_study_arguments, dump_json


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "affinity",
        help="show the task affinity matrix of a study (from --seed-strategy affinity or grouping: affinity)",
        description="Show the pairwise task affinities a study measured, after a short fully shared training, when it was "
        "seeded with --seed-strategy affinity or its space has families.tree.grouping affinity (easy-hard: share of "
        "training rows easy for both tasks or hard for both; lookahead: share of one task's loss a gradient step on "
        "the other removes), and the order in which the trees cut from it split the tasks.",
    )
    add_study_arguments(parser, formats=("table", "json"))
    parser.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    from mtl_search.cli.search_summary import print_affinity
    from mtl_search.errors import UserError
    from mtl_search.search.study import load_existing

    # the study first: a missing one is refused before torch loads (seconds)
    study = load_existing(args.study, args.storage)
    from mtl_search.records.study import StudyRecord

    record = StudyRecord.read(study).affinity
    if record is None:
        raise UserError(
            f"study {args.study!r} has no task affinity (run it with --seed-strategy affinity, or a space with families.tree.grouping affinity, when creating it)"
        )
    if args.format == "json":
        print(dump_json(record))
    else:
        print_affinity(record, title=f"task affinity of {study.study_name}", study=study)
    return 0
