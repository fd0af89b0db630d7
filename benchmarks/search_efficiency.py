"""Does the search spend compute well? Pruning and affinity seeding at a fixed trial budget (issue 6).

For each seed, three studies of the bundled default space (``mtl_search/spaces/default.yaml``, or ``--space``:
task-grouping trees, searched widths, learning rate, batch size, tower width and static
weights; multivariate TPE) on the synthetic MMoE data (three tasks by default; ``--groups 2``
splits the tasks into two groups of related tasks that are orthogonal to each other, the
unequal relatedness that affinity seeding is meant to find):

- **baseline**: ``--trials`` trials, no pruning, no seeding;
- **pruned**: the same with Pareto-aware pruning by the median rule (``pruning.rule:
  median``, the default until 2026-12-02: warm-up 2 epochs, 5 completed trials, margin 5 %,
  at least 2 dominators and half of the references, after equal optimiser steps;
  ``--prune-margin``/``--prune-dominators``/``--prune-fraction`` override);
- **pruned_epochs** (only when named): the same rule with ``pruning.budget: epochs``, trials
  compared after equal epochs instead of equal optimiser steps (the default before
  2026-11-21; results files of that day call the two ``pruned`` and ``pruned_steps``);
- **pruned_projected**: pruning with ``pruning.rule: projected``, the default since
  2026-12-02 (one dominator at the same budget, no margin, and the trial's own learning
  curve projected to its last epoch still dominated by a completed trial's final values;
  warm-up 2 epochs or an eighth of them); the ``--prune-*`` options override its defaults too.
- **affinity**: no pruning, ``--seed-strategy affinity`` (the seeded trees are the first
  trials; the affinity training counts in its wall time), ``--early`` trials.
- **affinity_grown** (only when named): the same with ``--seed-trees grown``, the paper's
  grown trees at one size (the default before 2026-11-21).
- **affinity_lookahead** (only when named): the default seeding with TAG's lookahead affinity
  (``--affinity-measure lookahead``) instead of the easy/hard agreement.
- **affinity_chain** (only when named): the default seeding, and the tree family searched
  with ``grouping: affinity``: every tree is cut from the measured affinity chain, the
  sampler only chooses how far along it each depth goes.
- **startup10** (only when named in ``--variants``): the baseline with Optuna's default of 10
  random start-up trials instead of mtl-search's budget-scaled start-up.
- **pruned_half_time** and **half_time** (only when named): a time budget instead of a trial
  budget. No new trial starts after half the baseline's wall time of the same seed, with and
  without pruning; the unpruned one is the control that tells pruning's share apart from an
  early-saturating front.

Hypervolume (HV) uses one normalisation per seed, shared by its three studies, objectives
turned into "minimise", reference 1.1 per objective (``mtl_search.search.hypervolume``), in two
boxes: **HV-all** min-max scales over every complete trial (the study-level definition; one
very bad trial pushes every front near the maximum), **HV-front** scales between the ideal
and the nadir of the three studies' combined front (``front_bounds``), which keeps
differences between good fronts visible. Reported per variant: wall time of
``run_search``, final HV, HV after the first ``--early`` trials, trials pruned, epochs
trained, the epsilon indicator both ways against the baseline of the same seed ("eps vs
base": how far the baseline's front is from this variant's points; "base eps vs it": the
reverse; ``mtl_search.search.hypervolume.epsilon_indicator``), and per variant the seeds
on which it beat the baseline (paired, since seeds differ more than variants). On each
unpruned baseline study it also replays the **foresight floor**
(``mtl_search.analysis.pruning_replay.foresight_floor``): the share of the trials' time a
pruner that knew where every trial will end would leave, keeping the exact front or losing
at most 5 %; no rule that stops a trial only when a finished trial ends ahead of it can
leave less on those trials. Targets: the pruned variants reach the baseline's final HV within noise in
at most half the time; affinity has a higher HV than the baseline after the first ``--early`` trials.

Usage::

    python benchmarks/search_efficiency.py [--seeds 3] [--trials 30] [--early 20] [--epochs 8] [--rows 2000]
    python benchmarks/search_efficiency.py --variants baseline affinity --tasks 4 --groups 2 --correlation 0.9
    python benchmarks/search_efficiency.py --quick
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import write_result  # noqa: E402

from mtl_search.data.synthetic import make_synthetic  # noqa: E402
from mtl_search.search.hypervolume import (
    epsilon_indicator,
    front_bounds,
    hypervolume_history,
    objective_bounds,
    scored_trials,
)  # noqa: E402
from mtl_search.search.pruning import PruningSettings, with_pruning_section  # noqa: E402
from mtl_search.analysis.pruning_replay import (
    FLOOR_TOLERANCES,
    FLOOR_WARMUPS,
    floor_label,
    foresight_floor,
    study_curves,
    study_timing,
)  # noqa: E402
from mtl_search.search.runner import SearchSettings, run_search  # noqa: E402
from mtl_search.search.space import load_space  # noqa: E402

VARIANTS = {
    # name: (prune, seed strategy, trials key, TPE start-up trials (None: --startup-trials / mtl-search's))
    "baseline": (False, "none", "trials", None),
    "pruned": (True, "none", "trials", None),  # pruning.rule: median
    "pruned_epochs": (True, "none", "trials", None),  # median, and pruning.budget: epochs
    "pruned_projected": (True, "none", "trials", None),  # also pruning.rule: projected
    "affinity": (False, "affinity", "early", None),
    "affinity_grown": (False, "affinity_grown", "early", None),
    "affinity_lookahead": (False, "affinity_lookahead", "early", None),
    "affinity_chain": (False, "affinity_chain", "early", None),  # also families.tree.grouping: affinity
    "startup10": (False, "none", "trials", 10),  # the baseline with Optuna's default TPE start-up
    # a time budget instead of a trial budget: half the baseline's wall time, as many trials as fit
    "pruned_half_time": (True, "none", "half_time", None),  # median
    "half_time": (False, "none", "half_time", None),  # the control: the same time, no pruning
}
DEFAULT_VARIANTS = ["baseline", "pruned_projected", "affinity"]
# the variants that measure the median rule, whatever the space's default
MEDIAN_RULE_VARIANTS = ("pruned", "pruned_epochs", "pruned_half_time")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3, help="independent repetitions (default: 3)")
    parser.add_argument(
        "--first-seed",
        type=int,
        default=0,
        help="seed of the first repetition, to add seeds to an earlier run (default: 0)",
    )
    parser.add_argument(
        "--trials", type=int, default=30, help="trial budget of baseline and the pruned variants (default: 30)"
    )
    parser.add_argument("--early", type=int, default=20, help="trials after which seeding is judged (default: 20)")
    parser.add_argument(
        "--epochs", type=int, default=8, help="training epochs per trial (default: 8, as the default space)"
    )
    parser.add_argument("--rows", type=int, default=2000, help="synthetic rows (default: 2000)")
    parser.add_argument("--dim", type=int, default=20, help="synthetic input width (default: 20)")
    parser.add_argument("--tasks", type=int, default=3, help="synthetic tasks (default: 3)")
    parser.add_argument(
        "--correlation", type=float, default=0.5, help="synthetic p within a group of tasks (default: 0.5)"
    )
    parser.add_argument(
        "--groups", type=int, default=1, help="synthetic groups of related tasks (default: 1, all equally related)"
    )
    parser.add_argument(
        "--data-json",
        metavar="JSON",
        type=json.loads,
        default={},
        help='more make_synthetic options as a JSON object, e.g. \'{"noise": 1.0, "sines": 5}\'',
    )
    parser.add_argument(
        "--raw-targets",
        action="store_true",
        help="learn the regression targets in their own units, as before 2026-12-03 (default: standardised)",
    )
    parser.add_argument(
        "--space", default="default", help="bundled space name or YAML path every variant searches (default: default)"
    )
    parser.add_argument(
        "--startup-trials",
        type=int,
        default=None,
        help="TPE's random start-up trials (default: mtl-search's, a quarter of the budget, 3 to 10)",
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=list(VARIANTS),
        default=DEFAULT_VARIANTS,
        help="variants to run (default: baseline pruned_projected affinity)",
    )
    parser.add_argument(
        "--prune-margin",
        type=float,
        default=None,
        help="pruning margin of the pruned variants (default: the rule's, 0.05 for median, 0 for projected)",
    )
    parser.add_argument("--prune-warmup", type=int, default=None, help="epochs never pruned (default: the space's, 2)")
    parser.add_argument(
        "--prune-warmup-fraction",
        type=float,
        default=None,
        help="share of each trial's epochs never pruned, if more (default: the rule's, 0 for median, 0.125 for projected)",
    )
    parser.add_argument(
        "--prune-dominators",
        type=int,
        default=None,
        help="dominators needed to prune (default: the rule's, 2 for median, 1 for projected)",
    )
    parser.add_argument(
        "--prune-fraction",
        type=float,
        default=None,
        help="share of the references that must dominate (default: the rule's, 0.5 for median, 0 for projected; 0 with median is the count-only rule)",
    )
    parser.add_argument(
        "--checkpoint",
        choices=("best", "last"),
        default=None,
        help="training.checkpoint of every variant (default: the space's, best)",
    )
    parser.add_argument(
        "--keep",
        metavar="FOLDER",
        default=None,
        help="keep the studies' SQLite files in FOLDER (to replay the unpruned ones with pruning_replay.py --storage)",
    )
    parser.add_argument(
        "--name",
        default="search_efficiency",
        help="results file benchmarks/results/NAME.json (default: search_efficiency)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: 3 seeds, 12 trials, 6 early, 4 epochs, 1500 rows"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.trials, args.early, args.epochs, args.rows = 12, 6, 4, 1500
    args.early = min(args.early, args.trials)
    return args


def run_variant(
    name: str, seed: int, args: argparse.Namespace, folder: Path, timeout: float | None = None
) -> tuple[optuna.Study, float, float]:
    """The study, its wall seconds and its CPU seconds (this process; on a shared machine CPU
    time follows the work done, wall time also the neighbours' load)."""
    prune, strategy, budget, startup = VARIANTS[name]
    data = make_synthetic(
        **(
            {
                "dim": args.dim,
                "rows": args.rows,
                "tasks": args.tasks,
                "correlation": args.correlation,
                "groups": args.groups,
            }
            | args.data_json
            | {"seed": max(seed, 0)}
        )
    )
    if args.raw_targets:  # statistics 0 and 1: the loss and outputs of the raw target
        data = dataclasses.replace(
            data,
            tasks=[
                dataclasses.replace(t, target_mean=0.0, target_std=1.0) if t.kind == "regression" else t
                for t in data.tasks
            ],
        )
    space = load_space(args.space)
    pruning = {
        k: v
        for k, v in (
            ("margin", args.prune_margin),
            ("min_dominators", args.prune_dominators),
            ("warmup_epochs", args.prune_warmup),
            ("min_dominator_fraction", args.prune_fraction),
            ("warmup_fraction", args.prune_warmup_fraction),
        )
        if v is not None
    }
    if name in MEDIAN_RULE_VARIANTS:
        pruning["rule"] = "median"
    if name == "pruned_epochs":
        pruning["budget"] = "epochs"
    if name == "pruned_projected":
        pruning["rule"] = "projected"
    space = with_pruning_section(space, **pruning)  # a rule brings its own defaults for what is not overridden
    if args.checkpoint:
        space = space.model_copy(update={"training": space.training.model_copy(update={"checkpoint": args.checkpoint})})
    if strategy == "affinity_chain":
        tree = space.families["tree"].model_copy(update={"grouping": "affinity"})
        space = space.model_copy(update={"families": {**space.families, "tree": tree}})
    settings = SearchSettings(
        study_name=f"{name}-{seed}",
        storage=f"sqlite:///{folder / f'{name}-{seed}.db'}",
        seed=max(seed, 0),
        n_trials=None if budget == "half_time" else getattr(args, budget),
        timeout=timeout,
        epochs=args.epochs,
        device="cpu",
        save_artifacts=False,
        prune=prune,
        seed_strategy="affinity" if strategy.startswith("affinity") else strategy,
        seed_trees="grown" if strategy == "affinity_grown" else "uniform",
        affinity_measure="lookahead" if strategy == "affinity_lookahead" else "easy_hard",
        startup_trials=args.startup_trials if startup is None else startup,
    )
    started, cpu_started = time.perf_counter(), time.process_time()
    study = run_search(data, space, settings)
    return study, time.perf_counter() - started, time.process_time() - cpu_started


def hv_at(history: list[dict[str, Any]], n_trials: int) -> float:
    """HV after the first ``n_trials`` finished trials."""
    return history[min(n_trials, len(history)) - 1]["hypervolume"] if history else 0.0


def error_values(study: optuna.Study) -> list[list[float]]:
    """The scored trials' objectives as positive values to minimise (1 - value when maximised)."""
    flips = [d == optuna.study.StudyDirection.MAXIMIZE for d in study.directions]
    return [[1.0 - v if flip else v for v, flip in zip(t.values, flips)] for t in scored_trials(study)]


def first_split(study: optuna.Study) -> list[list[str]] | None:
    """The grouping affinity seeding split the tasks into first (None without seeding)."""
    chain = (study.user_attrs.get("affinity") or {}).get("chain") or []
    return chain[1] if len(chain) > 1 else None


# (warm-up settings, tolerance): the rules' own warm-ups (2 epochs, or an eighth of the epochs)
FLOORS = [
    (PruningSettings(warmup_epochs=warmup_epochs, warmup_fraction=warmup_fraction), tolerance)
    for warmup_epochs, warmup_fraction in FLOOR_WARMUPS
    if warmup_epochs == 2
    for tolerance in FLOOR_TOLERANCES
]


def foresight_times(study: optuna.Study) -> dict[str, float | None] | None:
    """{floor label: share of the trials' time left} for a pruner that knew where every trial
    will end and stopped a trial only when a trial finished before it ends ahead
    (``mtl_search.analysis.pruning_replay.foresight_floor``), replayed on this unpruned study:
    no rule that asks that question can leave less while keeping the study's exact front.
    None when the study cannot be replayed."""
    curves, timing = study_curves(study), study_timing(study)
    if not curves or timing is None:
        return None
    shares = {
        floor_label(settings, tolerance): foresight_floor(curves, settings, tolerance, timing).time_share
        for settings, tolerance in FLOORS
    }
    return {label: None if math.isnan(share) else share for label, share in shares.items()}


def epochs_trained(study: optuna.Study) -> int:
    return sum(len(t.user_attrs.get("history", [])) for t in study.trials)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    rows: list[dict[str, Any]] = []
    if args.keep:
        keep = Path(args.keep)
        if keep.exists() and any(keep.iterdir()):
            # run_search would continue the studies there and mix old trials into the figures
            raise SystemExit(f"--keep {keep}: the folder is not empty")
        keep.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory() as warm_up,
        contextlib.nullcontext(args.keep) if args.keep else tempfile.TemporaryDirectory() as tmp,
    ):
        # untimed warm-up: imports, torch kernels and SQLAlchemy are paid once, not by the first variant
        run_variant("baseline", -1, argparse.Namespace(**(vars(args) | {"trials": 1, "epochs": 1})), Path(warm_up))
        names = list(args.variants)
        timed = [name for name in names if VARIANTS[name][2] == "half_time"]
        if timed and "baseline" not in names:
            raise SystemExit(
                f"--variants {' '.join(timed)}: these need the baseline variant, whose wall time they halve"
            )
        plain = [name for name in names if name not in timed]
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            studies, times, cpu = {}, {}, {}
            # interleaved, and in a rotated order per seed, so machine-load drift hits every variant
            for name in plain[seed % len(plain) :] + plain[: seed % len(plain)]:
                studies[name], times[name], cpu[name] = run_variant(name, seed, args, Path(tmp))
            for name in timed:  # no new trial starts after half the baseline's wall time
                studies[name], times[name], cpu[name] = run_variant(
                    name, seed, args, Path(tmp), timeout=0.5 * times["baseline"]
                )
            studies = {name: studies[name] for name in names}
            bounds = objective_bounds(list(studies.values()))
            nadir_bounds = front_bounds(list(studies.values()))
            for name, study in studies.items():
                history = hypervolume_history(study, bounds)
                tight = hypervolume_history(study, nadir_bounds)
                states = [t.state for t in study.trials]
                rows.append(
                    {
                        "variant": name,
                        "seed": seed,
                        "trials": len(study.trials),
                        "wall_s": round(times[name], 2),
                        "cpu_s": round(cpu[name], 2),
                        "hv_final": hv_at(history, len(history)),
                        f"hv_after_{args.early}": hv_at(history, args.early),
                        "hv_front_final": hv_at(tight, len(tight)),
                        f"hv_front_after_{args.early}": hv_at(tight, args.early),
                        "pruned": states.count(optuna.trial.TrialState.PRUNED),
                        "epochs_trained": epochs_trained(study),
                        # how far the baseline's front is from this variant's points (0: covered; see epsilon_indicator)
                        "epsilon_vs_baseline": epsilon_indicator(error_values(studies["baseline"]), error_values(study))
                        if "baseline" in studies
                        else None,
                        # and the other way: how far this variant's front is from the baseline's points
                        "baseline_epsilon_vs_this": epsilon_indicator(
                            error_values(study), error_values(studies["baseline"])
                        )
                        if "baseline" in studies
                        else None,
                        # affinity seeding: the grouping it split first (the generator's groups, when it finds them)
                        "first_split": first_split(study),
                        # on an unpruned study: the least time a pruner with foresight would leave (pruning_replay.foresight_floor)
                        "foresight_time": foresight_times(study) if name == "baseline" else None,
                    }
                )
                print(f"seed {seed} {name:9s} {rows[-1]}", flush=True)
    summary = summarise(rows, args)
    print_table(summary, args)
    settings = {k: v for k, v in vars(args).items()} | {"sampler": "tpe", "torch_threads": 1, "storage": "SQLite file"}
    write_result(args.name, settings, {"runs": rows, "summary": summary})
    return 0


def summarise(rows: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    summary = {}
    early = f"hv_after_{args.early}"
    for name in args.variants:
        mine = [r for r in rows if r["variant"] == name]

        def stats(key: str, mine: list[dict[str, Any]] = mine) -> dict[str, float]:
            values = [r[key] for r in mine]
            return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}

        keys = [
            "wall_s",
            "cpu_s",
            "hv_final",
            early,
            "hv_front_final",
            f"hv_front_after_{args.early}",
            "pruned",
            "epochs_trained",
            "trials",
        ]
        summary[name] = {
            key: stats(key)
            for key in keys
            + (
                ["epsilon_vs_baseline", "baseline_epsilon_vs_this"]
                if mine[0]["epsilon_vs_baseline"] is not None
                else []
            )
        }
    by_seed = {(r["variant"], r["seed"]): r for r in rows}
    for name in args.variants:
        if name != "baseline" and "baseline" in args.variants:
            # paired by seed: HV differences between seeds are larger than between variants
            seeds = sorted({r["seed"] for r in rows})
            summary[name]["seeds_above_baseline"] = {
                key: sum(by_seed[(name, s)][key] > by_seed[("baseline", s)][key] for s in seeds)
                for key in (early, f"hv_front_after_{args.early}", "hv_front_final")
            }
    if "baseline" not in summary:
        return summary
    base = summary["baseline"]
    floors = [r["foresight_time"] for r in rows if r["variant"] == "baseline" and r["foresight_time"]]
    if floors:
        labels = [floor_label(settings, tolerance) for settings, tolerance in FLOORS]
        base["foresight_time"] = {
            label: statistics.fmean(f[label] for f in floors)
            for label in labels
            if all(f[label] is not None for f in floors)
        }
    for name in (n for n in summary if n.startswith("pruned")):
        summary[name]["time_ratio_vs_baseline"] = summary[name]["wall_s"]["mean"] / base["wall_s"]["mean"]
        summary[name]["cpu_ratio_vs_baseline"] = summary[name]["cpu_s"]["mean"] / base["cpu_s"]["mean"]
        summary[name]["epoch_ratio_vs_baseline"] = (
            summary[name]["epochs_trained"]["mean"] / base["epochs_trained"]["mean"]
        )
    return summary


def print_table(summary: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    early = f"hv_after_{args.early}"
    print(
        f"\nsearch efficiency: {args.seeds} seeds, synthetic {args.tasks} tasks in {args.groups} group(s), p={args.correlation}, "
        f"{args.rows} rows, {args.epochs} epochs, "
        f"space {args.space}, TPE; HV normalised per seed over all variants (reference 1.1 each, max {1.1**args.tasks:.3f})"
    )
    print("HV: all trials' range (HV-all) and the combined front's ideal-nadir box (HV-front, more discriminating)")
    print(
        f"{'variant':16s} {'trials':>7s} {'wall s':>14s} {'CPU s':>14s} {'HV-all final':>16s} {'HV-all @' + str(args.early):>16s} "
        f"{'HV-front final':>16s} {'HV-front @' + str(args.early):>16s} {'pruned':>7s} {'epochs':>8s} {'eps vs base %':>15s} {'base eps vs it %':>17s}"
    )
    for name, s in summary.items():

        def cell(key: str, fmt: str, s: dict[str, Any] = s) -> str:
            return f"{s[key]['mean']:{fmt}} ± {s[key]['std']:{fmt}}"

        print(
            f"{name:16s} {s['trials']['mean']:7.0f} {cell('wall_s', '6.1f'):>14s} {cell('cpu_s', '6.1f'):>14s} {cell('hv_final', '.3f'):>16s} "
            f"{cell(early, '.3f'):>16s} {cell('hv_front_final', '.3f'):>16s} {cell(f'hv_front_after_{args.early}', '.3f'):>16s} {s['pruned']['mean']:7.1f} {s['epochs_trained']['mean']:8.0f} "
            + (
                f"{100 * s['epsilon_vs_baseline']['mean']:7.1f} ± {100 * s['epsilon_vs_baseline']['std']:4.1f} "
                f"{100 * s['baseline_epsilon_vs_this']['mean']:9.1f} ± {100 * s['baseline_epsilon_vs_this']['std']:4.1f}"
                if "epsilon_vs_baseline" in s
                else ""
            )
        )
    for name, s in summary.items():
        if "seeds_above_baseline" in s:
            wins = ", ".join(f"{key} {count}/{args.seeds}" for key, count in s["seeds_above_baseline"].items())
            print(f"{name}: seeds above the baseline (paired): {wins}")
    if "foresight_time" in summary.get("baseline", {}):
        floors = summary["baseline"]["foresight_time"]
        print(
            "foresight floor, replayed on the unpruned studies (the least time a pruner that knew each trial's end would leave): "
            + ", ".join(f"{label} {share:.2f}" for label, share in floors.items())
        )
    for name, s in summary.items():
        if "time_ratio_vs_baseline" in s:
            print(
                f"{name} / baseline: wall time {s['time_ratio_vs_baseline']:.2f}, CPU time {s['cpu_ratio_vs_baseline']:.2f}, "
                f"epochs trained {s['epoch_ratio_vs_baseline']:.2f}"
            )


if __name__ == "__main__":
    raise SystemExit(main())
