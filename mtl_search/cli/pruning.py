"""``mtl-search pruning``: what pruning settings would have saved and lost on a finished study."""

from __future__ import annotations

import argparse
import math
import sys

from mtl_search.cli.common import add_study_arguments, dump_json, print_rows_table


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "pruning",
        help="replay pruning settings on a finished unpruned study: epochs and time saved against front lost",
        description="Replay Pareto-aware pruning settings on the recorded learning curves of a finished study, "
        "ideally one run with --no-prune: trial by trial, in order, as the search would have pruned. For each "
        "setting, print the share of epochs it would have trained, the share of the trials' time that would "
        "have been left (the untrained epochs' recorded seconds taken off), how many trials of the study's front "
        "it would have stopped, and the epsilon indicator of what remains (every front point is matched within "
        "this factor on every objective). The first row is the study's own setting. The last rows are floors: "
        "what a pruner that knew where each trial will end, and stopped a trial only when a trial finished "
        "before it ends ahead, would train with each warm-up, keeping the exact front (no rule that asks the "
        "same question can train less on this study) or losing at most 5 %. See docs/explanation/pruning.md.",
    )
    add_study_arguments(parser, formats=("table", "json"))
    parser.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    import optuna

    from mtl_search.errors import UserError
    from mtl_search.search.study import load_existing

    # the study first: a missing one is refused before torch loads (seconds)
    study = load_existing(args.study, args.storage)
    from mtl_search.analysis.pruning_replay import (
        FLOOR_TOLERANCES,
        foresight_floor,
        foresight_warmups,
        has_steps,
        replay_settings,
        settings_grid,
        stored_settings,
        study_curves,
        study_timing,
        warmup_label,
    )

    curves = study_curves(study)
    base = stored_settings(study)
    if len(curves) <= base.min_completed_trials:
        raise UserError(
            f"study {args.study!r}: {len(curves)} complete trial(s) with a per-epoch history; the replay needs "
            f"more than min_completed_trials ({base.min_completed_trials}); run more trials, ideally with --no-prune"
        )
    timing = study_timing(study)
    pruned = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.PRUNED,)))
    # trials of record format 0 may have no step counts: only the epochs budget replays them
    budgets = ("epochs", "steps") if has_steps(curves) else ("epochs",)
    if base.budget not in budgets:
        print(
            f"note: study {args.study!r} prunes after equal steps, but some of its trials have no step counts "
            "(stored in record format 0, before they were counted); only the epochs budget is replayed",
            file=sys.stderr,
        )
    grid = [settings for settings in settings_grid(base, budgets) if settings.budget in budgets]
    results = [replay_settings(curves, settings, timing) for settings in grid]
    floors = [
        foresight_floor(curves, settings, tolerance, timing)
        for settings in foresight_warmups(grid)
        for tolerance in FLOOR_TOLERANCES
    ]
    if args.format == "json":
        print(
            dump_json(
                {
                    "study": study.study_name,
                    "trials_replayed": len(curves),
                    "pruned_in_study": pruned,
                    "results": [r.to_data() for r in results],
                    "foresight": [f.to_data() for f in floors],
                }
            )
        )
        return 0
    rows = []
    for r in results:
        s = r.settings
        rows.append(
            [
                "study's" if s == base else "",
                s.rule,
                s.budget,
                warmup_label(s),
                f"{s.margin:g}",
                s.min_dominators,
                f"{s.min_dominator_fraction:g}",
                f"{r.epoch_share:.2f}",
                share_label(r.time_share),
                r.front_stopped,
                epsilon_label(r.epsilon),
            ]
        )
    rows += [
        [
            "floor",
            "foresight" + (f" {100 * f.tolerance:g} %" if f.tolerance else ""),
            "-",
            warmup_label(f.settings),
            "-",
            "-",
            "-",
            f"{f.epoch_share:.2f}",
            share_label(f.time_share),
            f.front_stopped,
            epsilon_label(f.epsilon),
        ]
        for f in floors
    ]
    print_rows_table(
        f"pruning replayed on {study.study_name} ({len(curves)} complete trials)",
        [
            "",
            "rule",
            "budget",
            "warm-up",
            "margin",
            "dominators",
            "fraction",
            "epochs trained",
            "time spent",
            "front trials stopped",
            "epsilon",
        ],
        rows,
    )
    print(
        "columns: epochs trained and time spent are shares of the replayed trials' epochs and recorded seconds "
        "(1.00 = nothing saved); fraction = min_dominator_fraction, the share of completed trials that must "
        "dominate; epsilon = how far the front left is from the study's (0 % = the same front). To search with a "
        "row's setting: run --prune-rule RULE --prune-budget BUDGET --prune-warmup N (margin, dominators and "
        "fraction in the space's pruning: section)."
    )
    if pruned:
        print(
            f"note: {pruned} trial(s) of this study were pruned by the search itself: only its complete trials are "
            "replayed, so the study's own row saves only what the rule would stop among those, and its front is "
            "not the unpruned truth; replay a study run with --no-prune to choose settings"
        )
    return 0


def share_label(share: float) -> str:
    return "-" if math.isnan(share) else f"{share:.2f}"


def epsilon_label(epsilon: float) -> str:
    return "-" if math.isnan(epsilon) else f"{100 * epsilon:.1f} %"
