"""Soft sharing through gated mixtures of experts: MMoE and CGC/PLE.

**MMoE** (Ma et al., KDD 2018): ``experts`` MLP/conv stacks read the same input (the stem's
features, or an optional shared bottom on top of them); each task has a softmax gate over
the experts, and its tower reads the gate-weighted sum of the expert outputs.

**CGC / PLE** (Tang et al., RecSys 2020): every level has shared experts and experts of
each task; a task's gate mixes its own and the shared experts. Below the top level a shared
gate mixes *all* experts of the level into the input of the next level's shared experts,
and each task's mixture is the input of its experts one level up. One level is CGC.

Gates read globally pooled features (so an image input gives a vector per example); the
mixture is taken over whole expert outputs, so it works on vectors and on feature maps.

Spec keys. mmoe: ``experts``, ``expert_widths``, ``bottom_widths`` (may be empty).
ple: ``levels``, ``shared_experts``, ``task_experts`` (per level), ``expert_widths``.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from pydantic import BaseModel, ConfigDict, model_validator
from torch import nn

from mtl_search.architectures.base import Body, Family
from mtl_search.architectures.blocks import BlockFactory, Flatten, Shape, check_widths, flat_size
from mtl_search.errors import UserError, is_whole
from mtl_search.values import Count, NonNegativeInt, extremes, suggest


class Gate(nn.Module):
    """Softmax weights over ``n_experts`` from the (pooled) input: (N, ...) -> (N, n_experts)."""

    def __init__(self, in_shape: Shape, n_experts: int) -> None:
        super().__init__()
        self.pool = Flatten()
        self.linear = nn.Linear(flat_size(in_shape), n_experts)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.linear(self.pool(h).flatten(1)), dim=1)


def mix(weights: torch.Tensor, outputs: Sequence[torch.Tensor]) -> torch.Tensor:
    """sum_e weights[:, e] * outputs[e], for outputs of any shape (N, ...)."""
    # a product and a sum, not einsum: einsum's ellipsis costs several times more per call,
    # alone and most of all under vmap (a population's step)
    stacked = torch.stack(list(outputs), dim=1)
    return (weights.view(*weights.shape, *[1] * (stacked.dim() - 2)) * stacked).sum(1)


class GateMonitor:
    """Mean gate weight per gate and expert, over evaluation-mode forward passes.

    Training batches are not counted: they see dropout and move every step. The mean covers
    every row passed in evaluation mode since the last training-mode forward pass; in
    :func:`train_candidate` that is the final validation and test evaluation.
    """

    def __init__(self) -> None:
        self._sums: dict[str, list[float]] = {}
        self._rows: dict[str, int] = {}
        self._stale = True

    def observe(self, gate: str, weights: torch.Tensor, training: bool) -> None:
        if training:
            self._stale = True
            return
        if self._stale:
            self._sums, self._rows, self._stale = {}, {}, False
        sums = weights.detach().double().sum(dim=0).cpu().tolist()
        previous = self._sums.get(gate, [0.0] * len(sums))
        self._sums[gate] = [a + b for a, b in zip(previous, sums)]
        self._rows[gate] = self._rows.get(gate, 0) + weights.shape[0]

    def means(self, labels: dict[str, Sequence[str]], digits: int = 3) -> dict[str, dict[str, float]]:
        """{gate: {expert label: mean weight}}; empty before any evaluation pass."""
        return {
            gate: {label: round(total / self._rows[gate], digits) for label, total in zip(labels[gate], sums)}
            for gate, sums in self._sums.items()
        }


# -- MMoE -------------------------------------------------------------------------------


class MMoESpace(BaseModel):
    model_config = ConfigDict(extra="forbid")

    experts: Count = 4
    expert_depth: Count = 1
    expert_width: Count = 32
    # 0: the experts read the stem's features directly
    bottom_depth: NonNegativeInt = 0
    bottom_width: Count = 64


class MMoEBody(Body):
    def __init__(
        self,
        n_experts: int,
        expert_widths: Sequence[int],
        bottom_widths: Sequence[int],
        in_shape: Shape,
        task_names: Sequence[str],
        blocks: BlockFactory,
    ) -> None:
        super().__init__()
        self.task_names = list(task_names)
        self.bottom, shape = blocks.stack(in_shape, bottom_widths)
        experts = [blocks.stack(shape, expert_widths) for _ in range(n_experts)]
        self.experts = nn.ModuleList(expert for expert, _ in experts)
        self.gates = nn.ModuleDict({task: Gate(shape, n_experts) for task in self.task_names})
        out_shape = experts[0][1]
        self.out_shapes = {task: out_shape for task in self.task_names}
        self.monitor = GateMonitor()

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.bottom(features)
        outputs = [expert(h) for expert in self.experts]
        representations = {}
        for task in self.task_names:
            weights = self.gates[task](h)
            self.monitor.observe(task, weights, self.training)
            representations[task] = mix(weights, outputs)
        return representations

    def shared_parameters(self) -> list[nn.Parameter]:
        # every task's loss reaches the bottom and every expert; a gate only its own task's
        return list(self.bottom.parameters()) + list(self.experts.parameters())

    def sharing_report(self) -> dict[str, Any]:
        labels = [f"e{i}" for i in range(len(self.experts))]
        return {"gates": self.monitor.means({task: labels for task in self.task_names})}


def _check_int(value: Any, name: str, family: str, minimum: int) -> None:
    if not is_whole(value) or value < minimum:
        raise UserError(f"{family} spec: {name} must be a whole number >= {minimum}, got {value!r}")


def _widths(trial: Any, prefix: str, depth_param: Any, width_param: Any, minimum_depth: int) -> list[int]:
    depth = suggest(trial, f"{prefix}_depth", depth_param)
    if depth < minimum_depth:
        raise UserError(f"{prefix}_depth: must be at least {minimum_depth}, got {depth}")
    if depth == 0:
        return []
    return [suggest(trial, f"{prefix}_width", width_param)] * depth


def _format_widths(widths: Sequence[int]) -> str:
    return "-".join(str(w) for w in widths)


class MMoEFamily(Family):
    name = "mmoe"
    required_keys = ("experts", "expert_widths")
    optional_keys = ("bottom_widths",)

    def space_model(self) -> type:
        return MMoESpace

    def sample(self, trial: Any, section: MMoESpace, task_names: Sequence[str]) -> dict[str, Any]:
        experts = suggest(trial, "mmoe.experts", section.experts)
        return {
            "experts": experts,
            "expert_widths": _widths(trial, "mmoe.expert", section.expert_depth, section.expert_width, 1),
            "bottom_widths": _widths(trial, "mmoe.bottom", section.bottom_depth, section.bottom_width, 0),
        }

    def validate(self, spec: dict[str, Any], task_names: Sequence[str]) -> None:
        _check_int(spec.get("experts"), "experts", "mmoe", 1)
        check_widths(spec.get("expert_widths"), "mmoe spec", "expert_widths", allow_empty=False)
        check_widths(spec.get("bottom_widths", []), "mmoe spec", "bottom_widths")

    def build(self, spec: dict[str, Any], in_shape: Shape, task_names: Sequence[str], blocks: BlockFactory) -> Body:
        return MMoEBody(
            spec["experts"], spec["expert_widths"], spec.get("bottom_widths", []), in_shape, task_names, blocks
        )

    def summary(self, spec: dict[str, Any], task_names: Sequence[str]) -> str:
        text = f"{spec['experts']}x{_format_widths(spec['expert_widths'])} experts, softmax gate per task"
        if spec.get("bottom_widths"):
            text += f", bottom {_format_widths(spec['bottom_widths'])}"
        return text


# -- CGC / PLE --------------------------------------------------------------------------


class PLESpace(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # 1 level is CGC
    levels: Count = 1
    shared_experts: NonNegativeInt = 2
    task_experts: NonNegativeInt = 1
    expert_depth: Count = 1
    expert_width: Count = 32

    @model_validator(mode="after")
    def _some_expert(self) -> "PLESpace":
        # every task's gate needs at least one expert to mix, whatever the sampler draws
        if min(extremes(self.shared_experts)) + min(extremes(self.task_experts)) < 1:
            raise ValueError("shared_experts and task_experts can both be 0: a task would have no expert")
        return self


class PLEBody(Body):
    """Levels of shared and task experts; see the module docstring for the wiring."""

    def __init__(
        self,
        levels: int,
        n_shared: int,
        n_task: int,
        expert_widths: Sequence[int],
        in_shape: Shape,
        task_names: Sequence[str],
        blocks: BlockFactory,
    ) -> None:
        super().__init__()
        self.task_names = list(task_names)
        self.levels = levels
        self.shared_experts = nn.ModuleList()
        self.task_experts = nn.ModuleList()
        self.task_gates = nn.ModuleList()
        self.shared_gates = nn.ModuleList()  # one per level below the top, when shared experts exist
        shape = in_shape
        for level in range(levels):
            made = [blocks.stack(shape, expert_widths) for _ in range(n_shared + len(self.task_names) * n_task)]
            self.shared_experts.append(nn.ModuleList(module for module, _ in made[:n_shared]))
            own = made[n_shared:]
            self.task_experts.append(
                nn.ModuleDict(
                    {
                        task: nn.ModuleList(module for module, _ in own[i * n_task : (i + 1) * n_task])
                        for i, task in enumerate(self.task_names)
                    }
                )
            )
            self.task_gates.append(nn.ModuleDict({task: Gate(shape, n_task + n_shared) for task in self.task_names}))
            if level < levels - 1 and n_shared:
                self.shared_gates.append(Gate(shape, len(made)))
            shape = made[0][1]
        self.out_shapes = {task: shape for task in self.task_names}
        self.monitor = GateMonitor()

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        shared_input = features
        task_inputs = {task: features for task in self.task_names}
        for level in range(self.levels):
            shared_out = [expert(shared_input) for expert in self.shared_experts[level]]
            task_out = {
                task: [expert(task_inputs[task]) for expert in self.task_experts[level][task]]
                for task in self.task_names
            }
            next_inputs = {}
            for task in self.task_names:
                weights = self.task_gates[level][task](task_inputs[task])
                self.monitor.observe(f"L{level}.{task}", weights, self.training)
                next_inputs[task] = mix(weights, task_out[task] + shared_out)
            if level < len(self.shared_gates):
                weights = self.shared_gates[level](shared_input)
                self.monitor.observe(f"L{level}.shared", weights, self.training)
                everything = [out for task in self.task_names for out in task_out[task]] + shared_out
                shared_input = mix(weights, everything)
            task_inputs = next_inputs
        return task_inputs

    def shared_parameters(self) -> list[nn.Parameter]:
        # More than one task's loss reaches: every shared expert and shared gate and, below
        # the top level, task experts too (the shared gate passes them on to the next level's
        # shared experts); task gates of level l while a shared gate remains above l + 1.
        shared: list[nn.Parameter] = list(self.shared_experts.parameters()) + list(self.shared_gates.parameters())
        n_shared_gates = len(self.shared_gates)
        for level in range(self.levels):
            if level < n_shared_gates:
                shared += list(self.task_experts[level].parameters())
            if level + 1 < n_shared_gates:
                shared += list(self.task_gates[level].parameters())
        return shared

    def sharing_report(self) -> dict[str, Any]:
        labels: dict[str, list[str]] = {}
        for level in range(self.levels):
            shared = [f"shared{i}" for i in range(len(self.shared_experts[level]))]
            own = {
                task: [f"{task}.{i}" for i in range(len(self.task_experts[level][task]))] for task in self.task_names
            }
            for task in self.task_names:
                labels[f"L{level}.{task}"] = own[task] + shared
            labels[f"L{level}.shared"] = [label for task in self.task_names for label in own[task]] + shared
        return {"gates": self.monitor.means(labels)}


class PLEFamily(Family):
    name = "ple"
    required_keys = ("levels", "shared_experts", "task_experts", "expert_widths")
    optional_keys = ()

    def space_model(self) -> type:
        return PLESpace

    def sample(self, trial: Any, section: PLESpace, task_names: Sequence[str]) -> dict[str, Any]:
        spec = {
            "levels": suggest(trial, "ple.levels", section.levels),
            "shared_experts": suggest(trial, "ple.shared_experts", section.shared_experts),
            "task_experts": suggest(trial, "ple.task_experts", section.task_experts),
            "expert_widths": _widths(trial, "ple.expert", section.expert_depth, section.expert_width, 1),
        }
        self.validate(spec, task_names)
        return spec

    def validate(self, spec: dict[str, Any], task_names: Sequence[str]) -> None:
        _check_int(spec.get("levels"), "levels", "ple", 1)
        _check_int(spec.get("shared_experts"), "shared_experts", "ple", 0)
        _check_int(spec.get("task_experts"), "task_experts", "ple", 0)
        if spec["shared_experts"] + spec["task_experts"] < 1:
            raise UserError("ple spec: shared_experts + task_experts must be at least 1, got 0 experts per gate")
        check_widths(spec.get("expert_widths"), "ple spec", "expert_widths", allow_empty=False)

    def build(self, spec: dict[str, Any], in_shape: Shape, task_names: Sequence[str], blocks: BlockFactory) -> Body:
        return PLEBody(
            spec["levels"],
            spec["shared_experts"],
            spec["task_experts"],
            spec["expert_widths"],
            in_shape,
            task_names,
            blocks,
        )

    def summary(self, spec: dict[str, Any], task_names: Sequence[str]) -> str:
        levels = spec["levels"]
        name = "CGC" if levels == 1 else f"{levels} levels"
        return (
            f"{name} s{spec['shared_experts']} t{spec['task_experts']} experts {_format_widths(spec['expert_widths'])}"
        )
