"""The multi-task model and the interface every architecture family implements.

A model is ``stem -> body -> towers``. The *body* is what a family decides: which blocks
exist and which tasks read from which. It maps the stem's features to one representation
per task; each task's tower turns that into its prediction.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Sequence

import torch
from pydantic import BaseModel
from torch import nn

from mtl_search.architectures.blocks import BlockFactory, Shape, Tower
from mtl_search.tasks import Task


class Body(nn.Module):
    """A family's part of the network.

    Subclasses set ``out_shapes`` (task -> shape of its representation) and implement
    ``forward(features) -> {task: representation}``. The other methods have defaults that a
    family overrides when it has something to say.
    """

    out_shapes: dict[str, Shape]
    # True for a body that runs the towers itself (it feeds predictions to the layers above,
    # as the hierarchy family does): forward then returns (representations, outputs).
    computes_outputs = False

    def attach_heads(self, heads: dict[str, nn.Module], tasks: Sequence[Task]) -> None:
        """Called once the towers exist; a body with ``computes_outputs`` keeps them here."""

    def end_epoch(self) -> None:
        """Called by the trainer after every epoch (e.g. to refresh a snapshot of weights)."""

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters that more than one task's loss reaches (what PCGrad/GradNorm treat as shared)."""
        return []

    def regularization(self) -> torch.Tensor | None:
        """An extra loss term the family adds (for example the sluice orthogonality penalty)."""
        return None

    def sharing_report(self) -> dict[str, Any]:
        """What the trained body learned about sharing, as small readable JSON data."""
        return {}


class MultiTaskModel(nn.Module):
    """stem -> body -> one tower per task; ``forward`` returns {task name: output}, a
    regression task's in its target's units (``output_scales``)."""

    def __init__(
        self,
        stem: nn.Module,
        body: Body,
        towers: dict[str, nn.Module],
        spec: dict[str, Any],
        relationship: nn.Module | None = None,
        output_scales: dict[str, tuple[float, float]] | None = None,
    ) -> None:
        super().__init__()
        self.stem = stem
        self.body = body
        self.towers = nn.ModuleDict(towers)
        self.task_names = list(towers)
        self.spec = spec
        # optional prior over the towers' weights (TaskRelationshipPrior), see relationship.py
        self.relationship = relationship
        # task -> (mean, std) of a regression target learned standardised: outputs are
        # raw * std + mean, in the target's units. Plain floats, not buffers: weights files
        # keep their tensors, and tracing (TorchScript, ONNX) bakes them in as constants.
        self.output_scales = {
            name: (float(mean), float(std))
            for name, (mean, std) in (output_scales or {}).items()
            if (mean, std) != (0.0, 1.0)
        }
        # The last input of the towers, kept by forward() when asked, for methods that
        # work on the shared representation (MGDA-UB).
        self.keep_representations = False
        self.representations: dict[str, torch.Tensor] = {}
        # ensemble members whose rows the stem stacks (TabularStem's ensemble_members): training
        # scores each member's outputs (the trainer repeats the targets), predicting averages them
        self.members = int(getattr(stem, "members", 1))

    def forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        features = self.stem(inputs)
        if self.body.computes_outputs:
            representations, outputs = self.body(features)
        else:
            representations = self.body(features)
            outputs = {name: self.towers[name](representations[name]) for name in self.task_names}
        if self.keep_representations:
            self.representations = representations
        if self.members > 1 and not self.training:
            outputs = {name: output.unflatten(0, (self.members, -1)).mean(0) for name, output in outputs.items()}
        if self.output_scales:  # after the body: a body that feeds predictions upward feeds the standardised ones
            outputs = {
                name: output * self.output_scales[name][1] + self.output_scales[name][0]
                if name in self.output_scales
                else output
                for name, output in outputs.items()
            }
        return outputs

    def shared_parameters(self) -> list[nn.Parameter]:
        # a stem with tables of single tasks (the stem family's) says which of its parameters are shared
        own = getattr(self.stem, "shared_parameters", None)
        stem = [p for p in (own() if callable(own) else self.stem.parameters()) if p.requires_grad]
        return stem + [p for p in self.body.shared_parameters() if p.requires_grad]

    def regularization(self) -> torch.Tensor | None:
        terms = [self.body.regularization()]
        if self.relationship is not None:
            terms.append(self.relationship.penalty())
        terms = [term for term in terms if term is not None]
        return sum(terms[1:], terms[0]) if terms else None

    def end_epoch(self) -> None:
        """The trainer calls this after every epoch: closed-form updates between gradient steps."""
        self.body.end_epoch()
        if self.relationship is not None:
            self.relationship.reestimate()

    def sharing_report(self) -> dict[str, Any]:
        report = dict(self.body.sharing_report())
        if self.relationship is not None:
            report["relationship"] = self.relationship.report()
        return report


class Family(ABC):
    """An architecture family: how its spec is sampled from a space file, checked, built and summarised.

    To write one, subclass ``Family`` and set:

    - ``name``: the family's name in specs (``{"family": name, ...}``) and in space files
      (``families: {name: {...}}``); with an entry point, the entry point's name too;
    - ``required_keys`` / ``optional_keys``: the family's own spec keys, beside the common
      ones (``family``, ``block``, ``tower``, ``stem``, ``relationship``); ``validate_spec``
      refuses any other key and a missing required one before :meth:`validate` runs;

    - ``input_kinds``: the input kinds (``input_schema["kind"]``) the family can read; None
      (the default) for every kind. Data of another kind is refused when a space naming the
      family is checked against it and when a network is built;

    and implement the five methods below (and :meth:`build_stem` for a family that encodes the
    raw inputs itself). The body :meth:`build` returns is a :class:`Body`
    that builds its blocks with the :class:`BlockFactory` it is given, so that the family
    runs on every input the stems make (vectors, tables, images, sequences).

    A packaged family is registered by an entry point in the group ``mtl_search.families``
    pointing at the class (instantiated once, without arguments)::

        [project.entry-points."mtl_search.families"]
        ring = "my_package.ring:RingFamily"

    Code that is not packaged calls ``register_family(RingFamily())`` instead. docs/extending.md
    walks through a complete example.
    """

    name: ClassVar[str]
    required_keys: ClassVar[tuple[str, ...]] = ()
    optional_keys: ClassVar[tuple[str, ...]] = ()
    input_kinds: ClassVar[tuple[str, ...] | None] = None

    def build_stem(
        self, spec: dict[str, Any], input_schema: dict[str, Any], task_names: Sequence[str]
    ) -> nn.Module | None:
        """The family's own input stem (a module with ``out_shape``), or None for the data's usual one."""
        return None

    @abstractmethod
    def space_model(self) -> type[BaseModel]:
        """The pydantic model of this family's section in a search-space file (forbid extra keys;
        ``mtl_search.values`` has the constant / range / choices types, e.g. ``Count``)."""

    @abstractmethod
    def sample(self, trial: Any, section: Any, task_names: Sequence[str]) -> dict[str, Any]:
        """The family's own spec keys for one trial: ``section`` is the parsed space section;
        suggest values through ``trial`` (``mtl_search.values.suggest``), with parameter names
        prefixed ``<name>.``."""

    @abstractmethod
    def validate(self, spec: dict[str, Any], task_names: Sequence[str]) -> None:
        """Raise UserError, naming the key at fault, if ``spec`` cannot be built for these tasks."""

    @abstractmethod
    def build(self, spec: dict[str, Any], in_shape: Shape, task_names: Sequence[str], blocks: BlockFactory) -> Body:
        """The body for an input of ``in_shape`` (without the batch dimension)."""

    @abstractmethod
    def summary(self, spec: dict[str, Any], task_names: Sequence[str]) -> str:
        """The structure in one readable line."""


def make_towers(
    body: Body, tasks: Sequence[Task], widths: Sequence[int], activation: str = "relu"
) -> dict[str, nn.Module]:
    return {task.name: Tower(body.out_shapes[task.name], widths, task.output_size, activation) for task in tasks}
