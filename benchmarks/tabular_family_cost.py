"""CPU time of one training step (forward, backward, Adam step) per architecture family.

Every family trains on the same random table (``--numeric`` numeric columns and categorical
columns of the cardinalities in ``CARDINALITIES``, embedding width 8), regression tasks, one
batch of ``--batch`` rows, MSE summed over the tasks. The families are built as a search
would build them at comparable sizes: blocks of ``--width``, towers of 16, two experts per
gate set. Repeats are interleaved (every family once, then again) so that load drift on a
shared machine hits all alike; the median per step is printed, in process CPU time.

Usage::

    python benchmarks/tabular_family_cost.py [--tasks 2 4] [--batch 256] [--steps 30] [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from mtl_search.architectures import build_model
from mtl_search.tasks import Task

CARDINALITIES = [10, 20, 50, 5, 100]


def specs(width: int, n_tasks: int) -> dict[str, dict]:
    names = [f"task{i + 1}" for i in range(n_tasks)]
    return {
        "tree (one shared block)": {"family": "tree", "widths": [width], "groups": [[names]]},
        "mmoe": {"family": "mmoe", "experts": 2 * (n_tasks + 1), "expert_widths": [width]},
        "aitm": {"family": "aitm", "widths": [width], "attention_width": width // 2},
        "aitm + calibrator": {"family": "aitm", "widths": [width], "attention_width": width // 2, "calibrator": 0.5},
        "stem": {"family": "stem", "experts": 2, "expert_widths": [width]},
    }


def step_seconds(spec: dict, n_tasks: int, args: argparse.Namespace) -> float:
    tasks = [Task(f"task{i + 1}", "binary" if i < 2 else "regression") for i in range(n_tasks)]
    schema = {"kind": "tabular", "numeric": args.numeric, "categorical": CARDINALITIES}
    spec = spec | {"tower": {"widths": [16]}, "stem": {} if spec["family"] == "stem" else {"embedding_dim": 8}}
    if spec["family"] == "stem":
        spec["embedding_dim"] = 8
    torch.manual_seed(0)
    model = build_model(spec, schema, tasks)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    inputs = {
        "numeric": torch.randn(args.batch, args.numeric),
        "categorical": torch.stack([torch.randint(0, c, (args.batch,)) for c in CARDINALITIES], dim=1),
    }
    targets = {task.name: torch.rand(args.batch, 1).round() for task in tasks}
    model.train()

    def one_step() -> None:
        outputs = model(inputs)
        loss = sum(torch.nn.functional.mse_loss(outputs[name], targets[name]) for name in targets)
        extra = model.regularization()
        if extra is not None:
            loss = loss + extra
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for _ in range(3):  # warm-up
        one_step()
    start = time.process_time()
    for _ in range(args.steps):
        one_step()
    return (time.process_time() - start) / args.steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--numeric", type=int, default=8)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), batch {args.batch}, width {args.width}, "
        f"{args.numeric} numeric + {len(CARDINALITIES)} categorical columns; median of {args.repeats} x {args.steps} steps"
    )
    for n_tasks in args.tasks:
        cases = specs(args.width, n_tasks)
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.repeats):
            for name, spec in cases.items():
                times[name].append(step_seconds(spec, n_tasks, args))
        print(f"\n{n_tasks} tasks          ms per step")
        for name, values in times.items():
            print(f"  {name:<24} {1000 * statistics.median(values):7.2f}")


if __name__ == "__main__":
    main()
