"""Helpers shared by the issue-9 benchmark scripts: machine description and result files.

Every script writes ``benchmarks/results/<name>.json`` with the date, the machine (CPU
count, torch version, threads), the settings and the exact command that produced it. A
``--quick`` run writes ``benchmarks/results/quick/<name>.json`` instead, so a smoke run never
replaces the figures of a full run.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).resolve().parent / "results"
CENSUS_FILE = Path(__file__).resolve().parents[2] / "shared" / "data" / "census-income.test.gz"


def machine() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def command() -> str:
    return " ".join(shlex.quote(part) for part in [Path(sys.executable).name, *sys.argv])


def result_path(name: str, quick: bool = False) -> Path:
    """Where a run's JSON goes: ``results/<name>.json``, or ``results/quick/<name>.json``."""
    path = (RESULTS / "quick" if quick else RESULTS) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def add_result_options(parser: Any, name: str, quick: str) -> None:
    """``--quick`` (what the smoke run does: ``quick``) and ``--name`` (the result file, default ``name``)."""
    parser.add_argument("--quick", action="store_true", help=quick)
    parser.add_argument("--name", default=name, help="result file name (benchmarks/results/NAME.json)")


def write_result(name: str, settings: dict[str, Any], results: Any, **extra: Any) -> Path:
    path = result_path(name, bool(settings.get("quick")))
    record = {
        "benchmark": name,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command(),
        "machine": machine(),
        "settings": settings,
        "results": results,
        **extra,
    }
    path.write_text(json.dumps(record, indent=2, default=float) + "\n")
    print(f"\nwritten: {path}\ncommand: {record['command']}")
    return path
