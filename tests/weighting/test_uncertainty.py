"""Uncertainty weighting: the loss is the stated formula, per task kind."""

import math

import pytest
import torch

from mtl_search.training import train_candidate
from mtl_search.weighting import make_weighting


def weighting_with(log_variances, kinds):
    weighting = make_weighting({"method": "uncertainty"}, list(kinds), kinds)
    with torch.no_grad():
        weighting.log_variances.copy_(torch.tensor(log_variances))
    return weighting


def test_the_loss_equals_the_formula_for_given_log_variances():
    weighting = weighting_with([0.3, -0.7], {"price": "regression", "clicked": "binary"})
    losses = {"price": torch.tensor(2.0), "clicked": torch.tensor(0.5)}
    expected = (0.5 * math.exp(-0.3) * 2.0 + 0.5 * 0.3) + (math.exp(0.7) * 0.5 + 0.5 * -0.7)
    assert float(weighting.total_loss(losses).detach()) == pytest.approx(expected, rel=1e-6)
    assert weighting.weights() == pytest.approx({"price": 0.5 * math.exp(-0.3), "clicked": math.exp(0.7)}, rel=1e-6)


def test_the_log_variance_gradient_vanishes_where_the_formula_has_its_minimum():
    # d/ds (c e^-s L + s/2) = 0 at s = log(2 c L)
    weighting = weighting_with(
        [math.log(2 * 0.5 * 3.0), math.log(2 * 1.0 * 0.2)], {"a": "regression", "b": "multiclass"}
    )
    weighting.backward({"a": torch.tensor(3.0), "b": torch.tensor(0.2)}, torch.nn.Identity(), None)
    assert weighting.log_variances.grad.abs().max() < 1e-6


def test_the_trainer_learns_the_log_variances(tiny_synthetic):
    spec = {"family": "tree", "widths": [8], "groups": [[["task1", "task2"]]], "tower": {"widths": []}}
    candidate = {
        "architecture": spec,
        "loss_weighting": {"method": "uncertainty"},
        "training": {"epochs": 3, "batch_size": 32, "learning_rate": 0.05},
    }
    result = train_candidate(tiny_synthetic, candidate)
    assert result.weighting == {"method": "uncertainty", "initial_log_variance": 0.0}
    # s_t moves towards log(L_t); as the losses fall below 1 the weight 0.5 exp(-s_t) rises above 0.5
    for task in ("task1", "task2"):
        assert result.history[-1]["train_loss"][task] < 0.5
        weights = [h["weights"][task] for h in result.history]
        assert 0.5 < weights[0] < weights[1] < weights[2]
