"""The optimiser's own cost: torch.optim.Adam(fused=True) against mtl-search's FusedAdam (same kernel).

Each measurement is a fresh process (the first optimiser of a process is what every worker and
every export pays): CPU seconds to build the first optimiser and take its first step, then CPU
microseconds per ``zero_grad`` + gradient + ``step`` over 2,000 steps on a small network's
parameters (a 64x64 weight and its bias). Runs of the two alternate.

    python benchmarks/optimizer_overhead.py             # 3 runs of each
    python benchmarks/optimizer_overhead.py --quick     # 1 run of each
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from _record import add_result_options, write_result  # noqa: E402  (benchmarks/ is on sys.path when a script runs)

REPO = Path(__file__).resolve().parents[1]
STEPS = 2000

MEASURE = """
import json, sys, time
import torch
from mtl_search.training.trainer import make_optimizer

params = [torch.nn.Parameter(torch.randn(64, 64)), torch.nn.Parameter(torch.randn(64))]
started = time.process_time()
if sys.argv[1] == "torch":
    optimizer = torch.optim.Adam([{"params": params}], lr=1e-3, weight_decay=0.0, fused=True)
else:
    optimizer = make_optimizer("adam", [{"params": params}], 1e-3, 0.0)
for p in params:
    p.grad = torch.ones_like(p)
optimizer.step()
first = time.process_time() - started
started = time.process_time()
for _ in range(int(sys.argv[2])):
    optimizer.zero_grad(set_to_none=True)
    for p in params:
        p.grad = torch.ones_like(p)
    optimizer.step()
per_step = 1e6 * (time.process_time() - started) / int(sys.argv[2])
print(json.dumps({"first_cpu_seconds": first, "step_cpu_microseconds": per_step,
                  "dynamo_imported": "torch._dynamo" in sys.modules}))
"""


def measure(which: str) -> dict:
    environment = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, which, str(STEPS)], capture_output=True, text=True, env=environment, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_result_options(parser, "optimizer_overhead", "1 run of each")
    args = parser.parse_args()
    repeats = 1 if args.quick else 3
    runs: dict[str, list[dict]] = {"torch.optim.Adam(fused=True)": [], "FusedAdam (mtl-search)": []}
    for _ in range(repeats):
        for name, which in zip(runs, ("torch", "ours")):
            runs[name].append(measure(which))
    print(f"{'optimiser':<30} {'first build+step, CPU s':>24} {'per step, CPU us':>17} {'imports torch._dynamo':>22}")
    for name, results in runs.items():
        first = statistics.median(r["first_cpu_seconds"] for r in results)
        step = statistics.median(r["step_cpu_microseconds"] for r in results)
        print(f"{name:<30} {first:>24.3f} {step:>17.1f} {str(results[0]['dynamo_imported']):>22}")
    print(f"(medians of {repeats} fresh process(es) each; {STEPS} steps; one thread)")
    write_result(args.name, {"repeats": repeats, "steps": STEPS, "quick": args.quick}, runs)


if __name__ == "__main__":
    main()
