import optuna
import pytest
import torch

from mtl_search.architectures import BlockFactory, build_model, get_family, summarize
from mtl_search.errors import UserError
from mtl_search.values import FloatRange, IntChoice, IntRange
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
    regression_tasks,
    towers,
    with_common,
)

SPEC = with_common({"family": "ltb", "widths": [8, 6], "nodes": [2, 3], "initial_temperature": 1.0, "annealing": 0.5})
THREE = {"kind": "vector", "size": 3}


def test_builds_from_spec_and_summarises():
    model = build(SPEC)
    assert [len(layer) for layer in model.body.layers] == [2, 3]
    assert summarize(SPEC, ["task1", "task2"]) == "ltb layers 2x8 3x6, gumbel T0=1 x0.5/epoch tower=4"
    same = dict(SPEC, widths=[8, 8], nodes=[2, 2])
    assert summarize(same, ["task1", "task2"]) == "ltb 2 layers x 2 nodes w=8, gumbel T0=1 x0.5/epoch tower=4"


@pytest.mark.parametrize("n_tasks", [2, 3, 5])
def test_forward_shapes_in_training_and_evaluation(n_tasks):
    assert_forward_shapes(SPEC, n_tasks)
    model = build(SPEC, n_tasks).eval()
    assert {tuple(o.shape) for o in model(inputs_for(VECTOR, rows=7)).values()} == {(7, 1)}


@pytest.mark.parametrize("n_tasks", [2, 3])
def test_parameter_count_matches_hand_formula(n_tasks):
    # layer 0: 2 nodes 10->8; layer 1: 3 nodes 8->6; parent logits 3x2; tower logits n_tasks x 3; towers 6->4->1
    expected = 2 * linear(10, 8) + 3 * linear(8, 6) + 3 * 2 + n_tasks * 3 + towers(n_tasks, 6, [4])
    assert n_params(build(SPEC, n_tasks)) == expected


def test_gradients_reach_every_parameter_while_training():
    torch.manual_seed(1)
    assert_gradients_reach_every_parameter(build(SPEC, 3), inputs_for(VECTOR))


def test_shared_parameters_are_nodes_and_parent_logits_not_tower_logits():
    model = build(SPEC, 3)
    torch.manual_seed(1)
    assert_shared_parameters_are_those_several_tasks_reach(model, inputs_for(VECTOR))
    assert not {id(p) for p in model.body.tower_logits.parameters()} & {id(p) for p in model.shared_parameters()}


def test_spec_json_round_trip():
    assert_spec_round_trips(SPEC)


def _known_tree(temperature: float, tower_parents: list[int]):
    """Two layers of two nodes on 3 features: node weights +-I and 2I, I; node 0 of layer 1 picks
    parent 1, node 1 picks parent 0 (logits 40 apart); the towers pick ``tower_parents``."""
    spec = with_common(
        {"family": "ltb", "widths": [3, 3], "nodes": [2, 2], "initial_temperature": temperature, "annealing": 1.0}
    )
    torch.manual_seed(0)
    model = build_model(spec, THREE, regression_tasks(2))
    body = model.body
    eye = torch.eye(3)
    with torch.no_grad():
        for block, weight in zip([*body.layers[0], *body.layers[1]], [eye, -eye, 2 * eye, eye]):
            block[0].weight.copy_(weight)
            block[0].bias.zero_()
        body.parent_logits[0].copy_(torch.tensor([[-20.0, 20.0], [20.0, -20.0]]))
        for task, parent in zip(["task1", "task2"], tower_parents):
            body.tower_logits[task].copy_(torch.tensor([20.0, -20.0] if parent == 0 else [-20.0, 20.0]))
    return model


X = torch.tensor([[0.5, -1.0, 2.0], [1.0, 0.25, -0.5], [-0.3, 0.8, 0.1]])


def test_at_low_temperature_training_follows_the_chosen_parents_and_evaluation_takes_them():
    model = _known_tree(1e-3, tower_parents=[0, 1])
    body = model.body
    node0, node1 = torch.tanh(X), torch.tanh(-X)  # layer 0
    expected = {"task1": torch.tanh(2 * node1), "task2": torch.tanh(node0)}  # layer 1 node 0 reads node 1, and back
    torch.manual_seed(3)
    got = body(X)  # training mode: Gumbel-softmax samples, all but one-hot this far from a tie
    for task in expected:
        torch.testing.assert_close(got[task], expected[task], atol=1e-5, rtol=0)
    body.eval()
    for task, value in body(X).items():
        torch.testing.assert_close(value, expected[task], atol=0, rtol=0)
    report = model.sharing_report()
    assert report["tree"] == "0-1:{task1}{task2}"
    assert report["groups"] == [[["task1"], ["task2"]], [["task1"], ["task2"]]]
    assert report["parents"]["depth 1"]["n0"] == {"n0": 0.0, "n1": 1.0}
    assert report["parents"]["towers"]["task2"] == {"n0": 0.0, "n1": 1.0}


def test_evaluation_computes_only_the_nodes_on_a_tasks_path():
    model = _known_tree(1.0, tower_parents=[0, 0])  # both towers read node 0 of layer 1, which reads node 1
    body = model.body
    called = []
    for depth, layer in enumerate(body.layers):
        for node, block in enumerate(layer):
            block.register_forward_hook(lambda *_, where=(depth, node): called.append(where))
    body.eval()
    got = body(X)
    assert sorted(called) == [(0, 1), (1, 0)]
    torch.testing.assert_close(got["task1"], torch.tanh(2 * torch.tanh(-X)), atol=0, rtol=0)
    assert got["task1"] is got["task2"]
    assert model.sharing_report()["groups"] == [[["task1", "task2"]], [["task1", "task2"]]]
    body.train()
    called.clear()
    body(X)
    assert len(called) == 4  # training mixes every node


def test_at_high_temperature_a_node_reads_the_mean_of_its_candidate_parents():
    model = _known_tree(1e6, tower_parents=[0, 1])
    node0, node1 = torch.tanh(X), torch.tanh(-X)
    mean_input = (node0 + node1) / 2  # exactly 0 here: the two nodes are opposite
    layer1 = [torch.tanh(2 * mean_input), torch.tanh(mean_input)]
    torch.manual_seed(0)
    got = model.body(X)
    torch.testing.assert_close(got["task1"], (layer1[0] + layer1[1]) / 2, atol=1e-4, rtol=0)


def test_the_temperature_anneals_after_every_epoch():
    model = build(SPEC)
    assert model.body.temperature == 1.0
    model.end_epoch()
    model.end_epoch()
    assert model.body.temperature == pytest.approx(0.25)


def test_loading_new_logits_in_evaluation_mode_changes_the_evaluated_tree():
    first = _known_tree(1.0, tower_parents=[0, 1]).eval()
    second = _known_tree(1.0, tower_parents=[1, 1]).eval()
    inputs = {"x": X}
    assert not torch.equal(second(inputs)["task1"], first(inputs)["task1"])
    second.load_state_dict(first.state_dict())
    for task, value in second(inputs).items():
        torch.testing.assert_close(value, first(inputs)[task], atol=0, rtol=0)


def test_runs_on_images_with_conv_blocks():
    spec = with_common(
        {"family": "ltb", "widths": [4, 5], "nodes": [2, 2], "initial_temperature": 2.0, "annealing": 0.9},
        block={"type": "conv"},
    )
    assert_forward_shapes(spec, 3, IMAGE)
    model = build(spec, 3, IMAGE).eval()
    assert {tuple(o.shape) for o in model(inputs_for(IMAGE, rows=5)).values()} == {(5, 1)}
    assert model.body.out_shapes["task1"] == (5, 6, 6)


def test_training_lowers_loss_and_records_the_learned_tree(tiny_synthetic):
    sharing = assert_training_lowers_loss(
        tiny_synthetic,
        with_common(
            {"family": "ltb", "widths": [16, 16], "nodes": [2, 2], "initial_temperature": 1.0, "annealing": 0.7},
            block={"activation": "relu"},
        ),
    )
    assert [sorted(t for g in partition for t in g) for partition in sharing["groups"]] == [["task1", "task2"]] * 2
    assert sharing["tree"]
    assert set(sharing["parents"]) == {"depth 1", "towers"}
    assert sum(sharing["parents"]["towers"]["task1"].values()) == pytest.approx(1.0, abs=2e-3)


def test_an_empty_section_searches_the_documented_default_ranges():
    family = get_family("ltb")
    section = family.space_model().model_validate({})
    assert section.depth == IntRange(low=1, high=3)
    assert section.width == IntChoice(choices=[32, 64, 128])
    assert section.nodes == IntRange(low=2, high=4)
    assert section.initial_temperature == FloatRange(low=0.5, high=5.0, log=True)
    assert section.annealing == FloatRange(low=0.5, high=0.95)
    trial = optuna.trial.FixedTrial(
        {"ltb.depth": 2, "ltb.width": 32, "ltb.nodes": 3, "ltb.initial_temperature": 2.0, "ltb.annealing": 0.8}
    )
    assert family.sample(trial, section, ["a", "b"]) == {
        "widths": [32, 32],
        "nodes": [3, 3],
        "initial_temperature": 2.0,
        "annealing": 0.8,
    }


def test_a_space_whose_temperature_could_grow_is_refused():
    with pytest.raises(ValueError, match="annealing must be at most 1"):
        get_family("ltb").space_model().model_validate({"annealing": {"low": 0.9, "high": 1.2}})


@pytest.mark.parametrize(
    "bad, key",
    [
        ({"widths": []}, "widths"),
        ({"nodes": [2, 0]}, "nodes"),
        ({"nodes": [2]}, "nodes has 1 entries but widths 2"),
        ({"initial_temperature": 0}, "initial_temperature"),
        ({"annealing": 1.5}, "annealing"),
        ({"annealing": 0.0}, "annealing"),
    ],
)
def test_bad_spec_is_a_user_error_naming_the_key(bad, key):
    with pytest.raises(UserError, match=f"ltb spec: {key}"):
        build(dict(SPEC, **bad))


def test_a_block_type_it_does_not_support_is_refused_in_one_line():
    blocks = BlockFactory()
    blocks.kind = "graph"  # no such block type exists yet: a future one must be refused, not misbuilt
    with pytest.raises(UserError, match=r"^ltb spec: block.type 'graph' is not supported \(ltb supports mlp, conv\)$"):
        get_family("ltb").build(SPEC, (10,), ["task1", "task2"], blocks)
