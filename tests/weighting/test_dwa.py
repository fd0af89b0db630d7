"""Dynamic Weight Average: weights from the two latest epochs' mean losses."""

import math

import pytest

from mtl_search.errors import UserError
from mtl_search.training import train_candidate
from mtl_search.weighting import make_weighting
from mtl_search.weighting.dwa import dwa_weights


def by_hand(before_last, last, temperature):
    scores = [math.exp(now / before / temperature) for before, now in zip(before_last, last)]
    return [len(scores) * s / sum(scores) for s in scores]


def test_weights_follow_the_formula_on_a_loss_history():
    dwa = make_weighting({"method": "dwa", "temperature": 2.0}, ["a", "b", "c"])
    history = [{"a": 1.0, "b": 2.0, "c": 4.0}, {"a": 0.5, "b": 1.8, "c": 4.0}, {"a": 0.45, "b": 0.9, "c": 3.0}]
    seen = [dwa.weights()]
    for epoch_losses in history:
        dwa.end_epoch(epoch_losses)
        seen.append(dwa.weights())
    assert seen[0] == seen[1] == {"a": 1.0, "b": 1.0, "c": 1.0}  # the first two epochs
    assert list(seen[2].values()) == pytest.approx(by_hand([1.0, 2.0, 4.0], [0.5, 1.8, 4.0], 2.0))
    assert list(seen[3].values()) == pytest.approx(by_hand([0.5, 1.8, 4.0], [0.45, 0.9, 3.0], 2.0))
    # the task whose loss fell least gets the largest weight; weights sum to K
    assert max(seen[2], key=seen[2].get) == "c" and sum(seen[2].values()) == pytest.approx(3.0)


def test_a_small_temperature_does_not_overflow():
    assert dwa_weights([1e-3, 1.0], [10.0, 1.0], 0.01) == pytest.approx([2.0, 0.0])


def test_the_trainer_records_the_weights_each_epoch_used(tiny_synthetic):
    spec = {"family": "tree", "widths": [8], "groups": [[["task1", "task2"]]], "tower": {"widths": []}}
    candidate = {
        "architecture": spec,
        "loss_weighting": {"method": "dwa", "temperature": 0.5},
        "training": {"epochs": 4, "batch_size": 64},
    }
    history = train_candidate(tiny_synthetic, candidate).history
    losses = [[h["train_loss"][t] for t in ("task1", "task2")] for h in history]
    weights = [[h["weights"][t] for t in ("task1", "task2")] for h in history]
    assert weights[0] == weights[1] == [1.0, 1.0]
    assert weights[2] == pytest.approx(by_hand(losses[0], losses[1], 0.5))
    assert weights[3] == pytest.approx(by_hand(losses[1], losses[2], 0.5))


def test_a_temperature_that_is_not_positive_is_refused():
    with pytest.raises(UserError, match="loss_weighting.dwa.temperature"):
        make_weighting({"method": "dwa", "temperature": 0.0}, ["a", "b"])
