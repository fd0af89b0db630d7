"""The search: spaces, studies, the trial loop, pruning, costs, affinity, hypervolume, dashboard notes.

The names below are the Python entry points (see docs/how-to/python.md); they are imported on
first use, so that importing one submodule (the CLI's ``--help`` does) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "SearchSettings": "mtl_search.search.runner",
    "run_search": "mtl_search.search.runner",
    "SearchSpace": "mtl_search.search.space",
    "load_space": "mtl_search.search.space",
    "parse_space": "mtl_search.search.space",
    "load_existing": "mtl_search.search.study",
    "pareto_trials": "mtl_search.search.study",
    "study_objectives": "mtl_search.search.study",
    "front_hypervolume": "mtl_search.search.hypervolume",
    "hypervolume_history": "mtl_search.search.hypervolume",
}


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'mtl_search.search' has no attribute {name!r}")


__all__ = sorted(_PUBLIC)
