"""Loading census with and without the parsed-data cache: CPU and wall seconds per load.

Each load runs in a fresh process (as a worker, ``refine`` or ``export`` does) with
``load_data("census", ...)`` on ../shared/data/census-income.test.gz: ``parse`` with the
cache off, ``cache hit`` with an entry made beforehand in a temporary cache folder. The two
alternate; imports are not counted (the timer starts at the call). Both loads are checked to
give the same tensors.

    python benchmarks/data_cache.py            # 3 loads of each
    python benchmarks/data_cache.py --quick    # 1 load of each
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _record import CENSUS_FILE, add_result_options, write_result  # noqa: E402  (benchmarks/ is on sys.path)

REPO = Path(__file__).resolve().parents[1]

LOAD = """
import hashlib, json, sys, time
import torch
from mtl_search.data import cache, load_data

cpu, wall = time.process_time(), time.perf_counter()
data = load_data("census", {}, sys.argv[1], [])
cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
digest = hashlib.sha256()
for split in (data.train, data.validation, data.test):
    for part in (split.inputs, split.targets):
        for name in sorted(part):
            digest.update(part[name].nan_to_num(-7.0).contiguous().view(-1).view(torch.uint8).numpy().tobytes())
print(json.dumps({"cpu_seconds": cpu, "wall_seconds": wall, "hits": cache.counts["hits"], "data": digest.hexdigest()}))
"""


def load(cache_setting: str) -> dict:
    environment = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", MTL_SEARCH_CACHE=cache_setting)
    done = subprocess.run(
        [sys.executable, "-c", LOAD, str(CENSUS_FILE)], capture_output=True, text=True, env=environment, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_result_options(parser, "data_cache", "1 load of each")
    args = parser.parse_args()
    if not CENSUS_FILE.exists():
        raise SystemExit(f"{CENSUS_FILE}: not found (the census file this benchmark loads)")
    repeats = 1 if args.quick else 3
    runs: dict[str, list[dict]] = {"parse": [], "cache hit": []}
    with tempfile.TemporaryDirectory(prefix="mtl-search-cache-") as folder:
        load(folder)  # makes the entry
        for _ in range(repeats):
            runs["parse"].append(load("off"))
            runs["cache hit"].append(load(folder))
    if any(run["hits"] != 1 for run in runs["cache hit"]):
        raise SystemExit("the cached loads did not read the cache")
    if len({run["data"] for runs_ in runs.values() for run in runs_}) != 1:
        raise SystemExit("the cached data differ from the parsed data")
    print(f"load_data('census') on {CENSUS_FILE.name}, fresh process each, median of {repeats}:")
    medians = {}
    for name, results in runs.items():
        medians[name] = {key: statistics.median(r[key] for r in results) for key in ("cpu_seconds", "wall_seconds")}
        print(f"  {name:<10} {medians[name]['cpu_seconds']:6.2f} CPU s  {medians[name]['wall_seconds']:6.2f} wall s")
    saved = medians["parse"]["cpu_seconds"] - medians["cache hit"]["cpu_seconds"]
    speedup = medians["parse"]["cpu_seconds"] / medians["cache hit"]["cpu_seconds"]
    print(f"  saved per load: {saved:.2f} CPU s ({speedup:.1f}x)")
    write_result(
        args.name,
        {"repeats": repeats, "quick": args.quick, "file": CENSUS_FILE.name},
        {"runs": runs, "medians": medians},
    )


if __name__ == "__main__":
    main()
