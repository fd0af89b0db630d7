"""Hierarchical task placement (Joint Many-Task model, Hashimoto et al., EMNLP 2017).

One shared stack of ``L`` blocks; each task's head reads the output of a searched depth
(1..L), so that simple tasks can be supervised low and hard ones high. A task may feed its
prediction upward: its tower's output, read as probabilities (binary, multiclass) or the
value (regression), goes through a linear map to a small embedding that is concatenated to
the input of the next block, as JMT feeds label embeddings to the layers above.

Because predictions feed the stack, this body runs the towers itself (``computes_outputs``).

Successive regularisation (optional, ``successive`` > 0): the blocks that lower tasks read
are pulled towards their values at the end of the previous epoch,
``successive * ||theta - theta_previous_epoch||^2``, so that training the upper tasks does
not undo what the lower ones learned.

Spec keys: ``widths`` (one per depth), ``head_depths`` ({task: 1..L}), ``feed_upward``
({task: bool}), ``prediction_embedding`` (embedding width), ``successive`` (weight, >= 0).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from mtl_search.architectures.base import Body, Family
from mtl_search.architectures.blocks import BlockFactory, Shape, check_widths
from mtl_search.errors import UserError
from mtl_search.tasks import Task
from mtl_search.values import BoolParam, Count, NonNegativeFloat, suggest


class HierarchySpace(BaseModel):
    model_config = ConfigDict(extra="forbid")

    depth: Count = 3
    width: Count = 64
    # constant, or {choices: [true, false]} to search it for each task
    feed_upward: BoolParam = True
    prediction_embedding: Count = 8
    successive: NonNegativeFloat = 0.0


class HierarchyBody(Body):
    computes_outputs = True

    def __init__(
        self,
        widths: Sequence[int],
        head_depths: dict[str, int],
        feed_upward: dict[str, bool],
        prediction_embedding: int,
        in_shape: Shape,
        task_names: Sequence[str],
        blocks: BlockFactory,
        successive: float = 0.0,
    ) -> None:
        super().__init__()
        self.task_names = list(task_names)
        self.head_depths = dict(head_depths)
        # blocks above the highest head would be read by nobody, so they are not built
        depth = max(head_depths.values())
        widths = list(widths)[:depth]
        # tasks whose prediction enters the block above their head (the top has nothing above)
        self.feeders = [t for t in self.task_names if feed_upward.get(t, False) and head_depths[t] < depth]
        self.prediction_embedding = int(prediction_embedding)
        self.successive = float(successive)
        self.blocks = nn.ModuleList()
        shapes: list[Shape] = []
        shape = in_shape
        for d, width in enumerate(widths):
            n_fed = sum(1 for t in self.feeders if head_depths[t] == d)  # heads at depth d feed block d+1
            if n_fed:
                # embeddings join vectors as features and feature maps as constant channels
                shape = (shape[0] + n_fed * self.prediction_embedding, *shape[1:])
            block, shape = blocks.block(shape, width)
            self.blocks.append(block)
            shapes.append(shape)
        self.out_shapes = {t: shapes[head_depths[t] - 1] for t in self.task_names}
        self.embeddings = nn.ModuleDict()
        self._heads: dict[str, nn.Module] = {}
        self._readouts: dict[str, Any] = {}
        # the blocks a task below the top-most head reads: what successive regularisation anchors
        top = max(head_depths.values())
        lower = [head_depths[t] for t in self.task_names if head_depths[t] < top]
        self._anchored = list(self.blocks[: max(lower)]) if lower and self.successive > 0 else []
        self._anchor: list[torch.Tensor] = []

    def attach_heads(self, heads: dict[str, nn.Module], tasks: Sequence[Task]) -> None:
        by_name = {task.name: task for task in tasks}
        self._heads = dict(heads)  # registered on the model already; a plain dict avoids a second copy
        self._readouts = {t: by_name[t].probabilities for t in self.task_names}
        self.embeddings = nn.ModuleDict(
            {t: nn.Linear(by_name[t].output_size, self.prediction_embedding) for t in self.feeders}
        )

    def forward(self, features: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        representations: dict[str, torch.Tensor] = {}
        outputs: dict[str, torch.Tensor] = {}
        h = features
        for d in range(len(self.blocks) + 1):
            fed = []
            for task in self.task_names:
                if self.head_depths[task] == d:
                    representations[task] = h
                    outputs[task] = self._heads[task](h)
                    if task in self.embeddings:
                        embedding = self.embeddings[task]
                        # rows as -1: a batch size taken from len(h) would be frozen into a traced or ONNX graph
                        readout = self._readouts[task](outputs[task]).reshape(-1, embedding.in_features)
                        fed.append(embedding(readout))
            if d == len(self.blocks):
                break
            if fed:
                if h.dim() == 4:
                    fed = [e[:, :, None, None].expand(-1, -1, h.shape[2], h.shape[3]) for e in fed]
                h = torch.cat([h, *fed], dim=1)
            h = self.blocks[d](h)
        return representations, outputs

    def shared_parameters(self) -> list[nn.Parameter]:
        # a block (or a feeding head and its embedding) is shared when two or more tasks' losses reach it
        shared = []
        for d, block in enumerate(self.blocks, start=1):
            if sum(1 for t in self.task_names if self.head_depths[t] >= d) > 1:
                shared.extend(block.parameters())
        for task in self.feeders:
            if any(self.head_depths[t] > self.head_depths[task] for t in self.task_names):
                shared.extend(self.embeddings[task].parameters())
                shared.extend(self._heads[task].parameters())
        return shared

    def regularization(self) -> torch.Tensor | None:
        if not self._anchor:
            return None
        current = [p for block in self._anchored for p in block.parameters()]
        return self.successive * sum(((p - a) ** 2).sum() for p, a in zip(current, self._anchor))

    def end_epoch(self) -> None:
        self._anchor = [p.detach().clone() for block in self._anchored for p in block.parameters()]

    def sharing_report(self) -> dict[str, Any]:
        return {"hierarchy": format_heads(self.head_depths, self.feeders, self.task_names)}


def format_heads(head_depths: dict[str, int], feeders: Sequence[str], task_names: Sequence[str]) -> str:
    """Heads lowest first, e.g. ``a@1^ b@2 c@3`` (``^``: its prediction feeds the block above)."""
    ordered = sorted(task_names, key=lambda t: (head_depths[t], list(task_names).index(t)))
    return " ".join(f"{t}@{head_depths[t]}{'^' if t in feeders else ''}" for t in ordered)


def validate_hierarchy(spec: dict[str, Any], task_names: Sequence[str]) -> None:
    widths = spec.get("widths")
    check_widths(widths, "hierarchy spec", "widths", allow_empty=False)
    heads = spec.get("head_depths")
    if not isinstance(heads, dict) or sorted(heads) != sorted(task_names):
        raise UserError(
            f"hierarchy spec: head_depths must give a depth for each task {list(task_names)}, got {heads!r}"
        )
    for task, depth in heads.items():
        if not isinstance(depth, int) or isinstance(depth, bool) or not 1 <= depth <= len(widths):
            raise UserError(f"hierarchy spec: head_depths.{task}={depth!r} must lie in 1..{len(widths)}")
    feed = spec.get("feed_upward", {})
    if not isinstance(feed, dict) or set(feed) - set(task_names) or any(not isinstance(v, bool) for v in feed.values()):
        raise UserError(f"hierarchy spec: feed_upward must map task names to true/false, got {feed!r}")
    embedding = spec.get("prediction_embedding", 8)
    if not isinstance(embedding, int) or isinstance(embedding, bool) or embedding < 1:
        raise UserError(f"hierarchy spec: prediction_embedding must be a positive whole number, got {embedding!r}")
    successive = spec.get("successive", 0.0)
    if not isinstance(successive, (int, float)) or isinstance(successive, bool) or successive < 0:
        raise UserError(f"hierarchy spec: successive must be a number >= 0, got {successive!r}")


class HierarchyFamily(Family):
    name = "hierarchy"
    required_keys = ("widths", "head_depths")
    optional_keys = ("feed_upward", "prediction_embedding", "successive")

    def space_model(self) -> type:
        return HierarchySpace

    def sample(self, trial: Any, section: HierarchySpace, task_names: Sequence[str]) -> dict[str, Any]:
        depth = suggest(trial, "hierarchy.depth", section.depth)
        width = suggest(trial, "hierarchy.width", section.width)
        head_depths = {t: trial.suggest_int(f"hierarchy.head_{t}", 1, depth) if depth > 1 else 1 for t in task_names}
        # Only what changes the network is sampled: blocks above the highest head, feeding from
        # it, an embedding nobody feeds and anchoring with no lower head do not exist (the spec
        # says 0.0 for the last, as sluice does for a weight with nothing to weigh). Two placements that build the same network then have the same spec (the
        # study trains it once, see docs/explanation/pruning.md "Repeated candidates"), and the sampler
        # models no parameter that has no effect.
        top = max(head_depths.values())
        below = [t for t in task_names if head_depths[t] < top]
        feed_upward = {
            t: bool(suggest(trial, f"hierarchy.feed_{t}", section.feed_upward)) if t in below else False
            for t in task_names
        }
        spec: dict[str, Any] = {"widths": [width] * top, "head_depths": head_depths, "feed_upward": feed_upward}
        if any(feed_upward.values()):  # no neutral width exists, so the key is left out when nobody feeds
            spec["prediction_embedding"] = suggest(
                trial, "hierarchy.prediction_embedding", section.prediction_embedding
            )
        spec["successive"] = suggest(trial, "hierarchy.successive", section.successive) if below else 0.0
        return spec

    def validate(self, spec: dict[str, Any], task_names: Sequence[str]) -> None:
        validate_hierarchy(spec, task_names)

    def build(self, spec: dict[str, Any], in_shape: Shape, task_names: Sequence[str], blocks: BlockFactory) -> Body:
        return HierarchyBody(
            spec["widths"],
            spec["head_depths"],
            spec.get("feed_upward", {}),
            spec.get("prediction_embedding", 8),
            in_shape,
            task_names,
            blocks,
            successive=spec.get("successive", 0.0),
        )

    def summary(self, spec: dict[str, Any], task_names: Sequence[str]) -> str:
        top = max(spec["head_depths"].values())
        widths = spec["widths"][:top]  # what is built: blocks above the highest head are not (see __init__)
        depth = len(widths)
        feeders = [t for t in task_names if spec.get("feed_upward", {}).get(t) and spec["head_depths"][t] < top]
        width_text = str(widths[0]) if len(set(widths)) == 1 else "/".join(str(w) for w in widths)
        text = f"L={depth} w={width_text} " + format_heads(spec["head_depths"], feeders, task_names)
        if spec.get("successive"):
            text += f" succ={spec['successive']:.2g}"
        return text
