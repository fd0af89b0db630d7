"""MMoE vs shared-bottom on the synthetic data of the MMoE paper (Ma et al., KDD 2018, sec. 3).

The paper's finding: when the two regression tasks are only partly related (correlation
p < 1), an MMoE with 8 experts of 16 units reaches a lower loss than a shared-bottom network
of about the same parameter count (113 hidden units). Both models here get towers of 8
units and the same training budget (epochs, batch size, learning rate); each seed draws
new data and new initial weights. The table shows the validation MSE per task, mean and
standard deviation over seeds.

Usage::

    python benchmarks/mmoe_synthetic.py            # 5 seeds, 12000 rows, 12 epochs (about 1 minute)
    python benchmarks/mmoe_synthetic.py --quick    # a smoke run: 2 seeds, 3000 rows, 5 epochs

The budget (12 epochs of 7200 training rows, batch 256, Adam at 3e-3) is far below the
paper's: it keeps the run to a few minutes on a shared 2-core machine. Longer training
(``--epochs 30 --batch-size 128``) starts to overfit 7200 rows, which shows in validation.

Writes ``benchmarks/results/mmoe_synthetic.json`` (``--output`` to change).
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import time
from pathlib import Path
from typing import Any

from _record import result_path  # noqa: E402  (benchmarks/ is on sys.path when a script runs)

import torch

from mtl_search.data.synthetic import make_synthetic
from mtl_search.training import train_candidate


def architectures(
    experts: int, expert_width: int, bottom_width: int, tower_width: int, task_names: list[str]
) -> dict[str, dict[str, Any]]:
    common = {"block": {"activation": "relu"}, "tower": {"widths": [tower_width]}, "stem": {}}
    return {
        "mmoe": {"family": "mmoe", "experts": experts, "expert_widths": [expert_width], "bottom_widths": [], **common},
        "shared_bottom": {"family": "tree", "widths": [bottom_width], "groups": [[task_names]], **common},
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    started = time.perf_counter()
    for seed in range(args.seeds):
        data = make_synthetic(rows=args.rows, correlation=args.correlation, seed=seed)
        for name, spec in architectures(
            args.experts, args.expert_width, args.bottom_width, args.tower_width, data.task_names
        ).items():
            candidate = {
                "architecture": spec,
                "training": {
                    "epochs": args.epochs,
                    "learning_rate": args.learning_rate,
                    "batch_size": args.batch_size,
                    "seed": seed,
                },
            }
            result = train_candidate(data, candidate, device=args.device)
            runs.append(
                {
                    "model": name,
                    "seed": seed,
                    "n_params": result.n_params,
                    "validation_mse": {task: scores["mse"] for task, scores in result.validation.items()},
                    "seconds": round(result.wall_time, 2),
                }
            )
            print(
                f"seed {seed} {name:<14} params {result.n_params:>6}  validation mse "
                + "  ".join(f"{t}={v:.4f}" for t, v in runs[-1]["validation_mse"].items()),
                flush=True,
            )
    return {"runs": runs, "seconds": round(time.perf_counter() - started, 1)}


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    summary: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(r["model"] for r in runs):
        mine = [r for r in runs if r["model"] == name]
        tasks = list(mine[0]["validation_mse"])
        per_task = {t: [r["validation_mse"][t] for r in mine] for t in tasks}
        average = [statistics.mean(r["validation_mse"].values()) for r in mine]
        summary[name] = {
            "n_params": mine[0]["n_params"],
            "validation_mse": {t: {"mean": statistics.mean(v), "std": _std(v)} for t, v in per_task.items()},
            "average_mse": {"mean": statistics.mean(average), "std": _std(average)},
            "wins": 0,
        }
    # per seed: which model had the lower average validation MSE
    for seed in dict.fromkeys(r["seed"] for r in runs):
        scores = {r["model"]: statistics.mean(r["validation_mse"].values()) for r in runs if r["seed"] == seed}
        summary[min(scores, key=scores.get)]["wins"] += 1
    return summary


def _std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def print_table(summary: dict[str, dict[str, Any]], seeds: int) -> None:
    tasks = list(next(iter(summary.values()))["validation_mse"])
    header = f"{'model':<14}{'params':>8}" + "".join(f"{t + ' mse':>20}" for t in tasks) + f"{'average':>20}{'wins':>7}"
    print(header)
    for name, row in summary.items():
        cells = "".join(
            f"{row['validation_mse'][t]['mean']:>11.4f} ± {row['validation_mse'][t]['std']:<6.4f}" for t in tasks
        )
        print(
            f"{name:<14}{row['n_params']:>8}{cells}{row['average_mse']['mean']:>11.4f} ± {row['average_mse']['std']:<6.4f}{row['wins']:>4}/{seeds}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description="MMoE vs shared-bottom on the MMoE paper's synthetic data")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 2 seeds, 3000 rows, 5 epochs")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--rows", type=int, default=12000, help="rows of data per seed (60%% train, 20%% validation)")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--correlation", type=float, default=0.5, help="task correlation p")
    parser.add_argument("--experts", type=int, default=8)
    parser.add_argument("--expert-width", type=int, default=16)
    parser.add_argument(
        "--bottom-width", type=int, default=113, help="shared-bottom hidden units (113: about MMoE's parameter count)"
    )
    parser.add_argument("--tower-width", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="JSON file to write (default: benchmarks/results/[quick/]mmoe_synthetic.json)",
    )
    args = parser.parse_args()
    args.output = args.output or result_path("mmoe_synthetic", args.quick)
    if args.quick:
        args.seeds, args.rows, args.epochs = 2, 3000, 5
    torch.set_num_threads(args.threads)

    outcome = run(args)
    summary = summarise(outcome["runs"])
    print()
    print_table(summary, args.seeds)
    print(f"\n{args.seeds} seeds, {args.rows} rows, {args.epochs} epochs, p={args.correlation}: {outcome['seconds']} s")
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "settings": settings,
        "summary": summary,
        **outcome,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
