"""A weighting object on a model of one's own, as docs/explanation/loss-weighting.md describes, and the
one-line errors of a candidate's loss_weighting written by hand."""

import re

import pytest
import torch
from torch import nn

from mtl_search.errors import UserError
from mtl_search.weighting import make_weighting, method_names


class TwoHeads(nn.Module):
    """A shared layer and one linear head per task: the smallest model the contract fits."""

    def __init__(self) -> None:
        super().__init__()
        self.shared = nn.Linear(4, 8)
        self.heads = nn.ModuleDict({"a": nn.Linear(8, 1), "b": nn.Linear(8, 1)})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = torch.relu(self.shared(x))
        return {name: head(h).squeeze(-1) for name, head in self.heads.items()}

    def shared_parameters(self) -> list[nn.Parameter]:
        return list(self.shared.parameters())


class NoSharedParameters(TwoHeads):
    shared_parameters = None  # type: ignore[assignment]


def losses_of(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    outputs = model(x)
    return {"a": ((outputs["a"] - y[:, 0]) ** 2).mean(), "b": ((outputs["b"] - y[:, 1]) ** 2).mean()}


@pytest.mark.parametrize("method", method_names())
def test_every_method_trains_a_model_of_ones_own(method):
    torch.manual_seed(0)
    x = torch.randn(128, 4)
    y = torch.stack([x[:, 0] + x[:, 1], x[:, 0] - x[:, 2]], dim=1)
    model = TwoHeads()
    weighting = make_weighting(method, ["a", "b"])
    optimizer = torch.optim.Adam([*model.parameters(), *weighting.parameters()], lr=1e-2)
    first = None
    for _ in range(30):
        losses = losses_of(model, x, y)
        optimizer.zero_grad()
        weighting.backward(losses, model, None)
        optimizer.step()
        weighting.end_epoch({name: loss.item() for name, loss in losses.items()})
        first = first or {name: loss.item() for name, loss in losses.items()}
    last = losses_of(model, x, y)
    assert all(last[name].item() < 0.5 * first[name] for name in ("a", "b")), (first, last)
    assert set(weighting.weights()) <= {"a", "b"}


@pytest.mark.parametrize("method", ["gradnorm", "pcgrad", "mgda"])
def test_a_gradient_method_names_what_the_model_lacks(method):
    model = NoSharedParameters()
    x, y = torch.randn(16, 4), torch.randn(16, 2)
    weighting = make_weighting(
        {"method": method, **({"gradients": "parameters"} if method == "mgda" else {})}, ["a", "b"]
    )
    with pytest.raises(UserError, match=re.escape(f"loss weighting {method!r} needs model.shared_parameters()")):
        weighting.backward(losses_of(model, x, y), model, None)


@pytest.mark.parametrize(
    "config, message",
    [
        (
            {"method": "static", "weights": "simplex"},
            "loss weighting 'static': weights 'simplex': expected 'equal' or a weight per task (a, b)",
        ),
        (
            {"method": "static", "weights": {"task_1": 5.0}},
            "loss weighting 'static': weight for unknown task 'task_1' (tasks: a, b)",
        ),
        (
            {"method": "static", "weights": {"a": -1.0}},
            "loss weighting 'static': weight of a: expected a finite number >= 0, got -1.0",
        ),
        ({"method": "static", "weights": {"a": float("nan")}}, "weight of a: expected a finite number >= 0, got nan"),
        (
            {"method": "uncertainty", "initial_log_variance": "x"},
            "loss weighting 'uncertainty': could not convert string to float: 'x'",
        ),
        ({"method": "dwa", "temprature": 2.0}, "loss weighting 'dwa': "),
        (["static"], "loss weighting: expected a method name or a mapping with 'method', got ['static']"),
    ],
)
def test_a_bad_weighting_config_is_one_line(config, message):
    with pytest.raises(UserError, match=re.escape(message)):
        make_weighting(config, ["a", "b"])


def test_equal_and_a_bare_method_name_are_read_as_the_docs_write_them():
    assert make_weighting({"method": "static", "weights": "equal"}, ["a", "b"]).weights() == {"a": 1.0, "b": 1.0}
    assert make_weighting("static", ["a", "b"]).weights() == {"a": 1.0, "b": 1.0}
    assert make_weighting({"method": "static", "weights": {"a": 2.0}}, ["a", "b"]).weights() == {"a": 2.0, "b": 1.0}
