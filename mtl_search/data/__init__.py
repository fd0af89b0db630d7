"""Data sources: each turns a name, options and files into a :class:`MultiTaskData`."""

from __future__ import annotations

from mtl_search.data.base import DataSource, MultiTaskData, Split
from mtl_search.data.registry import Loader, load_data, register_source, source_names

__all__ = ["DataSource", "Loader", "MultiTaskData", "Split", "load_data", "register_source", "source_names"]
