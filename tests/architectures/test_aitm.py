"""AITM: information transferred along the funnel, against a forward pass computed by hand."""

import math

import numpy as np
import optuna
import pytest
import torch

from mtl_search.architectures import build_model, get_family, summarize, validate_spec
from mtl_search.architectures.aitm import funnel_order
from mtl_search.errors import UserError
from mtl_search.search.space import parse_space
from mtl_search.tasks import Task
from tests.architectures.family_checks import (
    IMAGE,
    assert_forward_shapes,
    assert_gradients_reach_every_parameter,
    assert_shared_parameters_are_those_several_tasks_reach,
    assert_spec_round_trips,
    assert_training_lowers_loss,
    build,
    inputs_for,
    tasks_reaching,
    with_common,
)

SPEC = with_common({"family": "aitm", "widths": [6], "attention_width": 4, "bottom_widths": [5]})


def test_summary_names_the_towers_attention_and_calibrator():
    spec = SPEC | {"calibrator": 0.5}
    assert summarize(spec, ["task1", "task2"]) == "aitm towers 6 att=4 bottom 5 cal=0.5 tower=4"


@pytest.mark.parametrize("n_tasks", [1, 2, 3])
def test_forward_shapes_on_vectors_and_images(n_tasks):
    assert_forward_shapes(SPEC, n_tasks)
    assert_forward_shapes(SPEC | {"bottom_widths": []}, n_tasks, IMAGE)


def test_gradients_reach_every_parameter_and_shared_are_what_several_tasks_reach():
    model = build(SPEC, 3)
    assert_gradients_reach_every_parameter(model, inputs_for({"kind": "vector", "size": 10}))
    assert_shared_parameters_are_those_several_tasks_reach(model, inputs_for({"kind": "vector", "size": 10}))


def test_spec_json_round_trip():
    assert_spec_round_trips(SPEC)


def test_information_flows_down_the_data_order_only_when_no_task_is_given_another():
    model = build(SPEC | {"bottom_widths": []}, 3)
    assert model.body.order == ["task1", "task2", "task3"]
    assert model.body.sources == {"task1": None, "task2": "task1", "task3": "task2"}
    reached = tasks_reaching(model, inputs_for({"kind": "vector", "size": 10}))
    # a task's own tower reaches it and every later task, never an earlier one
    assert reached["towers.task1.0.0.weight"] == {"task1", "task2", "task3"}
    assert reached["towers.task2.0.0.weight"] == {"task2", "task3"}
    assert reached["towers.task3.0.0.weight"] == {"task3"}


def test_a_given_task_follows_and_receives_from_the_task_it_is_given():
    tasks = [
        Task("purchase", "binary", given="click"),
        Task("dwell", "regression"),
        Task("click", "binary"),
        Task("order", "binary", given="purchase"),
    ]
    order, sources = funnel_order(tasks)
    assert order == ["dwell", "click", "purchase", "order"]
    assert sources == {"dwell": None, "click": "dwell", "purchase": "click", "order": "purchase"}
    torch.manual_seed(0)
    model = build_model(SPEC, {"kind": "vector", "size": 10}, tasks)
    assert model.sharing_report()["funnel"] == "dwell dwell->click click->purchase purchase->order"


def _set(linear: torch.nn.Linear, weight: list[list[float]], bias: list[float]) -> None:
    with torch.no_grad():
        linear.weight.copy_(torch.tensor(weight))
        linear.bias.copy_(torch.tensor(bias))


def _matvec(weight: list[list[float]], bias: list[float], x: list[float]) -> list[float]:
    return [sum(w * v for w, v in zip(row, x)) + b for row, b in zip(weight, bias)]


def test_forward_matches_a_hand_computed_transfer_and_attention():
    spec = {
        "family": "aitm",
        "widths": [2],
        "attention_width": 2,
        "block": {"activation": "tanh"},
        "tower": {"widths": []},
    }
    tasks = [Task("click", "binary"), Task("buy", "binary")]
    model = build_model(spec, {"kind": "vector", "size": 2}, tasks)
    tower_a, tower_b = [[0.5, -1.0], [0.25, 0.75]], [[1.0, 0.5], [-0.5, 0.25]]
    value_a, value_b = [[1.0, 0.0], [0.5, -0.5]], [[0.2, 0.4], [-0.3, 0.1]]
    transfer, query, key = [[0.3, -0.2], [0.6, 0.1]], [[1.0, -1.0], [0.5, 0.5]], [[0.4, 0.2], [-0.6, 1.0]]
    head_a, head_b = [[0.7, -0.4]], [[-0.5, 0.9]]
    body = model.body
    _set(body.towers["click"][0][0], tower_a, [0.1, -0.2])
    _set(body.towers["buy"][0][0], tower_b, [0.0, 0.3])
    _set(body.fusion["click"].value, value_a, [0.05, 0.0])
    _set(body.fusion["buy"].value, value_b, [0.0, 0.1])
    _set(body.fusion["buy"].transfer, transfer, [0.1, -0.1])
    _set(body.fusion["buy"].query, query, [0.0, 0.2])
    _set(body.fusion["buy"].key, key, [0.3, 0.0])
    _set(model.towers["click"][0], head_a, [0.2])
    _set(model.towers["buy"][0], head_b, [-0.1])
    assert body.fusion["click"].query is None  # the first task attends over its own vector only

    x = [0.8, -1.5]
    q_a = [math.tanh(v) for v in _matvec(tower_a, [0.1, -0.2], x)]
    z_a = _matvec(value_a, [0.05, 0.0], q_a)
    q_b = [math.tanh(v) for v in _matvec(tower_b, [0.0, 0.3], x)]
    p_b = _matvec(transfer, [0.1, -0.1], z_a)
    scores = []
    for u in (q_b, p_b):
        h1, h2 = _matvec(query, [0.0, 0.2], u), _matvec(key, [0.3, 0.0], u)
        scores.append(sum(a * b for a, b in zip(h1, h2)) / math.sqrt(2))
    weights = [math.exp(s) / sum(math.exp(t) for t in scores) for s in scores]
    values = [_matvec(value_b, [0.0, 0.1], u) for u in (q_b, p_b)]
    z_b = [weights[0] * values[0][i] + weights[1] * values[1][i] for i in range(2)]
    expected = {"click": _matvec(head_a, [0.2], z_a)[0], "buy": _matvec(head_b, [-0.1], z_b)[0]}

    model.eval()
    outputs = model({"x": torch.tensor([x])})
    for name, value in expected.items():
        assert outputs[name].item() == pytest.approx(value, rel=1e-5)

    # the calibrator: calibrator * mean(max(P(buy) - P(click), 0)) over a training batch
    body.calibrator = 2.0
    model.train()
    rows = torch.tensor([x, [-1.0, 0.4], [2.0, 1.0]])
    outputs = model({"x": rows})
    gap = torch.relu(torch.sigmoid(outputs["buy"]) - torch.sigmoid(outputs["click"])).reshape(-1)
    assert gap.gt(0).any()  # the constructed case has a row to penalise
    torch.testing.assert_close(model.regularization(), 2.0 * gap.mean())
    assert model.regularization() is None  # taken once per forward pass


def test_the_calibrator_leaves_a_task_given_the_earlier_one_alone():
    # P(click and buy) = P(click) P(buy | click) never exceeds P(click): nothing to penalise
    tasks = [Task("click", "binary"), Task("buy", "binary", given="click")]
    spec = with_common({"family": "aitm", "widths": [4], "attention_width": 3, "calibrator": 1.0})
    model = build_model(spec, {"kind": "vector", "size": 10}, tasks)
    model.train()
    model(inputs_for({"kind": "vector", "size": 10}))
    assert model.regularization() is None


def test_the_calibrator_multiplies_down_a_given_chain():
    # c has no given: it is compared with the joint P(a and b) of the task before it
    tasks = [Task("a", "binary"), Task("b", "binary", given="a"), Task("c", "binary")]
    spec = with_common({"family": "aitm", "widths": [4], "attention_width": 3, "calibrator": 0.5})
    torch.manual_seed(1)
    model = build_model(spec, {"kind": "vector", "size": 10}, tasks)
    model.train()
    outputs = model(inputs_for({"kind": "vector", "size": 10}))
    p = {name: torch.sigmoid(output.reshape(-1)) for name, output in outputs.items()}
    expected = 0.5 * torch.relu(p["c"] - p["a"] * p["b"]).mean()
    torch.testing.assert_close(model.regularization(), expected)


def test_sharing_report_gives_the_mean_attention_on_transferred_information():
    model = build(SPEC, 2)
    model.eval()
    model(inputs_for({"kind": "vector", "size": 10}))
    report = model.sharing_report()["transfer_attention"]
    assert list(report) == ["task2"] and list(report["task2"]) == ["own", "from task1"]
    assert sum(report["task2"].values()) == pytest.approx(1.0, abs=2e-3)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"widths": []}, "widths must be a non-empty list"),
        ({"attention_width": 0}, "attention_width must be a whole number >= 1"),
        ({"calibrator": -1.0}, "calibrator must be a number >= 0"),
    ],
)
def test_bad_specs_are_refused_naming_the_key(change, message):
    with pytest.raises(UserError, match=message):
        validate_spec(SPEC | change, ["task1", "task2"])


def test_an_empty_section_searches_the_documented_default_ranges():
    space = parse_space({"families": {"aitm": {}}})
    section = get_family("aitm").space_model()()
    assert space.families["aitm"] == section
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    specs = [space.sample(study.ask(), ["task1", "task2"])["architecture"] for _ in range(12)]
    assert {len(s["widths"]) for s in specs} == {1, 2}
    assert {s["attention_width"] for s in specs} <= {16, 32, 64} and len({s["attention_width"] for s in specs}) > 1
    assert all(s["calibrator"] == 0.0 and s["bottom_widths"] == [] for s in specs)


def test_training_lowers_every_task_loss(tiny_synthetic3):
    spec = with_common({"family": "aitm", "widths": [16], "attention_width": 8}, tower=[8])
    sharing = assert_training_lowers_loss(tiny_synthetic3, spec)
    assert sharing["funnel"] == "task1 task1->task2 task2->task3"


def test_a_population_with_the_calibrator_trains_each_member_as_alone():
    from mtl_search.data.table import make_table_data, targets_from_declarations
    from mtl_search.training.population import fusion_key
    from tests.helpers import spend_and_churn
    from tests.training.test_population import assert_same_as_alone, population_of, train_both

    frame = spend_and_churn(rows=300, seed=4)
    frame["renew"] = (frame["a"] + frame["d"] > 0.3).astype(int)  # a second binary task, no given
    frame["plan"] = np.random.default_rng(4).choice(["basic", "plus", "pro"], size=len(frame))
    declarations = targets_from_declarations(["churn:binary", "renew:binary", "spend:regression"])
    data = make_table_data(frame, declarations, categorical=["plan"])
    spec = {"family": "aitm", "widths": [8], "attention_width": 4, "calibrator": 0.5}
    candidates = population_of(spec, epochs=2)
    assert len({fusion_key(c, data) for c in candidates}) == 1
    fused, alone = train_both(data, candidates)
    for mine, theirs in zip(fused, alone):
        assert_same_as_alone(mine, theirs, size=3, data=data)


def test_the_bundled_funnel_space_offers_the_family():
    from mtl_search.data.sequences import make_sequences
    from mtl_search.search.space import load_space

    data = make_sequences(rows=60, max_length=6, vocabulary=12)
    space = load_space("sequences")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(10):
        spec = space.sample(study.ask(), data.task_names)["architecture"]
        seen.add(spec["family"])
        if spec["family"] == "aitm":
            model = build_model(spec, data.input_schema, data.tasks)
            assert model.body.sources == {"click": None, "purchase": "click", "dwell": "purchase"}
    assert "aitm" in seen
