"""Hard parameter sharing as a task-grouping tree.

At every depth the tasks are partitioned into groups; each group has its own block at that
depth, fed by the block of the group it came from one depth below. Groups may only split
as depth grows, so the partitions form a tree. All tasks in one group at every depth is the
shared-bottom network; every task alone from depth 0 is fully separate networks; "task t
leaves the trunk at depth b_t" is the special case where groups split off one task at a time.

Spec keys: ``widths`` (one per depth) and ``groups`` (one partition per depth, each a list
of groups, each a list of task names).
"""

from __future__ import annotations

from typing import Any, Literal, Sequence

import torch
from pydantic import BaseModel, ConfigDict, model_validator

from mtl_search.architectures.base import Body, Family
from mtl_search.architectures.blocks import BlockFactory, Shape, check_widths
from mtl_search.errors import UserError
from mtl_search.values import Count, suggest

Partition = list[list[str]]


class TreeSpace(BaseModel):
    model_config = ConfigDict(extra="forbid")

    depth: Count = 2
    width: Count = 64
    # one width for every depth, or a separately searched width per depth
    per_depth_width: bool = False
    # partitions: any tree (per depth, each task picks a group label within its parent group);
    # branch_points: each task leaves the trunk at a searched depth;
    # affinity: only trees cut from ``chain`` (per depth, how far along it to go);
    # shared / separate: the two fixed extremes
    grouping: Literal["partitions", "branch_points", "affinity", "shared", "separate"] = "partitions"
    # grouping "affinity": ever finer partitions of the tasks, each splitting groups of the one
    # before. None: the search measures task affinity and uses its chain (search/affinity.py).
    chain: list[Partition] | None = None

    @model_validator(mode="after")
    def _chain_needs_affinity_grouping(self) -> "TreeSpace":
        if self.chain is not None and self.grouping != "affinity":
            raise ValueError(f"chain is only used with grouping: affinity (this section has grouping: {self.grouping})")
        return self


class TreeBody(Body):
    def __init__(
        self,
        widths: Sequence[int],
        groups: Sequence[Partition],
        in_shape: Shape,
        task_names: Sequence[str],
        blocks: BlockFactory,
    ) -> None:
        super().__init__()
        self.task_names = list(task_names)
        self.groups = [[list(g) for g in partition] for partition in groups]
        self.blocks = torch.nn.ModuleList()
        # route[d][i] = index of the parent group (at depth d-1) of group i at depth d
        self.route: list[list[int]] = []
        shapes: list[Shape] = [in_shape]
        previous: Partition | None = None
        for depth, partition in enumerate(self.groups):
            level = torch.nn.ModuleList()
            parents, level_shapes = [], []
            for group in partition:
                parent = 0 if previous is None else _parent_index(previous, group)
                block, shape = blocks.block(shapes[parent] if previous is not None else in_shape, widths[depth])
                level.append(block)
                parents.append(parent)
                level_shapes.append(shape)
            self.blocks.append(level)
            self.route.append(parents)
            shapes = level_shapes
            previous = partition
        self.out_shapes = {}
        last = self.groups[-1] if self.groups else [self.task_names]
        self._task_group = {}
        for index, group in enumerate(last):
            for task in group:
                self._task_group[task] = index
                self.out_shapes[task] = shapes[index] if self.groups else in_shape

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        outputs = [features]
        for level, parents in zip(self.blocks, self.route):
            outputs = [block(outputs[parent]) for block, parent in zip(level, parents)]
        return {task: outputs[self._task_group[task]] for task in self.task_names}

    def shared_parameters(self) -> list[torch.nn.Parameter]:
        shared = []
        for level, partition in zip(self.blocks, self.groups):
            for block, group in zip(level, partition):
                if len(group) > 1:
                    shared.extend(block.parameters())
        return shared

    def sharing_report(self) -> dict[str, Any]:
        return {"tree": format_tree(self.groups, self.task_names)}


def _parent_index(previous: Partition, group: list[str]) -> int:
    for index, parent in enumerate(previous):
        if set(group) <= set(parent):
            return index
    raise UserError(f"tree groups: group {group} does not lie inside one group of the depth above")


def canonical_partition(labels: dict[str, Any], task_names: Sequence[str]) -> Partition:
    """Group tasks with equal labels; groups ordered by their first task, tasks in task order."""
    groups: dict[Any, list[str]] = {}
    for task in task_names:
        groups.setdefault(labels[task], []).append(task)
    return list(groups.values())


def validate_chain(chain: Sequence[Partition], task_names: Sequence[str]) -> None:
    """A grouping chain must be partitions of exactly these tasks, each splitting groups of the one before."""
    if not chain:
        raise UserError("families.tree.chain: empty; give at least one partition of the tasks")
    _check_nested_partitions(chain, task_names, "families.tree.chain", "entry")


def validate_tree(widths: Any, groups: Any, task_names: Sequence[str]) -> None:
    check_widths(widths, "tree spec", "widths")
    if not isinstance(groups, list) or not all(
        isinstance(partition, list)
        and all(isinstance(group, list) and all(isinstance(task, str) for task in group) for group in partition)
        for partition in groups
    ):
        raise UserError(
            "tree spec: groups must be a list of partitions, one per depth, each a list of groups of task "
            f'names (e.g. [[["a", "b"]], [["a"], ["b"]]]), got {groups!r}'
        )
    if len(widths) != len(groups):
        raise UserError(
            f"tree spec: {len(widths)} widths but {len(groups)} partitions (groups): give one of each per depth"
        )
    _check_nested_partitions(groups, task_names, "tree spec", "depth")


def _check_nested_partitions(partitions: Sequence[Partition], task_names: Sequence[str], where: str, unit: str) -> None:
    """Each partition covers every task once and only splits groups of the one before it
    (errors name ``where`` and the partition as ``unit`` and its index)."""
    for index, partition in enumerate(partitions):
        members = [task for group in partition for task in group]
        if sorted(members) != sorted(task_names) or any(not group for group in partition):
            raise UserError(
                f"{where}: {unit} {index} groups {partition} must cover each task {list(task_names)} exactly once"
            )
        if index and any(not any(set(group) <= set(parent) for parent in partitions[index - 1]) for group in partition):
            raise UserError(
                f"{where}: {unit} {index} groups {partition}: a group does not lie inside one group of {unit} {index - 1}"
            )


def format_tree(groups: Sequence[Partition], task_names: Sequence[str]) -> str:
    """One readable line: runs of depths with equal partitions, e.g. ``0-1:{a,b,c} 2:{a,b}{c}``."""
    if not groups:
        return "no shared blocks: " + "".join("{" + t + "}" for t in task_names)
    parts = []
    start = 0
    for depth in range(1, len(groups) + 1):
        if depth == len(groups) or groups[depth] != groups[start]:
            span = f"{start}" if depth - 1 == start else f"{start}-{depth - 1}"
            parts.append(span + ":" + "".join("{" + ",".join(g) + "}" for g in groups[start]))
            start = depth
    return " ".join(parts)


class TreeFamily(Family):
    name = "tree"
    required_keys = ("widths", "groups")
    optional_keys = ()

    def space_model(self) -> type:
        return TreeSpace

    def sample(self, trial: Any, section: TreeSpace, task_names: Sequence[str]) -> dict[str, Any]:
        depth = suggest(trial, "tree.depth", section.depth)
        if section.per_depth_width:
            widths = [suggest(trial, f"tree.width_{d}", section.width) for d in range(depth)]
        else:
            widths = [suggest(trial, "tree.width", section.width)] * depth
        return {"widths": widths, "groups": sample_groups(trial, section.grouping, depth, task_names, section.chain)}

    def validate(self, spec: dict[str, Any], task_names: Sequence[str]) -> None:
        validate_tree(spec["widths"], spec["groups"], task_names)

    def build(self, spec: dict[str, Any], in_shape: Shape, task_names: Sequence[str], blocks: BlockFactory) -> Body:
        return TreeBody(spec["widths"], spec["groups"], in_shape, task_names, blocks)

    def summary(self, spec: dict[str, Any], task_names: Sequence[str]) -> str:
        return format_tree(spec["groups"], task_names) + " w=" + "/".join(str(w) for w in _runs(spec["widths"]))


def _runs(widths: Sequence[int]) -> list[int]:
    return [w for i, w in enumerate(widths) if i == 0 or widths[i - 1] != w] if len(set(widths)) == 1 else list(widths)


def sample_groups(
    trial: Any, grouping: str, depth: int, task_names: Sequence[str], chain: Sequence[Partition] | None = None
) -> list[Partition]:
    """Suggest a task-grouping tree of ``depth`` levels.

    ``partitions`` reaches every tree: at each depth, task number i picks a label in
    0..i (a restricted-growth labelling, so each set partition has few encodings, and the
    first task needs no parameter); tasks share a block when they shared the parent block
    and picked the same label. ``affinity`` reaches only the trees cut from ``chain``: at
    each depth a position ``tree.split_{d}`` along it, and the partition there is the one at
    the furthest position chosen so far (so groups only split as depth grows).
    """
    tasks = list(task_names)
    if grouping == "affinity":
        if not chain:
            raise UserError(
                "families.tree.grouping affinity: no chain of groupings; run_search measures one "
                "from task affinity, or give families.tree.chain"
            )
        groups, furthest = [], 0
        for d in range(depth):
            furthest = max(furthest, trial.suggest_int(f"tree.split_{d}", 0, len(chain) - 1))
            groups.append([list(g) for g in chain[furthest]])
        return groups
    if grouping == "shared":
        return [[tasks] for _ in range(depth)]
    if grouping == "separate":
        return [[[t] for t in tasks] for _ in range(depth)]
    if grouping == "branch_points":
        # depth at which each task leaves the trunk (depth = never leaves)
        leave = {t: trial.suggest_int(f"tree.branch_{t}", 0, depth) for t in tasks}
        groups = []
        for d in range(depth):
            labels = {t: (t if leave[t] <= d else "trunk") for t in tasks}
            groups.append(canonical_partition(labels, tasks))
        return groups
    groups = []
    parent = {t: () for t in tasks}
    for d in range(depth):
        labels = {}
        for i, task in enumerate(tasks):
            label = 0 if i == 0 else trial.suggest_categorical(f"tree.group_{d}_{task}", list(range(i + 1)))
            labels[task] = parent[task] + (label,)
        groups.append(canonical_partition(labels, tasks))
        parent = labels
    return groups
