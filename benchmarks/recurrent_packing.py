"""Recurrent sequence encoders: the shipped unpacked run against packed sequences.

The ``sequence`` stem's GRU and LSTM run over the padded rows as they are: padding comes
after the last event, so a left-to-right encoder's outputs at the real events never read it,
and the attention pooling masks the rest. Packing the rows (``pack_padded_sequence``) is the
usual way to skip padding; this script measures what it would cost. For each encoder it
trains the same candidate twice per repeat, once as shipped and once with the encoder
swapped for a packed one (same seed, so the same initial weights), and reports the median
process CPU time of a whole training run (one thread) and the largest difference between
the two runs' validation metrics (equal up to float rounding, since the outputs at real
events are the same).

    python benchmarks/recurrent_packing.py            # 4,000 rows, 5 epochs, 3 repeats
    python benchmarks/recurrent_packing.py --quick    # a smoke run of a few seconds
    python benchmarks/recurrent_packing.py --max-length 50 --name recurrent_packing_len50

Writes ``benchmarks/results/recurrent_packing.json`` (``--name``) and prints a table.
"""

from __future__ import annotations

import argparse
import statistics
import time
from unittest import mock

from _record import add_result_options, write_result  # noqa: E402  (benchmarks/ is on sys.path when a script runs)

import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from mtl_search.architectures import sequence
from mtl_search.data.sequences import make_sequences
from mtl_search.training import train_candidate


class PackedRecurrentEncoder(sequence.RecurrentEncoder):
    """The same module reading packed rows: the padding is skipped instead of masked."""

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return out


def train(data, encoder: str, args: argparse.Namespace, packed: bool) -> tuple[float, dict]:
    names = list(data.task_names)
    candidate = {
        "architecture": {
            "family": "tree",
            "widths": [args.width],
            "groups": [[names]],
            "tower": {"widths": [8]},
            "stem": {"sequence_encoder": encoder, "sequence_width": args.width, "embedding_dim": 8},
        },
        "training": {"epochs": args.epochs, "batch_size": args.batch_size, "seed": 0},
    }
    module = PackedRecurrentEncoder if packed else sequence.RecurrentEncoder
    with mock.patch.object(sequence, "RecurrentEncoder", module):
        start = time.process_time()
        result = train_candidate(data, candidate)
        return time.process_time() - start, result.validation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--max-length", type=int, default=20, help="longest history (the data's default: 20)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    add_result_options(parser, "recurrent_packing", quick="600 rows, 1 epoch, 1 repeat")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.epochs, args.repeats = 600, 1, 1
    torch.set_num_threads(1)
    data = make_sequences(rows=args.rows, max_length=args.max_length, seed=0)
    results = {}
    print(
        f"{'encoder':8} {'unpacked CPU s':>15} {'packed CPU s':>13} {'packed / unpacked':>18} {'max metric diff':>16}"
    )
    for encoder in ("gru", "lstm"):
        train(data, encoder, args, packed=False)  # warm-up: the first recurrent run pays one-off costs
        seconds: dict[bool, list[float]] = {False: [], True: []}
        metrics = {}
        for _ in range(args.repeats):
            for packed in (False, True):  # interleaved, so a slow spell hits both
                elapsed, metrics[packed] = train(data, encoder, args, packed)
                seconds[packed].append(elapsed)
        difference = max(
            abs(metrics[True][task][name] - value)
            for task, values in metrics[False].items()
            for name, value in values.items()
        )
        unpacked, packed = statistics.median(seconds[False]), statistics.median(seconds[True])
        results[encoder] = {
            "unpacked_cpu_s": unpacked,
            "packed_cpu_s": packed,
            "ratio": packed / unpacked,
            "max_metric_difference": difference,
            "runs": {"unpacked": seconds[False], "packed": seconds[True]},
        }
        print(f"{encoder:8} {unpacked:15.2f} {packed:13.2f} {packed / unpacked:18.2f} {difference:16.2e}")
    write_result(args.name, vars(args), results)


if __name__ == "__main__":
    main()
