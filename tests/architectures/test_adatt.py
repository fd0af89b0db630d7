import math

import optuna
import pytest
import torch

from mtl_search.architectures import get_family, summarize
from mtl_search.architectures.blocks import BlockFactory
from mtl_search.errors import UserError
from mtl_search.visualization.architecture import sharing_figures
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

SPEC = with_common({"family": "adatt", "levels": 2, "task_experts": 2, "shared_experts": 1, "expert_widths": [8]})


def test_builds_from_spec_and_summarises():
    model = build(SPEC)
    assert [len(experts) for experts in model.body.task_experts[0].values()] == [2, 2]
    assert summarize(SPEC, ["task1", "task2"]) == "adatt 2 levels t2 s1 experts 8, task-to-task fusion tower=4"


@pytest.mark.parametrize("n_tasks", [2, 3, 5])
def test_forward_shapes(n_tasks):
    assert_forward_shapes(SPEC, n_tasks)


@pytest.mark.parametrize("n_tasks", [2, 3])
def test_parameter_count_matches_hand_formula(n_tasks):
    experts = 2 * n_tasks + 1
    # level 0: experts 10->8, a gate 10->experts per task and one shared gate, 2 residual weights per task;
    # level 1 (top): experts 8->8, task gates 8->experts, residual weights, no shared gate
    level0 = experts * linear(10, 8) + (n_tasks + 1) * linear(10, experts) + 2 * n_tasks
    level1 = experts * linear(8, 8) + n_tasks * linear(8, experts) + 2 * n_tasks
    assert n_params(build(SPEC, n_tasks)) == level0 + level1 + towers(n_tasks, 8, [4])


def hand_set_body(levels):
    """One expert per task and one shared, each a ReLU unit. Level 0's experts output 1 (a),
    2 (b) and 4 (shared) whatever the input; level 1's pass their input on (weight 1, no bias);
    gates' logits are their biases (zero weights)."""
    family = get_family("adatt")
    spec = {"levels": levels, "task_experts": 1, "shared_experts": 1, "expert_widths": [1]}
    body = family.build(spec, (2,), ["a", "b"], BlockFactory(activation="relu"))
    with torch.no_grad():
        for module in body.parameters():
            module.zero_()
        for expert, value in zip([*body.task_experts[0].values(), body.shared_experts[0]], (1.0, 2.0, 4.0)):
            expert[0][0][0].bias.fill_(value)
        # level 0: a's gate softmax(0, 0, ln 2) = (1/4, 1/4, 1/2), residual 0.5;
        # b's gate softmax(ln 3, 0, 0) = (3/5, 1/5, 1/5), residual 2
        body.task_gates[0]["a"].linear.bias.copy_(torch.tensor([0.0, 0.0, math.log(2.0)]))
        body.task_gates[0]["b"].linear.bias.copy_(torch.tensor([math.log(3.0), 0.0, 0.0]))
        body.residual_weights[0]["a"].fill_(0.5)
        body.residual_weights[0]["b"].fill_(2.0)
        if levels > 1:
            for expert in [*body.task_experts[1].values(), body.shared_experts[1]]:
                expert[0][0][0].weight.fill_(1.0)
            # level 1: a's gate uniform, residual 1; b's gate (1/4, 1/4, 1/2), residual 0; shared gate uniform
            body.residual_weights[1]["a"].fill_(1.0)
            body.task_gates[1]["b"].linear.bias.copy_(torch.tensor([0.0, 0.0, math.log(2.0)]))
    return body.eval()


def test_one_level_on_a_hand_set_case():
    out = hand_set_body(levels=1)(torch.randn(3, 2))
    # a: 1/4 * 1 + 1/4 * 2 + 1/2 * 4 + 0.5 * 1 = 3.25; b: 3/5 * 1 + 1/5 * 2 + 1/5 * 4 + 2 * 2 = 5.8
    torch.testing.assert_close(out["a"], torch.full((3, 1), 3.25))
    torch.testing.assert_close(out["b"], torch.full((3, 1), 5.8))


def test_two_levels_on_a_hand_set_case():
    body = hand_set_body(levels=2)
    assert len(body.shared_gates) == 1  # below the top level only
    out = body(torch.randn(3, 2))
    # level 1 reads a = 3.25, b = 5.8 and shared = (1 + 2 + 4) / 3 from level 0 and passes them on
    shared = 7.0 / 3.0
    a = (3.25 + 5.8 + shared) / 3 + 1.0 * 3.25
    b = 0.25 * 3.25 + 0.25 * 5.8 + 0.5 * shared + 0.0 * 5.8
    torch.testing.assert_close(out["a"], torch.full((3, 1), a))
    torch.testing.assert_close(out["b"], torch.full((3, 1), b))
    gates = body.sharing_report()["gates"]
    assert gates["L1.b"] == {"a.0": 0.25, "b.0": 0.25, "shared0": 0.5}
    assert set(gates) == {"L0.a", "L0.b", "L0.shared", "L1.a", "L1.b"}
    assert body.sharing_report()["residual"]["L0.b"] == [2.0]


def test_gradients_reach_every_parameter():
    model = build(SPEC, 3)
    assert_gradients_reach_every_parameter(model, inputs_for({"kind": "vector", "size": 10}))


@pytest.mark.parametrize("shared_experts", [0, 1])
@pytest.mark.parametrize("levels", [1, 2, 3])
def test_shared_parameters_are_those_several_tasks_reach(levels, shared_experts):
    spec = dict(SPEC, levels=levels, shared_experts=shared_experts)
    model = build(spec, 3)
    assert_shared_parameters_are_those_several_tasks_reach(model, inputs_for({"kind": "vector", "size": 10}))
    top_gates = {id(p) for p in model.body.task_gates[-1].parameters()}
    assert not top_gates & {id(p) for p in model.shared_parameters()}


def test_spec_json_round_trip():
    assert_spec_round_trips(SPEC)


def test_training_lowers_loss_and_reports_gates_the_report_draws(tiny_synthetic):
    spec = with_common(
        {"family": "adatt", "levels": 1, "task_experts": 1, "shared_experts": 1, "expert_widths": [16]},
        block={"activation": "relu"},
    )
    sharing = assert_training_lowers_loss(tiny_synthetic, spec)
    assert set(sharing["gates"]) == {"L0.task1", "L0.task2"}
    assert sum(sharing["gates"]["L0.task1"].values()) == pytest.approx(1.0, abs=0.01)
    titles = {figure.layout.title.text: figure.data[0] for figure in sharing_figures(sharing, ["task1", "task2"])}
    assert list(titles["gates"].y) == ["L0.task1", "L0.task2"]
    assert list(titles["gates"].x) == ["task1.0", "task2.0", "shared0"]
    assert list(titles["residual"].y) == ["L0.task1", "L0.task2"]


def test_runs_on_images_with_conv_blocks():
    spec = with_common(
        {"family": "adatt", "levels": 2, "task_experts": 1, "shared_experts": 1, "expert_widths": [4]},
        block={"type": "conv", "activation": "relu"},
    )
    model = build(spec, 3, IMAGE)
    outputs = model(inputs_for(IMAGE, rows=5))
    assert {tuple(o.shape) for o in outputs.values()} == {(5, 1)}
    assert model.body.out_shapes["task1"] == (4, 6, 6)  # pooled once: 12 -> 6, then below 8 pixels


def test_an_empty_section_searches_the_documented_default_ranges():
    family = get_family("adatt")
    section = family.space_model().model_validate({})
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    spec = family.sample(trial, section, ["a", "b"])
    assert len(spec["expert_widths"]) == 1
    assert trial.distributions == {  # the ranges docs/reference/space-file.md lists
        "adatt.levels": optuna.distributions.IntDistribution(1, 2),
        "adatt.task_experts": optuna.distributions.IntDistribution(1, 2),
        "adatt.shared_experts": optuna.distributions.IntDistribution(0, 2),
        "adatt.expert_width": optuna.distributions.CategoricalDistribution([16, 32, 64]),
    }


@pytest.mark.parametrize(
    "bad, key",
    [
        ({"levels": 0}, "levels"),
        ({"task_experts": 0}, "task_experts"),
        ({"shared_experts": -1}, "shared_experts"),
        ({"expert_widths": [0]}, "expert_widths"),
    ],
)
def test_bad_spec_is_a_user_error_naming_the_key(bad, key):
    with pytest.raises(UserError, match=f"adatt spec: {key} "):
        build(dict(SPEC, **bad))
