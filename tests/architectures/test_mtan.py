import math

import optuna
import pytest
import torch

from mtl_search.architectures import BlockFactory, get_family, summarize
from mtl_search.errors import UserError
from mtl_search.values import IntChoice, IntRange
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

SPEC = with_common({"family": "mtan", "widths": [8, 6], "attention_width": 3})


def test_builds_from_spec_and_summarises():
    model = build(SPEC)
    assert len(model.body.trunk) == 2 and len(model.body.bridges) == 1
    assert summarize(SPEC, ["task1", "task2"]) == "mtan trunk 8-6, attention 3 per task and stage tower=4"


@pytest.mark.parametrize("n_tasks", [2, 3, 5])
def test_forward_shapes(n_tasks):
    assert_forward_shapes(SPEC, n_tasks)


@pytest.mark.parametrize("n_tasks", [2, 3])
def test_parameter_count_matches_hand_formula(n_tasks):
    # trunk 10->8->6; bridge 8->6; per task: stage 0 attention 8->3->8, stage 1 attention (6+6)->3->6; towers 6->4->1
    attention = linear(8, 3) + linear(3, 8) + linear(12, 3) + linear(3, 6)
    expected = linear(10, 8) + linear(8, 6) + linear(8, 6) + n_tasks * attention + towers(n_tasks, 6, [4])
    assert n_params(build(SPEC, n_tasks)) == expected


def test_gradients_reach_every_parameter():
    assert_gradients_reach_every_parameter(build(SPEC, 3), inputs_for(VECTOR))


def test_shared_parameters_are_trunk_and_bridges_not_attention():
    model = build(SPEC, 3)
    assert_shared_parameters_are_those_several_tasks_reach(model, inputs_for(VECTOR))
    attention = {id(p) for p in model.body.attention.parameters()}
    assert not attention & {id(p) for p in model.shared_parameters()}


def test_spec_json_round_trip():
    assert_spec_round_trips(SPEC)


def _set_linear(layer: torch.nn.Module, weight: torch.Tensor, bias: torch.Tensor) -> None:
    with torch.no_grad():
        layer.weight.copy_(weight.reshape(layer.weight.shape))
        layer.bias.copy_(bias)


def test_known_masks_select_the_trunk_features_each_task_uses():
    # identity trunk; each attention module's last layer has zero weights, so its mask is sigmoid(bias)
    model = build(
        with_common({"family": "mtan", "widths": [3, 3], "attention_width": 2}), 2, {"kind": "vector", "size": 3}
    )
    body = model.body
    for block in body.trunk:
        _set_linear(block[0], torch.eye(3), torch.zeros(3))
    ln3 = math.log(3.0)
    biases = {  # sigmoid: 30 -> ~1, -30 -> ~0, ln 3 -> 0.75, 0 -> 0.5
        "task1": [torch.tensor([30.0, -30.0, 30.0]), torch.tensor([ln3, 0.0, -30.0])],
        "task2": [torch.tensor([-30.0, 30.0, 0.0]), torch.tensor([30.0, 30.0, -ln3])],
    }
    for task, per_stage in biases.items():
        for stage, bias in enumerate(per_stage):
            last = body.attention[task][stage].net[-1]
            _set_linear(last, torch.zeros_like(last.weight), bias)
    x = torch.tensor([[0.5, -1.0, 2.0], [1.0, 0.25, -0.5]])
    h2 = torch.tanh(torch.tanh(x))  # the shared trunk: two identity layers with tanh
    got = body(x)
    # a task's output is its last stage's mask times the shared features (earlier masks reach it only
    # through the bridge into the next mask, cut here by the zero weights)
    torch.testing.assert_close(got["task1"], h2 * torch.tensor([0.75, 0.5, 0.0]))
    torch.testing.assert_close(got["task2"], h2 * torch.tensor([1.0, 1.0, 0.25]))


def test_forward_matches_a_hand_computation_of_the_masks():
    # default (random) weights: recompute trunk, bridge and masks from the parameters by hand
    model = build(with_common({"family": "mtan", "widths": [4, 3], "attention_width": 2}), 2)
    body = model.body
    x = inputs_for({"kind": "vector", "size": 10}, rows=5)["x"]

    def dense(layer: torch.nn.Module, h: torch.Tensor) -> torch.Tensor:
        return h @ layer.weight.T + layer.bias

    def mask(module: torch.nn.Module, h: torch.Tensor) -> torch.Tensor:
        return 1 / (1 + torch.exp(-dense(module.net[2], torch.tanh(dense(module.net[0], h)))))

    h1 = torch.tanh(dense(body.trunk[0][0], x))
    h2 = torch.tanh(dense(body.trunk[1][0], h1))
    got = body(x)
    for task in ("task1", "task2"):
        a1 = mask(body.attention[task][0], h1) * h1
        bridged = torch.tanh(dense(body.bridges[0][0], a1))
        a2 = mask(body.attention[task][1], torch.cat([h2, bridged], dim=1)) * h2
        torch.testing.assert_close(got[task], a2)


def test_on_images_the_mask_is_per_channel_and_pixel():
    spec = with_common({"family": "mtan", "widths": [4, 5], "attention_width": 3}, block={"type": "conv"})
    assert_forward_shapes(spec, 3, IMAGE)
    model = build(spec, 2, IMAGE)
    body = model.body
    assert body.out_shapes["task1"] == (5, 6, 6)  # 12 -> 6 pixels: pooling only while the map is >= 8 wide
    image = inputs_for(IMAGE, rows=2)["image"]
    h1 = body.trunk[0](image)
    mask = body.attention["task1"][0](h1)
    assert mask.shape == h1.shape == (2, 4, 6, 6)
    assert bool(((mask > 0) & (mask < 1)).all())
    # a mask of sigmoid(bias) on every pixel: the task's output is the trunk's output times it
    for stage in range(2):
        last = body.attention["task2"][stage].net[-1]
        _set_linear(last, torch.zeros_like(last.weight), torch.full((last.out_channels,), math.log(3.0)))
    h2 = body.trunk[1](h1)
    torch.testing.assert_close(body(image)["task2"], 0.75 * h2)


def test_sharing_report_holds_the_mean_masks_of_evaluation_passes():
    model = build(SPEC, 2)
    inputs = inputs_for(VECTOR, rows=10)
    model(inputs)
    assert model.sharing_report() == {"masks": {}}  # training passes are not counted
    model.eval()
    model(inputs)
    report = model.sharing_report()
    body = model.body
    h1 = body.trunk[0](inputs["x"])
    stage0 = body.attention["task2"][0](h1).mean()
    assert report["masks"]["task2"]["stage 1"] == pytest.approx(stage0.item(), abs=2e-3)
    assert set(report["masks"]["task1"]) == {"stage 1", "stage 2"}
    correlation = report["mask_correlation"]
    assert len(correlation) == 2 and all(len(row) == 2 for row in correlation[0])
    assert correlation[0][0][0] == pytest.approx(1.0)
    assert correlation[0][0][1] == correlation[0][1][0]


def test_training_lowers_loss_and_reports_masks(tiny_synthetic):
    sharing = assert_training_lowers_loss(
        tiny_synthetic,
        with_common({"family": "mtan", "widths": [16, 16], "attention_width": 8}, block={"activation": "relu"}),
    )
    assert set(sharing["masks"]) == {"task1", "task2"}
    assert all(0 < value < 1 for masks in sharing["masks"].values() for value in masks.values())


def test_an_empty_section_searches_the_documented_default_ranges():
    section = get_family("mtan").space_model().model_validate({})
    assert section.depth == IntRange(low=1, high=3)
    assert section.width == IntChoice(choices=[32, 64, 128])
    assert section.attention_width == IntChoice(choices=[8, 16, 32])
    trial = optuna.trial.FixedTrial({"mtan.depth": 2, "mtan.width": 64, "mtan.attention_width": 16})
    assert get_family("mtan").sample(trial, section, ["a", "b"]) == {"widths": [64, 64], "attention_width": 16}


@pytest.mark.parametrize(
    "bad, key",
    [({"widths": []}, "widths"), ({"widths": [4, 0]}, "widths"), ({"attention_width": 0}, "attention_width")],
)
def test_bad_spec_is_a_user_error_naming_the_key(bad, key):
    with pytest.raises(UserError, match=f"mtan spec: {key}"):
        build(dict(SPEC, **bad))


def test_a_block_type_it_does_not_support_is_refused_in_one_line():
    blocks = BlockFactory()
    blocks.kind = "graph"  # no such block type exists yet: a future one must be refused, not misbuilt
    with pytest.raises(
        UserError, match=r"^mtan spec: block.type 'graph' is not supported \(mtan supports mlp, conv\)$"
    ):
        get_family("mtan").build(SPEC, (10,), ["task1", "task2"], blocks)
