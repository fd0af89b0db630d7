"""The data sources known by name: each source's module registers its loader here on import.

A module of its own, so that a source's module imports it at the top like any other
dependency (the sources' modules are imported only when a name is looked up, which keeps
``import mtl_search`` cheap).
"""

from __future__ import annotations

import importlib
from typing import Callable

from mtl_search.data.base import MultiTaskData
from mtl_search.errors import UserError

# name -> loader(options: dict[str, str], data_file: str | None, task_declarations: list[str]) -> MultiTaskData
Loader = Callable[..., MultiTaskData]
_SOURCES: dict[str, Loader] = {}
# Modules that define sources; each registers itself on import.
_SOURCE_MODULES = ("synthetic", "census", "multidigits", "table", "sequences")


def register_source(name: str) -> Callable[[Loader], Loader]:
    """A decorator that makes a loader known as data source ``name``."""

    def decorate(loader: Loader) -> Loader:
        _SOURCES[name] = loader
        return loader

    return decorate


def source_names() -> list[str]:
    """The names of every known data source, sorted."""
    _import_sources()
    return sorted(_SOURCES)


def load_data(
    name: str | None,
    options: dict[str, str] | None = None,
    data_file: str | None = None,
    task_declarations: list[str] | None = None,
) -> MultiTaskData:
    """Load a data source by name into a :class:`MultiTaskData` (train, validation and test splits).

    ``name`` is a data source (``synthetic``, ``census``, ``multidigits``, ``sequences`` or
    ``table``, see :func:`source_names`); ``None`` is ``table`` when ``data_file`` is given,
    else ``synthetic``. ``options`` are the source's own settings as strings, as on the
    command line's ``--data-option key=value`` (for example ``{"rows": "2000"}``).
    ``data_file`` is the CSV or Parquet file a table is read from, and ``task_declarations``
    declare its targets as the ``--task`` flag does (``"clicked:binary"``, ``"price:regression"``).
    An unknown source, option or column is a one-line :class:`~mtl_search.errors.UserError`.
    """
    _import_sources()
    if name is None:
        name = "table" if data_file else "synthetic"
    if name not in _SOURCES:
        raise UserError(f"--data {name!r}: unknown data source (known: {', '.join(sorted(_SOURCES))})")
    loader = _SOURCES[name]
    return loader(options=dict(options or {}), data_file=data_file, task_declarations=list(task_declarations or []))


def _import_sources() -> None:
    for module in _SOURCE_MODULES:
        try:
            importlib.import_module(f"mtl_search.data.{module}")
        except ModuleNotFoundError as error:
            if error.name != f"mtl_search.data.{module}":
                raise
