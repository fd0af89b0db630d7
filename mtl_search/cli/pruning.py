"""``mtl-search pruning``: what pruning settings would have saved and lost on a finished study."""

from __future__ import annotations

import argparse
import math
import sys

from mtl_search.cli.common import add_study_arguments, dump_json, print_rows_table


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "pruning", help="replay pruning settings on a finished unpruned study: epochs saved against front lost",
        description="Replay Pareto-aware pruning settings on the recorded learning curves of a finished study, "
        "ideally one run with --no-prune: trial by trial, in order, as the search would have pruned. For each "
        "setting, print the share of epochs it would have trained, how many trials of the study's front it "
        "would have stopped, and the epsilon indicator of what remains (every front point is matched within "
        "this factor on every objective). The first row is the study's own setting. See docs/search.md.",
    )
    add_study_arguments(parser, formats=("table", "json"))
    parser.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    import optuna

    from mtl_search.errors import UserError
    from mtl_search.search.pruning_replay import has_steps, replay_settings, settings_grid, stored_settings, study_curves
    from mtl_search.search.study import load_existing

    study = load_existing(args.study, args.storage)
    curves = study_curves(study)
    base = stored_settings(study)
    if len(curves) <= base.min_completed_trials:
        raise UserError(f"study {args.study!r}: {len(curves)} complete trial(s) with a per-epoch history; the replay needs "
                        f"more than min_completed_trials ({base.min_completed_trials}); run more trials, ideally with --no-prune")
    pruned = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.PRUNED,)))
    budgets = ("epochs", "steps") if has_steps(curves) else ("epochs",)
    if base.budget not in budgets:
        print(f"note: study {args.study!r} prunes after equal steps, but some of its trials have no step counts "
              "(recorded before 2026-11-21); only the epochs budget is replayed", file=sys.stderr)
    results = [replay_settings(curves, settings) for settings in settings_grid(base, budgets) if settings.budget in budgets]
    if args.format == "json":
        print(dump_json({"study": study.study_name, "trials_replayed": len(curves), "pruned_in_study": pruned,
                         "results": [r.to_data() for r in results]}))
        return 0
    rows = []
    for r in results:
        s = r.settings
        warmup = f"{s.warmup_epochs} or {s.warmup_fraction:g} of epochs" if s.warmup_fraction else s.warmup_epochs
        rows.append([
            "study's" if s == base else "", s.rule, s.budget, warmup, f"{s.margin:g}", s.min_dominators, f"{s.min_dominator_fraction:g}",
            f"{r.epoch_share:.2f}", r.front_stopped, "-" if math.isnan(r.epsilon) else f"{100 * r.epsilon:.1f} %",
        ])
    print_rows_table(f"pruning replayed on {study.study_name} ({len(curves)} complete trials)",
                     ["", "rule", "budget", "warm-up", "margin", "dominators", "fraction", "epochs trained", "front trials stopped", "epsilon"], rows)
    if pruned:
        print(f"note: {pruned} trial(s) of this study were pruned, so its front is not the unpruned truth; "
              "replay a study run with --no-prune to choose settings")
    return 0
