"""Loss-weighting methods; each is an object with one job (see :class:`LossWeighting`).

A candidate's weighting is plain JSON data, ``{"method": "static", "weights": {...}}`` or
``{"method": "uncertainty"}``..., turned into an object by :func:`make_weighting`.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping, Sequence

import dataclasses

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
    _METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
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
    _load_methods()
    return sorted(_METHODS)


def make_weighting(
    config: dict[str, Any] | None,
    task_names: Sequence[str],
    task_kinds: Mapping[str, str] | None = None,
) -> LossWeighting:
    """The weighting object a candidate's ``loss_weighting`` describes.

    ``task_kinds`` maps each task to its kind; tasks left out count as regression.
    """
    if isinstance(config, str):  # a method name alone: its default settings
        config = {"method": config}
    if config is not None and not isinstance(config, Mapping):
        raise UserError(f"loss weighting: expected a method name or a mapping with 'method', got {config!r}")
    config = dict(config or {"method": "static"})
    method = get_method(config.pop("method", "static"))
    if method.needs_task_kinds:
        config["task_kinds"] = {name: (task_kinds or {}).get(name, "regression") for name in task_names}
    try:
        return method.constructor(task_names, **config)
    except (TypeError, ValueError) as error:  # an unknown keyword, or a value of the wrong kind
        raise UserError(f"loss weighting {method.name!r}: {error}") from None


__all__ = ["LossWeighting", "Method", "get_method", "make_weighting", "method_names", "register_method"]
