import itertools

import optuna
import pytest
import torch

from mtl_search.architectures import build_model, get_family, summarize
from mtl_search.architectures.hierarchy import HierarchySpace
from mtl_search.errors import UserError
from mtl_search.tasks import Task
from tests.architectures.family_checks import (
    IMAGE,
    VECTOR,
    assert_gradients_reach_every_parameter,
    assert_spec_round_trips,
    assert_training_lowers_loss,
    inputs_for,
    regression_tasks,
    with_common,
)

TASKS = ["task1", "task2", "task3"]


def hierarchy(heads, feed=None, widths=(8, 6, 5), embedding=3, successive=0.0):
    return with_common(
        {
            "family": "hierarchy",
            "widths": list(widths),
            "head_depths": dict(zip(TASKS, heads)),
            "feed_upward": dict(zip(TASKS, feed or (True, True, True))),
            "prediction_embedding": embedding,
            "successive": successive,
        }
    )


@pytest.mark.parametrize("heads", list(itertools.product([1, 2, 3], repeat=3)))
def test_builds_and_runs_for_every_head_depth(heads):
    torch.manual_seed(0)
    model = build_model(hierarchy(heads), VECTOR, regression_tasks(3))
    widths = [8, 6, 5]
    assert {t: model.body.out_shapes[t] for t in TASKS} == {t: (widths[d - 1],) for t, d in zip(TASKS, heads)}
    assert len(model.body.blocks) == max(heads)  # nobody reads a block above the highest head
    outputs = model(inputs_for(VECTOR, rows=7))
    assert all(outputs[t].shape == (7, 1) for t in TASKS)


def test_predictions_feed_the_block_above_with_embedding_width():
    torch.manual_seed(0)
    tasks = [Task("task1", "multiclass", n_classes=4), Task("task2", "binary"), Task("task3", "regression")]
    model = build_model(hierarchy((1, 1, 3), embedding=3), VECTOR, tasks)
    # block 2 reads block 1's 8 features and two 3-wide prediction embeddings
    assert model.body.blocks[1][0].in_features == 8 + 2 * 3
    assert model.body.blocks[2][0].in_features == 6
    assert model.body.embeddings["task1"].in_features == 4  # the four class probabilities
    assert model.body.embeddings["task2"].in_features == 1
    assert "task3" not in model.body.embeddings  # nothing lies above the top head
    outputs = model(inputs_for(VECTOR, rows=5))
    assert outputs["task1"].shape == (5, 4) and outputs["task3"].shape == (5, 1)


def test_a_scaled_regression_head_feeds_its_standardised_prediction_upward():
    # task1 (regression, mean 1000, std 200) feeds task2's block; the scaling is applied after
    # the body, so task2 sees the same value as without scaling and only task1's output moves
    inputs = inputs_for(VECTOR, rows=5)
    outputs = {}
    for scale in ((0.0, 1.0), (1000.0, 200.0)):
        torch.manual_seed(0)
        tasks = [Task("task1", "regression", target_mean=scale[0], target_std=scale[1]), Task("task2", "binary")]
        model = build_model(
            with_common(
                {
                    "family": "hierarchy",
                    "widths": [8, 6],
                    "head_depths": {"task1": 1, "task2": 2},
                    "feed_upward": {"task1": True, "task2": False},
                    "prediction_embedding": 3,
                }
            ),
            VECTOR,
            tasks,
        )
        outputs[scale] = model(inputs)
    plain, scaled = outputs[(0.0, 1.0)], outputs[(1000.0, 200.0)]
    torch.testing.assert_close(scaled["task1"], plain["task1"] * 200 + 1000)
    torch.testing.assert_close(scaled["task2"], plain["task2"])


def test_upper_task_depends_on_lower_prediction_only_when_fed():
    torch.manual_seed(0)
    fed = build_model(hierarchy((1, 2, 3)), VECTOR, regression_tasks(3))
    torch.manual_seed(0)
    not_fed = build_model(hierarchy((1, 2, 3), feed=(False, False, False)), VECTOR, regression_tasks(3))
    for model, expect_gradient in ((fed, True), (not_fed, False)):
        model.zero_grad()
        model(inputs_for(VECTOR))["task3"].sum().backward()
        reached = model.towers["task1"][-1].weight.grad
        assert (reached is not None and reached.abs().sum() > 0) == expect_gradient
    assert not_fed.body.blocks[1][0].in_features == 8


def test_every_parameter_learns_and_shared_parameters_are_those_several_tasks_reach():
    torch.manual_seed(0)
    model = build_model(hierarchy((1, 2, 2)), VECTOR, regression_tasks(3))
    inputs = inputs_for(VECTOR)
    assert_gradients_reach_every_parameter(model, inputs)
    parameters = {n: p for n, p in model.named_parameters() if not n.startswith("stem.")}
    reached = {n: set() for n in parameters}
    outputs = model(inputs)
    for task, output in outputs.items():
        grads = torch.autograd.grad(output.sum(), list(parameters.values()), retain_graph=True, allow_unused=True)
        for name, grad in zip(parameters, grads):
            if grad is not None and grad.abs().sum() > 0:
                reached[name].add(task)
    by_id = {id(p): n for n, p in parameters.items()}
    declared = {by_id[id(p)] for p in model.body.shared_parameters()}
    assert declared == {n for n, tasks in reached.items() if len(tasks) > 1}
    assert any(n.startswith("towers.task1") for n in declared)  # task1's head feeds tasks 2 and 3


def test_runs_on_images_with_predictions_as_channels():
    torch.manual_seed(0)
    spec = hierarchy((1, 2, 3))
    spec["block"] = dict(spec["block"], type="conv")
    model = build_model(spec, IMAGE, regression_tasks(3))
    outputs = model(inputs_for(IMAGE, rows=3))
    assert all(o.shape == (3, 1) for o in outputs.values())


@pytest.mark.parametrize("schema", [VECTOR, IMAGE], ids=["vector", "image"])
def test_exported_model_runs_on_a_batch_size_it_was_not_exported_with(schema):
    # every kind of fed prediction: binary and regression outputs are read as one value per row
    torch.manual_seed(0)
    tasks = [Task("task1", "binary"), Task("task2", "multiclass", n_classes=3), Task("task3", "regression")]
    spec = hierarchy((1, 1, 2), widths=(8, 6))
    if schema is IMAGE:
        spec["block"] = dict(spec["block"], type="conv")
    model = build_model(spec, schema, tasks).eval()
    example = inputs_for(schema, rows=4)
    batch = torch.export.Dim("batch")
    program = torch.export.export(model, (example,), dynamic_shapes=({name: {0: batch} for name in example},))
    unseen = inputs_for(schema, rows=7, seed=1)
    with torch.no_grad():
        expected, got = model(unseen), program.module()(unseen)
    for task in ("task1", "task2", "task3"):
        torch.testing.assert_close(got[task], expected[task])


def test_successive_regularisation_anchors_lower_blocks_after_an_epoch():
    torch.manual_seed(0)
    model = build_model(hierarchy((1, 2, 3), successive=0.5), VECTOR, regression_tasks(3))
    assert model.regularization() is None  # no previous epoch yet
    model.end_epoch()
    assert model.regularization().item() == 0.0
    with torch.no_grad():
        model.body.blocks[0][0].weight.add_(0.1)
    expected = 0.5 * 0.01 * model.body.blocks[0][0].weight.numel()
    assert model.regularization().item() == pytest.approx(expected, rel=1e-4)


def test_training_lowers_loss_and_reports_head_placement(tiny_synthetic3):
    sharing = assert_training_lowers_loss(tiny_synthetic3, hierarchy((1, 3, 2), successive=0.01), epochs=4)
    assert sharing == {"hierarchy": "task1@1^ task3@2^ task2@3"}


def test_spec_round_trips_and_summary_shows_heads():
    spec = hierarchy((1, 2, 3), feed=(True, False, True))
    spec["head_depths"] = {"task1": 1, "task2": 2}
    spec["feed_upward"] = {"task1": True, "task2": False}
    assert_spec_round_trips(spec)
    # the third width is never built (no head above block 2): the summary names the network that is
    assert summarize(spec, ["task1", "task2"]) == "hierarchy L=2 w=8/6 task1@1^ task2@2 tower=4"


def test_sampling_searches_each_head_depth_and_feed():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    section = HierarchySpace(depth=3, width=16, feed_upward={"choices": [True, False]})
    seen_depths, seen_feed = set(), set()
    family = get_family("hierarchy")
    for _ in range(20):
        trial = study.ask()
        spec = family.sample(trial, section, TASKS)
        family.validate(with_common(dict(spec, family="hierarchy")), TASKS)
        seen_depths |= set(spec["head_depths"].values())
        seen_feed |= set(spec["feed_upward"].values())
        assert set(trial.params) >= {f"hierarchy.head_{t}" for t in TASKS}
    assert seen_depths == {1, 2, 3} and seen_feed == {True, False}


def test_sampling_writes_only_what_changes_the_network():
    # two placements that build the same network get the same spec, so the study trains it once
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    section = HierarchySpace(
        depth={"low": 1, "high": 4},
        width=16,
        feed_upward={"choices": [True, False]},
        prediction_embedding={"choices": [4, 8]},
        successive={"choices": [0.0, 1e-3]},
    )
    family = get_family("hierarchy")
    seen_top = set()
    for _ in range(60):
        trial = study.ask()
        spec = family.sample(trial, section, TASKS)
        top = max(spec["head_depths"].values())
        seen_top.add(top)
        below = {t for t, depth in spec["head_depths"].items() if depth < top}
        assert len(spec["widths"]) == top  # no block above the highest head
        assert {t for t, fed in spec["feed_upward"].items() if fed} <= below
        assert {f"hierarchy.feed_{t}" for t in TASKS} & set(trial.params) == {f"hierarchy.feed_{t}" for t in below}
        assert ("prediction_embedding" in spec) == any(spec["feed_upward"].values())
        assert bool(below) == ("hierarchy.successive" in trial.params)
        if not below:
            assert spec["successive"] == 0.0
        model = build_model(with_common(dict(spec, family="hierarchy")), VECTOR, regression_tasks(3))
        assert model(inputs_for(VECTOR))  # builds and runs
    assert seen_top == {1, 2, 3, 4}


@pytest.mark.parametrize(
    "change, fragment",
    [
        ({"head_depths": {"task1": 4, "task2": 1, "task3": 1}}, "head_depths.task1=4"),
        ({"head_depths": {"task1": 1}}, "head_depths must give a depth for each task"),
        ({"widths": []}, "widths"),
        ({"feed_upward": {"task9": True}}, "feed_upward"),
        ({"successive": -1}, "successive"),
    ],
)
def test_bad_specs_are_user_errors(change, fragment):
    with pytest.raises(UserError, match=fragment):
        build_model(dict(hierarchy((1, 2, 3)), **change), VECTOR, regression_tasks(3))
