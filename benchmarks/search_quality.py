"""Quality of the front mtl-search finds, at equal trial budgets (issue 9).

For each data set (synthetic p=0.5, synthetic p=0.9, census group 1) and each seed:

- **mtl-search**: ``run_search`` on the bundled default space (``mtl_search/spaces/default.yaml``:
  task-grouping trees, searched widths, learning rate and static weights) with the default
  sampler (multivariate TPE), ``--trials`` trials, pruning as the space says (on).
- **random**: the same, with Optuna's RandomSampler (``sampler="random"``), same budget.
- **hand-picked baselines** at default settings, trained with ``train_candidate``:
  shared-bottom (2 x 64), MMoE (8 experts x 16), PLE/CGC (2 shared + 1 per task, 32 wide),
  cross-stitch (2 x 64 columns, a unit after layer 1), each with equal static weights and
  with uncertainty weighting; tower 16, Adam lr 1e-3, batch 256.

Objectives are the validation metrics the search optimises (MSE per task on the synthetic
data, AUC per task on census). Hypervolume (HV) is computed with one normalisation per data
set: every objective turned into "minimise", min-max scaled over the UNION of all points of
all methods and seeds for that data set, reference point 1.1 per objective (the exact HV of
``mtl_search.search.hypervolume.hypervolume``). "dominates baselines" counts the baseline
points that some point of that seed's front dominates (no worse in every objective, better
in one).

**Grid ceiling** (``--grid``; synthetic p=0.5): a small enumerable space (tree family,
2 tasks, depth 1-3, width 16/64/256, every grouping tree, tower 16, fixed lr 3e-3, equal
weights) has 27 distinct candidates; all are trained (the exhaustive grid's front is the
ceiling), then mtl-search's default sampler gets ceil(25 %) of that many trials on the same
space. Target: >= 95 % of the grid's HV within 25 % of its trials.

Usage::

    python benchmarks/search_quality.py [--seeds 3] [--trials 40] [--epochs 10] [--rows 12000] [--census-rows 20000]
    python benchmarks/search_quality.py --quick
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import CENSUS_FILE, write_result  # noqa: E402

from mtl_search.data import load_data  # noqa: E402
from mtl_search.data.synthetic import make_synthetic  # noqa: E402
from mtl_search.search.hypervolume import REFERENCE, hypervolume  # noqa: E402
from mtl_search.search.runner import SearchSettings, run_search  # noqa: E402
from mtl_search.search.space import load_space, parse_space  # noqa: E402
from mtl_search.search.study import objectives_for  # noqa: E402
from mtl_search.training import train_candidate  # noqa: E402

GRID_SPACE = {
    "description": "search_quality grid: tree, 2 tasks, depth 1-3, width 16/64/256, fixed lr",
    "training": {"epochs": 10, "learning_rate": 3.0e-3, "batch_size": 256},
    "tower": {"depth": 1, "width": 16},
    "families": {
        "tree": {"depth": {"choices": [1, 2, 3]}, "width": {"choices": [16, 64, 256]}, "grouping": "partitions"}
    },
    "loss_weighting": {"static": {"weights": "equal"}},
    "pruning": {"enabled": False},
}


def baseline_architectures() -> dict[str, dict[str, Any]]:
    block = {"norm": "none", "activation": "relu", "dropout": 0.0}
    tower = {"widths": [16]}
    return {
        "shared_bottom": {"family": "tree", "widths": [64, 64], "groups": None, "block": block, "tower": tower},
        "mmoe_8x16": {
            "family": "mmoe",
            "experts": 8,
            "expert_widths": [16],
            "bottom_widths": [],
            "block": block,
            "tower": tower,
        },
        "ple_cgc": {
            "family": "ple",
            "levels": 1,
            "shared_experts": 2,
            "task_experts": 1,
            "expert_widths": [32],
            "block": block,
            "tower": tower,
        },
        "cross_stitch": {
            "family": "cross_stitch",
            "widths": [64, 64],
            "units": [0],
            "alpha_self": 0.9,
            "block": block,
            "tower": tower,
        },
    }


def baseline_candidates(task_names: list[str], epochs: int, seed: int) -> dict[str, dict[str, Any]]:
    out = {}
    for name, arch in baseline_architectures().items():
        arch = dict(arch)
        if arch["family"] == "tree":
            arch["groups"] = [[list(task_names)]] * len(arch["widths"])
        training = {"epochs": epochs, "learning_rate": 1e-3, "batch_size": 256, "optimizer": "adam", "seed": seed}
        out[f"{name}/equal"] = {
            "architecture": arch,
            "training": training,
            "loss_weighting": {"method": "static", "weights": {t: 1.0 for t in task_names}},
        }
        out[f"{name}/uncertainty"] = {
            "architecture": arch,
            "training": training,
            "loss_weighting": {"method": "uncertainty", "initial_log_variance": 0.0},
        }
    return out


def grid_candidates(task_names: list[str], epochs: int, seed: int) -> list[dict[str, Any]]:
    """Every distinct candidate of GRID_SPACE (2 tasks): d+1 grouping trees per depth d."""
    a, b = task_names
    out = []
    for depth in (1, 2, 3):
        for split_at in range(depth + 1):  # tasks share blocks below split_at, separate from there
            groups = [[[a, b]] if d < split_at else [[a], [b]] for d in range(depth)]
            for width in (16, 64, 256):
                out.append(
                    {
                        "architecture": {
                            "family": "tree",
                            "widths": [width] * depth,
                            "groups": groups,
                            "block": {"norm": "none", "activation": "relu", "dropout": 0.0},
                            "tower": {"widths": [16]},
                            "stem": {},
                        },
                        "training": {
                            "epochs": epochs,
                            "learning_rate": 3e-3,
                            "batch_size": 256,
                            "weight_decay": 0.0,
                            "optimizer": "adam",
                            "seed": seed,
                        },
                        "loss_weighting": {"method": "static", "weights": {a: 1.0, b: 1.0}},
                    }
                )
    return out


def signs_for(data) -> np.ndarray:
    objectives = objectives_for(data.tasks)
    return np.array([-1.0 if o.direction == "maximize" else 1.0 for o in objectives]), objectives


def point(validation: dict, objectives, signs) -> list[float]:
    return (np.array([validation[o.task][o.metric] for o in objectives]) * signs).tolist()


def search_points(
    data, space, sampler: str, seed: int, trials: int, epochs: int | None, startup_trials: int | None = None
) -> tuple[list[list[float]], float]:
    signs, _ = signs_for(data)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        settings = SearchSettings(
            study_name=f"quality-{sampler}-{seed}",
            storage=f"sqlite:///{folder}/s.db",
            sampler=sampler,
            seed=seed,
            n_trials=trials,
            epochs=epochs,
            device="cpu",
            save_artifacts=False,
            startup_trials=startup_trials,
        )
        study = run_search(data, space, settings)
        points = [
            (np.array(t.values) * signs).tolist()
            for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if t.values is not None and all(math.isfinite(v) for v in t.values)
        ]
    return points, time.perf_counter() - started


def train_points(data, candidates: dict[str, dict]) -> dict[str, list[float]]:
    signs, objectives = signs_for(data)
    out = {}
    for name, cand in candidates.items():
        result = train_candidate(data, cand, device="cpu")
        out[name] = point(result.validation, objectives, signs)
    return out


def normalised_hv(points: list[list[float]], low: np.ndarray, high: np.ndarray) -> float:
    if not points:
        return 0.0
    span = np.where(high > low, high - low, 1.0)
    return hypervolume((np.asarray(points) - low) / span, [REFERENCE] * len(low))


def dominated_by(front: list[list[float]], p: list[float]) -> bool:
    f, q = np.asarray(front), np.asarray(p)
    return bool(len(f) and np.any(np.all(f <= q, axis=1) & np.any(f < q, axis=1)))


def make_dataset(name: str, args, seed: int):
    if name == "synthetic_p0.5":
        return make_synthetic(rows=args.rows, correlation=0.5, seed=seed)
    if name == "synthetic_p0.9":
        return make_synthetic(rows=args.rows, correlation=0.9, seed=seed)
    # census: one fixed split (seed 0) for every search seed, as a user would have
    return load_data("census", {"group": 1, "rows": args.census_rows, "seed": 0}, data_file=str(args.data_file))


def compare(name: str, args) -> dict[str, Any]:
    space = load_space(None)
    per_seed = []
    census = None
    for seed in range(args.seeds):
        if name.startswith("census"):
            census = census or make_dataset(name, args, 0)
            data = census
        else:
            data = make_dataset(name, args, seed)
        tpe, tpe_seconds = search_points(data, space, "tpe", seed, args.trials, args.epochs)
        # a different seed: TPE starts with 10 random trials drawn from its own seed, which would
        # otherwise repeat the random sampler's first 10 trials exactly
        rnd, rnd_seconds = search_points(data, space, "random", seed + 1000, args.trials, args.epochs)
        base = train_points(data, baseline_candidates(data.task_names, args.epochs, seed))
        per_seed.append(
            {
                "seed": seed,
                "tpe": tpe,
                "random": rnd,
                "baselines": base,
                "seconds": {"tpe": tpe_seconds, "random": rnd_seconds},
            }
        )
        print(
            f"  {name} seed {seed}: {len(tpe)} tpe / {len(rnd)} random complete trials, {tpe_seconds:.0f}/{rnd_seconds:.0f} s",
            flush=True,
        )
    # one normalisation for the data set: the union of every point of every method and seed
    # (synthetic data differs per seed, so synthetic seeds are normalised separately)
    rows = []
    for record in per_seed:
        group = per_seed if name.startswith("census") else [record]
        everything = np.array([p for r in group for p in r["tpe"] + r["random"] + list(r["baselines"].values())])
        low, high = everything.min(axis=0), everything.max(axis=0)
        base_points = list(record["baselines"].values())
        rows.append(
            {
                "seed": record["seed"],
                "hv_tpe": normalised_hv(record["tpe"], low, high),
                "hv_random": normalised_hv(record["random"], low, high),
                "hv_baselines": normalised_hv(base_points, low, high),
                "baselines_dominated_by_tpe": sum(dominated_by(record["tpe"], p) for p in base_points),
                "baselines_dominated_by_random": sum(dominated_by(record["random"], p) for p in base_points),
                "n_baselines": len(base_points),
                "undominated_baselines": [
                    k for k, p in record["baselines"].items() if not dominated_by(record["tpe"], p)
                ],
            }
        )
    summary = {key: statistics.median(r[key] for r in rows) for key in ("hv_tpe", "hv_random", "hv_baselines")}
    summary["all_baselines_dominated_seeds"] = sum(r["baselines_dominated_by_tpe"] == r["n_baselines"] for r in rows)
    return {"per_seed": rows, "median": summary, "points": per_seed}


def grid_ceiling(args) -> dict[str, Any]:
    space = parse_space(GRID_SPACE, "search_quality grid")
    rows = []
    for seed in range(args.seeds):
        data = make_synthetic(rows=args.rows, correlation=0.5, seed=seed)
        signs, objectives = signs_for(data)
        started = time.perf_counter()
        grid = [
            point(train_candidate(data, c, device="cpu").validation, objectives, signs)
            for c in grid_candidates(data.task_names, args.epochs, seed)
        ]
        grid_seconds = time.perf_counter() - started
        budget = math.ceil(0.25 * len(grid))
        # the default sampler (start-up scaled to the budget), TPE with Optuna's 10 start-up
        # trials (all random at this budget), and Optuna's RandomSampler
        searches = {
            "tpe": search_points(data, space, "tpe", seed, budget, args.epochs),
            "tpe_startup10": search_points(data, space, "tpe", seed, budget, args.epochs, startup_trials=10),
            "random": search_points(data, space, "random", seed + 1000, budget, args.epochs),
        }
        everything = np.array(grid + [p for points, _ in searches.values() for p in points])
        low, high = everything.min(axis=0), everything.max(axis=0)
        hv_grid = normalised_hv(grid, low, high)
        fractions = {name: normalised_hv(points, low, high) / hv_grid for name, (points, _) in searches.items()}
        rows.append(
            {
                "seed": seed,
                "grid_trials": len(grid),
                "search_trials": budget,
                "hv_grid": hv_grid,
                "hv_search": fractions["tpe"] * hv_grid,
                "fraction": fractions["tpe"],
                "fractions": fractions,
                "seconds": {"grid": grid_seconds} | {name: sec for name, (_, sec) in searches.items()},
                "grid_points": grid,
                "search_points": {name: points for name, (points, _) in searches.items()},
            }
        )
        print(
            f"  grid seed {seed}: with {budget}/{len(grid)} trials the search reaches "
            + ", ".join(f"{name} {f:.3f}" for name, f in fractions.items())
            + " of the grid's HV",
            flush=True,
        )
    return {
        "per_seed": rows,
        "median_fraction": statistics.median(r["fraction"] for r in rows),
        "target_fraction": 0.95,
        "median_fractions": {
            name: statistics.median(r["fractions"][name] for r in rows) for name in rows[0]["fractions"]
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--trials", type=int, default=40, help="trials per search (mtl-search and random alike)")
    parser.add_argument("--epochs", type=int, default=10, help="epochs per candidate (search trials and baselines)")
    parser.add_argument("--rows", type=int, default=12000, help="synthetic rows")
    parser.add_argument(
        "--census-rows",
        type=int,
        default=20000,
        help="census rows sampled before the split (default 20000: 8,000 train rows; 0: all 99,762, about 5x longer)",
    )
    parser.add_argument("--data-file", type=Path, default=CENSUS_FILE)
    parser.add_argument("--datasets", nargs="+", default=["synthetic_p0.5", "synthetic_p0.9", "census_group1"])
    parser.add_argument("--no-grid", action="store_true", help="skip the exhaustive-grid ceiling")
    parser.add_argument("--grid-only", action="store_true", help="only the exhaustive-grid ceiling (no --datasets)")
    parser.add_argument(
        "--name",
        default=None,
        help="results file name in benchmarks/results (default: search_quality, or search_quality_grid with --grid-only)",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="2 seeds, 8 trials, 3 epochs, 2000 synthetic / 6000 census rows, grid 1 seed",
    )
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.trials, args.epochs, args.rows, args.census_rows = 2, 8, 3, 2000, 6000
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore")
    results: dict[str, Any] = {}
    if args.grid_only:
        args.datasets = []
    for name in args.datasets:
        print(f"{name}:", flush=True)
        results[name] = compare(name, args)
    if not args.no_grid:
        print("grid ceiling (synthetic p=0.5):", flush=True)
        grid_args = argparse.Namespace(**vars(args))
        if args.quick:
            grid_args.seeds = 1
        results["grid_ceiling"] = grid_ceiling(grid_args)
    print(
        f"\nmedian normalised hypervolume over {args.seeds} seeds ({args.trials} trials, {args.epochs} epochs; ref {REFERENCE}):"
    )
    print(f"{'data':<16}{'mtl-search':>11}{'random':>9}{'baselines':>10}{'seeds with all 8 baselines dominated':>39}")
    for name in args.datasets:
        m = results[name]["median"]
        print(
            f"{name:<16}{m['hv_tpe']:>11.3f}{m['hv_random']:>9.3f}{m['hv_baselines']:>10.3f}{m['all_baselines_dominated_seeds']:>30}/{args.seeds}"
        )
    if "grid_ceiling" in results:
        g = results["grid_ceiling"]
        print(
            f"grid ceiling: search/grid HV median {g['median_fraction']:.3f} (target >= 0.95) with "
            f"{g['per_seed'][0]['search_trials']}/{g['per_seed'][0]['grid_trials']} trials; "
            + ", ".join(f"{name} {f:.3f}" for name, f in g["median_fractions"].items())
        )
    write_result(
        args.name or ("search_quality_grid" if args.grid_only else "search_quality"),
        vars(args) | {"data_file": str(args.data_file)},
        results,
    )


if __name__ == "__main__":
    main()
