"""Task affinity (easy/hard agreement, TAG lookahead) and the grouping trees seeded from it."""

from __future__ import annotations

import copy

import numpy as np
import optuna
import pytest
import torch

from mtl_search.architectures import build_model
from mtl_search.architectures.tree import validate_tree
from mtl_search.errors import UserError
from mtl_search.search.affinity import (
    AffinitySettings,
    TaskAffinity,
    easy_hard_affinity,
    lookahead_affinity,
    measure_affinity,
    partition_chain,
    seed_params,
    seed_trees,
    seed_with_affinity,
    uniform_trees,
)
from mtl_search.data.synthetic import make_synthetic
from mtl_search.search.runner import SearchSettings, run_search
from mtl_search.search.space import parse_space

NAN = float("nan")


def test_affinity_counts_rows_where_tasks_agree():
    losses = np.array(
        [
            # a     b     c (= a reversed)  d (half labelled)
            [0.1, 0.2, 0.9, 0.1],
            [0.2, 0.1, 0.8, NAN],
            [0.8, 0.9, 0.2, 0.9],
            [0.9, 0.8, 0.1, NAN],
        ]
    )
    matrix = easy_hard_affinity(losses)
    assert np.allclose(np.diag(matrix), 1.0)
    assert matrix[0, 1] == 1.0  # same rows easy, same rows hard
    assert matrix[0, 2] == 0.0  # always opposite
    # d: rows 0 (easy) and 2 (hard) are labelled; a agrees on both
    assert matrix[0, 3] == 1.0 and matrix[2, 3] == 0.0
    assert np.allclose(matrix, matrix.T)


def test_lookahead_is_the_share_of_loss_one_step_on_another_task_removes(tiny_synthetic3):
    data = tiny_synthetic3
    torch.manual_seed(0)
    architecture = {
        "family": "tree",
        "widths": [8],
        "groups": [[data.task_names]],
        "block": {},
        "tower": {"widths": []},
        "stem": {},
    }
    model = build_model(architecture, data.input_schema, data.tasks)
    rows = data.train.rows(torch.arange(64))
    untouched = copy.deepcopy(model.state_dict())
    directed = lookahead_affinity(model, data.tasks, rows, step=0.05, batch_size=64)  # one batch
    assert all(torch.equal(untouched[k], v) for k, v in model.state_dict().items())  # measuring moves nothing

    # by hand: step the shared layer of a copy on task1's gradient alone, compare every task's loss
    def losses(net):
        outputs = net(rows.inputs)
        # each task's training loss (a regression's on the standardised scale)
        return [task.loss(outputs[task.name], rows.targets[task.name]) for task in data.tasks]

    before = losses(model)
    stepped = copy.deepcopy(model)
    shared = stepped.shared_parameters()
    grads = torch.autograd.grad(losses(stepped)[0], shared)
    with torch.no_grad():
        for p, g in zip(shared, grads):
            p -= 0.05 * g
        after = losses(stepped)
    expected = [1 - float(a) / float(b.detach()) for a, b in zip(after, before)]
    assert directed[0] == pytest.approx(expected, rel=1e-4, abs=1e-7)
    assert directed[0, 0] > 0  # a step on a task's own gradient lowers its own loss


@pytest.mark.parametrize("measure", ["easy_hard", "lookahead"])
def test_both_measures_split_the_generators_groups_first(measure):
    # four tasks in two groups of related tasks, orthogonal to each other
    data = make_synthetic(dim=20, rows=600, tasks=4, groups=2, correlation=0.9, seed=0)
    affinity = measure_affinity(data, AffinitySettings(measure=measure))
    assert partition_chain(affinity)[1] == [["task1", "task2"], ["task3", "task4"]]
    record = affinity.to_data()
    assert record["measure"] == measure and ("directed" in record) == (measure == "lookahead")


def test_lookahead_handles_conditional_tasks_and_missing_labels():
    from mtl_search.data.sequences import make_sequences

    data = make_sequences(rows=300, max_length=6, seed=0)  # an entire-space task, a sequence stem
    assert any(task.given is not None for task in data.tasks)
    affinity = measure_affinity(data, AffinitySettings(measure="lookahead", epochs=1, width=16))
    assert np.isfinite(affinity.matrix).all() and np.allclose(affinity.matrix, affinity.matrix.T)
    assert (np.diag(affinity.directed) > 0).all()  # each task's own step lowers its own loss
    # even the smallest value is stored with its significant digits, not rounded towards 0
    record = affinity.to_data()
    i, j = np.unravel_index(np.argmin(np.abs(affinity.directed)), affinity.directed.shape)
    assert record["directed"][i][j] == pytest.approx(affinity.directed[i, j], rel=1e-3)


def block_affinity() -> TaskAffinity:
    # {a, b} and {c, d} are affine pairs; c-d less so than a-b
    m = np.array([[1, 0.9, 0.5, 0.5], [0.9, 1, 0.5, 0.5], [0.5, 0.5, 1, 0.7], [0.5, 0.5, 0.7, 1]], dtype=float)
    return TaskAffinity(["a", "b", "c", "d"], m)


def test_chain_splits_the_least_coherent_group_first():
    chain = partition_chain(block_affinity())
    assert chain == [
        [["a", "b", "c", "d"]],
        [["a", "b"], ["c", "d"]],
        [["a", "b"], ["c"], ["d"]],  # c-d agree less than a-b, so they part first
        [["a"], ["b"], ["c"], ["d"]],
    ]


def test_trees_run_from_shared_to_separate_and_are_valid():
    chain = partition_chain(block_affinity())
    trees = seed_trees(chain, depth=2)
    assert len(trees) == 1 + 2 * 3
    assert trees[0] == [[["a", "b", "c", "d"]]] * 2
    assert trees[1] == [[["a", "b", "c", "d"]], [["a", "b"], ["c", "d"]]]  # a new split enters at the top
    assert trees[-1] == [[["a"], ["b"], ["c"], ["d"]]] * 2
    for tree in trees:
        validate_tree([8, 8], tree, ["a", "b", "c", "d"])
    capped = seed_trees(chain, depth=2, max_trees=3)
    assert capped[0] == trees[0] and capped[-1] == trees[-1] and len(capped) == 3


def test_uniform_trees_keep_one_partition_at_every_depth():
    chain = partition_chain(block_affinity())
    trees = uniform_trees(chain, depth=3, max_trees=3)
    # fully shared, the affinity's first split, fully separate: each the same at every depth
    assert trees == [[chain[0]] * 3, [chain[1]] * 3, [chain[-1]] * 3]
    assert uniform_trees(chain, depth=1) == [[p] for p in chain]
    two_tasks = [[["a", "b"]], [["a"], ["b"]]]
    assert uniform_trees(two_tasks, depth=2, max_trees=3) == [[two_tasks[0]] * 2, [two_tasks[1]] * 2]
    for tree in trees:
        validate_tree([8, 8, 8], tree, ["a", "b", "c", "d"])


def test_bad_affinity_settings_are_refused():
    with pytest.raises(UserError, match="tree_shape 'bushy'"):
        AffinitySettings(tree_shape="bushy")
    with pytest.raises(UserError, match="max_seeds 1"):
        AffinitySettings(max_seeds=1)
    with pytest.raises(UserError, match="measure 'gradients'"):
        AffinitySettings(measure="gradients")


def test_space_without_partitions_cannot_be_seeded():
    fixed = parse_space({"families": {"tree": {"grouping": "branch_points"}}, "loss_weighting": {"static": {}}})
    with pytest.raises(UserError, match="grouping partitions or affinity"):
        seed_params(fixed, ["a", "b"], [[["a", "b"]]])


def test_seeded_trees_are_the_first_trials_and_build(tiny_synthetic3, storage_url):
    space = parse_space(
        {
            "training": {"epochs": 1, "batch_size": 128},
            "families": {"tree": {"depth": {"low": 1, "high": 2}, "width": {"choices": [8, 16, 32]}}},
            "loss_weighting": {"static": {}},
        }
    )
    settings = SearchSettings("seeded", storage=storage_url, n_trials=1, save_artifacts=False)
    study = run_search(tiny_synthetic3, space, settings)  # creates the study; one ordinary trial
    assert seed_with_affinity(study, tiny_synthetic3, space) == []  # a study with trials is not re-seeded

    # the default: uniform trees (shared, first split, separate); depth and widths sampled
    settings = SearchSettings("fresh", storage=storage_url, n_trials=0, save_artifacts=False, seed_strategy="affinity")
    study = run_search(tiny_synthetic3, space, settings)
    record = study.user_attrs["affinity"]
    assert record["tasks"] == tiny_synthetic3.task_names and len(record["matrix"]) == 3
    chain = record["chain"]
    assert record["seeded"] == len(chain) == 3  # 3 tasks: shared, one split, separate
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert [t.number for t in waiting] == [0, 1, 2]

    study = run_search(
        tiny_synthetic3, space, SearchSettings("fresh", storage=storage_url, n_trials=3, save_artifacts=False)
    )
    for trial, partition in zip(sorted(study.trials, key=lambda t: t.number), chain):
        assert trial.state == optuna.trial.TrialState.COMPLETE
        architecture = trial.user_attrs["candidate"]["architecture"]
        assert architecture["groups"] == [partition] * len(architecture["groups"])  # whatever depth was sampled
        build_model(architecture, tiny_synthetic3.input_schema, tiny_synthetic3.tasks)


def test_grown_trees_fix_the_largest_depth_and_the_middle_width(tiny_synthetic3, storage_url):
    space = parse_space(
        {
            "training": {"epochs": 1, "batch_size": 128},
            "families": {"tree": {"depth": {"low": 1, "high": 2}, "width": {"choices": [8, 16, 32]}}},
            "loss_weighting": {"static": {}},
        }
    )
    study = run_search(
        tiny_synthetic3, space, SearchSettings("grown", storage=storage_url, n_trials=0, save_artifacts=False)
    )
    seeds = seed_with_affinity(study, tiny_synthetic3, space, AffinitySettings(tree_shape="grown"))
    expected = seed_trees(study.user_attrs["affinity"]["chain"], depth=2)
    assert len(seeds) == len(expected) == 5
    study = run_search(
        tiny_synthetic3,
        space,
        SearchSettings("grown", storage=storage_url, n_trials=len(expected), save_artifacts=False),
    )
    for trial, groups in zip(sorted(study.trials, key=lambda t: t.number), expected):
        architecture = trial.user_attrs["candidate"]["architecture"]
        assert architecture["groups"] == groups and architecture["widths"] == [16, 16]
        build_model(architecture, tiny_synthetic3.input_schema, tiny_synthetic3.tasks)


def affinity_grouping_space(chain=None):
    tree = {"depth": {"low": 1, "high": 2}, "width": {"choices": [8, 16]}, "grouping": "affinity"}
    return parse_space(
        {
            "training": {"epochs": 1, "batch_size": 128},
            "families": {"tree": tree | ({"chain": chain} if chain else {})},
            "loss_weighting": {"static": {}},
        }
    )


def walks_along(groups, chain):
    """True when each depth's partition is on the chain, never earlier than the depth above's."""
    positions = [chain.index(partition) for partition in groups]
    return positions == sorted(positions)


def test_affinity_grouping_searches_only_trees_cut_from_the_measured_chain(tiny_synthetic3, storage_url):
    space = affinity_grouping_space()
    settings = SearchSettings("chain", storage=storage_url, n_trials=6, save_artifacts=False, seed_strategy="affinity")
    study = run_search(tiny_synthetic3, space, settings)
    record = study.user_attrs["affinity"]
    chain = record["chain"]
    assert record["seeded"] == 3 and len(chain) == 3
    trials = sorted(study.trials, key=lambda t: t.number)
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    # the seeds come first: shared, the first split, separate, each at every sampled depth
    for trial, position in zip(trials, [0, 1, 2]):
        groups = trial.user_attrs["candidate"]["architecture"]["groups"]
        assert groups == [chain[position]] * len(groups)
    for trial in trials:
        assert walks_along(trial.user_attrs["candidate"]["architecture"]["groups"], chain)

    # a continued study keeps its chain: nothing is measured again, even with another measure asked for
    more = SearchSettings("chain", storage=storage_url, n_trials=2, save_artifacts=False, affinity_measure="lookahead")
    study = run_search(tiny_synthetic3, space, more)
    assert study.user_attrs["affinity"] == record
    assert all(walks_along(t.user_attrs["candidate"]["architecture"]["groups"], chain) for t in study.trials[6:])


def test_affinity_grouping_measures_the_chain_without_seeding(tiny_synthetic3, storage_url):
    study = run_search(
        tiny_synthetic3,
        affinity_grouping_space(),
        SearchSettings("unseeded", storage=storage_url, n_trials=2, save_artifacts=False),
    )
    record = study.user_attrs["affinity"]
    assert "seeded" not in record and len(record["chain"]) == 3
    assert all(walks_along(t.user_attrs["candidate"]["architecture"]["groups"], record["chain"]) for t in study.trials)


def test_a_chain_given_in_the_space_is_checked_and_used_as_is(tiny_synthetic3, storage_url):
    names = tiny_synthetic3.task_names
    chain = [[list(names)], [[names[0]], names[1:]]]
    settings = SearchSettings("given", storage=storage_url, n_trials=3, save_artifacts=False, seed_strategy="affinity")
    study = run_search(tiny_synthetic3, affinity_grouping_space(chain), settings)
    assert "affinity" not in study.user_attrs  # nothing measured, also when seeding: the seeds are its positions
    trials = sorted(study.trials, key=lambda t: t.number)
    assert [t.params["tree.split_0"] for t in trials[:2]] == [0, 1]
    assert all(walks_along(t.user_attrs["candidate"]["architecture"]["groups"], chain) for t in study.trials)
    other = [[list(names)], [names[:2], [names[2]]]]
    with pytest.raises(UserError, match="searched along another families.tree.chain"):
        run_search(
            tiny_synthetic3,
            affinity_grouping_space(other),
            SearchSettings("given", storage=storage_url, n_trials=1, save_artifacts=False),
        )

    crossing = [[list(names)], [[names[0], names[1]], [names[2]]], [[names[0], names[2]], [names[1]]]]
    # named like every other space error: the file, then the key
    with pytest.raises(
        UserError,
        match=r"^space file space: key families.tree.chain: entry 2 .* does not lie inside one group of entry 1",
    ):
        run_search(
            tiny_synthetic3,
            affinity_grouping_space(crossing),
            SearchSettings("crossing", storage=storage_url, n_trials=1, save_artifacts=False),
        )
    with pytest.raises(UserError, match=r"families.tree.chain: entry 0 .* must cover each task"):
        run_search(
            tiny_synthetic3,
            affinity_grouping_space([[["nope"]]]),
            SearchSettings("unknown", storage=storage_url, n_trials=1, save_artifacts=False),
        )
    assert {s.study_name for s in optuna.get_all_study_summaries(storage_url)} == {
        "given"
    }  # refused before a study was stored


def test_a_chain_needs_the_affinity_grouping():
    with pytest.raises(UserError, match="key families.tree: chain is only used with grouping: affinity"):
        parse_space({"families": {"tree": {"chain": [[["a", "b"]]]}}, "loss_weighting": {"static": {}}})
