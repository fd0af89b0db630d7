"""Shared and task-specific embeddings (STEM, Su et al., AAAI 2024), the ``stem`` family.

On tables, most of a network's parameters are the categorical columns' embeddings, and one
set of them serves every task: tasks that disagree pull the same vectors apart. STEM gives
every task an embedding table per categorical column of its own, plus one shared set.

The family's stem (:class:`TaskEmbeddings`) makes ``1 + T`` feature sets from one row: the
shared set (the numeric columns, encoded as the tabular stem encodes them, beside the shared
embeddings) and one per task (the same numeric features beside that task's embeddings). Each
set feeds ``experts`` expert stacks of its own. Task ``t``'s softmax gate reads its own and
the shared set and mixes *every* expert: the shared ones, its own, and the other tasks'
through a stop-gradient ("all forward, task-specific backward"). Task ``t`` thus reads what
the other tasks' embeddings learned, but its loss never moves them.

Tabular inputs only (the family's ``input_kinds``): other data is refused in one line when a
space naming the family is checked against it or a network is built. On a table without
categorical columns every set holds the numeric features only: shared and per-task experts
with the same task-specific backward, and no tables to separate.

Spec keys: ``experts`` (per set), ``expert_widths``, ``embedding_dim`` (optional: every
table's width per column; else the tabular stem's rule, or the stem section's ``embedding_dim``;
not both). Its search parameters are named ``stem_family.*``: ``stem.*`` are the stem section's.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from mtl_search.architectures.base import Body, Family
from mtl_search.architectures.blocks import (
    TABULAR_NUMERIC_SETTINGS,
    BlockFactory,
    Shape,
    TabularStem,
    check_widths,
)
from mtl_search.architectures.experts import Gate, GateMonitor, mix
from mtl_search.errors import UserError, is_whole
from mtl_search.values import Count, IntChoice, IntRange, suggest


class TaskEmbeddings(nn.Module):
    """The stem family's input stem: ``1 + T`` feature sets of equal width, side by side.

    Set 0 is the tabular stem's features (numeric columns and shared embeddings); set ``1 + t``
    the same numeric features beside task ``t``'s embeddings. ``ensemble_members`` above 1
    scales the whole row per member, as the tabular stem does.
    """

    def __init__(
        self,
        schema: dict[str, Any],
        stem_spec: dict[str, Any],
        task_names: Sequence[str],
        embedding_dim: int | None,
    ) -> None:
        super().__init__()
        categorical = [int(c) for c in schema["categorical"]]
        numeric_options = {key: stem_spec[key] for key in TABULAR_NUMERIC_SETTINGS if stem_spec.get(key) is not None}
        members = int(numeric_options.pop("ensemble_members", 1))
        self.shared = TabularStem(
            int(schema["numeric"]),
            categorical,
            embedding_dim,
            numeric_quantiles=schema.get("numeric_quantiles"),
            **numeric_options,
        )
        self.task_names = list(task_names)
        # no categorical column, no tables: a task's set is the numeric features alone
        self.tasks = nn.ModuleDict(
            {task: TabularStem(0, categorical, embedding_dim) for task in self.task_names} if categorical else {}
        )
        self.numeric_width = self.shared.out_shape[0] - sum(self.shared.dims)
        self.set_width = self.shared.out_shape[0]
        self.out_shape = (self.set_width * (1 + len(self.task_names)),)
        self.members = members
        if members > 1:
            signs = torch.randint(0, 2, (members, self.out_shape[0])).float() * 2 - 1
            self.member_scales = nn.Parameter(signs)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        shared = self.shared(inputs)
        numeric = shared[:, : self.numeric_width]
        if not len(self.tasks):
            return self._members(torch.cat([shared] * (1 + len(self.task_names)), dim=1))
        parts = [shared] + [torch.cat([numeric, self.tasks[task](inputs)], dim=1) for task in self.task_names]
        return self._members(torch.cat(parts, dim=1))

    def _members(self, features: torch.Tensor) -> torch.Tensor:
        if self.members > 1:  # (members * batch, features), member-major
            features = (features.unsqueeze(0) * self.member_scales.unsqueeze(1)).flatten(0, 1)
        return features

    def shared_parameters(self) -> list[nn.Parameter]:
        """What more than one task's loss reaches: the shared set (a task's tables reach only its loss)."""
        return list(self.shared.parameters()) + ([self.member_scales] if self.members > 1 else [])


class STEMSpace(BaseModel):
    model_config = ConfigDict(extra="forbid")

    experts: Count = IntRange(low=1, high=2)
    expert_depth: Count = 1
    expert_width: Count = IntChoice(choices=[32, 64, 128])
    embedding_dim: Count = IntChoice(choices=[4, 8, 16])


class STEMBody(Body):
    """Experts per feature set, and a gate per task over every expert (module docstring)."""

    def __init__(
        self,
        n_experts: int,
        expert_widths: Sequence[int],
        in_shape: Shape,
        task_names: Sequence[str],
        blocks: BlockFactory,
    ) -> None:
        super().__init__()
        self.task_names = list(task_names)
        self.sets = ["shared", *self.task_names]
        (total,) = in_shape
        self.set_width = total // len(self.sets)
        made = {name: [blocks.stack((self.set_width,), expert_widths) for _ in range(n_experts)] for name in self.sets}
        self.experts = nn.ModuleDict({name: nn.ModuleList(m for m, _ in stacks) for name, stacks in made.items()})
        self.gates = nn.ModuleDict(
            {task: Gate((2 * self.set_width,), n_experts * len(self.sets)) for task in self.task_names}
        )
        out_shape = made["shared"][0][1]
        self.out_shapes = {task: out_shape for task in self.task_names}
        self.monitor = GateMonitor()

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        pieces = dict(zip(self.sets, features.split(self.set_width, dim=1)))
        outputs = {name: [expert(pieces[name]) for expert in self.experts[name]] for name in self.sets}
        representations = {}
        for task in self.task_names:
            # every expert forward; other tasks' through a stop-gradient, so this task's loss leaves them alone
            mixed = [out if name in ("shared", task) else out.detach() for name in self.sets for out in outputs[name]]
            weights = self.gates[task](torch.cat([pieces["shared"], pieces[task]], dim=1))
            self.monitor.observe(task, weights, self.training)
            representations[task] = mix(weights, mixed)
        return representations

    def shared_parameters(self) -> list[nn.Parameter]:
        return list(self.experts["shared"].parameters())

    def sharing_report(self) -> dict[str, Any]:
        labels = [f"{name}.{i}" for name in self.sets for i in range(len(self.experts[name]))]
        return {"gates": self.monitor.means({task: labels for task in self.task_names})}


class STEMFamily(Family):
    name = "stem"
    required_keys = ("experts", "expert_widths")
    optional_keys = ("embedding_dim",)
    input_kinds = ("tabular",)

    def space_model(self) -> type:
        return STEMSpace

    def sample(self, trial: Any, section: STEMSpace, task_names: Sequence[str]) -> dict[str, Any]:
        depth = suggest(trial, "stem_family.expert_depth", section.expert_depth)
        return {
            "experts": suggest(trial, "stem_family.experts", section.experts),
            "expert_widths": [suggest(trial, "stem_family.expert_width", section.expert_width)] * depth,
            "embedding_dim": suggest(trial, "stem_family.embedding_dim", section.embedding_dim),
        }

    def validate(self, spec: dict[str, Any], task_names: Sequence[str]) -> None:
        experts = spec.get("experts")
        if not is_whole(experts) or experts < 1:
            raise UserError(f"stem spec: experts must be a whole number >= 1, got {experts!r}")
        check_widths(spec.get("expert_widths"), "stem spec", "expert_widths", allow_empty=False)
        width = spec.get("embedding_dim")
        if width is not None and (not is_whole(width) or width < 1):
            raise UserError(f"stem spec: embedding_dim must be a whole number >= 1, got {width!r}")
        if width is not None and (spec.get("stem") or {}).get("embedding_dim") is not None:
            raise UserError(
                "stem spec: embedding_dim is set twice (the family's and stem.embedding_dim); keep one of them"
            )

    def build_stem(self, spec: dict[str, Any], input_schema: dict[str, Any], task_names: Sequence[str]) -> nn.Module:
        stem_spec = spec.get("stem") or {}
        width = spec.get("embedding_dim", stem_spec.get("embedding_dim"))
        return TaskEmbeddings(input_schema, stem_spec, task_names, width)

    def build(self, spec: dict[str, Any], in_shape: Shape, task_names: Sequence[str], blocks: BlockFactory) -> Body:
        return STEMBody(spec["experts"], spec["expert_widths"], in_shape, task_names, blocks)

    def summary(self, spec: dict[str, Any], task_names: Sequence[str]) -> str:
        widths = "-".join(str(w) for w in spec["expert_widths"])
        text = f"{spec['experts']}x{widths} experts per set, shared + {len(task_names)} task embedding sets"
        if spec.get("embedding_dim"):
            text += f", emb {spec['embedding_dim']}"
        return text
