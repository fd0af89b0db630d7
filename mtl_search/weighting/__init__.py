"""Loss-weighting methods; each is an object with one job (see :class:`LossWeighting`).

A candidate's weighting is plain JSON data, ``{"method": "static", "weights": {...}}`` or
``{"method": "uncertainty"}``..., turned into an object by :func:`make_weighting`.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from mtl_search.errors import UserError
from mtl_search.weighting.base import LossWeighting, ScalarisedLoss
from mtl_search.weighting.registry import Method, get_method, method_names, register_method


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
        return method(task_names, **config)
    except (TypeError, ValueError) as error:  # an unknown keyword, or a value of the wrong kind
        raise UserError(f"loss weighting {method.name!r}: {error}") from None


__all__ = [
    "LossWeighting",
    "Method",
    "ScalarisedLoss",
    "get_method",
    "make_weighting",
    "method_names",
    "register_method",
]
