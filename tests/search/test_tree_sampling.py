"""The tree family's search parameters reach every task-grouping tree."""

import itertools

import optuna
import pytest

from mtl_search.architectures import build_model
from mtl_search.architectures.tree import TreeSpace, TreeFamily
from mtl_search.data.synthetic import make_synthetic


def set_partitions(items):
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for partition in set_partitions(rest):
        for i in range(len(partition)):
            yield partition[:i] + [[first] + partition[i]] + partition[i + 1 :]
        yield [[first]] + partition


def refinements(partition):
    """Every partition that splits the groups of ``partition`` further (or not at all)."""
    for pieces in itertools.product(*[list(set_partitions(group)) for group in partition]):
        yield [group for piece in pieces for group in piece]


def all_trees(tasks, depth):
    def grow(levels):
        if len(levels) == depth:
            yield levels
            return
        options = list(set_partitions(tasks)) if not levels else list(refinements(levels[-1]))
        for option in options:
            yield from grow(levels + [option])

    yield from grow([])


def canonical(tree, tasks):
    order = {t: i for i, t in enumerate(tasks)}
    return tuple(
        tuple(sorted((tuple(sorted(g, key=order.get)) for g in level), key=lambda g: order[g[0]])) for level in tree
    )


def reachable_trees(tasks, depth):
    """Trees produced by every assignment of the `partitions` parameters."""
    family = TreeFamily()
    names = [f"tree.group_{d}_{t}" for d in range(depth) for i, t in enumerate(tasks) if i > 0]
    choices = [list(range(tasks.index(name.rsplit("_", 1)[1]) + 1)) for name in names]
    produced = set()
    for values in itertools.product(*choices):
        params = dict(zip(names, values)) | {"tree.depth": depth, "tree.width": 4}
        spec = family.sample(optuna.trial.FixedTrial(params), TreeSpace(depth=depth, width=4), tasks)
        produced.add(canonical(spec["groups"], tasks))
    return produced


@pytest.mark.parametrize("n_tasks,depth", [(2, 1), (2, 2), (2, 3), (3, 1), (3, 2), (3, 3), (4, 2)])
def test_every_tree_is_reachable_and_builds(n_tasks, depth):
    tasks = [f"t{i}" for i in range(n_tasks)]
    expected = {canonical(tree, tasks) for tree in all_trees(tasks, depth)}
    reached = reachable_trees(tasks, depth)
    assert reached == expected
    data = make_synthetic(dim=6, rows=20, tasks=max(n_tasks, 2), seed=0)
    task_objects = [data.tasks[0].__class__(name=t, kind="regression") for t in tasks]
    for tree in expected:
        spec = {"family": "tree", "widths": [4] * depth, "groups": [[list(g) for g in level] for level in tree]}
        build_model(spec, {"kind": "vector", "size": 6}, task_objects)


def test_tree_counts_match_combinatorics():
    # trees of depth 1 are set partitions: Bell numbers 2, 5, 15
    assert [len(list(all_trees([f"t{i}" for i in range(n)], 1))) for n in (2, 3, 4)] == [2, 5, 15]


def test_branch_point_grouping_is_per_task_branching():
    family = TreeFamily()
    params = {"tree.depth": 3, "tree.width": 4, "tree.branch_a": 0, "tree.branch_b": 2, "tree.branch_c": 3}
    spec = family.sample(
        optuna.trial.FixedTrial(params), TreeSpace(depth=3, width=4, grouping="branch_points"), ["a", "b", "c"]
    )
    assert spec["groups"] == [[["a"], ["b", "c"]], [["a"], ["b", "c"]], [["a"], ["b"], ["c"]]]


CHAIN = [[["a", "b", "c", "d"]], [["a", "b"], ["c", "d"]], [["a", "b"], ["c"], ["d"]], [["a"], ["b"], ["c"], ["d"]]]


def test_affinity_grouping_reaches_exactly_the_nested_trees_cut_from_its_chain():
    tasks, depth = ["a", "b", "c", "d"], 3
    family, section = TreeFamily(), TreeSpace(depth=depth, width=4, grouping="affinity", chain=CHAIN)
    reached = set()
    for positions in itertools.product(range(len(CHAIN)), repeat=depth):
        params = {f"tree.split_{d}": k for d, k in enumerate(positions)} | {"tree.depth": depth, "tree.width": 4}
        groups = family.sample(optuna.trial.FixedTrial(params), section, tasks)["groups"]
        family.validate({"widths": [4] * depth, "groups": groups}, tasks)  # groups only split as depth grows
        reached.add(canonical(groups, tasks))
    # every non-decreasing walk along the chain, and nothing else
    expected = {
        canonical([CHAIN[k] for k in walk], tasks)
        for walk in itertools.combinations_with_replacement(range(len(CHAIN)), depth)
    }
    assert reached == expected and len(expected) == 20


def test_affinity_grouping_without_a_chain_is_a_clear_error():
    from mtl_search.errors import UserError

    with pytest.raises(UserError, match="no chain of groupings"):
        TreeFamily().sample(
            optuna.trial.FixedTrial({"tree.split_0": 0}), TreeSpace(depth=1, width=4, grouping="affinity"), ["a", "b"]
        )
