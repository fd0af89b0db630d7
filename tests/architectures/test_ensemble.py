"""Deep ensembles: the spec's ``ensemble`` key builds several networks whose predictions average."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mtl_search.architectures import EnsembleModel, build_model, ensemble_members, summarize, validate_spec
from mtl_search.data.synthetic import make_synthetic
from mtl_search.errors import UserError
from mtl_search.tasks import Task

SPEC = {"family": "tree", "widths": [8], "groups": [[["task1", "task2"]]], "tower": {"widths": [4]}}


class Fixed(nn.Module):
    """A network that always says the same: the combination rules are checked on known outputs."""

    def __init__(self, outputs: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.outputs = outputs

    def forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.outputs


def test_an_ensemble_spec_builds_networks_that_start_apart():
    data = make_synthetic(dim=5, rows=60, seed=0)
    torch.manual_seed(0)
    model = build_model(SPEC | {"ensemble": {"members": 3}}, data.input_schema, data.tasks)
    assert isinstance(model, EnsembleModel) and len(model.networks) == 3
    first, second = (dict(network.named_parameters()) for network in model.networks[:2])
    assert set(first) == set(second)
    assert any(not torch.equal(first[name], second[name]) for name in first)
    single = build_model(SPEC, data.input_schema, data.tasks)
    assert sum(p.numel() for p in model.parameters()) == 3 * sum(p.numel() for p in single.parameters())
    assert ensemble_members(SPEC) == 1 and ensemble_members(SPEC | {"ensemble": {"members": 3}}) == 3
    assert summarize(SPEC | {"ensemble": {"members": 3}}, data.task_names).endswith("ensemble=3")
    # one member is a plain network
    assert not isinstance(
        build_model(SPEC | {"ensemble": {"members": 1}}, data.input_schema, data.tasks), EnsembleModel
    )


def test_predictions_average_probabilities_and_values():
    tasks = [
        Task(name="b", kind="binary"),
        Task(name="m", kind="multiclass", n_classes=3),
        Task(name="r", kind="regression"),
    ]
    outputs = [
        {"b": torch.tensor([[2.0], [-1.0]]), "m": torch.tensor([[1.0, 0.0, -1.0]]), "r": torch.tensor([[1.0]])},
        {"b": torch.tensor([[-0.5], [3.0]]), "m": torch.tensor([[0.0, 2.0, 0.0]]), "r": torch.tensor([[4.0]])},
    ]
    model = EnsembleModel([Fixed(o) for o in outputs], tasks, {"family": "tree"})
    combined = model({})
    for row in range(2):
        probabilities = [1 / (1 + math.exp(-float(o["b"][row, 0]))) for o in outputs]
        mean = sum(probabilities) / 2
        assert float(combined["b"][row, 0]) == pytest.approx(math.log(mean / (1 - mean)), rel=1e-6)
    mean_classes = (torch.softmax(outputs[0]["m"], -1) + torch.softmax(outputs[1]["m"], -1)) / 2
    assert torch.allclose(torch.softmax(combined["m"], -1), mean_classes, atol=1e-6)
    assert torch.allclose(combined["m"].exp().sum(-1), torch.ones(1), atol=1e-6)  # log-probabilities
    assert float(combined["r"][0, 0]) == pytest.approx(2.5)


def test_a_confident_binary_ensemble_stays_finite():
    tasks = [Task(name="b", kind="binary")]
    model = EnsembleModel([Fixed({"b": torch.tensor([[80.0]])}), Fixed({"b": torch.tensor([[90.0]])})], tasks, {})
    assert torch.isfinite(model({})["b"]).all()


@pytest.mark.parametrize(
    ("ensemble", "message"),
    [
        ({"members": 0}, "ensemble.members"),
        ({"members": 65}, "ensemble.members"),
        ({"members": "3"}, "ensemble.members"),
        ({"members": 2.5}, "ensemble.members"),
        ({"size": 3}, "ensemble.size"),
        (3, "ensemble"),
    ],
)
def test_a_bad_ensemble_is_refused_naming_the_key(ensemble, message):
    with pytest.raises(UserError, match=message):
        validate_spec(SPEC | {"ensemble": ensemble}, ["task1", "task2"])


def test_a_conditional_task_averages_the_joint_probability():
    # p(click) 0.9 and 0.1, p(buy | click) 0.1 and 0.9: each member's joint is 0.09
    tasks = [Task(name="click", kind="binary"), Task(name="buy", kind="binary", given="click")]
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    members = [
        Fixed({"click": torch.tensor([[logit(0.9)]]), "buy": torch.tensor([[logit(0.1)]])}),
        Fixed({"click": torch.tensor([[logit(0.1)]]), "buy": torch.tensor([[logit(0.9)]])}),
    ]
    combined = EnsembleModel(members, tasks, {})({})
    click, buy_given_click = torch.sigmoid(combined["click"]), torch.sigmoid(combined["buy"])
    assert float(click) == pytest.approx(0.5)
    assert float(click * buy_given_click) == pytest.approx(0.09, rel=1e-5)  # the members' mean joint
    assert float(buy_given_click) == pytest.approx(0.18, rel=1e-5)
