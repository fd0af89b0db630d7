"""Training one candidate: it learns, it is reproducible, and it stops on divergence."""


import pytest

from mtl_search.errors import TrialDiverged
from mtl_search.training import train_candidate

SPEC = {"family": "tree", "widths": [16, 16], "groups": [[["task1", "task2"]], [["task1"], ["task2"]]], "tower": {"widths": [8]}}


def candidate(**training):
    return {"architecture": SPEC, "training": {"epochs": 4, "learning_rate": 3e-3, "batch_size": 64} | training}


def test_training_lowers_the_loss(tiny_synthetic):
    result = train_candidate(tiny_synthetic, candidate(epochs=6))
    first, last = result.history[0]["train_loss"], result.history[-1]["train_loss"]
    for task in ("task1", "task2"):
        assert last[task] < first[task]
    assert result.history[-1]["validation"]["task1"]["mse"] < result.history[0]["validation"]["task1"]["mse"]


def test_result_has_per_epoch_validation_and_final_test_metrics(tiny_synthetic):
    result = train_candidate(tiny_synthetic, candidate(epochs=2))
    assert [h["epoch"] for h in result.history] == [1, 2]
    assert set(result.validation) == set(result.test) == {"task1", "task2"}
    assert result.validation == result.history[-1]["validation"]
    assert result.n_params == sum(p.numel() for p in result.model.parameters())
    assert result.wall_time > 0
    assert result.history[0]["weights"] == {"task1": 1.0, "task2": 1.0}


def test_same_seed_gives_the_same_metrics(tiny_synthetic):
    first = train_candidate(tiny_synthetic, candidate(seed=7))
    second = train_candidate(tiny_synthetic, candidate(seed=7))
    other = train_candidate(tiny_synthetic, candidate(seed=8))
    assert [h["validation"] for h in first.history] == [h["validation"] for h in second.history]
    assert [h["train_loss"] for h in first.history] == [h["train_loss"] for h in second.history]
    assert first.test == second.test
    assert first.test != other.test


def test_static_weights_scale_the_task_losses(tiny_synthetic):
    only_task1 = train_candidate(tiny_synthetic, candidate(epochs=5) | {"loss_weighting": {"method": "static", "weights": {"task1": 1.0, "task2": 0.0}}})
    both = train_candidate(tiny_synthetic, candidate(epochs=5))
    assert only_task1.history[-1]["weights"] == {"task1": 1.0, "task2": 0.0}
    # with no weight on task2 its shared-trunk-free tower never trains, so it stays worse
    assert only_task1.validation["task2"]["mse"] > both.validation["task2"]["mse"]


def test_a_diverging_candidate_stops_with_a_reason(tiny_synthetic):
    with pytest.raises(TrialDiverged, match="non-finite training loss in epoch 1"):
        train_candidate(tiny_synthetic, candidate(learning_rate=1e12, optimizer="sgd"))
