"""The data sources known by name: the entry points of the group ``mtl_search.data_sources``
(the built-ins' among them, see pyproject.toml) and the sources registered in code.

Each entry point refers to a :class:`DataSource` subclass, instantiated once without
arguments when its name is first asked for (see :mod:`mtl_search.plugins`); nothing is
imported until then, which keeps ``import mtl_search`` cheap.
"""

from __future__ import annotations

from typing import Any, Callable

from mtl_search.data.base import DataSource, MultiTaskData
from mtl_search.plugins import DATA_SOURCES_GROUP, Registry, instance_of

# loader(options: dict[str, str], data_file: str | None, task_declarations: list[str]) -> MultiTaskData
Loader = Callable[..., MultiTaskData]

SOURCES: Registry[DataSource] = Registry(
    DATA_SOURCES_GROUP,
    "data source",
    instance_of(DataSource, "a data source"),
    lambda source: source.name,
    unknown="--data {name!r}: unknown data source (known: {known})",
)


class FunctionSource(DataSource):
    """A data source made of a loader function, for :func:`register_source`."""

    def __init__(self, name: str, loader: Loader) -> None:
        self.name = name  # type: ignore[misc]  (per instance here, a class attribute in a subclass)
        self.loader = loader

    def load(self, options: dict[str, Any], data_file: str | None, task_declarations: list[str]) -> MultiTaskData:
        return self.loader(options=options, data_file=data_file, task_declarations=task_declarations)


def register_source(source: str | DataSource) -> Any:
    """Make a data source known in code: ``register_source(MySource())`` registers a
    :class:`DataSource`; ``@register_source("name")`` decorates a loader function
    ``(options, data_file, task_declarations) -> MultiTaskData`` and registers it as ``name``."""
    if not isinstance(source, str):
        return SOURCES.register(source)

    def decorate(loader: Loader) -> Loader:
        SOURCES.register(FunctionSource(source, loader))
        return loader

    return decorate


def source_names() -> list[str]:
    """The names of every known data source, sorted."""
    return SOURCES.names()


def load_data(
    name: str | None,
    options: dict[str, str] | None = None,
    data_file: str | None = None,
    task_declarations: list[str] | None = None,
) -> MultiTaskData:
    """Load a data source by name into a :class:`MultiTaskData` (train, validation and test splits).

    ``name`` is a data source (``synthetic``, ``census``, ``multidigits``, ``sequences``,
    ``table``, or an installed plugin's, see :func:`source_names`); ``None`` is ``table``
    when ``data_file`` is given, else ``synthetic``. ``options`` are the source's own
    settings as strings, as on the command line's ``--data-option key=value`` (for example
    ``{"rows": "2000"}``).
    ``data_file`` is the CSV or Parquet file a table is read from, and ``task_declarations``
    declare its targets as the ``--task`` flag does (``"clicked:binary"``, ``"price:regression"``).
    An unknown source, option or column is a one-line :class:`~mtl_search.errors.UserError`.
    """
    if name is None:
        name = "table" if data_file else "synthetic"
    source = SOURCES.get(name)
    from mtl_search.data.cache import cached_load

    options, declarations = dict(options or {}), list(task_declarations or [])
    # a parsed file is kept (data/cache.py): each worker, refine and export reads it back instead of parsing it
    return cached_load(
        name, options, data_file, declarations, lambda: source.load(dict(options), data_file, list(declarations))
    )
