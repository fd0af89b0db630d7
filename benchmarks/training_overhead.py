"""Overhead of mtl-search's trainer against a bare hand-written PyTorch loop (issue 9).

Both sides train the same network on the same in-memory tensors with the same settings:

- network: shared-bottom tree (Linear(dim, w) + ReLU, ``--depth`` times, shared by both
  tasks), then per task a tower Linear(w, 16) + ReLU + Linear(16, 1). mtl-search builds it
  from the spec ``{"family": "tree", "groups": [[[task1, task2]]] * depth, "tower": {"widths": [16]}}``;
  the hand loop builds it with ``nn.Sequential``. Parameters are created in the same order
  after the same ``torch.manual_seed``, so both start from identical weights (checked: the
  final validation losses are printed side by side and should agree to float precision).
- training: Adam (lr 1e-3), batch ``--batch``, ``--epochs`` epochs, loss = sum of the two
  tasks' MSE (static equal weights). Both use the same Adam kernel (the fused one
  ``make_optimizer`` picks), so the ratio is the loop's overhead; a third run,
  ``bare_default_adam``, is the bare loop with ``torch.optim.Adam``'s default kernel, what
  mtl-search used before 2026-11-21 and what a hand-written loop usually gets. Each epoch draws one permutation from a seeded
  ``torch.Generator``, gathers the shuffled training tensors once and walks contiguous slices.
- every epoch: the mean training loss per task is accumulated (one ``.tolist()`` per epoch)
  and a validation pass (eval mode, inference mode, MSE per task) runs.
- at the end: one test pass.

The hand loop has none of mtl-search's generality: no weighting object, no NaN-label
handling, no history records, no hooks. Repeats are interleaved (ours, bare, ours, bare...)
so that load drift on a shared machine hits both sides alike; medians are reported, of
process CPU time by default (``--clock wall`` for elapsed time; both are recorded).

``--checkpoint best`` measures mtl-search with the search's default ``training.checkpoint: best``
(a copy of the weights after every improving epoch, put back at the end) against the same
bare loop.

Usage::

    python benchmarks/training_overhead.py [--rows 12000] [--epochs 10] [--batch 256] [--repeats 5] [--threads 1] [--checkpoint best]
    python benchmarks/training_overhead.py --profile   # cProfile of train_candidate, top entries
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import write_result  # noqa: E402

from mtl_search.data.synthetic import make_synthetic  # noqa: E402
from mtl_search.training import train_candidate  # noqa: E402
from mtl_search.training.trainer import make_optimizer  # noqa: E402

TASKS = ("task1", "task2")
TOWER = 16
EVAL_CHUNK = 8192


CHECKPOINT = {"policy": "last"}  # --checkpoint; "last" is what the bare loop does


def candidate(width: int, depth: int, epochs: int, batch: int, seed: int) -> dict:
    return {
        "architecture": {
            "family": "tree",
            "widths": [width] * depth,
            "groups": [[list(TASKS)]] * depth,
            "block": {"norm": "none", "activation": "relu", "dropout": 0.0},
            "tower": {"widths": [TOWER]},
        },
        "training": {
            "epochs": epochs,
            "learning_rate": 1e-3,
            "batch_size": batch,
            "optimizer": "adam",
            "seed": seed,
            "checkpoint": CHECKPOINT["policy"],
        },
        "loss_weighting": {"method": "static", "weights": {t: 1.0 for t in TASKS}},
    }


class HandModel(nn.Module):
    def __init__(self, dim: int, width: int, depth: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        features = dim
        for _ in range(depth):
            layers += [nn.Linear(features, width), nn.ReLU()]
            features = width
        self.trunk = nn.Sequential(*layers)
        self.towers = nn.ModuleList(
            nn.Sequential(nn.Linear(width, TOWER), nn.ReLU(), nn.Linear(TOWER, 1)) for _ in TASKS
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = self.trunk(x)
        return [tower(h).reshape(-1) for tower in self.towers]


@torch.inference_mode()
def hand_evaluate(model: HandModel, x: torch.Tensor, ys: list[torch.Tensor]) -> list[float]:
    model.eval()
    outputs: list[list[torch.Tensor]] = [[] for _ in TASKS]
    for start in range(0, len(x), EVAL_CHUNK):
        for parts, out in zip(outputs, model(x[start : start + EVAL_CHUNK])):
            parts.append(out)
    model.train()
    return [float(((torch.cat(parts) - y) ** 2).mean()) for parts, y in zip(outputs, ys)]


def hand_train(data, width: int, depth: int, epochs: int, batch: int, seed: int, kernel: str = "same") -> dict:
    """The bare loop: what train_candidate does for this candidate, written out by hand.
    ``kernel``: "same" uses mtl-search's Adam (fused), "default" ``torch.optim.Adam``'s default."""
    started, cpu_started = time.perf_counter(), time.process_time()
    torch.manual_seed(seed)
    model = HandModel(data.input_schema["size"], width, depth)
    parameters = list(model.parameters())
    optimizer = (
        make_optimizer("adam", parameters, 1e-3, 0.0) if kernel == "same" else torch.optim.Adam(parameters, lr=1e-3)
    )
    x, ys = data.train.inputs["x"], [data.train.targets[t] for t in TASKS]
    vx, vys = data.validation.inputs["x"], [data.validation.targets[t] for t in TASKS]
    generator = torch.Generator().manual_seed(seed)
    n = len(x)
    history = []
    for _ in range(epochs):
        model.train()
        order = torch.randperm(n, generator=generator)
        sx, sys_ = x[order], [y[order] for y in ys]
        sums = torch.zeros(len(TASKS))
        batches = 0
        for start in range(0, n, batch):
            stop = min(start + batch, n)
            if stop - start < 2 and batches:
                break
            outputs = model(sx[start:stop])
            losses = [nn.functional.mse_loss(out, y[start:stop]) for out, y in zip(outputs, sys_)]
            optimizer.zero_grad(set_to_none=True)
            sum(losses).backward()
            optimizer.step()
            sums += torch.stack([loss.detach() for loss in losses])
            batches += 1
        history.append({"train_loss": (sums / batches).tolist(), "validation": hand_evaluate(model, vx, vys)})
    test = hand_evaluate(model, data.test.inputs["x"], [data.test.targets[t] for t in TASKS])
    return {
        "seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu_started,
        "validation": history[-1]["validation"],
        "test": test,
    }


def ours_train(data, width: int, depth: int, epochs: int, batch: int, seed: int) -> dict:
    started, cpu_started = time.perf_counter(), time.process_time()
    result = train_candidate(data, candidate(width, depth, epochs, batch, seed), device="cpu")
    return {
        "seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu_started,
        "validation": [result.validation[t]["mse"] for t in TASKS],
        "test": [result.test[t]["mse"] for t in TASKS],
    }


def profile(data, args) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    ours_train(data, args.width, args.depth, args.epochs, args.batch, 0)
    profiler.disable()
    stream = io.StringIO()
    pstats.Stats(profiler, stream=stream).sort_stats("tottime").print_stats(25)
    return stream.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows", type=int, default=12000, help="synthetic rows (60%% train, 20%% validation, 20%% test)"
    )
    parser.add_argument("--dim", type=int, default=100)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch.set_num_threads (1: least noise on a shared machine)"
    )
    parser.add_argument(
        "--clock",
        choices=("cpu", "wall"),
        default="cpu",
        help="cpu: process CPU time (default; steadier on a shared machine with --threads 1), wall: elapsed time",
    )
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of one train_candidate run")
    parser.add_argument(
        "--checkpoint",
        choices=("last", "best"),
        default="last",
        help="mtl-search's training.checkpoint: last (default; what the bare loop does) or best (the search's "
        "default: it also copies the weights whenever an epoch improves; final metrics may then differ)",
    )
    parser.add_argument("--quick", action="store_true", help="rows 3000, epochs 3, repeats 3")
    args = parser.parse_args()
    CHECKPOINT["policy"] = args.checkpoint
    if args.quick:
        args.rows, args.epochs, args.repeats = 3000, 3, 3
    torch.set_num_threads(args.threads)
    data = make_synthetic(dim=args.dim, rows=args.rows, correlation=0.5, seed=0)
    # warm-up: first calls pay for lazy imports and allocator growth
    ours_train(data, args.width, args.depth, 1, args.batch, 0)
    hand_train(data, args.width, args.depth, 1, args.batch, 0)
    runs: dict[str, list[dict]] = {"mtl_search": [], "bare": [], "bare_default_adam": []}
    for repeat in range(args.repeats):
        runs["mtl_search"].append(ours_train(data, args.width, args.depth, args.epochs, args.batch, 0))
        runs["bare"].append(hand_train(data, args.width, args.depth, args.epochs, args.batch, 0))
        runs["bare_default_adam"].append(
            hand_train(data, args.width, args.depth, args.epochs, args.batch, 0, kernel="default")
        )
        o, b, d = runs["mtl_search"][-1], runs["bare"][-1], runs["bare_default_adam"][-1]
        print(
            f"repeat {repeat + 1}: mtl-search {o['seconds']:.3f} s wall / {o['cpu_seconds']:.3f} s CPU, "
            f"bare {b['seconds']:.3f} s wall / {b['cpu_seconds']:.3f} s CPU, "
            f"bare with default Adam {d['seconds']:.3f} s wall / {d['cpu_seconds']:.3f} s CPU",
            flush=True,
        )
    clock = "cpu_seconds" if args.clock == "cpu" else "seconds"
    ours = statistics.median(r[clock] for r in runs["mtl_search"])
    bare = statistics.median(r[clock] for r in runs["bare"])
    bare_default = statistics.median(r[clock] for r in runs["bare_default_adam"])
    ratio = ours / bare
    # per-repeat ratios (paired, same moment on the machine) are less noisy than the ratio of medians
    paired = statistics.median(o[clock] / b[clock] for o, b in zip(runs["mtl_search"], runs["bare"]))
    print(
        f"\nmedian {'process CPU' if clock == 'cpu_seconds' else 'wall-clock'} seconds per training run ({args.epochs} epochs, {len(data.train)} train rows, batch {args.batch}):"
    )
    print(f"  mtl-search train_candidate : {ours:.3f}")
    print(f"  bare PyTorch loop          : {bare:.3f}")
    print(f"  ratio (medians)            : {ratio:.3f}   (target <= 1.05)")
    print(f"  ratio (median of paired)   : {paired:.3f}")
    print(
        f"  bare loop, default Adam    : {bare_default:.3f}   (fused kernel saves {1 - bare / bare_default:.1%} of it)"
    )
    print(f"  final validation MSE  ours {runs['mtl_search'][-1]['validation']}  bare {runs['bare'][-1]['validation']}")
    settings = {k: v for k, v in vars(args).items() if k != "profile"}
    results = {
        "clock": args.clock,
        "median_seconds": {"mtl_search": ours, "bare": bare, "bare_default_adam": bare_default},
        "ratio_of_medians": ratio,
        "median_paired_ratio": paired,
        "target_ratio": 1.05,
        "runs": runs,
    }
    if args.profile or ratio > 1.05:
        text = profile(data, args)
        print("\ncProfile of train_candidate (sorted by own time):\n" + text)
        results["profile_top"] = text.splitlines()[:60]
    write_result("training_overhead" if args.checkpoint == "last" else "training_overhead_best", settings, results)


if __name__ == "__main__":
    main()
