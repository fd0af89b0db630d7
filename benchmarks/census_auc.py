"""Census-Income test AUCs (income, never married) of fixed shared-bottom and MMoE networks.

Trains each network with a few seeds on the census source's split of the UCI file (half
test, a tenth validation, the rest train), prints the mean test AUCs next to the figures
the MMoE and PLE papers published, and writes benchmarks/results/census_auc.json.

    python benchmarks/census_auc.py                 # full file, 3 seeds, 10 epochs
    python benchmarks/census_auc.py --quick         # 6,000 rows, 1 seed, 2 epochs (a smoke test)

The papers trained on the UCI *train* file (199,523 rows) and tuned heavily, so their
figures are an orientation, not a target: we train on 40% of the 99,762-row test file.
MMoE runs only when the "mmoe" family is installed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from _record import result_path  # noqa: E402  (benchmarks/ is on sys.path when a script runs)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mtl_search.architectures import family_names  # noqa: E402
from mtl_search.data.census import make_census  # noqa: E402
from mtl_search.training import resolve_device, train_candidate  # noqa: E402

TASKS = ("income", "never_married")
# AUC (income, never married), from the papers via ../shared/data/README.md
PUBLISHED = {
    "MMoE paper, Table 1, best of 400 runs": {"shared_bottom": (0.9361, 0.9915), "mmoe": (0.9410, 0.9926)},
    "MMoE paper, Table 1, mean": {"shared_bottom": (0.9295, 0.9921), "mmoe": (0.9359, 0.9927)},
    "PLE paper, Table 5": {"mmoe": (0.9393, 0.9928)},
}
BLOCK = {"norm": "none", "activation": "relu", "dropout": 0.0}
TOWER = {"widths": [16]}
MODELS = {
    # one trunk of two layers that both tasks read, then a small tower each
    "shared_bottom": {
        "family": "tree",
        "widths": [64, 32],
        "groups": [[list(TASKS)], [list(TASKS)]],
        "block": BLOCK,
        "tower": TOWER,
    },
    # eight one-layer experts, a softmax gate per task
    "mmoe": {
        "family": "mmoe",
        "experts": 8,
        "expert_widths": [32],
        "bottom_widths": [],
        "block": BLOCK,
        "tower": TOWER,
    },
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-file", default=str(REPO.parent / "shared" / "data" / "census-income.test.gz"))
    parser.add_argument("--quick", action="store_true", help="6,000 rows, one seed, 2 epochs")
    parser.add_argument("--epochs", type=int, default=None, help="default: 10 (2 with --quick)")
    parser.add_argument("--seeds", type=int, default=None, help="training seeds per model (default: 3, 1 with --quick)")
    parser.add_argument("--device", default=None, help="torch device (default: GPU when present)")
    parser.add_argument(
        "--output", default=None, help="JSON file to write (default: benchmarks/results/[quick/]census_auc.json)"
    )
    args = parser.parse_args(argv)
    args.output = args.output or str(result_path("census_auc", args.quick))
    epochs = args.epochs or (2 if args.quick else 10)
    seeds = args.seeds or (1 if args.quick else 3)
    rows = 6000 if args.quick else 0
    device = resolve_device(args.device)

    started = time.perf_counter()
    data = make_census(args.data_file, rows=rows)
    load_seconds = time.perf_counter() - started
    print(
        f"census: {len(data.train)} train / {len(data.validation)} validation / {len(data.test)} test rows "
        f"(loaded in {load_seconds:.1f} s), {epochs} epochs, {seeds} seed(s), device {device}"
    )
    available = set(family_names())
    results = {}
    for name, spec in MODELS.items():
        if spec["family"] not in available:
            print(f"{name}: skipped, family {spec['family']!r} is not installed")
            continue
        runs = []
        for seed in range(seeds):
            candidate = {
                "architecture": spec,
                "training": {"epochs": epochs, "learning_rate": 1e-3, "batch_size": 256, "seed": seed},
            }
            result = train_candidate(data, candidate, device=device)
            runs.append(
                {
                    "seed": seed,
                    "test_auc": {task: result.test[task]["auc"] for task in TASKS},
                    "validation_auc": {task: result.validation[task]["auc"] for task in TASKS},
                    "seconds": round(result.wall_time, 1),
                    "n_params": result.n_params,
                }
            )
        results[name] = {
            "spec": spec,
            "runs": runs,
            "mean_test_auc": {task: statistics.fmean(run["test_auc"][task] for run in runs) for task in TASKS},
        }

    print(f"\n{'test AUC':52s} {'income':>8s} {'never married':>14s}")
    for name, result in results.items():
        auc = result["mean_test_auc"]
        print(
            f"{'this run: ' + name + f' (mean of {seeds} seeds)':52s} {auc['income']:8.4f} {auc['never_married']:14.4f}"
        )
    for source, figures in PUBLISHED.items():
        for name, (income, married) in figures.items():
            print(f"{source + ': ' + name:52s} {income:8.4f} {married:14.4f}")

    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(
        json.dumps(
            {
                "data_file": Path(args.data_file).name,
                "protocol": {
                    "rows": rows or "all",
                    "train": len(data.train),
                    "validation": len(data.validation),
                    "test": len(data.test),
                    "epochs": epochs,
                    "seeds": seeds,
                    "learning_rate": 1e-3,
                    "batch_size": 256,
                    "device": str(device),
                },
                "results": results,
                "published": {
                    source: {name: dict(zip(TASKS, aucs)) for name, aucs in figures.items()}
                    for source, figures in PUBLISHED.items()
                },
                "seconds": round(time.perf_counter() - started, 1),
            },
            indent=2,
        )
    )
    print(f"\nwritten to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
