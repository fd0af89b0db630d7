"""The loss-weighting methods known by name: each method's module registers it here on import.

A module of its own, so that a method's module imports it at the top like any other
dependency (the methods' modules are imported only when a name is looked up).
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable, Sequence

from mtl_search.errors import UserError
from mtl_search.weighting.base import LossWeighting


@dataclasses.dataclass(frozen=True)
class Method:
    """A registered method: how to build it, its section of a space file, how to sample it.

    ``space_model`` is a pydantic model (extra keys forbidden) of the method's section under
    ``loss_weighting:`` in a space file; ``sample(trial, section, task_names)`` returns the
    keyword arguments of ``constructor`` (JSON data), suggesting values through ``trial``
    with parameter names prefixed ``<method>.``. ``needs_task_kinds``: the constructor also
    takes ``task_kinds`` ({task: "binary" | "multiclass" | "regression"}), which
    :func:`make_weighting` passes (uncertainty weighting uses a different form per kind).
    """

    name: str
    constructor: Callable[..., LossWeighting]
    space_model: type
    sample: Callable[[Any, Any, Sequence[str]], dict[str, Any]]
    needs_task_kinds: bool = False


_METHODS: dict[str, Method] = {}
_METHOD_MODULES = ("static", "uncertainty", "gradnorm", "dwa", "pcgrad", "mgda")


def register_method(method: Method) -> Method:
    """Make ``method`` known by its ``name`` (a later method of the same name replaces it)."""
    _METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    """The method registered as ``name``; a UserError listing the known ones otherwise."""
    _load_methods()
    if name not in _METHODS:
        raise UserError(f"loss weighting {name!r} is not known (known: {', '.join(sorted(_METHODS))})")
    return _METHODS[name]


def _load_methods() -> None:
    for module in _METHOD_MODULES:
        try:
            importlib.import_module(f"mtl_search.weighting.{module}")
        except ModuleNotFoundError as error:
            if error.name != f"mtl_search.weighting.{module}":
                raise


def method_names() -> list[str]:
    """The names of every known loss-weighting method, sorted."""
    _load_methods()
    return sorted(_METHODS)
