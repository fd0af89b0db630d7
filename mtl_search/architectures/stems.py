"""Stems for input kinds beyond the built-in vector, image and tabular ones.

A data source describes its inputs with an ``input_schema`` whose ``kind`` picks the stem:
the module that turns a batch of inputs into the features every family reads. A new kind
of input (event sequences, text, graphs...) needs a :class:`Stem` for it, registered by an
entry point in the group ``mtl_search.stems`` (the built-in ``sequence`` stem is one) or in
code with :func:`register_stem`.

Not to be confused with :class:`~mtl_search.architectures.blocks.CustomStem`, which puts a
network one already has (say a pre-trained encoder) in front of every candidate of one search.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable, ClassVar, Sequence

from torch import nn

from mtl_search.plugins import STEMS_GROUP, Registry, instance_of


class Stem(ABC):
    """How inputs of one ``kind`` become features.

    To write one, subclass ``Stem``, set ``kind`` (the ``input_schema["kind"]`` your data
    source writes) and ``settings`` (the keys of a spec's ``stem`` section your stem reads;
    ``None`` if it may read any key), and implement :meth:`build`. The module it returns has
    an ``out_shape`` attribute (the features' shape without the batch dimension) and a
    ``forward(inputs)`` taking the dict of named input tensors of a batch. Register it::

        [project.entry-points."mtl_search.stems"]
        text = "my_package.text:TextStem"

    (the class is instantiated once, without arguments), or ``register_stem`` in code.
    """

    kind: ClassVar[str]
    settings: ClassVar[tuple[str, ...] | None] = ()

    @abstractmethod
    def build(self, schema: dict[str, Any], spec: dict[str, Any]) -> nn.Module:
        """The stem module for inputs described by ``schema``; ``spec`` holds the searched
        stem settings (the architecture spec's ``stem`` section, possibly empty)."""


STEMS: Registry[Stem] = Registry(STEMS_GROUP, "stem", instance_of(Stem, "a stem"), lambda stem: stem.kind)


class FunctionStem(Stem):
    """A stem made of a builder function, for :func:`register_stem`."""

    def __init__(
        self, kind: str, builder: Callable[[dict[str, Any], dict[str, Any]], nn.Module], settings: Sequence[str] | None
    ) -> None:
        self.kind = kind  # type: ignore[misc]  (per instance here, a class attribute in a subclass)
        self.settings = None if settings is None else tuple(settings)  # type: ignore[misc]
        self.builder = builder

    def build(self, schema: dict[str, Any], spec: dict[str, Any]) -> nn.Module:
        return self.builder(schema, spec)


def register_stem(stem: str | Stem, settings: Sequence[str] | None = None) -> Any:
    """Make a stem known in code: ``register_stem(MyStem())`` registers a :class:`Stem`;
    ``@register_stem("kind", settings=(...))`` decorates a builder ``(schema, spec) -> module``
    and registers it for inputs of that kind (``settings``: the stem spec keys it reads; None:
    any key)."""
    if not isinstance(stem, str):
        return STEMS.register(stem)

    def decorate(builder: Callable[[dict[str, Any], dict[str, Any]], nn.Module]) -> Callable:
        STEMS.register(FunctionStem(stem, builder, settings))
        return builder

    return decorate


def registered_stem_settings() -> dict[str, tuple[str, ...] | None]:
    """Input kind -> the stem spec keys its registered stem reads (None: any key); every stem loaded."""
    return {kind: stem.settings for kind, stem in STEMS.load_all().items()}
