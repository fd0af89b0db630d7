import pytest
import scipy.linalg
import torch

from mtl_search.architectures import build_model, summarize, summarize_learned
from mtl_search.architectures.relationship import TaskRelationshipPrior, closed_form_covariance
from mtl_search.errors import UserError
from mtl_search.training import train_candidate
from tests.architectures.family_checks import VECTOR, inputs_for, regression_tasks, with_common

TREE = {"family": "tree", "widths": [6], "groups": [[["task1", "task2", "task3"]]]}


def spec(weight=0.5, ridge=0.1, tower=(4,)):
    return dict(with_common(TREE, tower=list(tower)), relationship={"weight": weight, "ridge": ridge})


def model_with_prior(**kwargs):
    torch.manual_seed(0)
    return build_model(spec(**kwargs), VECTOR, regression_tasks(3))


def tower_weights(model, task):
    return [m.weight for m in model.towers[task].modules() if isinstance(m, torch.nn.Linear)]


def test_penalty_equals_half_weight_times_trace_of_w_precision_wt():
    model = model_with_prior(weight=0.5)
    prior = model.relationship
    omega = torch.tensor([[0.5, 0.2, 0.0], [0.2, 0.3, -0.1], [0.0, -0.1, 0.2]])
    prior.covariance.copy_(omega)
    prior.precision.copy_(torch.linalg.inv(omega))
    # W: D x T, each column the task's tower weights (hidden then output layer) flattened
    w = torch.stack([torch.cat([p.reshape(-1) for p in tower_weights(model, t)]) for t in model.task_names], dim=1)
    expected = 0.5 * 0.5 * torch.trace(w @ torch.linalg.inv(omega) @ w.T)
    torch.testing.assert_close(prior.penalty(), expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(model.regularization(), expected, rtol=1e-4, atol=1e-5)


def test_prior_starts_independent_so_the_penalty_is_weight_decay_scaled_by_task_count():
    model = model_with_prior(weight=0.2)
    squared = sum((p**2).sum() for t in model.task_names for p in tower_weights(model, t))
    torch.testing.assert_close(model.relationship.penalty(), 0.5 * 0.2 * 3 * squared)


def test_reestimate_matches_closed_form_with_relative_ridge():
    model = model_with_prior(ridge=0.1)
    model.end_epoch()
    w = model.relationship.stacked().detach().double().numpy()
    root = scipy.linalg.sqrtm(w.T @ w).real
    trace = root.trace()
    expected = (root + 0.1 * trace / 3 * torch.eye(3).double().numpy()) / (1.1 * trace)
    torch.testing.assert_close(model.relationship.covariance.double(), torch.from_numpy(expected), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(
        model.relationship.precision.double() @ torch.from_numpy(expected), torch.eye(3).double(), rtol=1e-3, atol=1e-4
    )
    assert model.relationship.covariance.trace().item() == pytest.approx(1.0, abs=1e-5)


def test_closed_form_sees_correlated_tasks_and_stays_well_conditioned():
    base = torch.randn(50, generator=torch.Generator().manual_seed(0))
    w = torch.stack([base, base * 2.0, -base], dim=1)  # rank one: every pair perfectly (anti)correlated
    omega = closed_form_covariance(w, ridge=0.1)
    correlation = omega[0, 1] / (omega[0, 0] * omega[1, 1]).sqrt()
    assert correlation > 0.5
    assert omega[0, 2] < 0
    eigenvalues = torch.linalg.eigvalsh(omega)
    # the bound 1 + T / ridge is reached exactly by rank-one weights: allow rounding
    assert eigenvalues.max() / eigenvalues.min() <= (1 + 3 / 0.1) * (1 + 1e-9)
    zero = closed_form_covariance(torch.zeros(5, 3), ridge=0.1)
    torch.testing.assert_close(zero, torch.eye(3).double() / 3)


def test_prior_covers_only_layers_whose_shape_agrees_across_tasks():
    towers = {
        "a": torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2)),
        "b": torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 1)),
    }
    prior = TaskRelationshipPrior.over_towers(towers, ["a", "b"], weight=1.0)
    assert prior.stacked().shape == (12, 2)
    with pytest.raises(UserError, match="no layer of equal shape"):
        TaskRelationshipPrior.over_towers(
            {"a": torch.nn.Linear(4, 2), "b": torch.nn.Linear(4, 1)}, ["a", "b"], weight=1.0
        )


def test_training_reestimates_and_records_the_task_covariance(tiny_synthetic3):
    candidate = {"architecture": spec(weight=0.05), "training": {"epochs": 2, "batch_size": 64, "seed": 0}}
    result = train_candidate(tiny_synthetic3, candidate, device="cpu")
    report = result.sharing["relationship"]
    assert report["tasks"] == ["task1", "task2", "task3"]
    assert report["covariance"] != [[1 / 3 if i == j else 0.0 for j in range(3)] for i in range(3)]
    assert all(report["correlation"][i][i] == pytest.approx(1.0) for i in range(3))
    assert summarize_learned(result.sharing).startswith("corr task1~task2")


def test_spec_without_weight_or_with_zero_weight_has_no_prior():
    torch.manual_seed(0)
    assert build_model(spec(weight=0.0), VECTOR, regression_tasks(3)).relationship is None
    assert "rel=0.5" in summarize(spec(weight=0.5), ["task1", "task2", "task3"])


@pytest.mark.parametrize(
    "settings, fragment",
    [
        ({"weight": -1}, "relationship.weight"),
        ({"weight": 1, "ridge": 0}, "relationship.ridge"),
        ({"weight": 1, "rigde": 0.1}, "relationship.rigde"),
        ({"ridge": 0.1}, "relationship must be an object with 'weight'"),
    ],
)
def test_bad_relationship_settings_are_user_errors(settings, fragment):
    with pytest.raises(UserError, match=fragment):
        build_model(dict(spec(), relationship=settings), VECTOR, regression_tasks(3))


def test_prior_composes_with_gradients_into_every_tower():
    model = model_with_prior(weight=1.0)
    model.zero_grad()
    model.regularization().backward()
    for task in model.task_names:
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in tower_weights(model, task))
    assert model(inputs_for(VECTOR))["task1"].shape == (16, 1)
