"""A table larger than memory: peak memory, cache-build time and epoch time of a streamed trial.

Generates a Parquet table of ROWS rows (30 numeric columns, 10 categorical ones of up to 1,000
levels as text, 3 binary tasks) with pyarrow, a row group at a time, then runs one trial of one
epoch on it with the real command line, twice: the first run builds the table's cache entry (the
load time is mostly that), the second reads it back. For each run it prints the child's peak
resident memory (``getrusage(RUSAGE_CHILDREN)``), its wall time, the time to the data being
ready and the epoch's time (from the trial's stored history).

    python benchmarks/large_table.py --rows 200000              # a quick look
    nice python benchmarks/large_table.py --rows 10000000       # the figure in the docs
    # under a memory limit smaller than the table (cgroup v1 memory controller, as root):
    nice python benchmarks/large_table.py --rows 10000000 --memory-limit 1G

``--memory-limit`` puts the trial in a cgroup whose memory (the process's own and the page cache
it fills) may not exceed the limit; the kernel kills the process if it must go over. Files go
to ``--folder`` (default: a folder in /tmp, kept for reruns: the table is generated once).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

NUMERIC, CATEGORICAL, TASKS = 30, 10, 3
CHUNK = 500_000


def generate(path: Path, rows: int, seed: int = 0) -> None:
    """The table, written a row group at a time so that generating it needs little memory."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    levels = [int(n) for n in np.linspace(10, 1000, CATEGORICAL)]
    vocabularies = [np.array([f"c{column}_{level}" for level in range(n)]) for column, n in enumerate(levels)]
    weights = rng.normal(size=(NUMERIC, TASKS)) / np.sqrt(NUMERIC)
    category_effects = [rng.normal(size=(n, TASKS)) * 0.5 for n in levels]
    writer = None
    for start in range(0, rows, CHUNK):
        count = min(CHUNK, rows - start)
        numeric = rng.normal(size=(count, NUMERIC)).astype(np.float32)
        codes = [rng.integers(0, n, count) for n in levels]
        logits = numeric @ weights + sum(effect[code] for effect, code in zip(category_effects, codes))
        labels = (rng.random((count, TASKS)) < 1 / (1 + np.exp(-logits))).astype(np.int8)
        columns = {f"x{i}": numeric[:, i] for i in range(NUMERIC)}
        columns |= {f"c{i}": pa.DictionaryArray.from_arrays(codes[i], vocabularies[i]) for i in range(CATEGORICAL)}
        columns |= {f"y{i}": labels[:, i] for i in range(TASKS)}
        table = pa.table(columns)
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    writer.close()


CGROUP = Path("/sys/fs/cgroup/memory/mtl-search-large-table")


def _limited(limit: str | None) -> dict:
    """``subprocess`` arguments that put the child in a memory-limited cgroup (v1), or none."""
    if not limit:
        return {}
    CGROUP.mkdir(exist_ok=True)
    (CGROUP / "memory.limit_in_bytes").write_text(limit)
    (CGROUP / "memory.max_usage_in_bytes").write_text("0")  # the peak of this run, not of an earlier one
    procs = str(CGROUP / "cgroup.procs")
    return {"preexec_fn": lambda: Path(procs).write_text(str(os.getpid()))}


SPACE = """\
description: one small shared-trunk candidate, for the large-table benchmark
training:
  epochs: 1
  learning_rate: 1.0e-3
  batch_size: {batch_size}
families:
  tree:
    depth: 1
    width: 64
    grouping: shared
loss_weighting:
  static: {{}}
"""


def run_trial(table: Path, folder: Path, name: str, limit: str | None, batch_size: int) -> dict:
    """One trial of one epoch through the command line; its peak RSS (of this child alone) and times."""
    space = folder / "space.yaml"
    space.write_text(SPACE.format(batch_size=batch_size))
    database = folder / f"{name}.db"
    database.unlink(missing_ok=True)
    command = [
        sys.executable, "-m", "mtl_search", "run",
        "--data", "table", "--data-file", str(table),
        *[arg for i in range(TASKS) for arg in ("--task", f"y{i}:binary")],
        "--data-option", "categorical=" + ",".join(f"c{i}" for i in range(CATEGORICAL)), "--data-option", "stream=on",
        "--trials", "1", "--epochs", "1", "--space", str(space),
        "--storage", f"sqlite:///{database}", "--study-name", name, "--artifacts", str(folder / "artifacts"),
    ]  # fmt: skip
    environment = os.environ | {"MTL_SEARCH_CACHE": str(folder / "cache")}
    if limit:
        _evict(folder / "cache")
    log = folder / f"{name}.log"
    started = time.perf_counter()
    with open(log, "w") as output:
        child = subprocess.Popen(command, env=environment, stdout=output, stderr=subprocess.STDOUT, **_limited(limit))
        _, status, usage = os.wait4(child.pid, 0)  # this child's own resource use, not every child's
    wall = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        print(log.read_text()[-3000:], file=sys.stderr)
        raise SystemExit(f"the trial exited with {child.returncode} (log: {log})")
    history = _history(database, name)
    return {
        "command": " ".join(command),
        "peak_rss_gib": usage.ru_maxrss / 2**20,  # kilobytes on Linux
        "wall_s": wall,
        "epoch_s": history[0].seconds if history else float("nan"),
        "cgroup_peak_gib": _cgroup_peak() if limit else None,
    }


def _history(database: Path, name: str) -> list:
    import optuna

    from mtl_search.records.trial import TrialRecord

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{database}")
    return [epoch for trial in study.trials for epoch in TrialRecord.read(trial).history]


def _evict(cache: Path) -> None:
    """Drop the entry's pages from the page cache: pages already cached were charged to whoever read
    them first, and the limited run must read (and be charged for) them itself."""
    for path in cache.rglob("*.bin"):
        with open(path, "rb") as handle:
            os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def _cgroup_peak() -> float:
    return int((CGROUP / "memory.max_usage_in_bytes").read_text()) / 2**30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--folder", type=Path, default=None)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--memory-limit", default=None, help="e.g. 1G: run the trials in a cgroup with this limit")
    arguments = parser.parse_args()
    folder = arguments.folder or Path("/tmp") / f"mtl-search-large-table-{arguments.rows}"
    folder.mkdir(parents=True, exist_ok=True)
    table = folder / "table.parquet"
    if not table.exists():
        started = time.perf_counter()
        generate(table, arguments.rows)
        print(f"generated {table} ({table.stat().st_size / 2**30:.2f} GiB) in {time.perf_counter() - started:.0f} s")
    print(
        f"table: {arguments.rows:,} rows x {NUMERIC + CATEGORICAL + TASKS} columns, {table.stat().st_size / 2**30:.2f} GiB"
    )
    for run in ("first (builds the cache)", "second (reads the cache)"):
        name = "large-table-" + run.split()[0]
        result = run_trial(table, folder, name, arguments.memory_limit, arguments.batch_size)
        cache = sum(f.stat().st_size for f in (folder / "cache").rglob("*") if f.is_file()) / 2**30
        print(
            f"{run}: peak RSS {result['peak_rss_gib']:.2f} GiB, wall {result['wall_s']:.0f} s, "
            f"epoch {result['epoch_s']:.0f} s, load and the rest {result['wall_s'] - result['epoch_s']:.0f} s, "
            f"cache {cache:.2f} GiB"
            + (f", cgroup peak {result['cgroup_peak_gib']:.2f} GiB" if result["cgroup_peak_gib"] is not None else "")
        )
    print("command:", result["command"])


if __name__ == "__main__":
    main()
