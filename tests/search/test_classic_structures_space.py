import optuna
import pytest

from mtl_search.errors import UserError
from mtl_search.search.space import load_space, parse_space


def sample(space, tasks=("a", "b")):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    return space.sample(study.ask(), list(tasks))


def test_relationship_and_sequence_stem_settings_reach_the_architecture():
    space = parse_space(
        {
            "families": {"tree": {}},
            "relationship": {"weight": {"low": 1e-4, "high": 1e-1, "log": True}},
            "stem": {"sequence_encoder": {"choices": ["lstm"]}, "sequence_width": 12},
        }
    )
    architecture = sample(space)["architecture"]
    assert 1e-4 <= architecture["relationship"]["weight"] <= 1e-1
    assert architecture["relationship"]["ridge"] == 0.1
    assert architecture["stem"] == {"sequence_encoder": "lstm", "sequence_width": 12}


def test_spaces_without_the_options_leave_them_out():
    architecture = sample(parse_space({"families": {"tree": {}}}))["architecture"]
    assert "relationship" not in architecture and architecture["stem"] == {}


@pytest.mark.parametrize("name", ["relationship", "hierarchy", "sequences"])
def test_bundled_spaces_load_and_sample(name):
    candidate = sample(load_space(name), tasks=("click", "purchase", "dwell"))
    assert candidate["architecture"]["family"] in load_space(name).families


@pytest.mark.parametrize(
    "raw, fragment",
    [
        (
            {"families": {"tree": {}}, "stem": {"sequence_encoder": "rnn"}},
            "key stem.sequence_encoder: 'rnn' is not an encoder",
        ),
        ({"families": {"tree": {}}, "relationship": {"ridge": 0.1}}, "key relationship.weight"),
        ({"families": {"hierarchy": {"feed_upward": "sometimes"}}}, "key families.hierarchy.feed_upward"),
    ],
)
def test_bad_sections_name_the_key(raw, fragment):
    with pytest.raises(UserError, match=fragment):
        parse_space(raw)
