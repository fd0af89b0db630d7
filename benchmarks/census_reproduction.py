"""Census-Income group 1 next to the MMoE and PLE papers' tables (issue 9, reproductions).

Extends benchmarks/census_auc.py (issue 5: shared-bottom and MMoE, whose specs it reuses)
with the other structures the papers report: OMoE (MMoE with one shared gate, the family
registered by benchmarks/mmoe_reproduction.py), PLE/CGC, cross-stitch and single-task
(separate networks). Same data and split as census_auc (the census source: half of the
UCI test file is the test set, a tenth validation, the rest (40 %) trains), Adam lr 1e-3,
batch 256, equal static weights, ``--epochs`` epochs, ``--seeds`` seeds; test AUC mean ± std.

The papers trained on the UCI train file (199,523 rows) with heavy tuning; we train on
39,905 rows without tuning, so their figures are an orientation, not a target.

    python benchmarks/census_reproduction.py [--seeds 3] [--epochs 10] [--rows 0]
    python benchmarks/census_reproduction.py --quick
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import CENSUS_FILE, write_result  # noqa: E402
from census_auc import BLOCK, MODELS, TASKS, TOWER  # noqa: E402  (issue 5's shared-bottom and MMoE)
import mmoe_reproduction  # noqa: E402,F401  (registers the "omoe" family)

from mtl_search.data import load_data  # noqa: E402
from mtl_search.training import train_candidate  # noqa: E402

# AUC (income, never married), from ../shared/data/README.md
PUBLISHED = {
    "shared_bottom": {"MMoE T1 best": (0.9361, 0.9915), "MMoE T1 mean": (0.9295, 0.9921)},
    "mmoe": {"MMoE T1 best": (0.9410, 0.9926), "MMoE T1 mean": (0.9359, 0.9927), "PLE T5": (0.9393, 0.9928)},
    "omoe": {"MMoE T1 best": (0.9387, 0.9928)},
    "cross_stitch": {"MMoE T1 best": (0.9406, 0.9917)},
    "ple": {"PLE T5": (0.9522, 0.9945)},
    "single_task": {"MMoE T1 best": (0.9398, 0.9933), "PLE T5": (0.9445, 0.9923)},
}


def specs() -> dict[str, dict]:
    out = dict(MODELS)
    out["omoe"] = dict(MODELS["mmoe"], family="omoe")
    out["ple"] = {
        "family": "ple",
        "levels": 2,
        "shared_experts": 2,
        "task_experts": 2,
        "expert_widths": [32],
        "block": BLOCK,
        "tower": TOWER,
    }
    out["cross_stitch"] = {
        "family": "cross_stitch",
        "widths": [64, 32],
        "units": [0],
        "alpha_self": 0.9,
        "block": BLOCK,
        "tower": TOWER,
    }
    out["single_task"] = {
        "family": "tree",
        "widths": [64, 32],
        "groups": [[[t] for t in TASKS]] * 2,
        "block": BLOCK,
        "tower": TOWER,
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--rows", type=int, default=0, help="rows sampled before the split (0: all 99,762)")
    parser.add_argument("--data-file", type=Path, default=CENSUS_FILE)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="20000 rows, 3 epochs, 1 seed")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.epochs, args.seeds = 20000, 3, 1
    torch.set_num_threads(args.threads)
    data = load_data("census", {"group": 1, "rows": args.rows, "seed": 0}, data_file=str(args.data_file))
    print(
        f"census group 1: {len(data.train)} train / {len(data.validation)} validation / {len(data.test)} test rows",
        flush=True,
    )
    runs = []
    for seed in range(args.seeds):
        for name, spec in specs().items():
            candidate = {
                "architecture": spec,
                "training": {"epochs": args.epochs, "learning_rate": 1e-3, "batch_size": 256, "seed": seed},
                "loss_weighting": {"method": "static", "weights": {t: 1.0 for t in TASKS}},
            }
            result = train_candidate(data, candidate, device="cpu")
            runs.append(
                {
                    "model": name,
                    "seed": seed,
                    "n_params": result.n_params,
                    "test_auc": {t: result.test[t]["auc"] for t in TASKS},
                }
            )
            print(
                f"  seed {seed} {name:<14} {result.n_params:>7} params  test AUC "
                + ", ".join(f"{t} {result.test[t]['auc']:.4f}" for t in TASKS),
                flush=True,
            )
    summary = {}
    print(
        f"\ntest AUC, mean ± std over {args.seeds} seeds ({args.epochs} epochs, {len(data.train)} train rows) | published"
    )
    for name in specs():
        mine = [r for r in runs if r["model"] == name]
        row = {
            t: {
                "mean": statistics.mean(r["test_auc"][t] for r in mine),
                "std": statistics.stdev([r["test_auc"][t] for r in mine]) if len(mine) > 1 else 0.0,
            }
            for t in TASKS
        }
        row["n_params"] = mine[0]["n_params"]
        row["published"] = {k: dict(zip(TASKS, v)) for k, v in PUBLISHED[name].items()}
        summary[name] = row
        published = "; ".join(f"{k} {v[0]:.4f}/{v[1]:.4f}" for k, v in PUBLISHED[name].items())
        print(
            f"{name:<14}{row['income']['mean']:.4f} ± {row['income']['std']:.4f}  {row['never_married']['mean']:.4f} ± {row['never_married']['std']:.4f}  | {published}"
        )
    write_result(
        "census_reproduction",
        vars(args) | {"data_file": str(args.data_file)},
        {"summary": summary, "runs": runs},
        split={"train": len(data.train), "validation": len(data.validation), "test": len(data.test)},
    )


if __name__ == "__main__":
    main()
