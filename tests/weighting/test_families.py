"""Every weighting method trains every architecture family (and the tree's two extremes)."""

import math

import optuna
import pytest

from mtl_search.architectures import family_names, get_family
from mtl_search.search.space import load_space, parse_space
from mtl_search.training import train_candidate
from mtl_search.weighting import method_names

DEFAULT_SECTIONS = load_space().families
# the tree's extremes: no shared parameter at all, and one representation all towers read
CASES = [(name, None) for name in family_names()] + [
    ("tree", {"grouping": "separate"}),
    ("tree", {"grouping": "shared"}),
]


def sampled_candidate(data, family, section, method):
    """A candidate drawn by a real Optuna trial from the family's default space section."""
    if section is None:
        section = DEFAULT_SECTIONS[family].model_dump() if family in DEFAULT_SECTIONS else {}
    space = parse_space(
        {
            "families": {family: section},
            "loss_weighting": {method: {}},
            "training": {"batch_size": 64},
            "tower": {"depth": 1, "width": 8},
        }
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    return space.sample(study.ask(), data.task_names, seed=0, epochs=2)


@pytest.mark.parametrize("method", method_names())
@pytest.mark.parametrize(
    ("family", "section"), CASES, ids=[f"{f}-{(s or {}).get('grouping', 'default')}" for f, s in CASES]
)
def test_every_method_trains_every_family(tiny_synthetic3, family, section, method):
    data = tiny_synthetic3
    kinds = get_family(family).input_kinds
    if kinds is not None and data.input_schema["kind"] not in kinds:
        # a family for other inputs (the stem family reads tables only) trains on a table
        from tests.training.test_population import tabular_data

        data = tabular_data()
        assert data.input_schema["kind"] in kinds
    candidate = sampled_candidate(data, family, section, method)
    assert candidate["architecture"]["family"] == family
    assert candidate["loss_weighting"]["method"] == method

    result = train_candidate(data, candidate)

    assert result.weighting["method"] == method
    for epoch in result.history:
        assert set(epoch["weights"]) == set(data.task_names)
        assert all(math.isfinite(w) and w >= 0 for w in epoch["weights"].values())
        assert all(math.isfinite(loss) for loss in epoch["train_loss"].values())
    # it learned something: the summed training loss fell from the first to the second epoch
    first, last = (sum(epoch["train_loss"].values()) for epoch in result.history)
    assert last < first
