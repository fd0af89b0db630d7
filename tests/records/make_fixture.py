"""Write the stored study the record tests open: ``python -m tests.records.make_fixture OUT.sqlite3``.

A few tiny trials through the real command line, so that the file holds what a run stores:
complete trials (one a repeat of an earlier candidate), one over a hard limit (pruned before
training), and, from a continued run with a diverging learning rate, failed ones. Run it
again only when the stored format changes, and keep the file of each earlier format.
"""

from __future__ import annotations

import sqlite3
import sys
import tempfile
from pathlib import Path

from mtl_search.cli import main

STUDY = "stored"
QUICK = [
    "--data-option",
    "rows=200",
    "--data-option",
    "dim=6",
    "--epochs",
    "2",
    "--quiet",
    "--sampler",
    "random",
    "--seed",
    "0",
    "--max-params",
    "1000",
    "--objective",
    "params",
    "--prune-min-trials",
    "1",
    "--prune-warmup",
    "0",
]
SPACE = """
training: {{epochs: 2, batch_size: 64, learning_rate: {rate}, checkpoint: best}}
tower: {{depth: 1, width: 4}}
families:
  tree: {{depth: 1, width: {{choices: [4, 64]}}, grouping: partitions}}
loss_weighting: {{static: {{}}}}
"""


def write_fixture(target: Path) -> None:
    if target.exists():
        target.unlink()
    url = f"sqlite:///{target}"
    with tempfile.TemporaryDirectory() as folder:
        steady, diverging = Path(folder) / "steady.yaml", Path(folder) / "diverging.yaml"
        steady.write_text(SPACE.format(rate=0.01))
        diverging.write_text(SPACE.format(rate=1.0e4))
        common = ["--storage", url, "--study-name", STUDY, "--artifacts", str(Path(folder) / "artifacts")]
        main(["run", "--trials", "8", "--space", str(steady), *common, *QUICK])
        main(["run", "--trials", "1", "--space", str(diverging), *common, *QUICK])
    with sqlite3.connect(target) as connection:  # small enough to keep in the repository
        connection.execute("VACUUM")


if __name__ == "__main__":
    write_fixture(Path(sys.argv[1]).resolve())
