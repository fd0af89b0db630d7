"""The families known by name: the entry points of the group ``mtl_search.families`` (the
built-ins' among them, see pyproject.toml) and the families registered in code.

Each entry point refers to a :class:`Family` subclass, instantiated once without arguments
when its name is first asked for (see :mod:`mtl_search.plugins`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from mtl_search.architectures.base import Family
from mtl_search.plugins import FAMILIES_GROUP, Registry, instance_of

_as_family = instance_of(Family, "an architecture family")


def _checked_family(value: Any) -> Family:
    """``value`` as a family, its declarations checked (TypeError naming the one at fault)."""
    family = _as_family(value)
    where = f"family {type(family).__module__}.{type(family).__qualname__}"
    for attribute in ("required_keys", "optional_keys"):
        keys = getattr(family, attribute)
        if not isinstance(keys, tuple) or not all(isinstance(key, str) for key in keys):
            raise TypeError(f"{where}: {attribute} must be a tuple of strings, got {keys!r}")
    model = family.space_model()
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise TypeError(f"{where}: space_model() must return a pydantic model class, got {model!r}")
    return family


FAMILIES: Registry[Family] = Registry(
    FAMILIES_GROUP, "architecture family", _checked_family, lambda family: family.name
)


def register_family(family: Family) -> Family:
    """Make ``family`` (a :class:`Family` instance) known by its ``name``; a later family of the
    same name, or an installed one, is replaced."""
    return FAMILIES.register(family)


def get_family(name: str) -> Family:
    """The family registered as ``name``; a UserError listing the known ones otherwise."""
    return FAMILIES.get(name)


def family_names() -> list[str]:
    """The names of every known family, sorted."""
    return FAMILIES.names()
