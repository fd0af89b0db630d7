"""Every branch configuration of the tree family builds and gives the right output shapes."""

import itertools

import pytest
import torch

from mtl_search.architectures import build_model
from mtl_search.tasks import Task

TASKS = [Task("a", "regression"), Task("b", "binary"), Task("c", "multiclass", n_classes=3)]
NAMES = [t.name for t in TASKS]
DEPTH = 3


def branch_point_trees():
    """Every assignment of a branch depth (0..DEPTH) to each task."""
    for leave in itertools.product(range(DEPTH + 1), repeat=len(NAMES)):
        groups = []
        for d in range(DEPTH):
            trunk = [n for n, b in zip(NAMES, leave) if b > d]
            alone = [[n] for n, b in zip(NAMES, leave) if b <= d]
            partition = ([trunk] if trunk else []) + alone
            groups.append(sorted(partition, key=lambda g: NAMES.index(g[0])))
        yield leave, groups


@pytest.mark.parametrize(
    "leave,groups", list(branch_point_trees()), ids=lambda v: str(v) if isinstance(v, tuple) else ""
)
def test_every_branch_configuration_builds_with_correct_shapes(leave, groups):
    spec = {"family": "tree", "widths": [6, 5, 4], "groups": groups, "tower": {"widths": [3]}}
    model = build_model(spec, {"kind": "vector", "size": 7}, TASKS)
    outputs = model({"x": torch.randn(5, 7)})
    assert outputs["a"].shape == (5, 1)
    assert outputs["b"].shape == (5, 1)
    assert outputs["c"].shape == (5, 3)


def test_fully_shared_and_fully_separate_parameter_counts():
    shared = {"family": "tree", "widths": [8, 8], "groups": [[NAMES], [NAMES]], "tower": {"widths": []}}
    separate = {"family": "tree", "widths": [8, 8], "groups": [[[n] for n in NAMES]] * 2, "tower": {"widths": []}}

    def count(spec):
        return sum(p.numel() for p in build_model(spec, {"kind": "vector", "size": 7}, TASKS).parameters())

    trunk = (7 * 8 + 8) + (8 * 8 + 8)
    heads = (8 + 1) + (8 + 1) + (8 * 3 + 3)
    assert count(shared) == trunk + heads
    assert count(separate) == 3 * trunk + heads
    model = build_model(shared, {"kind": "vector", "size": 7}, TASKS)
    assert sum(p.numel() for p in model.shared_parameters()) == trunk
    assert build_model(separate, {"kind": "vector", "size": 7}, TASKS).shared_parameters() == []
