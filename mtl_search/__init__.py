"""mtl-search: find the sharing structure of a multi-task network with a multi-objective search.

The Python API, in the order a search goes::

    import mtl_search

    data = mtl_search.load_data("synthetic", {"rows": "500"})
    space = mtl_search.load_space("default")
    settings = mtl_search.SearchSettings(study_name="demo", storage="sqlite:///demo.db", n_trials=3, epochs=1)
    study = mtl_search.run_search(data, space, settings)
    front = mtl_search.pareto_trials(study)
    trial = mtl_search.pick_trial(study, "knee")
    mtl_search.export_trial(study, trial, "exported-demo")
    model = mtl_search.load("exported-demo")

Each name is imported on first use, so that ``import mtl_search`` does not import torch or
Optuna (the CLI's cheap commands rely on it).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from mtl_search.version import __version__

if TYPE_CHECKING:
    from mtl_search.data import load_data
    from mtl_search.export import export_trial, load, pick_trial
    from mtl_search.search.runner import SearchSettings, run_search
    from mtl_search.search.space import load_space, parse_space
    from mtl_search.search.study import load_existing, pareto_trials

# public name -> the module that defines it
_PUBLIC = {
    "load_data": "mtl_search.data",
    "load_space": "mtl_search.search.space",
    "parse_space": "mtl_search.search.space",
    "SearchSettings": "mtl_search.search.runner",
    "run_search": "mtl_search.search.runner",
    "load_existing": "mtl_search.search.study",
    "pareto_trials": "mtl_search.search.study",
    "pick_trial": "mtl_search.export.picks",
    "export_trial": "mtl_search.export.bundle",
    "load": "mtl_search.export.loading",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value  # looked up once
        return value
    raise AttributeError(f"module 'mtl_search' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
