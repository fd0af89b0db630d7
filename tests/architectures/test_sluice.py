import pytest
import torch

from mtl_search.architectures import summarize
from mtl_search.architectures.sluice import orthogonality
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

SPEC = with_common(
    {
        "family": "sluice",
        "depth": 2,
        "width": 8,
        "subspaces": 2,
        "orthogonality_weight": 0.1,
        "alpha_self": 0.9,
        "beta_init": "uniform",
    }
)


def test_builds_from_spec_and_summarises():
    model = build(SPEC, 3)
    assert [tuple(a.shape) for a in model.body.alphas] == [(6, 6), (6, 6)]
    assert summarize(SPEC, ["task1", "task2"]) == "sluice S=2 2x8 ortho=0.1 a=0.90 beta=uniform tower=4"
    assert summarize(dict(SPEC, subspaces=1), ["task1", "task2"]) == "sluice S=1 2x8 a=0.90 beta=uniform tower=4"


@pytest.mark.parametrize("n_tasks", [2, 3, 5])
def test_forward_shapes(n_tasks):
    assert_forward_shapes(SPEC, n_tasks)


@pytest.mark.parametrize("n_tasks", [2, 3])
def test_parameter_count_matches_hand_formula(n_tasks):
    columns = n_tasks * (linear(10, 8) + linear(8, 8))
    alphas = 2 * (n_tasks * 2) ** 2
    betas = n_tasks * 2
    assert n_params(build(SPEC, n_tasks)) == columns + alphas + betas + towers(n_tasks, 8, [4])


def test_gradients_reach_every_parameter_including_the_penalty():
    assert_gradients_reach_every_parameter(build(SPEC, 3), inputs_for(VECTOR))


def test_shared_parameters_are_columns_and_alphas_not_betas():
    model = build(SPEC, 3)
    assert_shared_parameters_are_those_several_tasks_reach(model, inputs_for(VECTOR))
    assert not {id(b) for b in model.body.betas.values()} & {id(p) for p in model.shared_parameters()}


def test_orthogonality_penalty_is_squared_frobenius_norm_of_row_averaged_products():
    g = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    h = torch.tensor([[0.5, 1.0], [2.0, 0.0], [1.0, -1.0]])
    pair = (g.T @ h / 3).pow(2).sum()
    torch.testing.assert_close(orthogonality(torch.cat([g, h], dim=1)[None], 2), pair)
    # one layer of two tasks: the tasks' penalties add up
    both = torch.stack([torch.cat([g, h], dim=1), torch.cat([g, g], dim=1)])
    torch.testing.assert_close(orthogonality(both, 2), pair + (g.T @ g / 3).pow(2).sum())
    # three subspaces: every pair counts once
    triple = torch.cat([g, h, g], dim=1)[None]
    torch.testing.assert_close(orthogonality(triple, 3), 2 * pair + (g.T @ g / 3).pow(2).sum())
    assert float(orthogonality(torch.tensor([[[1.0, 0.0], [0.0, 1.0]]]), 2)) == 0.0


def test_alpha_mixes_subspaces_of_all_tasks():
    from mtl_search.architectures.sluice import from_subspaces, to_subspaces

    columns = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 4)  # 2 tasks, 3 rows, 4 channels
    parts = to_subspaces(columns, 2)
    torch.testing.assert_close(parts[1], columns[0, :, 2:])  # task 0, subspace 1
    torch.testing.assert_close(parts[2], columns[1, :, :2])  # task 1, subspace 0
    torch.testing.assert_close(from_subspaces(parts, 2), columns)


def test_regularization_scales_with_weight_and_is_only_for_training():
    inputs = inputs_for(VECTOR)
    penalties = []
    for weight in (0.5, 1.0):
        model = build(dict(SPEC, orthogonality_weight=weight))
        model(inputs)
        penalties.append(float(model.regularization().detach()))
        model.eval()
        model(inputs)
        assert model.regularization() is None
    assert penalties[1] == pytest.approx(2 * penalties[0]) and penalties[0] > 0
    model = build(dict(SPEC, orthogonality_weight=0.0))
    model(inputs)
    assert model.regularization() is None


def test_beta_last_reads_the_last_layer_only():
    report = build(dict(SPEC, beta_init="last", depth=3)).sharing_report()
    assert report["beta"] == {"task1": [0.0, 0.0, 1.0], "task2": [0.0, 0.0, 1.0]}
    assert len(report["alpha"]) == 3 and len(report["alpha"][0]) == 4


def test_spec_json_round_trip():
    assert_spec_round_trips(SPEC)


def test_training_lowers_loss_and_reports_learned_alpha_and_beta(tiny_synthetic):
    sharing = assert_training_lowers_loss(tiny_synthetic, dict(SPEC, width=16, block={"activation": "relu"}))
    assert sharing["subspaces"] == 2
    assert sharing["beta"]["task1"] != [0.5, 0.5]


def test_runs_on_images_where_layers_differ_in_map_size():
    # 12x12 -> 6x6 after the first conv block, 6x6 after the second: beta pools the first
    model = build(dict(SPEC, block={"type": "conv", "activation": "relu"}, width=4), 3, IMAGE)
    outputs = model(inputs_for(IMAGE, rows=5))
    assert {tuple(o.shape) for o in outputs.values()} == {(5, 1)}
    assert model.regularization() is not None


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"width": 9}, "not a multiple"),
        ({"subspaces": 0}, "subspaces"),
        ({"orthogonality_weight": -1}, "orthogonality_weight"),
        ({"beta_init": "first"}, "beta_init"),
        ({"alpha_self": -0.1}, "alpha_self"),
    ],
)
def test_bad_spec_is_a_user_error_naming_the_key(bad, message):
    with pytest.raises(UserError, match=f"sluice spec: .*{message}"):
        build(dict(SPEC, **bad))


def test_sampling_rounds_width_to_subspaces_and_skips_the_weight_without_pairs():
    import optuna

    from mtl_search.architectures import get_family

    family = get_family("sluice")
    section = family.space_model().model_validate(
        {"width": 30, "subspaces": {"choices": [1, 4]}, "orthogonality_weight": {"low": 0.001, "high": 0.1}}
    )
    four = family.sample(
        optuna.trial.FixedTrial({"sluice.subspaces": 4, "sluice.orthogonality_weight": 0.05}), section, ["a", "b"]
    )
    assert (four["width"], four["orthogonality_weight"]) == (32, 0.05)
    one = family.sample(optuna.trial.FixedTrial({"sluice.subspaces": 1}), section, ["a", "b"])
    assert (one["width"], one["orthogonality_weight"]) == (30, 0.0)


@pytest.mark.parametrize("beta_init", ["first", {"choices": ["last", "first"]}])
def test_a_bad_beta_init_in_a_space_is_refused_when_it_is_loaded(beta_init):
    from mtl_search.search.space import parse_space

    # not only when a trial draws sluice and builds it
    with pytest.raises(UserError) as error:
        parse_space({"families": {"sluice": {"beta_init": beta_init}}}, "s.yaml")
    assert (
        str(error.value)
        == "space file s.yaml: key families.sluice.beta_init: 'first' is not a beta init (expected one of last, uniform)"
    )
