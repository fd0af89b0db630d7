"""Data sources: each turns a name, options and files into a :class:`MultiTaskData`."""

from __future__ import annotations

from typing import Callable

from mtl_search.data.base import MultiTaskData, Split
from mtl_search.errors import UserError

# name -> loader(options: dict[str, str], data_file: str | None, tasks: list[str]) -> MultiTaskData
Loader = Callable[..., MultiTaskData]
_SOURCES: dict[str, Loader] = {}


def register_source(name: str) -> Callable[[Loader], Loader]:
    def decorate(loader: Loader) -> Loader:
        _SOURCES[name] = loader
        return loader

    return decorate


def source_names() -> list[str]:
    _import_sources()
    return sorted(_SOURCES)


def load_data(
    name: str | None,
    options: dict[str, str] | None = None,
    data_file: str | None = None,
    task_declarations: list[str] | None = None,
) -> MultiTaskData:
    """Load a data source by name (``None`` with a ``data_file``: the user's own table)."""
    _import_sources()
    if name is None:
        name = "table" if data_file else "synthetic"
    if name not in _SOURCES:
        raise UserError(f"--data {name!r}: unknown data source (known: {', '.join(sorted(_SOURCES))})")
    from mtl_search.data.cache import cached_load

    options, declarations = dict(options or {}), list(task_declarations or [])
    loader = _SOURCES[name]
    # a parsed file is kept (data/cache.py): each worker, refine and export reads it back instead of parsing it
    return cached_load(name, options, data_file, declarations,
                       lambda: loader(options=dict(options), data_file=data_file, task_declarations=list(declarations)))


def _import_sources() -> None:
    # Imported lazily so that `import mtl_search` stays cheap; each module registers itself.
    import importlib

    for module in ("synthetic", "census", "multidigits", "table", "sequences"):
        try:
            importlib.import_module(f"mtl_search.data.{module}")
        except ModuleNotFoundError as error:
            if error.name != f"mtl_search.data.{module}":
                raise


__all__ = ["MultiTaskData", "Split", "load_data", "register_source", "source_names"]
