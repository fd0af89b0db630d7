"""Partially labelled rows: each task trains and is scored on the rows that carry its label."""

from __future__ import annotations

import math

import torch
from sklearn.metrics import roc_auc_score

from mtl_search.data import load_data
from mtl_search.tasks import Task
from mtl_search.training import predict, train_candidate

NAN = float("nan")


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_losses_skip_missing_labels_by_hand():
    binary = Task("b", "binary")
    loss = binary.loss(torch.tensor([0.5, -1.0, 2.0, 0.3]), torch.tensor([1.0, NAN, 0.0, NAN]))
    # BCE with logits: -log sigmoid(0.5) for the 1, -log(1 - sigmoid(2)) for the 0
    assert math.isclose(float(loss), (softplus(-0.5) + softplus(2.0)) / 2, rel_tol=1e-6)

    multiclass = Task("m", "multiclass", n_classes=3)
    logits = torch.tensor([[1.0, 0.0, 0.0], [5.0, 5.0, 5.0], [0.0, 2.0, 0.0]])
    loss = multiclass.loss(logits, torch.tensor([0.0, NAN, 1.0]))
    by_hand = (-(1 - math.log(math.e + 2)) - (2 - math.log(math.exp(2) + 2))) / 2
    assert math.isclose(float(loss), by_hand, rel_tol=1e-6)

    regression = Task("r", "regression")
    loss = regression.loss(torch.tensor([1.0, 100.0, 3.0]), torch.tensor([2.0, NAN, 1.0]))
    assert math.isclose(float(loss), (1 + 4) / 2, rel_tol=1e-6)
    assert float(regression.loss(torch.tensor([1.0]), torch.tensor([NAN]))) == 0.0  # nothing labelled


def test_unlabelled_rows_send_no_gradient():
    task = Task("b", "binary")
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(0), requires_grad=True)
    weights = torch.tensor([0.3, -0.2, 0.5])
    task.loss(x @ weights, torch.tensor([1.0, NAN, 0.0, NAN, 1.0, 0.0])).backward()
    assert torch.all(x.grad[[1, 3]] == 0)
    assert torch.all(x.grad[[0, 2, 4, 5]].abs().sum(dim=1) > 0)


def test_metrics_use_labelled_rows_only():
    task = Task("b", "binary", metrics=("auc", "accuracy"))
    output = torch.tensor([2.0, -1.0, 0.5, -3.0, 1.0])
    target = torch.tensor([1.0, 0.0, NAN, 1.0, NAN])
    scores = task.evaluate(output, target)
    assert math.isclose(scores["auc"], roc_auc_score([1, 0, 1], [2.0, -1.0, -3.0]))
    assert math.isclose(scores["accuracy"], 2 / 3, rel_tol=1e-6)  # float32 mean


def test_training_on_a_partially_labelled_table(customers_csv):
    data = load_data(None, {"ignore": "customer_id"}, str(customers_csv), ["churn:binary", "spend:regression"])
    assert torch.isnan(data.train.targets["spend"]).any()  # 30% of spend labels are missing
    candidate = {
        "architecture": {"family": "tree", "widths": [16], "groups": [[["churn", "spend"]]], "tower": {"widths": [8]}},
        "training": {"epochs": 2, "batch_size": 32, "learning_rate": 0.01},
    }
    result = train_candidate(data, candidate, device="cpu")
    assert all(math.isfinite(v) for epoch in result.history for v in epoch["train_loss"].values())
    outputs = predict(result.model, data.validation)
    labelled = ~torch.isnan(data.validation.targets["spend"])
    by_hand = ((outputs["spend"].reshape(-1)[labelled] - data.validation.targets["spend"][labelled]) ** 2).mean()
    assert math.isclose(result.validation["spend"]["mse"], float(by_hand), rel_tol=1e-5)
