"""The tabular stem on census's columns: one flat table and one gather against a table per column.

Both stems are built from the same seed on the census schema (7 numeric and 32 categorical
columns, read from ../shared/data/census-income.test.gz when present, else the cardinalities
below) and checked to give equal outputs; then each runs forward + backward on a batch of 256
rows, alternating, and the CPU microseconds per step are printed (one thread).

    python benchmarks/tabular_stem.py            # 5 rounds of 400 steps
    python benchmarks/tabular_stem.py --quick    # 2 rounds of 100 steps
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
from torch import nn

from _record import CENSUS_FILE, add_result_options, write_result  # noqa: E402  (benchmarks/ is on sys.path)
from mtl_search.architectures.blocks import TabularStem

# census group 1's categorical cardinalities (train split), for a machine without the file
CENSUS_CARDINALITIES = [
    10,
    53,
    47,
    18,
    4,
    8,
    25,
    16,
    6,
    11,
    3,
    7,
    9,
    8,
    6,
    6,
    52,
    9,
    9,
    10,
    10,
    4,
    4,
    9,
    44,
    44,
    44,
    6,
    4,
    4,
    4,
    3,
]


class TablePerColumn(nn.Module):
    """The stem before grouping: one nn.Embedding per column, looked up one by one."""

    def __init__(self, numeric: int, categorical: list[int]) -> None:
        super().__init__()
        dims = [min(16, math.ceil(1.6 * c**0.56)) for c in categorical]
        self.embeddings = nn.ModuleList(nn.Embedding(c, d) for c, d in zip(categorical, dims))

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        categorical = inputs["categorical"]
        return torch.cat([inputs["numeric"], *(e(categorical[:, i]) for i, e in enumerate(self.embeddings))], dim=1)


def census_schema() -> tuple[int, list[int], str]:
    if CENSUS_FILE.exists():
        from mtl_search.data import load_data

        data = load_data("census", {"rows": "4000"}, str(CENSUS_FILE), [])
        schema = data.input_schema
        return int(schema["numeric"]), [int(c) for c in schema["categorical"]], f"{CENSUS_FILE.name} (4,000 rows)"
    return 7, CENSUS_CARDINALITIES, "built-in cardinalities"


def cpu_per_step(stem: nn.Module, inputs: dict[str, torch.Tensor], steps: int) -> float:
    started = time.process_time()
    for _ in range(steps):
        stem(inputs).sum().backward()
    return 1e6 * (time.process_time() - started) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_result_options(parser, "tabular_stem", "2 rounds of 100 steps")
    args = parser.parse_args()
    rounds, steps = (2, 100) if args.quick else (5, 400)
    torch.set_num_threads(1)
    numeric, cardinalities, source = census_schema()
    torch.manual_seed(0)
    before = TablePerColumn(numeric, cardinalities)
    torch.manual_seed(0)
    grouped = TabularStem(numeric, cardinalities)
    generator = torch.Generator().manual_seed(1)
    inputs = {
        "numeric": torch.randn(256, numeric, generator=generator),
        "categorical": torch.stack([torch.randint(0, c, (256,), generator=generator) for c in cardinalities], 1),
    }
    assert torch.equal(before(inputs), grouped(inputs)), "the stems differ"
    times: dict[str, list[float]] = {"table per column": [], "one gather": []}
    for _ in range(rounds):
        for name, stem in zip(times, (before, grouped)):
            times[name].append(cpu_per_step(stem, inputs, steps))
    print(
        f"census stem ({source}): {numeric} numeric, {len(cardinalities)} categorical columns; "
        f"batch 256, forward + backward, one thread"
    )
    for name, values in times.items():
        print(f"  {name:<18} {statistics.median(values):8.1f} CPU us per step (median of {rounds} rounds of {steps})")
    speedup = statistics.median(times["table per column"]) / statistics.median(times["one gather"])
    print(f"  speed-up: {speedup:.2f}x")
    write_result(
        args.name,
        {"rounds": rounds, "steps": steps, "source": source, "quick": args.quick},
        {"cpu_us_per_step": times, "speedup": speedup},
    )


if __name__ == "__main__":
    main()
