"""Two-digit images (MultiMNIST protocol) and every architecture family on images."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
import torch

from mtl_search.architectures import family_names, get_family
from mtl_search.data import load_data
from mtl_search.data.multidigits import compose_pairs, make_multidigits
from mtl_search.search.space import parse_space
from mtl_search.training import train_candidate


def blocks(n: int = 40, size: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Digit 'images' that are solid squares of value label + 1, so placements can be read back."""
    labels = np.arange(n) % 10
    return np.ones((n, size, size)) * (labels + 1)[:, None, None], labels


def test_pairs_are_two_different_digits_top_left_and_bottom_right():
    images, labels = blocks()
    canvases, left, right = compose_pairs(images, labels, 50, canvas=8, shift=1, rng=np.random.default_rng(0))
    assert canvases.shape == (50, 8, 8)
    assert np.all(left != right)
    # 4x4 digits, shift <= 1: only the top-left digit reaches pixel (1, 1), only the other (6, 6)
    assert np.array_equal(canvases[:, 1, 1], left + 1)
    assert np.array_equal(canvases[:, 6, 6], right + 1)
    assert np.all(canvases[:, 7, 0] == 0) and np.all(canvases[:, 0, 7] == 0)  # the other corners stay empty


def test_builder_takes_any_digit_array_and_is_seeded():
    images, labels = blocks(n=60, size=6)
    first = make_multidigits(images * 25, labels, rows=100, seed=3)
    second = make_multidigits(images * 25, labels, rows=100, seed=3)
    assert first.input_schema == {"kind": "image", "shape": [1, 9, 9], "key": "image"}
    assert first.train.inputs["image"].shape == (60, 1, 9, 9)
    assert float(first.train.inputs["image"].max()) == 1.0  # scaled by the array's largest value
    assert torch.equal(first.test.inputs["image"], second.test.inputs["image"])
    assert [(t.name, t.n_classes) for t in first.tasks] == [("left", 10), ("right", 10)]


def test_sklearn_digits_source():
    data = load_data("multidigits", {"rows": "200", "canvas": "11", "shift": "1"})
    assert data.input_schema["shape"] == [1, 11, 11]
    assert (len(data.train), len(data.validation), len(data.test)) == (120, 40, 40)
    assert torch.all(data.train.targets["left"] != data.train.targets["right"])


@pytest.mark.parametrize("family", family_names())
def test_every_family_trains_on_images(family):
    kinds = get_family(family).input_kinds
    if kinds is not None and "image" not in kinds:
        pytest.skip(f"family {family} reads {', '.join(kinds)} inputs only")
    images, labels = blocks(n=60, size=6)
    data = make_multidigits(images, labels, rows=60, seed=0)
    space = parse_space(
        {
            "families": {family: {}},
            "training": {"epochs": 1, "batch_size": 16},
            "loss_weighting": {"static": {"weights": "equal"}},
        }
    )
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    result = train_candidate(data, space.sample(trial, data.task_names), device="cpu")
    for task in ("left", "right"):
        assert np.isfinite(result.history[0]["train_loss"][task])
        assert 0.0 <= result.validation[task]["accuracy"] <= 1.0
