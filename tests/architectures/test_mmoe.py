import pytest
import torch

from mtl_search.architectures import get_family, summarize
from mtl_search.errors import UserError
from tests.architectures.family_checks import (
    IMAGE,
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

SPEC = with_common({"family": "mmoe", "experts": 3, "expert_widths": [8], "bottom_widths": [6]})


def test_builds_from_spec_and_summarises():
    model = build(SPEC)
    assert len(model.body.experts) == 3
    assert summarize(SPEC, ["task1", "task2"]) == "mmoe 3x8 experts, softmax gate per task, bottom 6 tower=4"


@pytest.mark.parametrize("n_tasks", [2, 3, 5])
def test_forward_shapes(n_tasks):
    assert_forward_shapes(SPEC, n_tasks)


@pytest.mark.parametrize("n_tasks", [2, 3])
def test_parameter_count_matches_hand_formula(n_tasks):
    # bottom 10->6; 3 experts 6->8; one gate 6->3 per task; towers 8->4->1
    expected = linear(10, 6) + 3 * linear(6, 8) + n_tasks * linear(6, 3) + towers(n_tasks, 8, [4])
    assert n_params(build(SPEC, n_tasks)) == expected


def test_gradients_reach_every_parameter():
    model = build(SPEC, 3)
    assert_gradients_reach_every_parameter(model, inputs_for({"kind": "vector", "size": 10}))


def test_shared_parameters_are_bottom_and_experts_not_gates():
    model = build(SPEC, 3)
    assert_shared_parameters_are_those_several_tasks_reach(model, inputs_for({"kind": "vector", "size": 10}))
    gate_ids = {id(p) for p in model.body.gates.parameters()}
    assert not gate_ids & {id(p) for p in model.shared_parameters()}


def test_spec_json_round_trip():
    assert_spec_round_trips(SPEC)


def test_gate_weights_are_a_distribution_per_example():
    model = build(SPEC, 2)
    h = model.body.bottom(inputs_for({"kind": "vector", "size": 10})["x"])
    weights = model.body.gates["task1"](h)
    assert weights.shape == (16, 3)
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(16))


def test_sharing_report_averages_gates_over_evaluation_rows_only():
    model = build(SPEC, 2)
    inputs = inputs_for({"kind": "vector", "size": 10}, rows=10)
    model.train()
    model(inputs)
    assert model.sharing_report() == {"gates": {}}  # training passes are not counted
    model.eval()
    model({"x": inputs["x"][:4]})
    model({"x": inputs["x"][4:]})
    expected = model.body.gates["task2"](model.body.bottom(inputs["x"])).mean(dim=0)
    report = model.sharing_report()["gates"]
    assert list(report["task2"]) == ["e0", "e1", "e2"]
    assert list(report["task2"].values()) == pytest.approx(expected.tolist(), abs=1e-3)
    model.train()
    model(inputs)
    model.eval()
    model({"x": inputs["x"][:1]})  # a new evaluation after training starts a new mean
    single = model.body.gates["task1"](model.body.bottom(inputs["x"][:1]))[0]
    assert list(model.sharing_report()["gates"]["task1"].values()) == pytest.approx(single.tolist(), abs=1e-3)


def test_training_lowers_loss_and_reports_gates(tiny_synthetic):
    sharing = assert_training_lowers_loss(
        tiny_synthetic,
        with_common(
            {"family": "mmoe", "experts": 4, "expert_widths": [16], "bottom_widths": []}, block={"activation": "relu"}
        ),
    )
    assert set(sharing["gates"]) == {"task1", "task2"}
    assert sum(sharing["gates"]["task1"].values()) == pytest.approx(1.0, abs=0.01)


def test_runs_on_images_with_conv_blocks():
    spec = with_common(
        {"family": "mmoe", "experts": 2, "expert_widths": [4, 4], "bottom_widths": [3]},
        block={"type": "conv", "activation": "relu"},
    )
    model = build(spec, 3, IMAGE)
    outputs = model(inputs_for(IMAGE, rows=5))
    assert {tuple(o.shape) for o in outputs.values()} == {(5, 1)}
    assert model.body.out_shapes["task1"] == (4, 6, 6)


def test_sampling_respects_the_space():
    import optuna

    family = get_family("mmoe")
    section = family.space_model().model_validate(
        {"experts": {"low": 2, "high": 4}, "expert_depth": 2, "expert_width": {"choices": [8]}, "bottom_depth": 0}
    )
    spec = family.sample(optuna.trial.FixedTrial({"mmoe.experts": 3}), section, ["a", "b"])
    assert spec == {"experts": 3, "expert_widths": [8, 8], "bottom_widths": []}


@pytest.mark.parametrize(
    "bad, key",
    [({"experts": 0}, "experts"), ({"expert_widths": []}, "expert_widths"), ({"bottom_widths": [0]}, "bottom_widths")],
)
def test_bad_spec_is_a_user_error_naming_the_key(bad, key):
    with pytest.raises(UserError, match=f"mmoe spec: {key}"):
        build(dict(SPEC, **bad))
