"""Training a deep ensemble: every member as the candidate on its own seed, fused, predicting together."""

from __future__ import annotations

import optuna
import pytest
import torch

from mtl_search.architectures import EnsembleModel
from mtl_search.training import evaluate, train_candidate
from mtl_search.errors import UserError
from mtl_search.training.population import (
    alone_reason,
    fusion_key,
    member_candidates,
    member_seed,
    train_population,
)
from tests.training.test_population import FAMILY_SPECS, assert_close, candidate

SPEC, _ = FAMILY_SPECS["tree"]


def ensemble(members: int = 3, **training):
    return candidate(SPEC | {"ensemble": {"members": members}}, **({"epochs": 3, "seed": 7} | training))


def assert_same_weights(mine: torch.nn.Module, theirs: torch.nn.Module) -> None:
    mine_state, their_state = mine.state_dict(), theirs.state_dict()
    assert set(mine_state) == set(their_state)
    for name, tensor in their_state.items():
        assert torch.allclose(mine_state[name], tensor, rtol=1e-4, atol=1e-5), name


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_each_member_is_the_candidate_trained_alone_on_its_own_seed(tiny_synthetic, schedule):
    data = tiny_synthetic
    item = ensemble(schedule=schedule)
    members = member_candidates(item)
    assert [m["training"]["seed"] for m in members] == [7, member_seed(7, 1), member_seed(7, 2)]
    assert len({m["training"]["seed"] for m in members}) == 3
    assert all("ensemble" not in m["architecture"] for m in members)
    assert "ensemble" in alone_reason(item, data)  # its members are its own population
    assert fusion_key(members[0], data) is not None  # ... trained fused
    result = train_candidate(data, item)
    assert isinstance(result.model, EnsembleModel) and not result.model.training
    alone = [train_candidate(data, member) for member in members]
    for network, single in zip(result.model.networks, alone):
        assert_same_weights(network, single.model)
    assert result.kept_epoch == alone[0].kept_epoch
    assert_close(result.history[-1]["validation"], alone[0].history[-1]["validation"])
    # the scores are the ensemble's, not its first member's
    assert result.validation == evaluate(result.model, data, data.validation)
    assert result.test == evaluate(result.model, data, data.test)
    assert result.validation != alone[0].validation
    assert result.n_params == 3 * alone[0].n_params
    assert result.sharing == result.model.networks[0].sharing_report()  # the first member's


def test_the_ensemble_predicts_better_than_its_average_member(tiny_synthetic):
    data = tiny_synthetic
    result = train_candidate(data, ensemble(members=4, epochs=6))
    members = [evaluate(network.eval(), data, data.test) for network in result.model.networks]
    for task in data.task_names:
        mean_member = sum(m[task]["mse"] for m in members) / len(members)
        assert result.test[task]["mse"] < mean_member


def test_pruning_the_first_member_stops_the_ensemble(tiny_synthetic):
    epochs_seen = []

    def prune_after_the_first_epoch(epoch, scores, record):
        epochs_seen.append(epoch)
        raise optuna.TrialPruned("dominated")

    with pytest.raises(optuna.TrialPruned):
        train_candidate(tiny_synthetic, ensemble(epochs=5), on_epoch=prune_after_the_first_epoch)
    assert epochs_seen == [0]


def test_an_ensemble_that_cannot_fuse_trains_its_members_one_after_the_other(tiny_synthetic):
    data = tiny_synthetic
    item = ensemble(members=2)
    item["architecture"]["block"] = item["architecture"]["block"] | {"dropout": 0.1}
    result = train_candidate(data, item)
    alone = [train_candidate(data, member) for member in member_candidates(item)]
    for network, single in zip(result.model.networks, alone):
        assert_same_weights(network, single.model)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"training": {"seed": "x"}}, "seed"),
        ({"training": 5}, "training"),
        ({"architecture": {"ensemble": {"members": 2.5}}}, "ensemble.members"),
        ({"architecture": {"ensemble": 3}}, "ensemble"),
    ],
)
def test_a_bad_ensemble_candidate_is_refused_in_one_line(tiny_synthetic, change, message):
    item = ensemble()
    for section, value in change.items():
        item[section] = item[section] | value if isinstance(value, dict) and isinstance(item[section], dict) else value
    with pytest.raises(UserError, match=message):
        train_candidate(tiny_synthetic, item)
    (outcome,) = train_population(tiny_synthetic, [item])
    assert isinstance(outcome, UserError) and message in str(outcome)


def test_an_ensemble_of_one_is_one_network(tiny_synthetic):
    item = ensemble(members=1)
    (fused, other) = train_population(tiny_synthetic, [item, ensemble(members=1, seed=8)])
    alone = train_candidate(tiny_synthetic, item)
    assert not isinstance(alone.model, EnsembleModel) and fused.population_size == 2
    assert_same_weights(fused.model, alone.model)
