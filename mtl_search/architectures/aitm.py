"""Adaptive information transfer along a funnel (AITM, Xi et al., KDD 2021).

Every task has a tower of its own (``widths``) over the stem's features, or over an optional
shared bottom (``bottom_widths``); its output ``q_t`` (globally pooled on feature maps) is the
task's own information. The tasks form a funnel, and each task after the first receives
information from the task before it (its *source*) through an AIT module:

- the transfer ``p_t = g_t(z_s)``, a learned linear map of the source's fused representation;
- self-attention over the two vectors ``u`` in ``[q_t, p_t]``: with linear maps ``h1, h2, h3``
  to ``attention_width`` values, ``w_u = softmax_u(<h1(u), h2(u)> / sqrt(attention_width))``
  and ``z_t = sum_u w_u h3(u)``.

The first task's ``z`` is ``h3(q)`` (attention over one vector), so every task's head reads
``attention_width`` values. The head is the common ``tower`` section's tower.

**The funnel order.** A task declared ``given`` another receives from that task; any other
task receives from the task before it in the order below, the first task from none. The order
is the data's task order, except that a task is moved after the task it is given (so
``conversion given click`` follows ``click`` whatever the column order). Tasks without any
``given`` thus form one chain in the data's order, as in the paper.

**The behavioural calibrator** (``calibrator`` > 0): ``calibrator * mean(max(P_t - P_s, 0))``
is added to the loss for every link from a binary source ``s`` to a binary task ``t``, where
``P`` is the probability of the whole chain (a task given another: the product down its
``given`` chain). It penalises a later funnel step predicted likelier than the earlier one.
Where ``t`` is declared ``given s`` the product can never exceed ``P_s``, so those links add
nothing; the calibrator acts on links the data's order makes.

Because the calibrator reads the tasks' predictions, this body runs the towers itself
(``computes_outputs``).

Spec keys: ``widths`` (each task's tower blocks), ``attention_width``, ``calibrator`` (>= 0,
default 0), ``bottom_widths`` (shared blocks below the towers, default none).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from mtl_search.architectures.base import Body, Family
from mtl_search.architectures.blocks import BlockFactory, Flatten, Shape, check_widths, flat_size
from mtl_search.architectures.experts import GateMonitor
from mtl_search.errors import UserError, is_number, is_whole
from mtl_search.tasks import Task
from mtl_search.values import Count, IntChoice, IntRange, NonNegativeFloat, NonNegativeInt, suggest


class AITMSpace(BaseModel):
    model_config = ConfigDict(extra="forbid")

    depth: Count = IntRange(low=1, high=2)
    width: Count = IntChoice(choices=[32, 64, 128])
    attention_width: Count = IntChoice(choices=[16, 32, 64])
    # 0 by default: it only acts on binary links the data's order makes (see the module docstring)
    calibrator: NonNegativeFloat = 0.0
    bottom_depth: NonNegativeInt = 0
    bottom_width: Count = 64


def funnel_order(tasks: Sequence[Task]) -> tuple[list[str], dict[str, str | None]]:
    """The funnel's order and each task's source (see the module docstring)."""
    by_name = {task.name: task for task in tasks}
    order: list[str] = []
    waiting = [task.name for task in tasks]
    while waiting:
        # the first task in data order whose condition is placed (validate_conditions rules out cycles)
        ready = next(name for name in waiting if by_name[name].given is None or by_name[name].given in order)
        waiting.remove(ready)
        order.append(ready)
    sources = {
        name: by_name[name].given if by_name[name].given is not None else (order[i - 1] if i else None)
        for i, name in enumerate(order)
    }
    return order, sources


class AITModule(nn.Module):
    """Fuses a task's own vector with the information transferred from its source (module docstring)."""

    def __init__(self, width: int, attention_width: int, transfers: bool) -> None:
        super().__init__()
        self.value = nn.Linear(width, attention_width)  # h3
        self.transfer = nn.Linear(attention_width, width) if transfers else None  # g
        self.query = nn.Linear(width, attention_width) if transfers else None  # h1
        self.key = nn.Linear(width, attention_width) if transfers else None  # h2
        self.scale = 1.0 / math.sqrt(attention_width)

    def forward(self, own: torch.Tensor, source: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(z, attention weights (N, 2) over [own, transferred]); no weights for a task without a source."""
        if self.transfer is None or source is None:
            return self.value(own), None
        candidates = torch.stack([own, self.transfer(source)], dim=1)  # (N, 2, width)
        scores = (self.query(candidates) * self.key(candidates)).sum(dim=-1) * self.scale
        weights = torch.softmax(scores, dim=1)
        return (weights.unsqueeze(-1) * self.value(candidates)).sum(dim=1), weights


class AITMBody(Body):
    computes_outputs = True

    def __init__(
        self,
        widths: Sequence[int],
        attention_width: int,
        calibrator: float,
        bottom_widths: Sequence[int],
        in_shape: Shape,
        task_names: Sequence[str],
        blocks: BlockFactory,
    ) -> None:
        super().__init__()
        self.task_names = list(task_names)
        self.attention_width = int(attention_width)
        self.calibrator = float(calibrator)
        self.bottom, shape = blocks.stack(in_shape, bottom_widths)
        made = {task: blocks.stack(shape, widths) for task in self.task_names}
        self.towers = nn.ModuleDict({task: module for task, (module, _) in made.items()})
        self.pool = Flatten()
        self.width = flat_size(made[self.task_names[0]][1])
        self.out_shapes = {task: (self.attention_width,) for task in self.task_names}
        # the funnel needs the tasks' conditions: attach_heads sets it and builds the AIT modules
        self.order: list[str] = list(self.task_names)
        self.sources: dict[str, str | None] = {}
        self.fusion = nn.ModuleDict()
        self._heads: dict[str, nn.Module] = {}
        self._probabilities: dict[str, Any] = {}
        self._calibrated: list[tuple[str, str]] = []
        self._given: dict[str, str | None] = {}
        self._penalty: torch.Tensor | None = None
        self.monitor = GateMonitor()

    def attach_heads(self, heads: dict[str, nn.Module], tasks: Sequence[Task]) -> None:
        self._heads = dict(heads)  # registered on the model already; a plain dict avoids a second copy
        self.order, self.sources = funnel_order(tasks)
        by_name = {task.name: task for task in tasks}
        self._probabilities = {name: by_name[name].probabilities for name in self.task_names}
        self._given = {name: by_name[name].given for name in self.task_names}
        self.fusion = nn.ModuleDict(
            {
                name: AITModule(self.width, self.attention_width, self.sources[name] is not None)
                for name in self.task_names
            }
        )
        # links whose joint probabilities can disagree: both binary, the later one not given the earlier
        self._calibrated = [
            (source, name)
            for name, source in self.sources.items()
            if source is not None
            and by_name[name].kind == "binary"
            and by_name[source].kind == "binary"
            and by_name[name].given != source
        ]

    def forward(self, features: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        h = self.bottom(features)
        representations: dict[str, torch.Tensor] = {}
        for name in self.order:
            own = self.pool(self.towers[name](h))
            source = self.sources.get(name)
            fused, weights = self.fusion[name](own, representations[source] if source is not None else None)
            if weights is not None:
                self.monitor.observe(name, weights, self.training)
            representations[name] = fused
        outputs = {name: self._heads[name](representations[name]) for name in self.task_names}
        self._penalty = self._calibration(outputs) if self.training and self.calibrator > 0 else None
        return {name: representations[name] for name in self.task_names}, outputs

    def _calibration(self, outputs: dict[str, torch.Tensor]) -> torch.Tensor | None:
        if not self._calibrated:
            return None
        joint: dict[str, torch.Tensor] = {}

        def probability(name: str) -> torch.Tensor:
            if name not in joint:
                own = self._probabilities[name](outputs[name]).reshape(-1)
                given = self._given[name]
                joint[name] = own if given is None else own * probability(given)
            return joint[name]

        terms = [torch.relu(probability(later) - probability(earlier)).mean() for earlier, later in self._calibrated]
        return self.calibrator * sum(terms[1:], terms[0])

    def regularization(self) -> torch.Tensor | None:
        # the calibrator of the last training forward pass; taken once, so that no step sees it twice
        penalty, self._penalty = self._penalty, None
        return penalty

    def shared_parameters(self) -> list[nn.Parameter]:
        # the bottom reaches every task; a task's tower and AIT module reach it and every task
        # downstream of it in the funnel (the calibrator is an extra term, not a task's loss)
        downstream = {name: 0 for name in self.task_names}
        for name in reversed(self.order):
            source = self.sources.get(name)
            if source is not None:
                downstream[source] += 1 + downstream[name]
        shared = list(self.bottom.parameters())
        for name in self.task_names:
            if downstream[name]:
                shared += list(self.towers[name].parameters()) + list(self.fusion[name].parameters())
        return shared

    def sharing_report(self) -> dict[str, Any]:
        labels = {name: ["own", f"from {self.sources[name]}"] for name in self.task_names if self.sources.get(name)}
        return {
            "funnel": " ".join(
                f"{self.sources[name]}->{name}" if self.sources.get(name) else name for name in self.order
            ),
            "transfer_attention": self.monitor.means(labels),
        }


class AITMFamily(Family):
    name = "aitm"
    required_keys = ("widths", "attention_width")
    optional_keys = ("calibrator", "bottom_widths")

    def space_model(self) -> type:
        return AITMSpace

    def sample(self, trial: Any, section: AITMSpace, task_names: Sequence[str]) -> dict[str, Any]:
        depth = suggest(trial, "aitm.depth", section.depth)
        width = suggest(trial, "aitm.width", section.width)
        bottom_depth = suggest(trial, "aitm.bottom_depth", section.bottom_depth)
        bottom_width = suggest(trial, "aitm.bottom_width", section.bottom_width) if bottom_depth else 0
        return {
            "widths": [width] * depth,
            "attention_width": suggest(trial, "aitm.attention_width", section.attention_width),
            "calibrator": suggest(trial, "aitm.calibrator", section.calibrator),
            "bottom_widths": [bottom_width] * bottom_depth,
        }

    def validate(self, spec: dict[str, Any], task_names: Sequence[str]) -> None:
        check_widths(spec.get("widths"), "aitm spec", "widths", allow_empty=False)
        check_widths(spec.get("bottom_widths", []), "aitm spec", "bottom_widths")
        attention = spec.get("attention_width")
        if not is_whole(attention) or attention < 1:
            raise UserError(f"aitm spec: attention_width must be a whole number >= 1, got {attention!r}")
        calibrator = spec.get("calibrator", 0.0)
        if not is_number(calibrator) or not math.isfinite(calibrator) or calibrator < 0:
            raise UserError(f"aitm spec: calibrator must be a number >= 0, got {calibrator!r}")

    def build(self, spec: dict[str, Any], in_shape: Shape, task_names: Sequence[str], blocks: BlockFactory) -> Body:
        return AITMBody(
            spec["widths"],
            spec["attention_width"],
            spec.get("calibrator", 0.0),
            spec.get("bottom_widths", []),
            in_shape,
            task_names,
            blocks,
        )

    def summary(self, spec: dict[str, Any], task_names: Sequence[str]) -> str:
        text = f"towers {'-'.join(str(w) for w in spec['widths'])} att={spec['attention_width']}"
        if spec.get("bottom_widths"):
            text += f" bottom {'-'.join(str(w) for w in spec['bottom_widths'])}"
        if spec.get("calibrator"):
            text += f" cal={spec['calibrator']:.2g}"
        return text
