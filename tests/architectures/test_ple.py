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

SPEC = with_common({"family": "ple", "levels": 2, "shared_experts": 2, "task_experts": 1, "expert_widths": [8]})


def ple(levels, shared, task, widths=(8,), **common):
    return with_common(
        {
            "family": "ple",
            "levels": levels,
            "shared_experts": shared,
            "task_experts": task,
            "expert_widths": list(widths),
        },
        **common,
    )


def test_builds_from_spec_and_summarises():
    model = build(SPEC, 3)
    assert [len(level) for level in model.body.shared_experts] == [2, 2]
    assert len(model.body.shared_gates) == 1  # below the top level only
    assert summarize(SPEC, ["task1", "task2"]) == "ple 2 levels s2 t1 experts 8 tower=4"
    assert summarize(ple(1, 1, 2), ["task1", "task2"]).startswith("ple CGC s1 t2")


@pytest.mark.parametrize("n_tasks", [2, 3, 5])
def test_forward_shapes(n_tasks):
    assert_forward_shapes(SPEC, n_tasks)


@pytest.mark.parametrize("n_tasks", [2, 3])
def test_parameter_count_matches_hand_formula(n_tasks):
    experts = 2 + n_tasks
    level0 = experts * linear(10, 8) + n_tasks * linear(10, 3) + linear(10, experts)  # + shared gate
    level1 = experts * linear(8, 8) + n_tasks * linear(8, 3)
    assert n_params(build(SPEC, n_tasks)) == level0 + level1 + towers(n_tasks, 8, [4])


def test_gradients_reach_every_parameter():
    assert_gradients_reach_every_parameter(build(ple(3, 1, 1), 3), inputs_for(VECTOR))


@pytest.mark.parametrize("levels, shared, task", [(1, 2, 1), (2, 2, 1), (3, 1, 2), (2, 0, 1), (1, 1, 0)])
def test_shared_parameters_are_those_several_tasks_reach(levels, shared, task):
    assert_shared_parameters_are_those_several_tasks_reach(build(ple(levels, shared, task), 3), inputs_for(VECTOR))


def test_cgc_without_shared_experts_shares_nothing():
    assert build(ple(1, 0, 2), 2).body.shared_parameters() == []


def test_spec_json_round_trip():
    assert_spec_round_trips(SPEC)


def test_training_lowers_loss_and_reports_every_gate(tiny_synthetic):
    sharing = assert_training_lowers_loss(tiny_synthetic, ple(2, 1, 1, widths=(16,), block={"activation": "relu"}))
    gates = sharing["gates"]
    assert set(gates) == {"L0.task1", "L0.task2", "L0.shared", "L1.task1", "L1.task2"}
    assert list(gates["L1.task1"]) == ["task1.0", "shared0"]
    assert list(gates["L0.shared"]) == ["task1.0", "task2.0", "shared0"]


def test_runs_on_images_with_conv_blocks():
    model = build(ple(2, 1, 1, widths=(4,), block={"type": "conv"}), 3, IMAGE)
    outputs = model(inputs_for(IMAGE, rows=5))
    assert {tuple(o.shape) for o in outputs.values()} == {(5, 1)}


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"levels": 0}, "levels"),
        ({"shared_experts": -1}, "shared_experts"),
        ({"shared_experts": 0, "task_experts": 0}, "at least 1"),
        ({"expert_widths": "8"}, "expert_widths"),
    ],
)
def test_bad_spec_is_a_user_error_naming_the_key(bad, message):
    with pytest.raises(UserError, match=f"ple spec: .*{message}"):
        build(dict(SPEC, **bad))
