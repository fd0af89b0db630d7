"""AdaTT: adaptive task-to-task fusion (Li et al., KDD 2023).

Every level has ``task_experts`` experts of each task and ``shared_experts`` shared ones.
Task t's experts read task t's input (the stem's features at the first level, task t's
fusion output above); the shared experts read the shared input. Task t's *fusion unit*
adds two parts:

- a softmax gate on task t's input over **all** experts of the level (every task's and the
  shared ones): the adaptive task-to-task fusion;
- a linear combination of task t's own experts with learned weights (starting at
  ``1 / task_experts``, their mean): the residual that keeps a task's own experts in its
  path whatever the gate does.

Below the top level, when shared experts exist, a shared gate (on the shared input) mixes
all experts of the level into the next level's shared input, as in PLE. Each task's tower
reads its top-level fusion output. ``shared_experts: 0`` is the paper's AdaTT-sp.

Gates read globally pooled features and mix whole expert outputs, so the family runs on
vectors and on feature maps alike.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from mtl_search.architectures.base import Body, Family
from mtl_search.architectures.blocks import BlockFactory, Shape, check_widths
from mtl_search.architectures.experts import Gate, GateMonitor, _check_int, _format_widths, _widths, mix
from mtl_search.values import Count, IntChoice, IntRange, NonNegativeInt, suggest


class AdaTTSpace(BaseModel):
    model_config = ConfigDict(extra="forbid")

    levels: Count = Field(default_factory=lambda: IntRange(low=1, high=2))
    task_experts: Count = Field(default_factory=lambda: IntRange(low=1, high=2))
    shared_experts: NonNegativeInt = Field(default_factory=lambda: IntRange(low=0, high=2))
    expert_depth: Count = 1
    expert_width: Count = Field(default_factory=lambda: IntChoice(choices=[16, 32, 64]))


class AdaTTBody(Body):
    """Levels of task and shared experts with one fusion unit per task; see the module docstring."""

    def __init__(
        self,
        levels: int,
        n_task: int,
        n_shared: int,
        expert_widths: Sequence[int],
        in_shape: Shape,
        task_names: Sequence[str],
        blocks: BlockFactory,
    ) -> None:
        super().__init__()
        self.task_names = list(task_names)
        self.levels = levels
        n_all = n_task * len(self.task_names) + n_shared
        self.task_experts = nn.ModuleList()
        self.shared_experts = nn.ModuleList()
        self.task_gates = nn.ModuleList()
        self.residual_weights = nn.ModuleList()
        self.shared_gates = nn.ModuleList()  # one per level below the top, when shared experts exist
        shape = in_shape
        for level in range(levels):
            made = [blocks.stack(shape, expert_widths) for _ in range(n_all)]
            self.task_experts.append(
                nn.ModuleDict(
                    {
                        task: nn.ModuleList(module for module, _ in made[i * n_task : (i + 1) * n_task])
                        for i, task in enumerate(self.task_names)
                    }
                )
            )
            self.shared_experts.append(nn.ModuleList(module for module, _ in made[n_all - n_shared :]))
            self.task_gates.append(nn.ModuleDict({task: Gate(shape, n_all) for task in self.task_names}))
            self.residual_weights.append(
                nn.ParameterDict({task: nn.Parameter(torch.full((n_task,), 1.0 / n_task)) for task in self.task_names})
            )
            if level < levels - 1 and n_shared:
                self.shared_gates.append(Gate(shape, n_all))
            shape = made[0][1]
        self.out_shapes = {task: shape for task in self.task_names}
        self.monitor = GateMonitor()

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        shared_input = features
        task_inputs = {task: features for task in self.task_names}
        for level in range(self.levels):
            own = {
                task: [expert(task_inputs[task]) for expert in self.task_experts[level][task]]
                for task in self.task_names
            }
            everything = [out for task in self.task_names for out in own[task]]
            everything += [expert(shared_input) for expert in self.shared_experts[level]]
            fused = {}
            for task in self.task_names:
                weights = self.task_gates[level][task](task_inputs[task])
                self.monitor.observe(f"L{level}.{task}", weights, self.training)
                residual = self.residual_weights[level][task].expand(weights.shape[0], -1)
                fused[task] = mix(weights, everything) + mix(residual, own[task])
            if level < len(self.shared_gates):
                weights = self.shared_gates[level](shared_input)
                self.monitor.observe(f"L{level}.shared", weights, self.training)
                shared_input = mix(weights, everything)
            task_inputs = fused
        return task_inputs

    def shared_parameters(self) -> list[nn.Parameter]:
        # Every task's gate mixes every expert of its level, so each expert reaches every task.
        # Below the top level a task's gate and residual weights shape its input one level up,
        # whose experts every task's gate mixes again; at the top they reach their task only.
        shared: list[nn.Parameter] = list(self.task_experts.parameters()) + list(self.shared_experts.parameters())
        shared += list(self.shared_gates.parameters())
        for level in range(self.levels - 1):
            shared += list(self.task_gates[level].parameters()) + list(self.residual_weights[level].parameters())
        return shared

    def expert_labels(self, level: int) -> list[str]:
        own = [f"{task}.{i}" for task in self.task_names for i in range(len(self.task_experts[level][task]))]
        return own + [f"shared{i}" for i in range(len(self.shared_experts[level]))]

    def sharing_report(self) -> dict[str, Any]:
        labels: dict[str, list[str]] = {}
        for level in range(self.levels):
            for task in self.task_names:
                labels[f"L{level}.{task}"] = self.expert_labels(level)
            labels[f"L{level}.shared"] = self.expert_labels(level)
        residual = {
            f"L{level}.{task}": [round(float(w), 3) for w in self.residual_weights[level][task].detach().cpu()]
            for level in range(self.levels)
            for task in self.task_names
        }
        return {"gates": self.monitor.means(labels), "residual": residual}


class AdaTTFamily(Family):
    name = "adatt"
    required_keys = ("levels", "task_experts", "shared_experts", "expert_widths")
    optional_keys = ()

    def space_model(self) -> type:
        return AdaTTSpace

    def sample(self, trial: Any, section: AdaTTSpace, task_names: Sequence[str]) -> dict[str, Any]:
        return {
            "levels": suggest(trial, "adatt.levels", section.levels),
            "task_experts": suggest(trial, "adatt.task_experts", section.task_experts),
            "shared_experts": suggest(trial, "adatt.shared_experts", section.shared_experts),
            "expert_widths": _widths(trial, "adatt.expert", section.expert_depth, section.expert_width, 1),
        }

    def validate(self, spec: dict[str, Any], task_names: Sequence[str]) -> None:
        _check_int(spec.get("levels"), "levels", "adatt", 1)
        _check_int(spec.get("task_experts"), "task_experts", "adatt", 1)
        _check_int(spec.get("shared_experts"), "shared_experts", "adatt", 0)
        check_widths(spec.get("expert_widths"), "adatt spec", "expert_widths", allow_empty=False)

    def build(self, spec: dict[str, Any], in_shape: Shape, task_names: Sequence[str], blocks: BlockFactory) -> Body:
        return AdaTTBody(
            spec["levels"],
            spec["task_experts"],
            spec["shared_experts"],
            spec["expert_widths"],
            in_shape,
            task_names,
            blocks,
        )

    def summary(self, spec: dict[str, Any], task_names: Sequence[str]) -> str:
        levels = spec["levels"]
        return (
            f"{levels} level{'s' if levels > 1 else ''} t{spec['task_experts']} s{spec['shared_experts']} "
            f"experts {_format_widths(spec['expert_widths'])}, task-to-task fusion"
        )
