"""The classic structures next to shared-bottom (and MMoE): test metrics of fixed networks.

Data sets and what each shows:

- synthetic (MMoE paper data, two regression tasks, correlation 0.5) and census group 1
  (income, never married; when the UCI file is there): shared-bottom, MMoE, each with the
  task-relationship prior on its towers, and hierarchical heads (the easier task low,
  feeding its prediction to the block above the other's head);
- sequences (click, purchase given click, dwell; behaviour histories): shared bottom over
  a GRU stem with purchase trained only on clicked rows (the naive model) against the
  entire-space model (ESMM), then ESMM with the LSTM and self-attention encoders.

Every network gets the same training budget; each seed redraws initial weights (and the
synthetic/sequence data). The table shows the mean test metric of every task (AUC for
binary tasks, MSE for regression; purchase AUC on clicked rows) and, on sequences, the AUC
of p(click) * p(purchase | click) for "clicked and purchased" on all rows (ESMM's CTCVR AUC).

    python benchmarks/classic_structures.py --quick    # 1 seed, small data, 3 epochs
    python benchmarks/classic_structures.py            # 3 seeds, full data, 10 epochs

Writes benchmarks/results/classic_structures.json (``--output`` to change).
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

from _record import result_path  # noqa: E402  (benchmarks/ is on sys.path when a script runs)

import torch
from sklearn.metrics import roc_auc_score

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mtl_search.architectures import family_names  # noqa: E402
from mtl_search.data.base import MultiTaskData  # noqa: E402
from mtl_search.data.sequences import make_sequences  # noqa: E402
from mtl_search.data.synthetic import make_synthetic  # noqa: E402
from mtl_search.training import resolve_device, train_candidate  # noqa: E402
from mtl_search.training.trainer import predict  # noqa: E402

BLOCK = {"norm": "none", "activation": "relu", "dropout": 0.0}
TOWER = {"widths": [16]}
RELATIONSHIP = {"weight": 0.01, "ridge": 0.1}


def vector_structures(tasks: list[str], low_task: str) -> dict[str, dict[str, Any]]:
    """Shared bottom, MMoE, both with the relationship prior, and hierarchical heads."""
    high_task = next(t for t in tasks if t != low_task)
    common = {"block": BLOCK, "tower": TOWER, "stem": {}}
    structures = {"shared_bottom": {"family": "tree", "widths": [64, 32], "groups": [[tasks], [tasks]], **common}}
    if "mmoe" in family_names():
        structures["mmoe"] = {"family": "mmoe", "experts": 8, "expert_widths": [32], "bottom_widths": [], **common}
    structures["shared_bottom+relationship"] = dict(structures["shared_bottom"], relationship=RELATIONSHIP)
    if "mmoe" in structures:
        structures["mmoe+relationship"] = dict(structures["mmoe"], relationship=RELATIONSHIP)
    structures["hierarchy"] = {
        "family": "hierarchy",
        "widths": [64, 32],
        "head_depths": {low_task: 1, high_task: 2},
        "feed_upward": {low_task: True, high_task: False},
        "prediction_embedding": 4,
        **common,
    }
    return structures


def sequence_structures(tasks: list[str]) -> dict[str, tuple[dict[str, Any], bool]]:
    """name -> (spec, purchase conditional on click?)."""

    def tree(encoder: str) -> dict[str, Any]:
        return {
            "family": "tree",
            "widths": [64],
            "groups": [[tasks]],
            "block": BLOCK,
            "tower": TOWER,
            "stem": {"sequence_encoder": encoder, "sequence_width": 32, "embedding_dim": 16},
        }

    structures = {
        "shared_bottom/gru, naive purchase": (tree("gru"), False),
        "shared_bottom/gru, esmm": (tree("gru"), True),
        "shared_bottom/lstm, esmm": (tree("lstm"), True),
        "shared_bottom/attention, esmm": (tree("attention"), True),
    }
    if "mmoe" in family_names():
        mmoe = {
            "family": "mmoe",
            "experts": 4,
            "expert_widths": [32],
            "bottom_widths": [],
            "block": BLOCK,
            "tower": TOWER,
            "stem": {"sequence_encoder": "gru", "sequence_width": 32, "embedding_dim": 16},
        }
        structures["mmoe/gru, esmm"] = (mmoe, True)
    return structures


def joint_auc(model: Any, data: MultiTaskData, condition: str, task: str) -> float:
    """AUC of p(condition) * p(task | condition) for the joint event, on every test row (ESMM's CTCVR AUC)."""
    outputs = predict(model, data.test)
    joint = (torch.sigmoid(outputs[condition]) * torch.sigmoid(outputs[task])).reshape(-1)
    label = (data.test.targets[condition] == 1) & (data.test.targets[task] == 1)
    return float(roc_auc_score(label.cpu().numpy(), joint.cpu().numpy()))


def train(data: MultiTaskData, spec: dict[str, Any], seed: int, epochs: int, device: Any) -> dict[str, Any]:
    candidate = {
        "architecture": spec,
        "training": {"epochs": epochs, "learning_rate": 3e-3, "batch_size": 256, "seed": seed},
    }
    result = train_candidate(data, candidate, device=device)
    primary = {task.name: task.metrics[0] for task in data.tasks}
    test = {task: result.test[task][metric] for task, metric in primary.items()}
    if {"click", "purchase"} <= set(primary):
        test["click&purchase"] = joint_auc(result.model, data, "click", "purchase")
        primary["click&purchase"] = "auc"
    return {
        "test": test,
        "metric": primary,
        "n_params": result.n_params,
        "seconds": round(result.wall_time, 2),
        "learned": result.sharing.get("relationship", {}).get("correlation"),
    }


def run_structures(
    name: str,
    make_data: Callable[[int], MultiTaskData],
    structures: Callable[[MultiTaskData], dict[str, Any]],
    seeds: int,
    epochs: int,
    device: Any,
) -> list[dict[str, Any]]:
    rows = []
    runs: dict[str, list[dict[str, Any]]] = {}
    for seed in range(seeds):
        for label, (data, spec) in structures(make_data(seed)).items():
            runs.setdefault(label, []).append(train(data, spec, seed, epochs, device))
            print(f"  {name:<10} seed {seed} {label:<34} {runs[label][-1]['test']}", flush=True)
    for label, results in runs.items():
        tasks = list(results[0]["test"])
        rows.append(
            {
                "data": name,
                "structure": label,
                "metric": results[0]["metric"],
                "test_mean": {t: statistics.fmean(r["test"][t] for r in results) for t in tasks},
                "test_std": {t: statistics.pstdev(r["test"][t] for r in results) for t in tasks},
                "n_params": results[0]["n_params"],
                "seconds_mean": statistics.fmean(r["seconds"] for r in results),
                "learned_correlation": results[-1]["learned"],
                "seeds": len(results),
            }
        )
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    for data in dict.fromkeys(row["data"] for row in rows):
        block = [row for row in rows if row["data"] == data]
        tasks = list(block[0]["metric"])
        header = (
            f"{'structure':<34}"
            + "".join(f"{t + ' ' + block[0]['metric'][t]:>22}" for t in tasks)
            + f"{'params':>9}{'s/run':>8}"
        )
        print(f"\n{data}\n{header}\n{'-' * len(header)}")
        for row in block:
            cells = "".join(f"{row['test_mean'][t]:>14.4f} ±{row['test_std'][t]:<6.4f}" for t in tasks)
            print(f"{row['structure']:<34}{cells}{row['n_params']:>9}{row['seconds_mean']:>8.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, small data, 3 epochs")
    parser.add_argument("--seeds", type=int, default=None, help="default 3 (1 with --quick)")
    parser.add_argument("--epochs", type=int, default=None, help="default 10 (3 with --quick)")
    parser.add_argument("--small", action="store_true", help="the --quick data sizes, with the seeds and epochs given")
    parser.add_argument(
        "--data-file",
        default=str(REPO.parent / "shared" / "data" / "census-income.test.gz"),
        help="UCI census-income file for census group 1 (skipped when missing)",
    )
    parser.add_argument("--device", default=None, help="torch device (default: GPU when present)")
    parser.add_argument(
        "--output",
        default=None,
        help="JSON file to write (default: benchmarks/results/[quick/]classic_structures.json)",
    )
    args = parser.parse_args(argv)
    args.output = args.output or str(result_path("classic_structures", args.quick))
    seeds = args.seeds or (1 if args.quick else 3)
    epochs = args.epochs or (3 if args.quick else 10)
    small = args.quick or args.small
    device = resolve_device(args.device)
    started = time.perf_counter()

    rows = run_structures(
        "synthetic",
        lambda seed: make_synthetic(rows=4000 if small else 12000, correlation=0.5, seed=seed),
        lambda data: {k: (data, s) for k, s in vector_structures(data.task_names, "task1").items()},
        seeds,
        epochs,
        device,
    )
    census_note = "census group 1 skipped: no file at " + args.data_file
    if Path(args.data_file).exists():
        from mtl_search.data.census import make_census

        census = make_census(args.data_file, group=1, rows=6000 if small else 0)
        rows += run_structures(
            "census",
            lambda seed: census,
            lambda data: {k: (data, s) for k, s in vector_structures(data.task_names, "never_married").items()},
            seeds,
            epochs,
            device,
        )
        census_note = f"census group 1 from {args.data_file}"

    def sequence_runs(seed: int) -> dict[str, Any]:
        return {
            "conditional": make_sequences(rows=4000 if small else 20000, seed=seed),
            "naive": make_sequences(rows=4000 if small else 20000, seed=seed, conditional=False),
        }

    rows += run_structures(
        "sequences",
        sequence_runs,
        lambda pair: {
            k: (pair["conditional" if esmm else "naive"], spec)
            for k, (spec, esmm) in sequence_structures(["click", "purchase", "dwell"]).items()
        },
        seeds,
        epochs,
        device,
    )

    print_table(rows)
    print(f"\n{census_note}; {seeds} seed(s), {epochs} epochs, device {device}, {time.perf_counter() - started:.0f} s")
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(
        json.dumps(
            {
                "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "command": "python "
                + " ".join(["benchmarks/classic_structures.py", *(argv if argv is not None else sys.argv[1:])]),
                "seeds": seeds,
                "epochs": epochs,
                "device": str(device),
                "census": census_note,
                "rows": rows,
            },
            indent=2,
        )
    )
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
