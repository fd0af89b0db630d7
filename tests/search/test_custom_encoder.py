"""Bring your own encoder: a user's module as the stem, frozen or fine-tuned."""

from __future__ import annotations

import copy

import torch
from torch import nn

from mtl_search.architectures import CustomStem
from mtl_search.search.runner import SearchSettings, run_search
from mtl_search.search.space import parse_space
from mtl_search.training import train_candidate

SPACE = {
    "families": {"tree": {"depth": 1, "width": 8}},
    "training": {"epochs": 1, "batch_size": 64},
    "tower": {"depth": 0},
    "loss_weighting": {"static": {"weights": "equal"}},
}
CANDIDATE = {
    "architecture": {"family": "tree", "widths": [8], "groups": [[["task1", "task2"]]]},
    "training": {"epochs": 2, "batch_size": 64},
}


def encoder() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(10, 6), nn.BatchNorm1d(6), nn.ReLU())


def test_search_over_a_frozen_encoder_leaves_it_unchanged(tiny_synthetic, storage_url):
    module = encoder()
    before = copy.deepcopy(module.state_dict())  # batch-norm running statistics included
    stem = CustomStem(module, out_shape=(6,), key="x", freeze=True)
    settings = SearchSettings(study_name="frozen", storage=storage_url, sampler="random", n_trials=2, device="cpu")
    trained = []  # the encoder as each trial's trained model holds it
    keep = lambda trial, candidate, result: trained.append(result.model.stem.module.state_dict())  # noqa: E731
    study = run_search(tiny_synthetic, parse_space(SPACE), settings, stem=stem, result_hooks=[keep])
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    assert len(trained) == 2
    for weights in [module.state_dict(), *trained]:
        for name, value in weights.items():
            assert torch.equal(value.cpu(), before[name]), name


def test_frozen_encoder_parameters_are_not_trained_or_counted(tiny_synthetic):
    stem = CustomStem(encoder(), out_shape=(6,), key="x", freeze=True)
    result = train_candidate(tiny_synthetic, CANDIDATE, device="cpu", stem=stem)
    assert result.n_params == (6 * 8 + 8) + 2 * (8 + 1)  # the body block and two output layers only
    assert all(not p.requires_grad for p in result.model.stem.parameters())


def test_fine_tuned_encoder_trains_a_copy(tiny_synthetic):
    module = encoder()
    before = copy.deepcopy(module.state_dict())
    stem = CustomStem(module, out_shape=(6,), key="x", freeze=False)
    first = train_candidate(tiny_synthetic, CANDIDATE, device="cpu", stem=stem)
    second = train_candidate(tiny_synthetic, CANDIDATE, device="cpu", stem=stem)
    trained = first.model.stem.module[0].weight
    assert not torch.equal(trained, before["0.weight"])  # fine-tuned in the trial ...
    assert torch.equal(module[0].weight, before["0.weight"])  # ... the user's module untouched
    # every trial starts from the user's weights, so equal candidates train equally
    assert torch.equal(trained, second.model.stem.module[0].weight)
