"""The tree family as a family; tests/search/test_tree_sampling.py checks that sampling reaches every tree."""

import pytest

from mtl_search.architectures import summarize
from mtl_search.errors import UserError
from tests.architectures.family_checks import (
    IMAGE,
    VECTOR,
    assert_forward_shapes,
    assert_gradients_reach_every_parameter,
    assert_shared_parameters_are_those_several_tasks_reach,
    assert_spec_round_trips,
    assert_training_lowers_loss,
    build,
    inputs_for,
    linear,
    n_params,
    towers,
    with_common,
)

# depth 0: all together; depth 1: task3 leaves; depth 2: everyone alone
SPEC = with_common(
    {
        "family": "tree",
        "widths": [8, 6, 4],
        "groups": [[["task1", "task2", "task3"]], [["task1", "task2"], ["task3"]], [["task1"], ["task2"], ["task3"]]],
    }
)


def test_builds_from_spec_and_summarises():
    model = build(SPEC, 3)
    assert [len(level) for level in model.body.blocks] == [1, 2, 3]
    assert (
        summarize(SPEC, ["task1", "task2", "task3"])
        == "tree 0:{task1,task2,task3} 1:{task1,task2}{task3} 2:{task1}{task2}{task3} w=8/6/4 tower=4"
    )


@pytest.mark.parametrize("n_tasks", [2, 3, 5])
def test_forward_shapes(n_tasks):
    tasks = [f"task{i + 1}" for i in range(n_tasks)]
    spec = with_common({"family": "tree", "widths": [8, 8], "groups": [[tasks], [tasks[:1], tasks[1:]]]})
    assert_forward_shapes(spec, n_tasks)


def test_parameter_count_matches_hand_formula():
    blocks = linear(10, 8) + 2 * linear(8, 6) + 3 * linear(6, 4)
    assert n_params(build(SPEC, 3)) == blocks + towers(3, 4, [4])


def test_gradients_reach_every_parameter():
    assert_gradients_reach_every_parameter(build(SPEC, 3), inputs_for(VECTOR))


def test_shared_parameters_are_blocks_of_groups_with_several_tasks():
    model = build(SPEC, 3)
    assert_shared_parameters_are_those_several_tasks_reach(model, inputs_for(VECTOR))
    assert len(model.body.shared_parameters()) == 4  # weight and bias of two blocks


def test_spec_json_round_trip():
    spec = with_common({"family": "tree", "widths": [8], "groups": [[["task1", "task2"]]]})
    assert_spec_round_trips(spec)


def test_training_lowers_loss(tiny_synthetic):
    spec = with_common(
        {"family": "tree", "widths": [16, 16], "groups": [[["task1", "task2"]], [["task1"], ["task2"]]]},
        block={"activation": "relu"},
    )
    sharing = assert_training_lowers_loss(tiny_synthetic, spec)
    assert sharing == {"tree": "0:{task1,task2} 1:{task1}{task2}"}


def test_runs_on_images_with_conv_blocks():
    model = build(dict(SPEC, block={"type": "conv"}), 3, IMAGE)
    outputs = model(inputs_for(IMAGE, rows=5))
    assert {tuple(o.shape) for o in outputs.values()} == {(5, 1)}


def test_groups_that_merge_again_are_a_user_error():
    spec = dict(SPEC, widths=[4, 4], groups=[[["task1"], ["task2", "task3"]], [["task1", "task2"], ["task3"]]])
    with pytest.raises(UserError, match="does not lie inside one group"):
        build(spec, 3)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"widths": None}, "tree spec: widths is missing (required: widths, groups)"),
        ({"groups": None}, "tree spec: groups is missing (required: widths, groups)"),
        ({"widths": 16}, "tree spec: widths must be a list of positive whole numbers, got 16"),
        ({"widths": [True, 6, 4]}, "tree spec: widths must be a list of positive whole numbers, got [True, 6, 4]"),
        ({"widths": [8.0, 6, 4]}, "tree spec: widths must be a list of positive whole numbers, got [8.0, 6, 4]"),
        ({"widths": ["8", 6, 4]}, "tree spec: widths must be a list of positive whole numbers, got ['8', 6, 4]"),
    ],
)
def test_a_bad_or_missing_widths_or_groups_key_is_a_one_line_user_error(change, message):
    spec = {key: value for key, value in dict(SPEC, **change).items() if value is not None}
    with pytest.raises(UserError) as error:
        build(spec, 3)
    assert str(error.value) == message


@pytest.mark.parametrize(
    "groups",
    [
        "task1,task2,task3",  # a string, not partitions: once read as 17 one-letter partitions
        [["task1", "task2", "task3"]] * 3,  # partitions of names, not of groups
        [[["task1", "task2", 3]]] * 3,  # a group holds something else than task names
    ],
)
def test_groups_that_are_not_partitions_of_task_names_are_refused_as_such(groups):
    with pytest.raises(
        UserError, match=r"^tree spec: groups must be a list of partitions, one per depth, .*, got "
    ) as error:
        build(dict(SPEC, groups=groups), 3)
    assert repr(groups) in str(error.value)
