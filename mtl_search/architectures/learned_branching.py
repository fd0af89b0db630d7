"""Learning to branch (Guo et al., ICML 2020): a task-grouping tree learned inside the trial.

The body has ``len(widths)`` layers of ``nodes[d]`` blocks each. Every node of layer 0 reads the
stem's features; node j of layer d >= 1 reads a mixture of the outputs of layer d - 1, and each
task's tower a mixture of the last layer's outputs. The mixture weights are a Gumbel-softmax
sample over learned logits (one row per node, one column per candidate parent), drawn anew
every training step at a temperature that starts at ``initial_temperature`` and is multiplied
by ``annealing`` after every epoch: as it falls, each sample comes close to one parent, so
training settles on a tree while the logits learn which parent serves the tasks below.

In evaluation mode (validation, test, predictions, export) each node reads only its argmax
parent and each tower its argmax node, and only the nodes some task's path passes through
are computed: the network evaluated and exported is a discrete tree, the hard-sharing
network of the ``tree`` family with ``groups`` the tasks that share each node. That tree is
the learned structure; the sharing report records it (``tree``, ``groups``) together with
the softmax of the logits (``parents``).

Block types: ``mlp`` (vectors, and every stem that makes vectors) and ``conv`` (images): a
mixture adds outputs of one shape, and every node of a layer has the same shape.

Spec keys: ``widths`` (one per layer), ``nodes`` (per layer), ``initial_temperature``,
``annealing``.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, model_validator
from torch import nn

from mtl_search.architectures.base import Body, Family
from mtl_search.architectures.blocks import BlockFactory, Shape, check_widths
from mtl_search.architectures.tree import canonical_partition, format_tree
from mtl_search.errors import UserError, is_number
from mtl_search.values import Count, FloatRange, IntChoice, IntRange, PositiveFloat, extremes, suggest

# the block types a learned tree is built of: linear layers on vectors, convolutions on images
LTB_BLOCK_TYPES = ("mlp", "conv")


class LTBSpace(BaseModel):
    model_config = ConfigDict(extra="forbid")

    depth: Count = IntRange(low=1, high=3)
    width: Count = IntChoice(choices=[32, 64, 128])
    # candidate nodes per layer (the branching factor): one width and count for every layer
    nodes: Count = IntRange(low=2, high=4)
    initial_temperature: PositiveFloat = FloatRange(low=0.5, high=5.0, log=True)
    # the temperature's factor after each epoch, in (0, 1]
    annealing: PositiveFloat = FloatRange(low=0.5, high=0.95)

    @model_validator(mode="after")
    def _annealing_at_most_one(self) -> "LTBSpace":
        if max(extremes(self.annealing)) > 1:
            raise ValueError(f"annealing must be at most 1 (the temperature never grows), got {self.annealing}")
        return self


class LTBBody(Body):
    def __init__(
        self,
        widths: Sequence[int],
        nodes: Sequence[int],
        initial_temperature: float,
        annealing: float,
        in_shape: Shape,
        task_names: Sequence[str],
        blocks: BlockFactory,
    ) -> None:
        super().__init__()
        if blocks.kind not in LTB_BLOCK_TYPES:
            raise UserError(
                f"ltb spec: block.type {blocks.kind!r} is not supported (ltb supports {', '.join(LTB_BLOCK_TYPES)})"
            )
        self.task_names = list(task_names)
        self.widths = list(widths)
        self.layers = nn.ModuleList()
        # parent_logits[d - 1][j, p]: node j of layer d choosing node p of layer d - 1
        self.parent_logits = nn.ParameterList()
        shape = in_shape
        for depth, (width, count) in enumerate(zip(widths, nodes)):
            made = [blocks.block(shape, width) for _ in range(count)]
            self.layers.append(nn.ModuleList(block for block, _ in made))
            if depth:
                self.parent_logits.append(nn.Parameter(torch.zeros(count, nodes[depth - 1])))
            shape = made[0][1]
        # tower_logits[task][p]: the task's tower choosing node p of the last layer (one parameter
        # per task: each is reached by its task's loss only)
        self.tower_logits = nn.ParameterDict({task: nn.Parameter(torch.zeros(nodes[-1])) for task in self.task_names})
        self.out_shapes = {task: shape for task in self.task_names}
        self.temperature = float(initial_temperature)
        self.annealing = float(annealing)
        # the argmax tree, fixed while in evaluation mode (so that an export traces plain indices)
        self._tree: DiscreteTree | None = None
        self.register_load_state_dict_post_hook(_refresh_after_load)

    def train(self, mode: bool = True) -> "LTBBody":
        super().train(mode)
        self._refresh_tree()
        return self

    def _refresh_tree(self) -> None:
        self._tree = None if self.training else self.chosen_tree()

    def end_epoch(self) -> None:
        self.temperature *= self.annealing

    @torch.no_grad()
    def chosen_tree(self) -> "DiscreteTree":
        """Each node's and tower's argmax parent, and the nodes some task's path passes through."""
        parents = [[0] * len(self.layers[0])] + [logits.argmax(dim=1).tolist() for logits in self.parent_logits]
        towers = self._stacked_tower_logits().argmax(dim=1).tolist()
        used = [set() for _ in self.layers]
        used[-1] = set(towers)
        for depth in range(len(self.layers) - 1, 0, -1):
            used[depth - 1] = {parents[depth][node] for node in used[depth]}
        return DiscreteTree(parents, dict(zip(self.task_names, towers)), [sorted(nodes) for nodes in used])

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        if not self.training:
            return self._discrete_forward(features)
        outputs = [block(features) for block in self.layers[0]]
        for blocks, logits in zip(self.layers[1:], self.parent_logits):
            inputs = mix(F.gumbel_softmax(logits, tau=self.temperature, dim=1), outputs)
            outputs = [block(h) for block, h in zip(blocks, inputs)]
        chosen = mix(F.gumbel_softmax(self._stacked_tower_logits(), tau=self.temperature, dim=1), outputs)
        return dict(zip(self.task_names, chosen))

    def _stacked_tower_logits(self) -> torch.Tensor:
        return torch.stack([self.tower_logits[task] for task in self.task_names])

    def _discrete_forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        tree = self._tree if self._tree is not None else self.chosen_tree()
        outputs = {node: self.layers[0][node](features) for node in tree.used[0]}
        for depth in range(1, len(self.layers)):
            blocks, parents = self.layers[depth], tree.parents[depth]
            outputs = {node: blocks[node](outputs[parents[node]]) for node in tree.used[depth]}
        return {task: outputs[tree.towers[task]] for task in self.task_names}

    def shared_parameters(self) -> list[nn.Parameter]:
        # while training every sampled mixture weight is positive, so every task's loss reaches
        # every node and every layer's logits; a tower's logits reach its task only
        return list(self.layers.parameters()) + list(self.parent_logits.parameters())

    def sharing_report(self) -> dict[str, Any]:
        tree = self.chosen_tree()
        groups = tree.groups(self.task_names)
        parents: dict[str, Any] = {}
        for depth, logits in enumerate(self.parent_logits, start=1):
            parents[f"depth {depth}"] = probability_rows(logits, [f"n{j}" for j in range(len(logits))])
        parents["towers"] = probability_rows(self._stacked_tower_logits(), self.task_names)
        return {"tree": format_tree(groups, self.task_names), "groups": groups, "parents": parents}


def _refresh_after_load(body: LTBBody, _incompatible_keys: Any) -> None:
    body._refresh_tree()  # new logits: a new argmax tree


class DiscreteTree:
    """The argmax choices: ``parents[d][j]`` (layer 0: the input), ``towers[task]``, and the
    nodes ``used`` at each layer (those on some task's path)."""

    def __init__(self, parents: list[list[int]], towers: dict[str, int], used: list[list[int]]) -> None:
        self.parents, self.towers, self.used = parents, towers, used

    def path(self, task: str) -> list[int]:
        """The node the task's path passes through at each layer, from the first."""
        nodes = [self.towers[task]]
        for depth in range(len(self.parents) - 1, 0, -1):
            nodes.append(self.parents[depth][nodes[-1]])
        return nodes[::-1]

    def groups(self, task_names: Sequence[str]) -> list[list[list[str]]]:
        """Per layer, the tasks that share a node: nested partitions, as a ``tree`` spec's ``groups``."""
        paths = {task: self.path(task) for task in task_names}
        return [
            canonical_partition({task: tuple(paths[task][: depth + 1]) for task in task_names}, task_names)
            for depth in range(len(self.parents))
        ]


def mix(weights: torch.Tensor, outputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """[sum_p weights[j, p] * outputs[p] for each row j]; the outputs share one shape (N, ...)."""
    stacked = torch.stack(list(outputs))
    # one matrix product over the flattened outputs (einsum's ellipsis costs more per call)
    return list((weights @ stacked.flatten(1)).view(weights.shape[0], *stacked.shape[1:]).unbind(0))


def probability_rows(logits: torch.Tensor, rows: Sequence[str]) -> dict[str, dict[str, float]]:
    """{row: {"n<p>": softmax probability of parent p}}, rounded to 3 decimals."""
    probabilities = torch.softmax(logits.detach().double(), dim=1).tolist()
    return {
        row: {f"n{p}": round(value, 3) for p, value in enumerate(values)} for row, values in zip(rows, probabilities)
    }


class LTBFamily(Family):
    name = "ltb"
    required_keys = ("widths", "nodes", "initial_temperature", "annealing")
    optional_keys = ()

    def space_model(self) -> type:
        return LTBSpace

    def sample(self, trial: Any, section: LTBSpace, task_names: Sequence[str]) -> dict[str, Any]:
        depth = suggest(trial, "ltb.depth", section.depth)
        return {
            "widths": [suggest(trial, "ltb.width", section.width)] * depth,
            "nodes": [suggest(trial, "ltb.nodes", section.nodes)] * depth,
            "initial_temperature": suggest(trial, "ltb.initial_temperature", section.initial_temperature),
            "annealing": suggest(trial, "ltb.annealing", section.annealing),
        }

    def validate(self, spec: dict[str, Any], task_names: Sequence[str]) -> None:
        check_widths(spec.get("widths"), "ltb spec", "widths", allow_empty=False)
        check_widths(spec.get("nodes"), "ltb spec", "nodes", allow_empty=False)
        if len(spec["nodes"]) != len(spec["widths"]):
            raise UserError(
                f"ltb spec: nodes has {len(spec['nodes'])} entries but widths {len(spec['widths'])}: give one per layer"
            )
        temperature = spec.get("initial_temperature")
        if not is_number(temperature) or not math.isfinite(temperature) or temperature <= 0:
            raise UserError(f"ltb spec: initial_temperature must be a finite number above 0, got {temperature!r}")
        annealing = spec.get("annealing")
        if not is_number(annealing) or not 0 < annealing <= 1:
            raise UserError(f"ltb spec: annealing must be a number in (0, 1], got {annealing!r}")

    def build(self, spec: dict[str, Any], in_shape: Shape, task_names: Sequence[str], blocks: BlockFactory) -> Body:
        return LTBBody(
            spec["widths"],
            spec["nodes"],
            spec["initial_temperature"],
            spec["annealing"],
            in_shape,
            task_names,
            blocks,
        )

    def summary(self, spec: dict[str, Any], task_names: Sequence[str]) -> str:
        widths, nodes = spec["widths"], spec["nodes"]
        same = len(set(widths)) == 1 and len(set(nodes)) == 1
        layers = (
            f"{len(widths)} layers x {nodes[0]} nodes w={widths[0]}"
            if same
            else "layers " + " ".join(f"{n}x{w}" for n, w in zip(nodes, widths))
        )
        return f"{layers}, gumbel T0={spec['initial_temperature']:.2g} x{spec['annealing']:.2g}/epoch"
