"""CPU cost per training step: one candidate alone, a population of K, and a bare PyTorch loop.

Three ways to train on the synthetic data (``--rows``; 60 % train, 20 % validation, 20 % test),
``--epochs`` epochs at batch ``--batch``, Adam, the search's ``checkpoint: best``:

- ``alone``: :func:`train_candidate` on one candidate;
- ``population K``: :func:`train_population` on K candidates of that structure (seeds 0..K-1,
  learning rates spread log-evenly over 1e-3..1e-2, as a search draws them), trained as one
  stacked network; the figure is per member and step, i.e. the CPU time of the call divided
  by K times the number of steps;
- ``bare``: a hand-written loop, a plain ``nn.Sequential`` MLP with about the candidate's
  number of parameters (Linear, ReLU, Linear(16), ReLU, Linear to both tasks),
  ``torch.optim.Adam`` with its default kernel, the same shuffling, batches and a validation
  pass per epoch: the floor a script without any framework would pay.

Every figure is process CPU time (``time.process_time``) with one torch thread, and covers the
whole call: steps, the per-epoch validation and checkpoint copies (per member for a
population), the test pass. Structures (``--families``, default tree and mmoe): a
shared-bottom tree (``--width`` x ``--depth``, a tower of 16 per task), an MMoE (4 experts of
``--expert-width``, a softmax gate per task, the same towers), and the other families of the
default space at those sizes (ple: 2 levels of one shared and one task expert; cross_stitch;
sluice with 2 subspaces; hierarchy with the second task's head on top). Repeats are interleaved (each repeat runs every arm, starting at a
different one), so load drift on a shared machine hits every arm alike; medians are reported.
Each repeat also checks that population member 0 ends where the same candidate alone does.

``--device cuda`` trains on the GPU (the bare loop too) and reports elapsed time instead, the
device synchronised before each clock read: on a GPU the CPU time of the launching thread is
not the cost. ``--precision bf16|fp16`` sets the candidates' ``training.precision`` (the bare
loop stays fp32; an fp16 population trains its members alone, so use bf16 to time fusion).

Usage::

    python benchmarks/population_step.py [--rows 2000 20000] [--population 8 16 32] [--epochs 3] [--repeats 3]
    python benchmarks/population_step.py --quick   # epochs 2, repeats 2
    python benchmarks/population_step.py --device cuda --precision bf16 --rows 20000 --population 32 --quick
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import add_result_options, write_result  # noqa: E402

from mtl_search.data.synthetic import make_synthetic  # noqa: E402
from mtl_search.training import count_parameters, train_candidate  # noqa: E402
from mtl_search.training.population import train_population  # noqa: E402

TASKS = ("task1", "task2")
TOWER = 16
# the families of the default space; a structure of the sizes it draws (--width, --depth, --expert-width)
FAMILIES = ("tree", "mmoe", "ple", "cross_stitch", "sluice", "hierarchy")


def spec(family: str, args: argparse.Namespace) -> dict[str, Any]:
    common = {"block": {"norm": "none", "activation": "relu", "dropout": 0.0}, "tower": {"widths": [TOWER]}}
    width, depth, expert_width = args.width, args.depth, args.expert_width
    if family == "tree":
        return common | {"family": "tree", "widths": [width] * depth, "groups": [[list(TASKS)]] * depth}
    if family == "mmoe":
        return common | {"family": "mmoe", "experts": 4, "expert_widths": [expert_width], "bottom_widths": []}
    if family == "ple":
        return common | {
            "family": "ple",
            "levels": 2,
            "shared_experts": 1,
            "task_experts": 1,
            "expert_widths": [expert_width],
        }
    if family == "cross_stitch":
        return common | {"family": "cross_stitch", "widths": [width] * depth, "units": [], "alpha_self": 0.9}
    if family == "sluice":
        return common | {
            "family": "sluice",
            "depth": depth,
            "width": width,
            "subspaces": 2,
            "orthogonality_weight": 0.01,
            "alpha_self": 0.9,
            "beta_init": "last",
        }
    return common | {  # hierarchy
        "family": "hierarchy",
        "widths": [width] * depth,
        "head_depths": {TASKS[0]: 1, TASKS[1]: depth},
        "feed_upward": {TASKS[0]: False, TASKS[1]: False},
        "successive": 0.0,
    }


def candidates(family: str, count: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    rates = [1e-3 * 10 ** (i / max(count - 1, 1)) for i in range(count)]
    return [
        {
            "architecture": spec(family, args),
            "training": {
                "epochs": args.epochs,
                "learning_rate": rate,
                "batch_size": args.batch,
                "seed": seed,
                "optimizer": "adam",
                "checkpoint": "best",
                "precision": args.precision,
            },
            "loss_weighting": {"method": "static"},
        }
        for seed, rate in enumerate(rates)
    ]


def bare_width(dim: int, n_params: int) -> int:
    """Hidden width of the bare MLP (dim -> w -> 16 -> 2) with about ``n_params`` parameters."""
    # params = dim*w + w + w*16 + 16 + 16*2 + 2
    return max(1, round((n_params - 16 - 34) / (dim + 17)))


def bare_train(data, width: int, epochs: int, batch: int, seed: int, device: str = "cpu") -> float:
    """The hand-written loop; returns its final validation loss (sum over tasks)."""
    torch.manual_seed(seed)
    dim = data.input_schema["size"]
    model = nn.Sequential(
        nn.Linear(dim, width), nn.ReLU(), nn.Linear(width, TOWER), nn.ReLU(), nn.Linear(TOWER, len(TASKS))
    ).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = data.train.inputs["x"].to(device)
    y = torch.stack([data.train.targets[t] for t in TASKS], dim=1).to(device)
    vx = data.validation.inputs["x"].to(device)
    vy = torch.stack([data.validation.targets[t] for t in TASKS], dim=1).to(device)
    generator = torch.Generator().manual_seed(seed)
    n = len(x)
    validation = 0.0
    for _ in range(epochs):
        model.train()
        order = torch.randperm(n, generator=generator).to(device)
        sx, sy = x[order], y[order]
        sums, batches = torch.zeros(len(TASKS), device=device), 0
        for start in range(0, n, batch):
            stop = min(start + batch, n)
            if stop - start < 2 and batches:
                break
            losses = ((model(sx[start:stop]) - sy[start:stop]) ** 2).mean(dim=0)
            optimizer.zero_grad(set_to_none=True)
            losses.sum().backward()
            optimizer.step()
            sums += losses.detach()
            batches += 1
        (sums / batches).tolist()
        with torch.inference_mode():
            model.eval()
            validation = float(((model(vx) - vy) ** 2).mean(dim=0).sum())
    with torch.inference_mode():
        test_targets = torch.stack([data.test.targets[t] for t in TASKS], dim=1).to(device)
        float(((model(data.test.inputs["x"].to(device)) - test_targets) ** 2).mean())
    return validation


DEVICE = "cpu"  # set from --device in main()


def cpu(function, *args, **kwargs) -> tuple[float, Any]:
    """The call's cost: process CPU time on the CPU; elapsed time, the GPU synchronised, on a GPU."""
    if DEVICE == "cpu":
        started = time.process_time()
        result = function(*args, **kwargs)
        return time.process_time() - started, result
    torch.cuda.synchronize()
    started = time.perf_counter()
    result = function(*args, **kwargs)
    torch.cuda.synchronize()
    return time.perf_counter() - started, result


def measure(data, family: str, args: argparse.Namespace) -> dict[str, Any]:
    largest = candidates(family, max(args.population), args)
    lone = largest[0]
    device = args.device
    probe = train_candidate(data, lone | {"training": lone["training"] | {"epochs": 1}}, device=device)  # warm-up
    n_params = count_parameters(probe.model)
    width = bare_width(data.input_schema["size"], n_params)
    steps = args.epochs * -(-len(data.train) // args.batch)
    train_population(data, candidates(family, 2, args), device=device)  # warm-up
    bare_train(data, width, 1, args.batch, 0, device)
    arms = ["alone", "bare", *[f"population {k}" for k in args.population]]
    seconds: dict[str, list[float]] = {arm: [] for arm in arms}
    worst_difference = 0.0
    for repeat in range(args.repeats):
        order = arms[repeat % len(arms) :] + arms[: repeat % len(arms)]
        lone_validation = None
        fused_validation = None
        for arm in order:
            if arm == "alone":
                spent, result = cpu(train_candidate, data, lone, device=device)
                seconds[arm].append(spent / steps)
                lone_validation = sum(result.validation[t]["loss"] for t in TASKS)
            elif arm == "bare":
                spent, _ = cpu(bare_train, data, width, args.epochs, args.batch, 0, device)
                seconds[arm].append(spent / steps)
            else:
                count = int(arm.split()[1])
                spent, results = cpu(train_population, data, candidates(family, count, args), device=device)
                failed = [r for r in results if isinstance(r, BaseException)]
                if failed or any(r.population_size != count for r in results):
                    raise SystemExit(f"population {count}: did not train fused ({failed[:1]})")
                seconds[arm].append(spent / (count * steps))
                fused_validation = sum(results[0].validation[t]["loss"] for t in TASKS)
        worst_difference = max(worst_difference, abs(fused_validation - lone_validation) / abs(lone_validation))
        print(
            f"  {family} rows {args.current_rows} repeat {repeat + 1}: "
            + ", ".join(f"{arm} {1000 * seconds[arm][-1]:.3f}" for arm in arms)
            + " ms/step",
            flush=True,
        )
    return {
        "family": family,
        "rows": args.current_rows,
        "n_params": n_params,
        "bare_width": width,
        "steps": steps,
        "ms_per_step": {arm: 1000 * statistics.median(values) for arm, values in seconds.items()},
        "all_ms_per_step": {arm: [1000 * v for v in values] for arm, values in seconds.items()},
        "member0_vs_alone_relative_validation_difference": worst_difference,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--population", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--families", nargs="+", choices=FAMILIES, default=["tree", "mmoe"])
    parser.add_argument("--dim", type=int, default=100)
    parser.add_argument("--width", type=int, default=64, help="tree block width")
    parser.add_argument("--depth", type=int, default=2, help="tree depth")
    parser.add_argument("--expert-width", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="cpu (default) or a CUDA device: cuda, cuda:1")
    parser.add_argument(
        "--precision",
        choices=("fp32", "bf16", "fp16"),
        default="fp32",
        help="training.precision of the candidates (default fp32)",
    )
    add_result_options(parser, "population_step", "epochs 2, repeats 2")
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.repeats = 2, 2
    global DEVICE
    DEVICE = args.device
    if DEVICE != "cpu" and not torch.device(DEVICE).type == "cuda":
        raise SystemExit(f"--device {DEVICE}: expected cpu or a CUDA device")
    if DEVICE != "cpu" and not torch.cuda.is_available():
        raise SystemExit(f"--device {DEVICE}: no CUDA device on this machine")
    if args.precision == "fp16":
        raise SystemExit("--precision fp16: a population trains fp16 candidates alone; time bf16 instead")
    torch.set_num_threads(1)
    rows_results = []
    for rows in args.rows:
        data = make_synthetic(dim=args.dim, rows=rows, correlation=0.5, seed=0)
        args.current_rows = rows
        for family in args.families:
            rows_results.append(measure(data, family, args))
    print()
    clock = "CPU ms" if DEVICE == "cpu" else f"elapsed ms on {DEVICE}"
    print(
        f"{clock} per training step (per member for a population), median of interleaved repeats, 1 thread, "
        f"precision {args.precision}"
    )
    header = f"{'rows':>6} {'family':<12} {'params':>7} {'alone':>7} {'bare':>7}"
    for k in args.population:
        header += f" {'K=' + str(k):>7} {'x':>5}"
    print(header)
    for result in rows_results:
        figures = result["ms_per_step"]
        line = f"{result['rows']:>6} {result['family']:<12} {result['n_params']:>7}"
        line += f" {figures['alone']:>7.3f} {figures['bare']:>7.3f}"
        for k in args.population:
            fused = figures[f"population {k}"]
            line += f" {fused:>7.3f} {figures['alone'] / fused:>5.2f}"
        print(line)
    print("x: alone / population (how many times cheaper a member's step is); bare: plain MLP of about the same size")
    worst = max(r["member0_vs_alone_relative_validation_difference"] for r in rows_results)
    print(
        f"member 0 of each population against the same candidate alone: final validation loss within {worst:.1e} "
        "(relative)"
    )
    settings = {key: value for key, value in vars(args).items() if key != "current_rows"}
    write_result(args.name, settings, rows_results)


if __name__ == "__main__":
    main()
