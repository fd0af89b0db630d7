"""Replay pruning settings on complete, unpruned studies: epochs saved against front lost.

A live pruned search and an unpruned one sample different trials after the first pruning,
so their fronts differ by sampler noise as well as by pruning. Replaying removes that
noise (``mtl_search.analysis.pruning_replay``, also behind ``mtl-search pruning STUDY``):
the trials of an unpruned study are taken in trial order, and for each setting the
shipped rule decides after every epoch whether the trial would have been stopped, with the
trials kept so far as its references. Kept trials form the replayed front; the unpruned
study's front is the truth. This script runs a wider grid over several studies at once.

Reported per setting (per seed and over seeds): the share of epochs trained, the share of
the trials' time left (their durations, summed, less the untrained epochs' recorded
seconds; sampling, storage and model building stay), and the **epsilon indicator** of the
replayed front against the true one: the smallest e such that every true front point has a
kept point at most (1 + e) times as large on every minimised objective. 0 means nothing on
the front was lost; 0.05 means the worst-lost trade-off is 5 % away from what remains.

Then the **foresight floors**: what a pruner that knew where every trial will end would
train, stopping after the warm-up each trial that ends dominated by a trial it let finish
before. With the exact front kept, no rule that stops a trial only when a finished trial
ends ahead of it can train less on these studies; the 5 % rows lose at most that much. And
what a trial costs besides its epochs, which no pruning saves.

Studies: ``--generate`` trains unpruned studies of ``benchmarks/search_efficiency.py``'s
baseline (default space, synthetic data, TPE) into ``--folder``; ``--storage URL`` (one or
more) replays studies you already have, for example your own ``studies/*.db`` run with
``--no-prune``, to choose pruning settings for your data.

Usage::

    python benchmarks/pruning_replay.py --generate --rows 2000 --epochs 16 --trials 60
    python benchmarks/pruning_replay.py --storage sqlite:///studies/mine.db
    python benchmarks/pruning_replay.py --quick
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import math
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import optuna

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import write_result  # noqa: E402

from mtl_search.search.pruning import PruningSettings  # noqa: E402
from mtl_search.analysis.pruning_replay import (  # noqa: E402
    FLOOR_TOLERANCES,
    FLOOR_WARMUPS,
    floor_label,
    foresight_floor,
    has_steps,
    replay_settings,
    study_curves,
    study_timing,
    warmup_label,
)


def parse_args(
    argv: list[str] | None = None, *, name: str = "pruning_replay", description: str = __doc__, replay: bool = True
) -> argparse.Namespace:
    """The studies to read (``--storage`` or ``--generate``); shared with checkpoint_policy.py."""
    parser = argparse.ArgumentParser(description=description.split("\n\n")[0])
    parser.add_argument(
        "--storage", nargs="+", default=[], help="SQLAlchemy URL(s) of unpruned studies to use (every study in each)"
    )
    parser.add_argument(
        "--generate",
        action="store_true",
        help="train unpruned baseline studies first (search_efficiency.py's baseline)",
    )
    parser.add_argument(
        "--folder",
        type=Path,
        default=None,
        help="where --generate keeps its SQLite files (default: a temporary folder)",
    )
    parser.add_argument("--seeds", type=int, default=3, help="--generate: studies (default: 3)")
    parser.add_argument("--trials", type=int, default=60, help="--generate: trials per study (default: 60)")
    parser.add_argument("--epochs", type=int, default=16, help="--generate: epochs per trial (default: 16)")
    parser.add_argument("--rows", type=int, default=2000, help="--generate: synthetic rows (default: 2000)")
    parser.add_argument(
        "--checkpoint",
        choices=("best", "last"),
        default=None,
        help="--generate: training.checkpoint (default: the space's, best)",
    )
    if replay:
        parser.add_argument(
            "--rebuild-best",
            action="store_true",
            help="replay the curves the trials would have had keeping their best epoch (for studies run with checkpoint: last)",
        )
    parser.add_argument("--name", default=name, help=f"results file benchmarks/results/NAME.json (default: {name})")
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: generate 2 studies of 16 trials x 6 epochs on 1500 rows"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.generate, args.seeds, args.trials, args.epochs, args.rows = True, 2, 16, 6, 1500
    if not (args.generate or args.storage):
        parser.error("give --storage URL(s) of unpruned studies, or --generate")
    return args


def settings_grid(budgets: tuple[str, ...] = ("epochs",)) -> list[PruningSettings]:
    """The median rule at its defaults first (the default until 2026-12-02), then the
    count-only rule it replaced, then a spread of the median rule, then the projected rule
    (its defaults, the default since, and a fixed warm-up); each in every
    budget (steps only when every replayed trial recorded its steps)."""
    grid = []
    for budget in budgets:
        for candidate in (
            [PruningSettings(budget=budget), PruningSettings(min_dominator_fraction=0.0, budget=budget)]
            + [
                PruningSettings(warmup_epochs=warmup, margin=margin, min_dominator_fraction=fraction, budget=budget)
                for warmup, margin, fraction in itertools.product((1, 2), (0.0, 0.05), (0.0, 0.25, 0.5, 0.75))
            ]
            + [PruningSettings.projected(budget=budget), PruningSettings.projected(warmup_fraction=0.0, budget=budget)]
        ):
            if candidate not in grid:
                grid.append(candidate)
    return grid


def label(settings: PruningSettings) -> str:
    return (
        f"{settings.rule}, {settings.budget}, warmup {warmup_label(settings)}, margin {settings.margin:g}, "
        f">= {settings.min_dominators} and >= {settings.min_dominator_fraction:g} of refs"
    )


def load_studies(args: argparse.Namespace, folder: Path) -> list[tuple[str, optuna.Study]]:
    studies = []
    if args.generate:
        import torch

        import search_efficiency

        torch.set_num_threads(1)
        options = search_efficiency.parse_args(
            ["--trials", str(args.trials), "--epochs", str(args.epochs), "--rows", str(args.rows)]
            + (["--checkpoint", args.checkpoint] if args.checkpoint else [])
        )
        for seed in range(args.seeds):
            study, wall, _ = search_efficiency.run_variant("baseline", seed, options, folder)
            print(
                f"generated seed {seed}: {args.trials} trials x {args.epochs} epochs on {args.rows} rows in {wall:.0f} s",
                flush=True,
            )
            studies.append((f"baseline-{seed}", study))
    for url in args.storage:
        for summary in optuna.get_all_study_summaries(url):
            study = optuna.load_study(study_name=summary.study_name, storage=url)
            if study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.PRUNED,)):
                print(
                    f"warning: study {summary.study_name!r} has pruned trials; its front is not the unpruned truth",
                    flush=True,
                )
            studies.append((f"{url} {summary.study_name}", study))
    return studies


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.folder or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        studies = [
            (name, study_curves(study, rebuild_best=args.rebuild_best), study_timing(study))
            for name, study in load_studies(args, folder)
        ]
    studies = [entry for entry in studies if entry[1]]
    if not studies:
        raise SystemExit("no complete trials with a per-epoch history to replay")
    rows: list[dict[str, Any]] = []
    print(
        f"\npruning replay over {len(studies)} unpruned studies ({', '.join(str(len(c)) for _, c, _ in studies)} complete trials)"
    )
    print(f"{'setting':92s} {'epochs trained':>16s} {'time':>6s} {'epsilon, max (per study)':>30s}")
    # steps are recorded since 2026-11-21; older studies replay the epoch budget only
    with_steps = all(has_steps(curves) for _, curves, _ in studies)
    for settings in settings_grid(("epochs", "steps") if with_steps else ("epochs",)):
        rows.append(
            summarise(
                label(settings),
                dataclasses.asdict(settings),
                [replay_settings(curves, settings, timing) for _, curves, timing in studies],
            )
        )
    floors: list[dict[str, Any]] = []
    for warmup_epochs, warmup_fraction in FLOOR_WARMUPS:
        settings = PruningSettings(warmup_epochs=warmup_epochs, warmup_fraction=warmup_fraction)
        for tolerance in FLOOR_TOLERANCES:
            floors.append(
                summarise(
                    f"floor: foresight, {floor_label(settings, tolerance)}",
                    {"warmup_epochs": warmup_epochs, "warmup_fraction": warmup_fraction, "tolerance": tolerance},
                    [foresight_floor(curves, settings, tolerance, timing) for _, curves, timing in studies],
                )
            )
    costs = [
        {"fixed_seconds_per_trial": timing.fixed_seconds_per_trial, "seconds_per_epoch": timing.seconds_per_epoch}
        for _, _, timing in studies
        if timing is not None
    ]
    if costs:
        print(
            "what a trial costs besides its epochs, per study: "
            + ", ".join(f"{c['fixed_seconds_per_trial']:.3f} s" for c in costs)
            + "; an epoch: "
            + ", ".join(f"{c['seconds_per_epoch']:.4f} s" for c in costs)
        )
    write_result(
        args.name,
        {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        {"studies": [n for n, _, _ in studies], "rows": rows, "floors": floors, "costs": costs},
    )
    return 0


def summarise(name: str, settings: dict[str, Any], results: list[Any]) -> dict[str, Any]:
    """One printed line and one results row for a setting (or floor) replayed on every study."""
    shares, epsilons = [r.epoch_share for r in results], [r.epsilon for r in results]
    times = [r.time_share for r in results]
    time_mean = statistics.fmean(times)  # NaN when a study has no timings
    known = [e for e in epsilons if not math.isnan(e)]
    epsilon_max = max(known) if known else math.nan  # NaN: some values were not positive
    per_study = " ".join(f"{100 * e:.1f}" for e in epsilons)
    print(
        f"{name:92s} {statistics.fmean(shares):16.2f} {time_mean:6.2f} {100 * epsilon_max:8.1f} % ({per_study})",
        flush=True,
    )
    return {
        "settings": settings,
        "label": name,
        "epoch_share": shares,
        "time_share": [None if math.isnan(t) else t for t in times],
        "epsilon": [None if math.isnan(e) else e for e in epsilons],
        "front_stopped": [r.front_stopped for r in results],
        "epoch_share_mean": statistics.fmean(shares),
        "time_share_mean": None if math.isnan(time_mean) else time_mean,
        "epsilon_max": None if math.isnan(epsilon_max) else epsilon_max,
    }


if __name__ == "__main__":
    raise SystemExit(main())
