"""Checks every architecture family must pass; the per-family test files call these."""

from __future__ import annotations

from typing import Any

import torch

from mtl_search.architectures import MultiTaskModel, build_model, spec_from_json, spec_to_json
from mtl_search.tasks import Task
from mtl_search.training import train_candidate

VECTOR = {"kind": "vector", "size": 10}
IMAGE = {"kind": "image", "shape": [1, 12, 12]}
# tanh keeps every unit alive, so a zero gradient means "not connected", not "dead ReLU"
SMOOTH_BLOCK = {"norm": "none", "activation": "tanh", "dropout": 0.0}


def regression_tasks(n: int) -> list[Task]:
    return [Task(name=f"task{i + 1}", kind="regression") for i in range(n)]


def with_common(
    spec: dict[str, Any], block: dict[str, Any] | None = None, tower: list[int] | None = None
) -> dict[str, Any]:
    return dict(
        spec, block=dict(block or SMOOTH_BLOCK), tower={"widths": list(tower if tower is not None else [4])}, stem={}
    )


def inputs_for(schema: dict[str, Any], rows: int = 16, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    if schema["kind"] == "image":
        return {"image": torch.randn(rows, *schema["shape"], generator=generator)}
    return {"x": torch.randn(rows, schema["size"], generator=generator)}


def build(spec: dict[str, Any], n_tasks: int = 2, schema: dict[str, Any] = VECTOR) -> MultiTaskModel:
    torch.manual_seed(0)
    return build_model(spec, schema, regression_tasks(n_tasks))


def assert_forward_shapes(spec: dict[str, Any], n_tasks: int, schema: dict[str, Any] = VECTOR) -> None:
    model = build(spec, n_tasks, schema)
    outputs = model(inputs_for(schema, rows=7))
    assert list(outputs) == [f"task{i + 1}" for i in range(n_tasks)]
    for output in outputs.values():
        assert output.shape == (7, 1)
        assert torch.isfinite(output).all()


def tasks_reaching(model: MultiTaskModel, inputs: dict[str, torch.Tensor]) -> dict[str, set[str]]:
    """For each body parameter: the tasks whose output has a non-zero gradient with respect to it."""
    outputs = model(inputs)
    parameters = dict(model.body.named_parameters())
    reached: dict[str, set[str]] = {name: set() for name in parameters}
    for task, output in outputs.items():
        grads = torch.autograd.grad(output.sum(), list(parameters.values()), retain_graph=True, allow_unused=True)
        for name, grad in zip(parameters, grads):
            if grad is not None and grad.abs().sum() > 0:
                reached[name].add(task)
    return reached


def assert_gradients_reach_every_parameter(model: MultiTaskModel, inputs: dict[str, torch.Tensor]) -> None:
    model.zero_grad()
    outputs = model(inputs)
    total = sum(output.pow(2).mean() for output in outputs.values())
    regularization = model.regularization()
    if regularization is not None:
        total = total + regularization
    total.backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing, f"no gradient reaches {missing}"


def assert_shared_parameters_are_those_several_tasks_reach(
    model: MultiTaskModel, inputs: dict[str, torch.Tensor]
) -> None:
    reached = tasks_reaching(model, inputs)
    by_id = {id(p): name for name, p in model.body.named_parameters()}
    declared = {by_id[id(p)] for p in model.body.shared_parameters()}
    assert declared == {name for name, tasks in reached.items() if len(tasks) > 1}


def assert_spec_round_trips(spec: dict[str, Any]) -> None:
    again = spec_from_json(spec_to_json(spec))
    assert again == spec
    first, second = build(spec), build(again)
    assert sum(p.numel() for p in first.parameters()) == sum(p.numel() for p in second.parameters())
    inputs = inputs_for(VECTOR)
    first.eval()
    second.eval()
    for name, output in first(inputs).items():
        torch.testing.assert_close(output, second(inputs)[name])


def assert_training_lowers_loss(data, spec: dict[str, Any], epochs: int = 6) -> dict[str, Any]:
    candidate = {
        "architecture": spec,
        "training": {"epochs": epochs, "learning_rate": 1e-2, "batch_size": 64, "seed": 0},
    }
    result = train_candidate(data, candidate, device="cpu")
    first, last = result.history[0]["validation"], result.history[-1]["validation"]
    for task in data.task_names:
        assert last[task]["loss"] < first[task]["loss"], (task, first[task]["loss"], last[task]["loss"])
    return result.sharing


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def linear(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def towers(n_tasks: int, features: int, widths: list[int]) -> int:
    total, size = 0, features
    for width in widths:
        total, size = total + linear(size, width), width
    return n_tasks * (total + linear(size, 1))
