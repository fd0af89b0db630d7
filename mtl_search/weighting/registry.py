"""The loss-weighting methods known by name: the entry points of the group
``mtl_search.weightings`` (the built-ins' among them, see pyproject.toml) and the methods
registered in code.

Each entry is a :class:`LossWeighting` subclass: the search reads its ``space_model`` and
:meth:`~LossWeighting.sample` to draw a candidate's settings, and :func:`make_weighting`
instantiates it for each trial (see :mod:`mtl_search.plugins`).
"""

from __future__ import annotations

import dataclasses
import types
from typing import Any, Callable, Sequence

from pydantic import BaseModel

from mtl_search.plugins import WEIGHTINGS_GROUP, Registry, subclass_of
from mtl_search.weighting.base import LossWeighting

_as_weighting = subclass_of(LossWeighting, "a loss weighting")


def _checked_weighting(value: Any) -> type[LossWeighting]:
    """``value`` as a weighting class, its space model checked (TypeError if it is not a pydantic model)."""
    method = _as_weighting(value)
    if not (isinstance(method.space_model, type) and issubclass(method.space_model, BaseModel)):
        raise TypeError(
            f"loss weighting {method.__module__}.{method.__qualname__}: space_model must be a pydantic "
            f"model class, got {method.space_model!r}"
        )
    return method


WEIGHTINGS: Registry[type[LossWeighting]] = Registry(
    WEIGHTINGS_GROUP, "loss weighting", _checked_weighting, lambda method: method.name
)


@dataclasses.dataclass(frozen=True)
class Method:
    """A method described piece by piece, for :func:`register_method`: its class
    (``constructor``), the model of its space-file section and its sampler. The same can be
    said on the class itself (``space_model``, ``sample``, ``needs_task_kinds``), which is
    what an entry point refers to."""

    name: str
    constructor: type[LossWeighting]
    space_model: type
    sample: Callable[[Any, Any, Sequence[str]], dict[str, Any]]
    needs_task_kinds: bool = False

    def as_class(self) -> type[LossWeighting]:
        """A subclass of ``constructor`` that carries the other pieces as its class attributes."""
        if not (isinstance(self.constructor, type) and issubclass(self.constructor, LossWeighting)):
            raise TypeError(
                f"Method {self.name!r}: constructor must be a LossWeighting subclass, got {self.constructor!r}"
            )
        sample = self.sample
        settings = {
            "__module__": self.constructor.__module__,
            "name": self.name,
            "space_model": self.space_model,
            "needs_task_kinds": self.needs_task_kinds,
            "sample": classmethod(lambda cls, trial, section, task_names: sample(trial, section, task_names)),
        }
        return types.new_class(
            self.constructor.__name__, (self.constructor,), exec_body=lambda namespace: namespace.update(settings)
        )


def register_method(method: type[LossWeighting] | Method) -> type[LossWeighting]:
    """Make ``method`` (a :class:`LossWeighting` subclass, or a :class:`Method`) known by its
    ``name``; a later method of the same name, or an installed one, is replaced."""
    return WEIGHTINGS.register(method.as_class() if isinstance(method, Method) else method)


def get_method(name: str) -> type[LossWeighting]:
    """The method class registered as ``name``; a UserError listing the known ones otherwise."""
    return WEIGHTINGS.get(name)


def method_names() -> list[str]:
    """The names of every known loss-weighting method, sorted."""
    return WEIGHTINGS.names()
