"""The tree family as a family; tests/search/test_tree_sampling.py checks that sampling reaches every tree."""

import pytest

from mtl_search.architectures import summarize
from mtl_search.errors import UserError
from tests.architectures.family_checks import (
    IMAGE, VECTOR, assert_forward_shapes, assert_gradients_reach_every_parameter,
    assert_shared_parameters_are_those_several_tasks_reach, assert_spec_round_trips, assert_training_lowers_loss,
    build, inputs_for, linear, n_params, towers, with_common,
)

# depth 0: all together; depth 1: task3 leaves; depth 2: everyone alone
SPEC = with_common({"family": "tree", "widths": [8, 6, 4], "groups": [
    [["task1", "task2", "task3"]], [["task1", "task2"], ["task3"]], [["task1"], ["task2"], ["task3"]]]})


def test_builds_from_spec_and_summarises():
    model = build(SPEC, 3)
    assert [len(level) for level in model.body.blocks] == [1, 2, 3]
    assert summarize(SPEC, ["task1", "task2", "task3"]) == "tree 0:{task1,task2,task3} 1:{task1,task2}{task3} 2:{task1}{task2}{task3} w=8/6/4 tower=4"


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
    spec = with_common({"family": "tree", "widths": [16, 16], "groups": [[["task1", "task2"]], [["task1"], ["task2"]]]}, block={"activation": "relu"})
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
