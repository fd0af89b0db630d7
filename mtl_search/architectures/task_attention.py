"""Multi-Task Attention Network, MTAN (Liu et al., CVPR 2019).

One shared trunk of blocks; every task has an attention module at every trunk stage. Stage s
of task t computes a soft mask in (0, 1), one value per feature (per channel and pixel on
feature maps), and the task's attended features are the mask times the trunk's output:

    h_s   = trunk_s(h_{s-1})                                  (h_0: the stem's features)
    m_s^t = sigmoid(attention_s^t([h_s, bridge_s(a_{s-1}^t)]))  (stage 0 reads h_0's block alone)
    a_s^t = m_s^t * h_s

``bridge_s`` is one block per stage, shared by the tasks, that brings a task's previous
attended features to the shape of ``h_s`` (the same kind of block as the trunk's, pooling
included). An attention module is two layers: a linear layer (a 1x1 convolution on feature
maps) to ``attention_width`` units, the block activation, a linear layer back to the trunk's
width, and a sigmoid. Task t's tower reads ``a_S^t``: tasks share every trunk weight and choose
which of its features to use.

Block types: ``mlp`` (vectors, and every stem that makes vectors) and ``conv`` (images).

Spec keys: ``widths`` (the trunk, one width per stage) and ``attention_width``.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from mtl_search.architectures.base import Body, Family
from mtl_search.architectures.blocks import ACTIVATIONS, BlockFactory, Shape, check_widths
from mtl_search.architectures.experts import GateMonitor
from mtl_search.errors import UserError, is_whole
from mtl_search.values import Count, IntChoice, IntRange, suggest

# the block types an MTAN body is built of: linear layers on vectors, convolutions on images
MTAN_BLOCK_TYPES = ("mlp", "conv")


class MTANSpace(BaseModel):
    model_config = ConfigDict(extra="forbid")

    depth: Count = IntRange(low=1, high=3)
    width: Count = IntChoice(choices=[32, 64, 128])
    attention_width: Count = IntChoice(choices=[8, 16, 32])


class AttentionMask(nn.Module):
    """(N, in, ...) -> a mask (N, out, ...) in (0, 1): two linear layers (1x1 convolutions on
    feature maps) with the block activation between them, then a sigmoid."""

    def __init__(self, in_features: int, hidden: int, out_features: int, image: bool, activation: str) -> None:
        super().__init__()
        layer = (lambda a, b: nn.Conv2d(a, b, kernel_size=1)) if image else nn.Linear
        self.net = nn.Sequential(layer(in_features, hidden), ACTIVATIONS[activation](), layer(hidden, out_features))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(h))


class MTANBody(Body):
    def __init__(
        self,
        widths: Sequence[int],
        attention_width: int,
        in_shape: Shape,
        task_names: Sequence[str],
        blocks: BlockFactory,
    ) -> None:
        super().__init__()
        if blocks.kind not in MTAN_BLOCK_TYPES:
            raise UserError(
                f"mtan spec: block.type {blocks.kind!r} is not supported (mtan supports {', '.join(MTAN_BLOCK_TYPES)})"
            )
        self.task_names = list(task_names)
        self.widths = list(widths)
        image = blocks.kind == "conv"
        self.trunk = nn.ModuleList()
        self.bridges = nn.ModuleList()  # stage s >= 1: a task's a_{s-1} to h_s's shape, shared by the tasks
        self.attention = nn.ModuleDict({task: nn.ModuleList() for task in self.task_names})
        shape = in_shape
        for stage, width in enumerate(widths):
            block, out_shape = blocks.block(shape, width)
            self.trunk.append(block)
            if stage:
                self.bridges.append(blocks.block(shape, width)[0])
            reads = width if stage == 0 else 2 * width
            for task in self.task_names:
                self.attention[task].append(AttentionMask(reads, attention_width, width, image, blocks.activation))
            shape = out_shape
        self.out_shapes = {task: shape for task in self.task_names}
        self.monitor = GateMonitor()

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        h = features
        attended: dict[str, torch.Tensor] = {}
        for stage, block in enumerate(self.trunk):
            h = block(h)
            for task in self.task_names:
                reads = h if stage == 0 else torch.cat([h, self.bridges[stage - 1](attended[task])], dim=1)
                mask = self.attention[task][stage](reads)
                # the mean mask per channel over evaluation passes, for the sharing report; an export
                # traces the network alone
                if self.training:
                    self.monitor.observe(f"{task}@{stage}", mask, True)
                elif not torch.compiler.is_compiling():
                    channel_mask = mask.mean(dim=(2, 3)) if mask.dim() == 4 else mask
                    self.monitor.observe(f"{task}@{stage}", channel_mask, False)
                attended[task] = mask * h
        return attended

    def shared_parameters(self) -> list[nn.Parameter]:
        # every task's features pass through the trunk and the bridges; an attention module is its task's own
        return list(self.trunk.parameters()) + list(self.bridges.parameters())

    def sharing_report(self) -> dict[str, Any]:
        labels = {
            f"{task}@{stage}": [f"c{i}" for i in range(width)]
            for task in self.task_names
            for stage, width in enumerate(self.widths)
        }
        means = self.monitor.means(labels, digits=4)
        if not means:  # no evaluation pass since the last training pass
            return {"masks": {}}
        stages = range(len(self.widths))
        return mask_report(
            {task: [list(means[f"{task}@{stage}"].values()) for stage in stages] for task in self.task_names}
        )


def mask_report(channel_means: dict[str, list[list[float]]]) -> dict[str, Any]:
    """From each task's mean mask per stage and channel: the mean mask per task and stage
    (how much of the shared features a task keeps) and, per stage, the correlation of the
    tasks' channel masks across channels (1: they prefer the same features, -1: opposite ones;
    0 when a task's mask is the same on every channel)."""
    tasks = list(channel_means)
    stages = len(channel_means[tasks[0]]) if tasks else 0
    masks = {
        task: {f"stage {s + 1}": round(sum(values[s]) / len(values[s]), 3) for s in range(stages)}
        for task, values in channel_means.items()
    }
    correlation = [
        [[round(_correlation(channel_means[a][s], channel_means[b][s]), 3) for b in tasks] for a in tasks]
        for s in range(stages)
    ]
    return {"masks": masks, "mask_correlation": correlation}


def _correlation(u: Sequence[float], v: Sequence[float]) -> float:
    mean_u, mean_v = sum(u) / len(u), sum(v) / len(v)
    du, dv = [x - mean_u for x in u], [y - mean_v for y in v]
    norm = math.sqrt(sum(x * x for x in du) * sum(y * y for y in dv))
    return sum(x * y for x, y in zip(du, dv)) / norm if norm else 0.0


class MTANFamily(Family):
    name = "mtan"
    required_keys = ("widths", "attention_width")
    optional_keys = ()

    def space_model(self) -> type:
        return MTANSpace

    def sample(self, trial: Any, section: MTANSpace, task_names: Sequence[str]) -> dict[str, Any]:
        depth = suggest(trial, "mtan.depth", section.depth)
        return {
            "widths": [suggest(trial, "mtan.width", section.width)] * depth,
            "attention_width": suggest(trial, "mtan.attention_width", section.attention_width),
        }

    def validate(self, spec: dict[str, Any], task_names: Sequence[str]) -> None:
        check_widths(spec.get("widths"), "mtan spec", "widths", allow_empty=False)
        value = spec.get("attention_width")
        if not is_whole(value) or value < 1:
            raise UserError(f"mtan spec: attention_width must be a whole number >= 1, got {value!r}")

    def build(self, spec: dict[str, Any], in_shape: Shape, task_names: Sequence[str], blocks: BlockFactory) -> Body:
        return MTANBody(spec["widths"], spec["attention_width"], in_shape, task_names, blocks)

    def summary(self, spec: dict[str, Any], task_names: Sequence[str]) -> str:
        widths = spec["widths"]
        trunk = f"{len(widths)}x{widths[0]}" if len(set(widths)) == 1 else "-".join(str(w) for w in widths)
        return f"trunk {trunk}, attention {spec['attention_width']} per task and stage"
