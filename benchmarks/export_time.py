"""What the export's graphs cost: writing and checking ``model.pt2`` and ``model.onnx``.

For each model (an MMoE on the default search's synthetic data, and an MMoE over a
self-attention sequence stem with a conditional task) the script trains one epoch, then times
the two steps of ``mtl-search export`` that make the graphs: ``torch.export`` with a dynamic
batch, save, load and check on an unseen batch size (``model.pt2``), then the ONNX conversion
by PyTorch's exporter (``dynamo=True``) and its onnxruntime check (``model.onnx``). The first
run in the process is reported apart: it pays the imports and warm-up a one-off
``mtl-search export`` pays; the median of the further repeats is the steady cost. Wall and
process CPU seconds, one torch thread.

    python benchmarks/export_time.py              # 3 repeats after the first run
    python benchmarks/export_time.py --quick      # 1 repeat

Writes ``benchmarks/results/export_time.json`` (``--name``) and prints a table.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from _record import add_result_options, write_result  # noqa: E402  (benchmarks/ is on sys.path when a script runs)

import torch

from mtl_search.data.sequences import make_sequences
from mtl_search.data.synthetic import make_synthetic
from mtl_search.export.bundle import ONNX_FILE, PROGRAM_FILE, _write_onnx, _write_program, example_inputs
from mtl_search.training import train_candidate

MODELS = {
    "mmoe-synthetic": (
        lambda: make_synthetic(dim=100, rows=2000, seed=0),
        {"family": "mmoe", "experts": 8, "expert_widths": [16], "bottom_widths": [], "tower": {"widths": [8]}},
    ),
    "mmoe-sequence-attention": (
        lambda: make_sequences(rows=2000, max_length=20, vocabulary=60),
        {
            "family": "mmoe",
            "experts": 4,
            "expert_widths": [16],
            "tower": {"widths": [8]},
            "stem": {"sequence_encoder": "attention", "sequence_width": 16, "embedding_dim": 8},
        },
    ),
}


def timed(step, *args) -> tuple[float, float, object]:
    wall, cpu = time.perf_counter(), time.process_time()
    value = step(*args)
    return time.perf_counter() - wall, time.process_time() - cpu, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    add_result_options(parser, "export_time", "1 repeat after the first run")
    args = parser.parse_args()
    repeats = 1 if args.quick else args.repeats
    torch.set_num_threads(1)
    results = {}
    for name, (make_data, spec) in MODELS.items():
        data = make_data()
        candidate = {"architecture": spec, "training": {"epochs": 1, "batch_size": 128, "seed": 0}}
        model = train_candidate(data, candidate).model.cpu().eval()
        example = example_inputs(data.input_schema, data)
        runs = []
        for _ in range(1 + repeats):
            with tempfile.TemporaryDirectory() as folder:
                notes: list[str] = []
                program_wall, program_cpu, program = timed(
                    _write_program, model, example, Path(folder) / PROGRAM_FILE, notes
                )
                onnx_wall, onnx_cpu, written = timed(
                    _write_onnx, program, model, example, Path(folder) / ONNX_FILE, notes
                )
                assert program is not None and written, notes
                sizes = {file: (Path(folder) / file).stat().st_size for file in (PROGRAM_FILE, ONNX_FILE)}
            runs.append(
                {"pt2_wall": program_wall, "pt2_cpu": program_cpu, "onnx_wall": onnx_wall, "onnx_cpu": onnx_cpu}
            )
        steady = {key: statistics.median(run[key] for run in runs[1:]) for key in runs[0]}
        results[name] = {
            "parameters": sum(p.numel() for p in model.parameters()),
            "bytes": sizes,
            "first": runs[0],
            "median_after_first": steady,
        }
    print(f"{'model':<26} {'params':>7}  {'':<18} {'pt2 wall/cpu s':>15} {'onnx wall/cpu s':>16}")
    for name, result in results.items():
        for label in ("first", "median_after_first"):
            run = result[label]
            print(
                f"{name:<26} {result['parameters']:>7}  {label:<18} "
                f"{run['pt2_wall']:>7.2f}/{run['pt2_cpu']:<7.2f} {run['onnx_wall']:>8.2f}/{run['onnx_cpu']:<7.2f}"
            )
    write_result(args.name, {"quick": args.quick, "repeats": repeats, "threads": 1}, results)


if __name__ == "__main__":
    main()
