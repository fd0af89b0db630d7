"""``mtl-search studies``: the studies in a storage."""

from __future__ import annotations

import argparse
import sys

import optuna

from mtl_search.cli.common import add_storage_option, print_rows_table


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "studies",
        help="list the studies with trial counts and front size",
        description="List the studies in a storage: trials by state and the size of each Pareto front.",
    )
    add_storage_option(parser)
    parser.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    from mtl_search.search.storage import open_storage
    from mtl_search.search.costs import count_infeasible, trained_without_limits
    from mtl_search.search.study import pareto_trials

    storage = open_storage(args.storage, heartbeat=False, create=False)
    rows, notes = [], []
    for summary in sorted(
        optuna.study.get_all_study_summaries(storage, include_best_trial=False), key=lambda s: s.study_name
    ):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        trials = study.get_trials(deepcopy=False)
        states = {state: sum(1 for t in trials if t.state == state) for state in optuna.trial.TrialState}
        front = (
            len(pareto_trials(study))
            if len(study.directions) > 1
            else (1 if states[optuna.trial.TrialState.COMPLETE] else 0)
        )
        rows.append(
            [
                summary.study_name,
                len(trials),
                states[optuna.trial.TrialState.COMPLETE],
                states[optuna.trial.TrialState.PRUNED],
                states[optuna.trial.TrialState.FAIL],
                states[optuna.trial.TrialState.RUNNING],
                states[optuna.trial.TrialState.WAITING],
                count_infeasible(trials),
                front,
                ", ".join(study.metric_names or []),
            ]
        )
        note = trained_without_limits(study)
        if note:
            notes.append(f"mtl-search studies: warning: study {summary.study_name!r}: {note}")
    if not rows:
        print("no studies yet (mtl-search run creates one)")
        return 0
    # waiting: enqueued and not started yet (affinity seeding's trees, the rest of an interrupted run's queue)
    print_rows_table(
        "studies",
        ["study", "trials", "complete", "pruned", "failed", "running", "waiting", "infeasible", "front", "objectives"],
        rows,
    )
    for note in notes:
        print(note, file=sys.stderr)
    return 0
