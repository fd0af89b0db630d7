import math

import optuna
import pytest
import torch

from mtl_search.architectures import get_family, summarize
from mtl_search.architectures.blocks import BlockFactory
from mtl_search.architectures.dselect import DSelectGate, smooth_step
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

SPEC = with_common(
    {"family": "dselect_k", "experts": 5, "k": 2, "expert_widths": [8], "gamma": 1.0, "entropy_weight": 0.1}
)


def test_builds_from_spec_and_summarises():
    model = build(SPEC)
    assert len(model.body.experts) == 5
    assert summarize(SPEC, ["task1", "task2"]) == (
        "dselect_k 5x8 experts, DSelect-2 gate per task gamma=1 entropy=0.1 tower=4"
    )


@pytest.mark.parametrize("n_tasks", [2, 3, 5])
def test_forward_shapes(n_tasks):
    assert_forward_shapes(SPEC, n_tasks)


@pytest.mark.parametrize("n_tasks", [2, 3])
def test_parameter_count_matches_hand_formula(n_tasks):
    # 5 experts 10->8; per task a gate 10 -> k * ceil(log2 5) + k = 2 * 3 + 2 logits; towers 8->4->1
    expected = 5 * linear(10, 8) + n_tasks * linear(10, 8) + towers(n_tasks, 8, [4])
    assert n_params(build(SPEC, n_tasks)) == expected


def test_smooth_step_is_zero_and_one_outside_and_the_cubic_inside():
    gamma = 2.0
    t = torch.tensor([-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0])
    # inside: -2 t^3 / 8 + 3 t / 4 + 1/2; at t = 0.5 that is -1/32 + 3/8 + 1/2
    expected = torch.tensor([0.0, 0.0, 0.15625, 0.5, 0.84375, 1.0, 1.0])
    torch.testing.assert_close(smooth_step(t, gamma), expected)


def hand_set_body(entropy_weight=0.0):
    """4 experts of one ReLU unit whose outputs are 1, 2, 3, 4 whatever the input; gates
    whose logits are their biases (zero weights), gamma 2 so that S saturates at |t| >= 1."""
    family = get_family("dselect_k")
    spec = {"experts": 4, "k": 2, "expert_widths": [1], "gamma": 2.0, "entropy_weight": entropy_weight}
    body = family.build(spec, (2,), ["a", "b"], BlockFactory(activation="relu"))
    with torch.no_grad():
        for value, expert in enumerate(body.experts, start=1):
            expert[0][0].weight.zero_()
            expert[0][0].bias.fill_(value)
        for gate in body.gates.values():
            gate.linear.weight.zero_()
        # logits: selector 0's two bits, selector 1's two bits, then the two selector-mixing logits
        # a: selector 0 = bits (1, 0) = code 1 = expert 1; selector 1 = bits (0.5, 1) = codes 2 and 3
        #    half each; mixing softmax(0, ln 3) = (1/4, 3/4)
        body.gates["a"].linear.bias.copy_(torch.tensor([5.0, -5.0, 0.0, 5.0, 0.0, math.log(3.0)]))
        # b: both selectors bit 0 at S(0.5) = 0.84375, bit 1 off: code 0 with 0.15625, code 1 with 0.84375
        body.gates["b"].linear.bias.copy_(torch.tensor([0.5, -3.0, 0.5, -3.0, 0.0, 0.0]))
    return body


def test_forward_on_a_hand_set_case():
    body = hand_set_body()
    body.eval()
    features = torch.randn(3, 2)
    out = body(features)
    # a: weights (0, 1/4, 3/8, 3/8) -> 1/4 * 2 + 3/8 * 3 + 3/8 * 4 = 3.125
    torch.testing.assert_close(body.gates["a"](features), torch.tensor([[0.0, 0.25, 0.375, 0.375]] * 3))
    torch.testing.assert_close(out["a"], torch.full((3, 1), 3.125))
    # b: weights (0.15625, 0.84375, 0, 0) -> 0.15625 + 2 * 0.84375 = 1.84375
    torch.testing.assert_close(out["b"], torch.full((3, 1), 1.84375))
    assert body.sharing_report()["gates"]["a"] == {"e0": 0.0, "e1": 0.25, "e2": 0.375, "e3": 0.375}


def test_entropy_regulariser_on_a_hand_set_case():
    body = hand_set_body(entropy_weight=0.5)
    body.train()
    body(torch.randn(4, 2))
    # a: selector 0 settled (entropy 0), selector 1 two codes of 1/2 (ln 2);
    # b: two selectors, each codes 0.15625 and 0.84375
    h_b = -(0.15625 * math.log(0.15625) + 0.84375 * math.log(0.84375))
    assert body.regularization().item() == pytest.approx(0.5 * (math.log(2.0) + 2 * h_b), rel=1e-5)
    body.eval()
    body(torch.randn(4, 2))
    assert body.regularization() is None  # evaluation passes add no loss


def test_without_a_power_of_two_the_extra_codes_stand_for_the_first_experts():
    gate = DSelectGate((2,), n_experts=3, k=1, gamma=1.0)
    with torch.no_grad():
        gate.linear.weight.zero_()
        gate.linear.bias.copy_(torch.tensor([5.0, 5.0, 0.0]))  # bits (1, 1): code 3, expert 3 mod 3 = 0
    torch.testing.assert_close(gate(torch.randn(2, 2)), torch.tensor([[1.0, 0.0, 0.0]] * 2))
    torch.manual_seed(1)
    random_gate = DSelectGate((2,), n_experts=3, k=3, gamma=1.0)
    torch.testing.assert_close(random_gate(torch.randn(16, 2)).sum(dim=1), torch.ones(16))


def test_gradients_reach_every_parameter():
    model = build(SPEC, 3)
    assert_gradients_reach_every_parameter(model, inputs_for({"kind": "vector", "size": 10}))


def test_shared_parameters_are_the_experts_not_the_gates():
    model = build(SPEC, 3)
    assert_shared_parameters_are_those_several_tasks_reach(model, inputs_for({"kind": "vector", "size": 10}))
    gate_ids = {id(p) for p in model.body.gates.parameters()}
    assert not gate_ids & {id(p) for p in model.shared_parameters()}


def test_spec_json_round_trip():
    assert_spec_round_trips(SPEC)


def test_training_lowers_loss_and_reports_gates_the_report_draws(tiny_synthetic):
    spec = with_common(
        {"family": "dselect_k", "experts": 4, "k": 2, "expert_widths": [16], "gamma": 1.0, "entropy_weight": 0.01},
        block={"activation": "relu"},
    )
    sharing = assert_training_lowers_loss(tiny_synthetic, spec)
    assert set(sharing["gates"]) == {"task1", "task2"}
    assert sum(sharing["gates"]["task1"].values()) == pytest.approx(1.0, abs=0.01)
    (heatmap,) = [figure.data[0] for figure in sharing_figures(sharing, ["task1", "task2"])]
    assert list(heatmap.y) == ["task1", "task2"] and list(heatmap.x) == ["e0", "e1", "e2", "e3"]


def test_runs_on_images_with_conv_blocks():
    spec = with_common(
        {"family": "dselect_k", "experts": 3, "k": 2, "expert_widths": [4, 4], "gamma": 1.0},
        block={"type": "conv", "activation": "relu"},
    )
    model = build(spec, 3, IMAGE)
    outputs = model(inputs_for(IMAGE, rows=5))
    assert {tuple(o.shape) for o in outputs.values()} == {(5, 1)}
    assert model.body.out_shapes["task1"] == (4, 6, 6)


def test_an_empty_section_searches_the_documented_default_ranges():
    family = get_family("dselect_k")
    section = family.space_model().model_validate({})
    trial = optuna.trial.FixedTrial(
        {"dselect_k.experts": 8, "dselect_k.k": 2, "dselect_k.expert_width": 64, "dselect_k.gamma": 4.0}
    )
    spec = family.sample(trial, section, ["a", "b"])
    assert spec == {"experts": 8, "k": 2, "expert_widths": [64], "gamma": 4.0, "entropy_weight": 0.0}
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    family.sample(trial, section, ["a", "b"])
    assert trial.distributions == {  # the ranges docs/reference/space-file.md lists
        "dselect_k.experts": optuna.distributions.IntDistribution(2, 8),
        "dselect_k.k": optuna.distributions.IntDistribution(1, 2),
        "dselect_k.expert_width": optuna.distributions.CategoricalDistribution([16, 32, 64]),
        "dselect_k.gamma": optuna.distributions.FloatDistribution(0.5, 4.0, log=True),
    }


def test_a_space_that_can_draw_one_expert_is_refused_when_it_loads():
    from mtl_search.search.space import parse_space

    with pytest.raises(UserError, match="families.dselect_k.*experts must be at least 2, got 1"):
        parse_space({"families": {"dselect_k": {"experts": {"low": 1, "high": 4}}}})


@pytest.mark.parametrize(
    "bad, key",
    [
        ({"experts": 1}, "experts"),
        ({"k": 0}, "k"),
        ({"expert_widths": []}, "expert_widths"),
        ({"gamma": 0.0}, "gamma"),
        ({"entropy_weight": -1.0}, "entropy_weight"),
    ],
)
def test_bad_spec_is_a_user_error_naming_the_key(bad, key):
    with pytest.raises(UserError, match=f"dselect_k spec: {key} "):
        build(dict(SPEC, **bad))
