"""DB-MTL: hand-computed updates on a model whose log-loss gradients are known, an independent
re-derivation over several batches, and what a user sees (fp16 refused, trains alone); a small
search of DB-MTL and of GradVac."""

import optuna
import pytest
import torch
from torch import nn

from mtl_search.errors import UserError
from mtl_search.records.trial import TrialRecord
from mtl_search.search.runner import SearchSettings, run_search
from mtl_search.search.space import parse_space
from mtl_search.training import train_candidate
from mtl_search.training.population import alone_reason
from mtl_search.weighting import make_weighting

TASKS = ["task1", "task2"]


class KnownGradients(nn.Module):
    """A shared vector w and one offset per task: L_t = scale_t * exp(w . a_t + b_t), so the
    gradient of log L_t is a_t on w and 1 on b_t, whatever scale_t."""

    def __init__(self, n_tasks=2):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(2, dtype=torch.float64))
        self.offsets = nn.ParameterList([nn.Parameter(torch.zeros((), dtype=torch.float64)) for _ in range(n_tasks)])

    def shared_parameters(self):
        return [self.w]

    def losses(self, directions, scales):
        return {
            f"task{t + 1}": scale * torch.exp(self.w @ torch.tensor(a, dtype=torch.float64) + self.offsets[t])
            for t, (a, scale) in enumerate(zip(directions, scales))
        }


def step(weighting, model, directions, scales=(1.0, 1.0)):
    model.zero_grad(set_to_none=True)
    weighting.backward(model.losses(directions, scales), model, None)
    return model.w.grad.clone(), [float(b.grad) for b in model.offsets]


def test_two_task_steps_by_hand():
    weighting = make_weighting({"method": "db_mtl", "beta": 0.5, "beta_decay": 0.0}, TASKS)
    model = KnownGradients()
    # task1's loss is 50 times task2's: the logarithm removes the scale, its gradient is a_1 = (3, 0)
    directions, scales = [[3.0, 0.0], [0.0, 1.0]], [50.0, 1.0]

    shared, own = step(weighting, model, directions, scales)
    # averages 0.5 * a_t = (1.5, 0) and (0, 0.5); norms 1.5 and 0.5, so task2's is scaled by 3
    assert torch.allclose(shared, torch.tensor([1.5, 1.5], dtype=torch.float64))
    assert own == pytest.approx([1.0, 1.0])  # the plain gradient of sum_t log L_t
    assert weighting.weights() == pytest.approx({"task1": 1.0, "task2": 3.0})

    shared, _ = step(weighting, model, directions, scales)
    # averages 0.5 * (1.5, 0) + 0.5 * (3, 0) = (2.25, 0) and (0, 0.75)
    assert torch.allclose(shared, torch.tensor([2.25, 2.25], dtype=torch.float64))


def test_beta_decays_over_batches():
    weighting = make_weighting({"method": "db_mtl", "beta": 0.5, "beta_decay": 1.0}, TASKS)
    model = KnownGradients()
    directions = [[3.0, 0.0], [0.0, 1.0]]
    step(weighting, model, directions)  # beta_1 = 0.5: averages (1.5, 0), (0, 0.5)
    shared, _ = step(weighting, model, directions)
    # beta_2 = 0.5 / 2: 0.25 * (1.5, 0) + 0.75 * (3, 0) = (2.625, 0), and (0, 0.875) scaled by 3
    assert torch.allclose(shared, torch.tensor([2.625, 2.625], dtype=torch.float64))


def test_several_batches_match_a_re_derivation():
    """Four tasks, five batches of random log-loss gradients: the averages kept by a plain loop, each
    rescaled to the largest norm and summed."""
    generator = torch.Generator().manual_seed(0)
    batches = [torch.randn(4, 7, generator=generator, dtype=torch.float64) for _ in range(5)]
    beta, decay = 0.8, 0.5
    weighting = make_weighting({"method": "db_mtl", "beta": beta, "beta_decay": decay}, ["a", "b", "c", "d"])
    averages = [torch.zeros(7, dtype=torch.float64) for _ in range(4)]
    for k, gradients in enumerate(batches, start=1):
        beta_k = beta / k**decay
        averages = [beta_k * average + (1 - beta_k) * g for average, g in zip(averages, gradients)]
        largest = max(float(average.norm()) for average in averages)
        expected = sum(largest / float(average.norm()) * average for average in averages)
        assert torch.allclose(weighting.step(gradients), expected, atol=1e-12)


def test_gradients_that_are_not_finite_keep_the_plain_sum_and_the_averages():
    weighting = make_weighting({"method": "db_mtl"}, TASKS)
    weighting.step(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
    kept = weighting.gradient_averages.clone()
    assert weighting.step(torch.tensor([[float("inf"), 0.0], [0.0, 1.0]])) is None
    assert torch.equal(weighting.gradient_averages, kept)


def test_bad_settings_are_refused_naming_the_key():
    with pytest.raises(UserError, match=r"loss_weighting\.db_mtl\.beta: 1\.0 is not in \[0, 1\)"):
        make_weighting({"method": "db_mtl", "beta": 1.0}, TASKS)
    with pytest.raises(UserError, match=r"loss_weighting\.db_mtl\.beta_decay"):
        make_weighting({"method": "db_mtl", "beta_decay": -0.5}, TASKS)


def candidate(precision="fp32"):
    return {
        "architecture": {"family": "tree", "widths": [8], "groups": [[["task1", "task2"]]]},
        "training": {"epochs": 1, "batch_size": 64, "learning_rate": 0.01, "seed": 0, "precision": precision},
        "loss_weighting": {"method": "db_mtl"},
    }


def test_trains_alone_in_a_population_and_is_refused_under_fp16(tiny_synthetic):
    assert alone_reason(candidate(), tiny_synthetic) == "loss weighting db_mtl works on each member's own gradients"
    with pytest.raises(UserError, match="training.precision fp16: loss weighting db_mtl averages gradients") as error:
        train_candidate(tiny_synthetic, candidate("fp16"))
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("method", "section"),
    [
        ("db_mtl", {"beta": {"low": 0.5, "high": 0.99}, "beta_decay": {"low": 0.0, "high": 1.0}}),
        ("gradvac", {"beta": {"low": 1e-3, "high": 0.5, "log": True}}),
    ],
)
def test_a_small_search_draws_the_hyperparameters_within_their_ranges(tiny_synthetic, storage_url, method, section):
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    space = parse_space(
        {
            "training": {"epochs": 1, "batch_size": 64},
            "families": {"tree": {"depth": 1, "width": 8, "grouping": "shared"}},
            "loss_weighting": {method: section},
            "pruning": {"enabled": False},
        }
    )
    settings = SearchSettings(method, storage=storage_url, sampler="random", n_trials=2, save_artifacts=False)
    study = run_search(tiny_synthetic, space, settings)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    for trial in study.trials:
        weighting = TrialRecord.read(trial, only=("candidate",)).candidate.loss_weighting
        assert weighting["method"] == method
        for name, bounds in section.items():
            assert bounds["low"] <= weighting[name] <= bounds["high"]
            assert trial.params[f"{method}.{name}"] == weighting[name]
