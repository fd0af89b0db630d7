"""The loss-only weightings (famo, rlw, stch, gls): each against a step worked out by hand on two
tasks with known losses, reproducibility, refused settings, and a search that samples each."""

import math

import optuna
import pytest
import torch

from mtl_search.errors import UserError
from mtl_search.records.trial import TrialRecord
from mtl_search.search.runner import SearchSettings, run_search
from mtl_search.search.space import parse_space
from mtl_search.training import train_candidate
from mtl_search.training.population import alone_reason, train_population
from mtl_search.weighting import make_weighting

TASKS = ["a", "b"]
SHARED_TRUNK = {"family": "tree", "widths": [8], "groups": [[["task1", "task2"]]], "tower": {"widths": []}}


def losses_of(a: float, b: float) -> dict[str, torch.Tensor]:
    """Two task losses as leaves, so that their .grad is the factor the method put in front of each."""
    return {"a": torch.tensor(a, requires_grad=True), "b": torch.tensor(b, requires_grad=True)}


def step(weighting, a: float, b: float) -> tuple[float, dict[str, float]]:
    """One backward on losses (a, b): the total and the gradient reaching each loss."""
    losses = losses_of(a, b)
    total = weighting.backward(losses, torch.nn.Linear(1, 1), None)
    return float(total), {name: float(loss.grad) for name, loss in losses.items()}


def test_gls_trains_on_the_geometric_mean_and_weights_each_loss_by_mean_over_t_times_loss():
    gls = make_weighting({"method": "gls"}, TASKS)
    total, gradients = step(gls, 1.0, 4.0)
    assert total == pytest.approx(2.0)  # sqrt(1 * 4)
    # d sqrt(ab)/da = sqrt(b/a)/2 = 1, d/db = sqrt(a/b)/2 = 0.25: the small loss is pushed harder
    assert gradients == pytest.approx({"a": 1.0, "b": 0.25})
    assert gls.weights() == pytest.approx({"a": 1.0, "b": 0.25})
    step(gls, 1.0, 1.0)  # G = 1: 1/(2*1) each
    assert gls.weights() == pytest.approx({"a": 0.75, "b": 0.375})  # the epoch's mean
    gls.end_epoch({"a": 1.0, "b": 1.0})
    step(gls, 0.0, 4.0)  # a loss of 0 stays finite
    assert all(math.isfinite(w) for w in gls.weights().values())


def test_famo_step_by_hand():
    famo = make_weighting({"method": "famo", "lr": 0.1, "weight_decay": 0.0}, TASKS)
    # first batch: equal logits, z = (1/2, 1/2); c = 1 / (0.5/1 + 0.5/4) = 1.6; factors c z / L
    total, gradients = step(famo, 1.0, 4.0)
    assert gradients == pytest.approx({"a": 0.8, "b": 0.2})
    assert total == pytest.approx(1.6 * (0.5 * math.log(1.0) + 0.5 * math.log(4.0)))
    # second batch: log L_a fell by log 2, log L_b not at all. grad_xi = z (d - z.d) = (+log2/4, -log2/4);
    # Adam's first step moves each logit by lr against the sign of its gradient: xi = (-0.1, +0.1)
    _, gradients = step(famo, 0.5, 4.0)
    z_a = 1 / (1 + math.exp(0.2))
    z_b = 1 - z_a
    c = 1 / (z_a / 0.5 + z_b / 4.0)
    assert famo.logits.tolist() == pytest.approx([-0.1, 0.1], abs=1e-6)
    assert gradients == pytest.approx({"a": c * z_a / 0.5, "b": c * z_b / 4.0}, rel=1e-5)
    # the task that improved lost weight; the factors still sum to 1
    assert z_a < 0.5 and sum(gradients.values()) == pytest.approx(1.0)


def test_famo_weight_decay_pulls_the_logits_back_towards_equal_weights():
    famo = make_weighting({"method": "famo", "lr": 0.1, "weight_decay": 0.5}, TASKS)
    famo.logits.copy_(torch.tensor([1.0, -1.0]))
    step(famo, 1.0, 1.0)
    step(famo, 1.0, 1.0)  # no loss fell: only the decay acts, grad = 0.5 * xi, Adam moves by lr
    assert famo.logits.tolist() == pytest.approx([0.9, -0.9], abs=1e-6)


def test_stch_warm_up_then_the_smooth_maximum_of_log_loss_gaps():
    stch = make_weighting({"method": "stch", "mu": 0.5, "warmup_epochs": 1}, TASKS)
    total, gradients = step(stch, 2.0, 3.0)  # warm-up: equal weights
    assert total == pytest.approx(5.0) and gradients == {"a": 1.0, "b": 1.0}
    stch.end_epoch({"a": 2.0, "b": 4.0})  # the reference point: these mean losses
    total, gradients = step(stch, 1.0, 4.0)
    # gaps / mu = (log(1/2), log(4/4)) / 0.5 = (-2 log 2, 0); softmax = (0.2, 0.8)
    assert total == pytest.approx(0.5 * math.log(0.25 + 1.0))
    # the factor on L_t: softmax_t / L_t = (0.2 / 1, 0.8 / 4)
    assert gradients == pytest.approx({"a": 0.2, "b": 0.2})
    assert stch.weights() == pytest.approx({"a": 0.2, "b": 0.2})


def test_stch_without_warm_up_measures_from_the_first_batch_and_a_small_mu_picks_the_worst_task():
    stch = make_weighting({"method": "stch", "mu": 0.01, "warmup_epochs": 0}, TASKS)
    total, _ = step(stch, 3.0, 5.0)
    assert total == pytest.approx(0.01 * math.log(2.0))  # both gaps are 0
    _, gradients = step(stch, 1.5, 5.0)  # task a halved its loss, b did not move: b alone
    assert gradients["a"] == pytest.approx(0.0, abs=1e-12) and gradients["b"] == pytest.approx(1 / 5.0)


def by_hand_softmax_weights(seed: int) -> list[list[float]]:
    """T * softmax of two standard normals per batch, from a generator seeded ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(3):
        z = torch.randn(2, generator=generator, dtype=torch.float64).tolist()
        scores = [math.exp(value) for value in z]
        rows.append([2 * s / sum(scores) for s in scores])
    return rows


def test_rlw_draws_softmax_normal_weights_from_its_seed_every_batch():
    rlw = make_weighting({"method": "rlw", "seed": 5}, TASKS)
    expected = by_hand_softmax_weights(5)
    for row in expected:
        total, gradients = step(rlw, 1.0, 3.0)
        assert [gradients["a"], gradients["b"]] == pytest.approx(row, rel=1e-6)
        assert total == pytest.approx(row[0] * 1.0 + row[1] * 3.0, rel=1e-6)
    assert rlw.weights() == pytest.approx(
        {"a": sum(r[0] for r in expected) / 3, "b": sum(r[1] for r in expected) / 3}, rel=1e-6
    )
    assert expected[0] != expected[1]  # fresh weights each batch


@pytest.mark.parametrize("distribution", ["uniform", "dirichlet"])
def test_rlw_other_distributions_give_positive_weights_that_average_one(distribution):
    rlw = make_weighting({"method": "rlw", "distribution": distribution, "seed": 0}, ["a", "b", "c"])
    for _ in range(5):
        weights = rlw.draw()
        assert bool((weights > 0).all()) and float(weights.sum()) == pytest.approx(3.0)


def test_rlw_in_training_repeats_with_the_candidate_seed_and_changes_with_another(tiny_synthetic):
    def weights_seen(seed):
        candidate = {
            "architecture": SHARED_TRUNK,
            "loss_weighting": {"method": "rlw"},
            "training": {"epochs": 2, "batch_size": 64, "seed": seed},
        }
        return [epoch["weights"] for epoch in train_candidate(tiny_synthetic, candidate).history]

    assert weights_seen(1) == weights_seen(1)
    assert weights_seen(1) != weights_seen(2)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"method": "famo", "lr": 0.0}, "loss_weighting.famo.lr: must be positive, got 0.0"),
        ({"method": "famo", "weight_decay": -1.0}, "loss_weighting.famo.weight_decay: must be at least 0"),
        ({"method": "stch", "mu": -1.0}, "loss_weighting.stch.mu: must be positive"),
        ({"method": "stch", "warmup_epochs": 1.5}, "loss_weighting.stch.warmup_epochs: expected a whole number"),
        ({"method": "rlw", "distribution": "cauchy"}, "loss_weighting.rlw.distribution: 'cauchy' is not one of"),
        ({"method": "gls", "power": 2}, "loss weighting 'gls': "),
    ],
)
def test_bad_settings_are_one_line_errors(config, message):
    with pytest.raises(UserError, match=message.replace(".", r"\.").replace("(", r"\(")) as error:
        make_weighting(config, TASKS)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"famo": {"lr": {"low": 0.0, "high": 0.1}}}, "loss_weighting.famo.lr"),
        ({"stch": {"warmup_epochs": -1}}, "loss_weighting.stch.warmup_epochs"),
        ({"rlw": {"distribution": {"choices": ["normal", "cauchy"]}}}, "loss_weighting.rlw.distribution"),
        ({"gls": {"power": 2}}, "loss_weighting.gls"),
    ],
)
def test_a_bad_space_value_names_its_key(section, key):
    with pytest.raises(UserError, match=key.replace(".", r"\.")):
        parse_space({"families": {"tree": {}}, "loss_weighting": section})


SECTIONS = {
    "famo": {"lr": {"low": 0.01, "high": 0.1, "log": True}},
    "rlw": {"distribution": {"choices": ["normal", "dirichlet"]}},
    "stch": {"mu": {"low": 0.1, "high": 1.0}, "warmup_epochs": 0},
    "gls": {},
}


@pytest.mark.parametrize("method", sorted(SECTIONS))
def test_a_search_samples_the_method_and_its_hyperparameters(tiny_synthetic, storage_url, method):
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    space = parse_space(
        {
            "training": {"epochs": 1, "batch_size": 64},
            "families": {"tree": {"depth": 1, "width": 8, "grouping": "shared"}},
            "loss_weighting": {method: SECTIONS[method]},
            "pruning": {"enabled": False},
        }
    )
    settings = SearchSettings(method, storage=storage_url, sampler="random", n_trials=2, save_artifacts=False)
    study = run_search(tiny_synthetic, space, settings)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    for trial in study.trials:
        weighting = TrialRecord.read(trial, only=("candidate",)).candidate.loss_weighting
        assert weighting["method"] == method
        for name, value in SECTIONS[method].items():
            if isinstance(value, dict):  # a searched hyperparameter: drawn by the trial, within its range
                assert trial.params[f"{method}.{name}"] == weighting[name]
            else:
                assert weighting[name] == value


def test_population_training_trains_them_alone_with_the_results_of_training_each_by_itself(tiny_synthetic):
    candidates = [
        {
            "architecture": SHARED_TRUNK,
            "loss_weighting": {"method": method},
            "training": {"epochs": 2, "batch_size": 64},
        }
        for method in sorted(SECTIONS)
    ]
    assert all(alone_reason(candidate, tiny_synthetic) for candidate in candidates)
    together = train_population(tiny_synthetic, candidates)
    for candidate, result in zip(candidates, together):
        alone = train_candidate(tiny_synthetic, candidate)
        assert [e["weights"] for e in result.history] == [e["weights"] for e in alone.history]
        assert [e["train_loss"] for e in result.history] == [e["train_loss"] for e in alone.history]


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU"))]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("method", sorted(SECTIONS))
def test_each_method_steps_on_the_device_of_its_losses(method, device):
    weighting = make_weighting({"method": method, "seed": 0} if method == "rlw" else method, TASKS).to(device)
    assert all(buffer.device.type == device for buffer in weighting.buffers())
    for a, b in ((1.0, 4.0), (0.5, 3.0)):
        losses = {
            "a": torch.tensor(a, device=device, requires_grad=True),
            "b": torch.tensor(b, device=device, requires_grad=True),
        }
        total = weighting.backward(losses, torch.nn.Identity(), torch.tensor(0.25, device=device))
        assert total.device.type == device and math.isfinite(float(total))
        assert all(loss.grad is not None and float(loss.grad) > 0 for loss in losses.values())
    assert all(math.isfinite(w) and w > 0 for w in weighting.weights().values())


def test_rlw_without_a_seed_follows_the_global_seed_and_draws_nothing_from_the_global_generator():
    torch.manual_seed(11)
    first = make_weighting("rlw", TASKS).draw()
    after = torch.rand(1)
    torch.manual_seed(11)
    assert torch.equal(make_weighting("rlw", TASKS).draw(), first)
    assert torch.equal(torch.rand(1), after)  # the global stream is where it was
    torch.manual_seed(12)
    assert not torch.equal(make_weighting("rlw", TASKS).draw(), first)
