"""Training one candidate: it learns, it is reproducible, it keeps its best epoch, and it stops on divergence."""

import math
import re

import pytest

from mtl_search.errors import TrialDiverged
from mtl_search.training import evaluate, train_candidate
from mtl_search.training.trainer import checkpoint_score, replaces_kept

SPEC = {
    "family": "tree",
    "widths": [16, 16],
    "groups": [[["task1", "task2"]], [["task1"], ["task2"]]],
    "tower": {"widths": [8]},
}


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
    # optimiser steps so far: the batches of every epoch up to this one
    per_epoch = math.ceil(len(tiny_synthetic.train) / 64)
    assert [h["steps"] for h in result.history] == [per_epoch, 2 * per_epoch]


def test_same_seed_gives_the_same_metrics(tiny_synthetic):
    first = train_candidate(tiny_synthetic, candidate(seed=7))
    second = train_candidate(tiny_synthetic, candidate(seed=7))
    other = train_candidate(tiny_synthetic, candidate(seed=8))
    assert [h["validation"] for h in first.history] == [h["validation"] for h in second.history]
    assert [h["train_loss"] for h in first.history] == [h["train_loss"] for h in second.history]
    assert first.test == second.test
    assert first.test != other.test


def test_static_weights_scale_the_task_losses(tiny_synthetic):
    only_task1 = train_candidate(
        tiny_synthetic,
        candidate(epochs=5) | {"loss_weighting": {"method": "static", "weights": {"task1": 1.0, "task2": 0.0}}},
    )
    both = train_candidate(tiny_synthetic, candidate(epochs=5))
    assert only_task1.history[-1]["weights"] == {"task1": 1.0, "task2": 0.0}
    # with no weight on task2 its shared-trunk-free tower never trains, so it stays worse
    assert only_task1.validation["task2"]["mse"] > both.validation["task2"]["mse"]


def test_a_diverging_candidate_stops_with_a_reason(tiny_synthetic):
    with pytest.raises(TrialDiverged, match="non-finite training loss in epoch 1"):
        train_candidate(tiny_synthetic, candidate(learning_rate=1e12, optimizer="sgd"))


def test_a_blown_up_but_finite_loss_fails_like_a_non_finite_one(tiny_synthetic):
    # Adam at learning rate 10 keeps the loss finite (about 1e12 on standardised targets); left
    # to complete, such a trial would set the hypervolume's bounds and the figures' axes
    with pytest.raises(
        TrialDiverged,
        match=r"training loss of task task1 reached .* in epoch 1, over 1e\+06 times "
        r"that of a constant prediction \(1\): the weights blew up \(learning rate 10\)",
    ):
        train_candidate(tiny_synthetic, candidate(learning_rate=10.0))
    # a high learning rate that spikes and recovers is left alone
    recovered = train_candidate(tiny_synthetic, candidate(learning_rate=1.0))
    assert max(max(h["train_loss"].values()) for h in recovered.history) > 1000


def test_checkpoint_score_is_scale_free_and_respects_dominance():
    def scores(a, b):
        return {"task1": {"loss": a}, "task2": {"loss": b}}

    assert checkpoint_score(scores(0.5, 2.0)) == pytest.approx(math.log(0.5) + math.log(2.0))
    # halving one task's loss counts as much whatever that task's scale
    assert checkpoint_score(scores(0.5, 200.0)) - checkpoint_score(scores(1.0, 200.0)) == pytest.approx(
        checkpoint_score(scores(0.5, 2.0)) - checkpoint_score(scores(1.0, 2.0))
    )
    assert checkpoint_score(scores(0.4, 1.9)) < checkpoint_score(scores(0.5, 2.0))  # better on both: lower
    assert checkpoint_score(scores(math.nan, 1.0)) == math.inf  # never kept over a finite epoch
    assert replaces_kept(0.5, 1.0) and not replaces_kept(1.0, 1.0) and not replaces_kept(math.inf, 1.0)
    assert replaces_kept(math.inf, math.inf)  # with no finite epoch at all, the latest is kept


def test_best_checkpoint_returns_the_best_epochs_weights_and_metrics(tiny_synthetic):
    # a wide network at a high learning rate on 180 training rows overfits: later epochs get worse
    overfitting = candidate(epochs=12, learning_rate=3e-2, batch_size=16)
    best = train_candidate(tiny_synthetic, overfitting | {"training": overfitting["training"] | {"checkpoint": "best"}})
    last = train_candidate(tiny_synthetic, overfitting)  # the trainer's default: the last epoch
    assert last.kept_epoch == 12 and last.validation == last.history[-1]["validation"]
    assert [h["validation"] for h in best.history] == [h["validation"] for h in last.history]  # same run
    chosen = min(range(12), key=lambda e: checkpoint_score(best.history[e]["validation"]))
    assert best.kept_epoch == chosen + 1 < 12
    assert best.validation == best.history[chosen]["validation"]
    assert [h["kept_epoch"] for h in best.history][-1] == best.kept_epoch
    # the returned model holds that epoch's weights: evaluating it gives that epoch's metrics
    again = evaluate(best.model, tiny_synthetic, tiny_synthetic.validation)
    for task in ("task1", "task2"):
        assert again[task]["mse"] == pytest.approx(best.validation[task]["mse"], rel=1e-5)
    assert checkpoint_score(best.validation) < checkpoint_score(last.validation)


def test_the_epoch_callback_sees_the_kept_weights_metrics(tiny_synthetic):
    seen = []
    overfitting = candidate(epochs=12, learning_rate=3e-2, batch_size=16, checkpoint="best")
    result = train_candidate(tiny_synthetic, overfitting, on_epoch=lambda epoch, scores, record: seen.append(scores))
    assert seen == [result.history[h["kept_epoch"] - 1]["validation"] for h in result.history]


def test_an_unknown_checkpoint_is_refused(tiny_synthetic):
    from mtl_search.errors import UserError

    with pytest.raises(UserError, match="training.checkpoint 'middle'"):
        train_candidate(tiny_synthetic, candidate(checkpoint="middle"))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"training": {"epoch": 1}}, "training.epoch: unknown key (expected one of epochs, learning_rate, "),
        ({"training": {"lr": 0.5}}, "training.lr: unknown key"),
        (
            {"trainng": {"epochs": 1}},
            "candidate: unknown key 'trainng' (expected architecture, training, loss_weighting)",
        ),
        ({"training": {"epochs": 0}}, "training.epochs: expected a whole number >= 1, got 0"),
        ({"training": {"epochs": 1.5}}, "training.epochs: expected a whole number >= 1, got 1.5"),
        ({"training": {"batch_size": -5}}, "training.batch_size: expected a whole number >= 1, got -5"),
        ({"training": {"seed": "a"}}, "training.seed: expected a whole number from 0 to 2**64 - 1"),
        ({"training": {"learning_rate": -0.1}}, "training.learning_rate: expected a finite number above 0, got -0.1"),
        (
            {"training": {"learning_rate": float("nan")}},
            "training.learning_rate: expected a finite number above 0, got nan",
        ),
        ({"training": {"weight_decay": -1e-4}}, "training.weight_decay: expected a finite number at least 0"),
        ({"training": {"optimizer": "rmsprop"}}, "training.optimizer 'rmsprop': expected one of adam, adamw, sgd"),
        ({"training": "fast"}, "candidate training: expected a mapping, got 'fast'"),
    ],
)
def test_a_hand_written_candidate_with_a_mistake_is_refused_before_training(tiny_synthetic, change, message):
    # a typo must not train quietly on the defaults, nor epochs 0 return an untrained model
    from mtl_search.errors import UserError

    with pytest.raises(UserError, match=re.escape(message)):
        train_candidate(tiny_synthetic, {"architecture": SPEC} | change)
    with pytest.raises(UserError, match=re.escape("candidate: 'architecture' (the spec) is missing")):
        train_candidate(tiny_synthetic, {"training": {"epochs": 1}})


def test_the_model_comes_back_ready_to_predict(tiny_synthetic):
    import torch

    spec = SPEC | {"block": {"norm": "batch", "dropout": 0.5}}
    result = train_candidate(tiny_synthetic, {"architecture": spec, "training": {"epochs": 1, "batch_size": 64}})
    assert not result.model.training  # dropout off, batch norm on its running statistics
    one_row = {"x": tiny_synthetic.test.inputs["x"][:1]}
    with torch.no_grad():
        first, again = result.model(one_row), result.model(one_row)  # a batch of 1 fails batch norm in train mode
    assert torch.equal(first["task1"], again["task1"])
    assert evaluate(result.model, tiny_synthetic, tiny_synthetic.test) == result.test


def test_the_optimiser_uses_the_fused_kernel_where_the_parameters_allow_it():
    import torch

    from mtl_search.training.trainer import make_optimizer

    real = [torch.nn.Parameter(torch.randn(3))]
    assert make_optimizer("adam", [{"params": real}], 1e-3, 0.0).defaults["fused"]
    # PyTorch would refuse complex parameters only at the first step: they get the default kernel
    complex_ = torch.nn.Parameter(torch.randn(3, dtype=torch.complex64))
    optimizer = make_optimizer("adamw", [complex_], 1e-3, 0.0)
    assert not optimizer.defaults["fused"]
    complex_.grad = torch.ones(3, dtype=torch.complex64)
    optimizer.step()
