"""Cross-stitch networks (Misra et al., CVPR 2016).

One column of blocks per task. After the layers that carry a cross-stitch unit, task t's
next input is a learned linear combination of every column's output at that layer:
``h'_t = sum_s alpha[t, s] * h_s``. Alpha starts near the identity (``alpha_self`` on the
diagonal, the rest of each row spread evenly over the other tasks), so training starts from
nearly separate networks and learns how much to share. The combination is taken over whole
outputs, so it works on vectors and on feature maps.

Spec keys: ``widths`` (one per layer), ``units`` (0-based indices of the layers followed by
a unit) and ``alpha_self``.
"""

from __future__ import annotations

from typing import Any, Literal, Sequence

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from mtl_search.architectures.base import Body, Family
from mtl_search.architectures.blocks import BlockFactory, Shape, check_widths
from mtl_search.errors import UserError, is_number, is_whole
from mtl_search.values import Count, Share, suggest


def near_identity(size: int, self_weight: float) -> torch.Tensor:
    """A (size x size) matrix with ``self_weight`` on the diagonal and rows summing to 1."""
    if size == 1:
        return torch.ones(1, 1)
    other = (1.0 - self_weight) / (size - 1)
    return torch.full((size, size), other) + torch.eye(size) * (self_weight - other)


def combine_columns(alpha: torch.Tensor, columns: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """[sum_s alpha[t, s] * columns[s] for each t]; columns share one shape (N, ...)."""
    stacked = torch.stack(list(columns))
    # one matrix product over the flattened columns (einsum's ellipsis costs more per call)
    mixed = (alpha @ stacked.flatten(1)).view(alpha.shape[0], *stacked.shape[1:])
    return list(mixed.unbind(0))


class CrossStitchSpace(BaseModel):
    model_config = ConfigDict(extra="forbid")

    depth: Count = 2
    width: Count = 64
    # every_layer: a unit after each layer but the last; searched: a yes/no per layer
    units: Literal["every_layer", "searched"] = "searched"
    alpha_self: Share = 0.9


class CrossStitchBody(Body):
    def __init__(
        self,
        widths: Sequence[int],
        units: Sequence[int],
        alpha_self: float,
        in_shape: Shape,
        task_names: Sequence[str],
        blocks: BlockFactory,
    ) -> None:
        super().__init__()
        self.task_names = list(task_names)
        self.columns = nn.ModuleList()
        shape = in_shape
        for width in widths:
            made = [blocks.block(shape, width) for _ in self.task_names]
            self.columns.append(nn.ModuleList(block for block, _ in made))
            shape = made[0][1]
        self.units = sorted(units)
        # alphas[str(layer)]: the unit after that layer
        self.alphas = nn.ParameterDict(
            {str(layer): nn.Parameter(near_identity(len(self.task_names), alpha_self)) for layer in self.units}
        )
        self.out_shapes = {task: shape for task in self.task_names}

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        hidden = [features] * len(self.task_names)
        for layer, blocks in enumerate(self.columns):
            hidden = [block(h) for block, h in zip(blocks, hidden)]
            if str(layer) in self.alphas:
                hidden = combine_columns(self.alphas[str(layer)], hidden)
        return dict(zip(self.task_names, hidden))

    def shared_parameters(self) -> list[nn.Parameter]:
        # Every column up to the last unit reaches every task through that unit, and so do
        # the units; layers after the last unit belong to their own task.
        if not self.units:
            return []
        last = self.units[-1]
        return [p for layer in self.columns[: last + 1] for p in layer.parameters()] + list(self.alphas.values())

    def sharing_report(self) -> dict[str, Any]:
        return {"alpha": {f"after_layer_{layer}": rounded_matrix(self.alphas[str(layer)]) for layer in self.units}}


def rounded_matrix(matrix: torch.Tensor, digits: int = 3) -> list[list[float]]:
    return [[round(v, digits) for v in row] for row in matrix.detach().cpu().tolist()]


class CrossStitchFamily(Family):
    name = "cross_stitch"
    required_keys = ("widths", "units", "alpha_self")
    optional_keys = ()

    def space_model(self) -> type:
        return CrossStitchSpace

    def sample(self, trial: Any, section: CrossStitchSpace, task_names: Sequence[str]) -> dict[str, Any]:
        depth = suggest(trial, "cross_stitch.depth", section.depth)
        width = suggest(trial, "cross_stitch.width", section.width)
        if section.units == "every_layer":
            units = list(range(depth - 1))
        else:
            # a unit after the last layer would mix the towers' inputs, which is a choice too
            units = [
                layer
                for layer in range(depth)
                if trial.suggest_categorical(f"cross_stitch.unit_{layer}", [True, False])
            ]
        # with no unit there is nothing to mix: alpha_self is not searched, and 1.0 (no mixing) says so
        alpha_self = suggest(trial, "cross_stitch.alpha_self", section.alpha_self) if units else 1.0
        return {"widths": [width] * depth, "units": units, "alpha_self": alpha_self}

    def validate(self, spec: dict[str, Any], task_names: Sequence[str]) -> None:
        validate_columns(spec, "cross_stitch")
        units = spec.get("units")
        depth = len(spec["widths"])
        if (
            not isinstance(units, list)
            or any(not is_whole(u) or not 0 <= u < depth for u in units)
            or len(set(units)) != len(units)
        ):
            raise UserError(
                f"cross_stitch spec: units must list distinct layer indices in 0..{depth - 1}, got {units!r}"
            )
        check_fraction(spec.get("alpha_self"), "alpha_self", "cross_stitch")

    def build(self, spec: dict[str, Any], in_shape: Shape, task_names: Sequence[str], blocks: BlockFactory) -> Body:
        return CrossStitchBody(spec["widths"], spec["units"], spec["alpha_self"], in_shape, task_names, blocks)

    def summary(self, spec: dict[str, Any], task_names: Sequence[str]) -> str:
        widths = spec["widths"]
        size = f"{len(widths)} layers w={'/'.join(str(w) for w in widths) if len(set(widths)) > 1 else widths[0]}"
        if not spec["units"]:
            return f"no units (separate columns), {size}"
        units = ",".join(str(u + 1) for u in sorted(spec["units"]))
        return f"units after layers {units} of {size} a={spec['alpha_self']:.2f}"


def validate_columns(spec: dict[str, Any], family: str) -> None:
    check_widths(spec.get("widths"), f"{family} spec", "widths", allow_empty=False)


def check_fraction(value: Any, name: str, family: str) -> None:
    if not is_number(value) or not 0.0 <= value <= 1.0:
        raise UserError(f"{family} spec: {name} must be a number in [0, 1], got {value!r}")
