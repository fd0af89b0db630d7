"""The families known by name: each family module registers its family here on import.

A module of its own, so that a family module imports it at the top like any other
dependency (the package ``__init__`` imports the families' modules only when a name is
looked up).
"""

from __future__ import annotations

import importlib

from mtl_search.architectures.base import Family
from mtl_search.errors import UserError

_FAMILIES: dict[str, Family] = {}
# Modules that define families; each registers itself on import.
_FAMILY_MODULES = ("tree", "experts", "cross_stitch", "sluice", "hierarchy", "relationship")


def register_family(family: Family) -> Family:
    """Make ``family`` known by its ``name`` (a later family of the same name replaces it)."""
    _FAMILIES[family.name] = family
    return family


def _load_families() -> None:
    for module in _FAMILY_MODULES:
        try:
            importlib.import_module(f"mtl_search.architectures.{module}")
        except ModuleNotFoundError as error:
            if error.name != f"mtl_search.architectures.{module}":
                raise


def get_family(name: str) -> Family:
    """The family registered as ``name``; a UserError listing the known ones otherwise."""
    _load_families()
    if not isinstance(name, str) or name not in _FAMILIES:
        raise UserError(f"architecture family {name!r} is not known (known: {', '.join(sorted(_FAMILIES))})")
    return _FAMILIES[name]


def family_names() -> list[str]:
    """The names of every known family, sorted."""
    _load_families()
    return sorted(_FAMILIES)
