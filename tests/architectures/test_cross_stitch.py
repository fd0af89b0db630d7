import optuna
import pytest
import torch

from mtl_search.architectures import get_family, summarize
from mtl_search.architectures.cross_stitch import combine_columns, near_identity
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

SPEC = with_common({"family": "cross_stitch", "widths": [8, 8], "units": [0, 1], "alpha_self": 0.8})


def test_builds_from_spec_and_summarises():
    model = build(SPEC, 3)
    assert len(model.body.columns) == 2 and len(model.body.columns[0]) == 3
    assert summarize(SPEC, ["task1", "task2"]) == "cross_stitch units after layers 1,2 of 2 layers w=8 a=0.80 tower=4"
    assert (
        summarize(dict(SPEC, units=[]), ["task1", "task2"])
        == "cross_stitch no units (separate columns), 2 layers w=8 tower=4"
    )


@pytest.mark.parametrize("n_tasks", [2, 3, 5])
def test_forward_shapes(n_tasks):
    assert_forward_shapes(SPEC, n_tasks)


@pytest.mark.parametrize("n_tasks", [2, 3])
def test_parameter_count_matches_hand_formula(n_tasks):
    columns = n_tasks * (linear(10, 8) + linear(8, 8))
    units = 2 * n_tasks * n_tasks
    assert n_params(build(SPEC, n_tasks)) == columns + units + towers(n_tasks, 8, [4])


def test_alpha_starts_near_identity_with_rows_summing_to_one():
    alpha = near_identity(3, 0.8)
    torch.testing.assert_close(alpha, torch.tensor([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]]))
    model = build(SPEC, 3)
    assert model.sharing_report()["alpha"]["after_layer_0"] == [[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]]


def test_unit_mixes_columns_linearly_on_vectors_and_maps():
    alpha = torch.tensor([[0.5, 0.5], [0.0, 1.0]])
    for shape in [(4, 3), (4, 3, 2, 2)]:
        a, b = torch.randn(shape), torch.randn(shape)
        first, second = combine_columns(alpha, [a, b])
        torch.testing.assert_close(first, (a + b) / 2)
        torch.testing.assert_close(second, b)


def test_gradients_reach_every_parameter():
    assert_gradients_reach_every_parameter(build(SPEC, 3), inputs_for(VECTOR))


@pytest.mark.parametrize("units", [[0], [1], [0, 2], []])
def test_shared_parameters_end_at_the_last_unit(units):
    spec = dict(SPEC, widths=[8, 8, 8], units=units)
    assert_shared_parameters_are_those_several_tasks_reach(build(spec, 3), inputs_for(VECTOR))


def test_spec_json_round_trip():
    assert_spec_round_trips(SPEC)


def test_training_lowers_loss_and_reports_learned_alpha(tiny_synthetic):
    sharing = assert_training_lowers_loss(tiny_synthetic, dict(SPEC, widths=[16, 16], block={"activation": "relu"}))
    assert sharing["alpha"]["after_layer_0"] != [[0.8, 0.2], [0.2, 0.8]]  # it learned


def test_runs_on_images_with_conv_blocks():
    model = build(
        with_common(
            {"family": "cross_stitch", "widths": [4, 4], "units": [0], "alpha_self": 0.9}, block={"type": "conv"}
        ),
        3,
        IMAGE,
    )
    outputs = model(inputs_for(IMAGE, rows=5))
    assert {tuple(o.shape) for o in outputs.values()} == {(5, 1)}


def test_sampling_chooses_unit_layers():
    family = get_family("cross_stitch")
    section = family.space_model().model_validate({"depth": 3, "width": 8, "units": "searched"})
    trial = optuna.trial.FixedTrial(
        {"cross_stitch.unit_0": True, "cross_stitch.unit_1": False, "cross_stitch.unit_2": True}
    )
    assert family.sample(trial, section, ["a", "b"]) == {"widths": [8, 8, 8], "units": [0, 2], "alpha_self": 0.9}
    every = family.space_model().model_validate({"depth": 3, "units": "every_layer"})
    assert family.sample(optuna.trial.FixedTrial({}), every, ["a", "b"])["units"] == [0, 1]


def test_alpha_self_is_searched_only_when_some_unit_mixes():
    family = get_family("cross_stitch")
    section = family.space_model().model_validate(
        {"depth": 2, "width": 8, "units": "searched", "alpha_self": {"low": 0.5, "high": 1.0}}
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen_no_units = seen_units = False
    for _ in range(12):
        trial = study.ask()
        spec = family.sample(trial, section, ["a", "b"])
        assert ("cross_stitch.alpha_self" in trial.params) == bool(spec["units"])
        if not spec["units"]:
            # separate columns: a searched alpha would make copies of one network look different
            assert spec["alpha_self"] == 1.0
        seen_no_units |= not spec["units"]
        seen_units |= bool(spec["units"])
    assert seen_no_units and seen_units


@pytest.mark.parametrize(
    "bad, key",
    [
        ({"widths": []}, "widths"),
        ({"units": [2]}, "units"),
        ({"units": [0, 0]}, "units"),
        ({"alpha_self": 1.5}, "alpha_self"),
    ],
)
def test_bad_spec_is_a_user_error_naming_the_key(bad, key):
    with pytest.raises(UserError, match=f"cross_stitch spec: {key}"):
        build(dict(SPEC, **bad))
