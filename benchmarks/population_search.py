#!/usr/bin/env python3
"""Trials per minute and hypervolume of whole searches, one candidate at a time against populations.

Each search is the real command, ``python -m mtl_search run ...`` in a fresh process, so the
figures include everything a user waits for (imports, data, storage, sampling, training).
For each data set and seed, the variants run back to back in alternating order, so a change
in the machine's load touches them alike. Per variant the script prints the median wall and
CPU seconds (CPU: the child process's user + system time), trials per minute of wall and of
CPU time, and the hypervolume of the validation front, normalised with bounds shared by every
search on that data set, all seeds and variants: per objective the best and the worst value
among the points of their fronts (each search's own front), so every front lies in the box,
every search gets a volume, and the spread over seeds is the search's own noise; the paired difference to the first
variant (same seed) is printed with its standard deviation. ``fused`` is the share of the
completed trials that trained in a group (a pruned trial does not record its group);
``training`` the median share of the wall time spent in training epochs: the rest (start-up,
sampling, storage, the test pass) bounds what faster training can give.

    python benchmarks/population_search.py                       # default data and census, 3 seeds
    python benchmarks/population_search.py --quick               # a smoke run
    python benchmarks/population_search.py --populations 1 8 16 --data synthetic --seeds 5
    python benchmarks/population_search.py --populations 1 8 8:independent   # a strategy too
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import CENSUS_FILE, add_result_options, write_result  # noqa: E402

from mtl_search.search.hypervolume import (  # noqa: E402
    front_hypervolume,
    minimised_values,
    non_dominated,
    scored_trials,
)
from mtl_search.search.population import STRATEGIES  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA_ARGS = {
    "synthetic": [],
    "census": ["--data", "census", "--data-file", str(CENSUS_FILE), "--data-option", "rows=20000"],
}


def fronts_box(studies: list[optuna.Study]) -> tuple[list[float], list[float]]:
    """Per objective (minimised) the best and the worst value over the points of every study's
    own front: each front lies inside, so each search has a volume to compare."""
    fronts = [non_dominated(minimised_values(s, scored_trials(s))) for s in studies]
    points = np.vstack([front for front in fronts if len(front)])
    return points.min(axis=0).tolist(), points.max(axis=0).tolist()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", nargs="+", choices=list(DATA_ARGS), default=list(DATA_ARGS))
    parser.add_argument(
        "--populations",
        nargs="+",
        type=variant,
        default=["1", "8"],
        help="variants: K (--population K) or K:STRATEGY (also --population-strategy STRATEGY); default: 1 8",
    )
    parser.add_argument("--seeds", type=int, default=3, help="seeds per data set and variant (default: 3)")
    parser.add_argument("--trials", type=int, default=32, help="trial budget of every search (default: 32)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per trial (default: the space's)")
    parser.add_argument("--threads", type=int, default=1, help="--threads of every search (default: 1)")
    parser.add_argument(
        "--keep", type=Path, default=None, help="keep every search's study database in this folder (default: none kept)"
    )
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="further arguments for every run")
    add_result_options(parser, "population_search", "a smoke run: synthetic only, 2 seeds, 8 trials, 2 epochs")
    args = parser.parse_args(argv)
    if args.quick:
        args.data, args.seeds, args.trials, args.epochs = ["synthetic"], 2, 8, 2
    return args


def variant(text: str) -> str:
    """``K`` or ``K:STRATEGY``, checked."""
    size, _, strategy = text.partition(":")
    if not size.isdigit() or int(size) < 1 or (strategy and strategy not in STRATEGIES):
        raise argparse.ArgumentTypeError(f"{text!r}: expected K or K:STRATEGY, STRATEGY one of {', '.join(STRATEGIES)}")
    return text


def run_one(folder: Path, data: str, population: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    size, _, strategy = population.partition(":")
    slug = population.replace(":", "-")
    database = folder / f"{data}-p{slug}-s{seed}.db"
    if database.exists():  # a kept folder from an earlier run: its study would be continued
        raise SystemExit(f"{database} exists: give --keep an empty folder")
    storage = f"sqlite:///{database}"
    name = f"{data}-p{slug}-s{seed}"
    command = [
        sys.executable,
        "-m",
        "mtl_search",
        "run",
        *DATA_ARGS[data],
        "--trials",
        str(args.trials),
        "--seed",
        str(seed),
        "--population",
        size,
        *(["--population-strategy", strategy] if strategy else []),
        "--threads",
        str(args.threads),
        "--study-name",
        name,
        "--storage",
        storage,
        "--quiet",
        *args.extra,
    ]
    if args.epochs is not None:
        command += ["--epochs", str(args.epochs)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        command, cwd=folder, capture_output=True, text=True, env=os.environ | {"PYTHONPATH": str(REPO)}
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {done.returncode}:\n{done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    study = optuna.load_study(study_name=name, storage=storage)
    finished = [t for t in study.trials if t.state.is_finished()]
    # a trial records how many trained in its group only when it trains to the end
    completed = [t for t in finished if t.state == optuna.trial.TrialState.COMPLETE]
    fused = sum(1 for t in completed if (t.user_attrs.get("population_size") or 1) > 1)
    # epochs trained in all: trials differ in size and in when pruning stopped them, so CPU per
    # trained epoch separates the speed of training from what the sampler chose to train
    epochs = sum(len(t.user_attrs.get("history") or []) for t in finished)
    # wall seconds inside training epochs (a fused member's: its share of the group's steps plus
    # its own work): the rest of the run (start-up, sampling, storage, the test pass) is what
    # faster training cannot touch
    training = sum(sum(h.get("seconds", 0.0) for h in t.user_attrs.get("history") or []) for t in finished)
    return {
        "data": data,
        "population": population,
        "seed": seed,
        "wall_s": wall,
        "cpu_s": cpu,
        "trials": len(finished),
        "completed": len(completed),
        "fused": fused,
        "epochs": epochs,
        "training_s": training,
        "storage": storage,
        "name": name,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="population-search-") as tmp:
        folder = Path(tmp) if args.keep is None else args.keep.resolve()
        folder.mkdir(parents=True, exist_ok=True)
        for data in args.data:
            runs = []
            for seed in range(args.seeds):
                order = args.populations if seed % 2 == 0 else list(reversed(args.populations))
                for population in order:
                    run = run_one(folder, data, population, seed, args)
                    runs.append(run)
                    print(
                        f"{data:9s} seed {seed} population {run['population']:>4s}: {run['trials']} trials "
                        f"({run['completed']} completed, {run['fused']} of them fused), {run['epochs']} epochs, wall {run['wall_s']:.1f} s, "
                        f"CPU {run['cpu_s']:.1f} s ({1000 * run['cpu_s'] / max(run['epochs'], 1):.0f} ms/epoch), "
                        f"training {run['training_s']:.1f} s",
                        flush=True,
                    )
            # one scale for every search on this data set: the seeds' hypervolumes are comparable,
            # so their spread is the search's own noise
            studies = [optuna.load_study(study_name=r["name"], storage=r["storage"]) for r in runs]
            bounds = fronts_box(studies)
            for run, study in zip(runs, studies):
                run["hypervolume"] = front_hypervolume(study, bounds)
                print(f"{data:9s} seed {run['seed']} population {run['population']:>4s}: HV {run['hypervolume']:.4f}")
            rows.extend(runs)
    summary = summarise(rows, args)
    print_table(summary)
    path = write_result(
        args.name,
        {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        {"runs": rows, "summary": summary},
    )
    print(f"rerun: python benchmarks/population_search.py {' '.join(argv or sys.argv[1:])} ({path})")
    return 0


def summarise(rows: list[dict[str, Any]], args: argparse.Namespace) -> list[dict[str, Any]]:
    summary = []
    for data in args.data:
        base = [r for r in rows if r["data"] == data and r["population"] == args.populations[0]]
        for population in args.populations:
            runs = [r for r in rows if r["data"] == data and r["population"] == population]
            if not runs:
                continue
            wall, cpu = statistics.median(r["wall_s"] for r in runs), statistics.median(r["cpu_s"] for r in runs)
            hv = [r["hypervolume"] for r in runs]
            paired = [
                r["hypervolume"] - b["hypervolume"]
                for r, b in zip(sorted(runs, key=lambda r: r["seed"]), sorted(base, key=lambda r: r["seed"]))
            ]
            summary.append(
                {
                    "data": data,
                    "population": population,
                    "runs": len(runs),
                    "trials_per_min_wall": 60 * statistics.median(r["trials"] / r["wall_s"] for r in runs),
                    "trials_per_min_cpu": 60 * statistics.median(r["trials"] / r["cpu_s"] for r in runs),
                    "wall_s": wall,
                    "cpu_s": cpu,
                    "hv_mean": statistics.mean(hv),
                    "hv_std": statistics.stdev(hv) if len(hv) > 1 else 0.0,
                    "hv_paired_diff_mean": statistics.mean(paired),
                    "hv_paired_diff_std": statistics.stdev(paired) if len(paired) > 1 else 0.0,
                    "cpu_ms_per_epoch": 1000 * statistics.median(r["cpu_s"] / max(r["epochs"], 1) for r in runs),
                    "training_share": statistics.median(r["training_s"] / r["wall_s"] for r in runs),
                    "fused_share": sum(r["fused"] for r in runs) / max(1, sum(r["completed"] for r in runs)),
                }
            )
    return summary


def print_table(summary: list[dict[str, Any]]) -> None:
    print(
        f"\n{'data':9s} {'variant':>15s} {'trials/min wall':>16s} {'trials/min CPU':>15s} {'HV mean ± sd':>16s} "
        f"{'HV diff vs first':>18s} {'fused':>6s} {'CPU ms/epoch':>13s} {'training':>9s}"
    )
    for s in summary:
        print(
            f"{s['data']:9s} {s['population']:>15s} {s['trials_per_min_wall']:16.1f} {s['trials_per_min_cpu']:15.1f} "
            f"{s['hv_mean']:8.4f} ± {s['hv_std']:.4f} {s['hv_paired_diff_mean']:+9.4f} ± {s['hv_paired_diff_std']:.4f} "
            f"{s['fused_share']:6.0%} {s['cpu_ms_per_epoch']:13.0f} {s['training_share']:9.0%}"
        )


if __name__ == "__main__":
    raise SystemExit(main())
