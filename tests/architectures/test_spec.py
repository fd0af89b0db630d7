"""The architecture spec: JSON round trip, validation and one-line summaries."""

import json
from pathlib import Path

import optuna
import pytest
import torch

from mtl_search.architectures import (
    COMMON_KEYS,
    build_model,
    family_names,
    get_family,
    spec_from_json,
    spec_to_json,
    summarize,
    validate_spec,
)
from mtl_search.errors import UserError
from mtl_search.tasks import Task

TASKS = [Task("a", "regression"), Task("b", "binary"), Task("c", "multiclass", n_classes=4)]
SPEC = {
    "family": "tree",
    "widths": [8, 8, 4],
    "groups": [[["a", "b", "c"]], [["a", "b"], ["c"]], [["a"], ["b"], ["c"]]],
    "block": {"norm": "batch", "activation": "relu", "dropout": 0.1},
    "tower": {"widths": [4]},
    "stem": {},
}


def test_spec_json_round_trip_rebuilds_the_same_network():
    text = spec_to_json(SPEC)
    again = spec_from_json(text)
    assert again == SPEC
    assert json.loads(json.dumps(again)) == again  # plain JSON data all the way down
    torch.manual_seed(0)
    first = build_model(SPEC, {"kind": "vector", "size": 5}, TASKS)
    torch.manual_seed(0)
    second = build_model(again, {"kind": "vector", "size": 5}, TASKS)
    x = {"x": torch.randn(6, 5)}
    first.eval(), second.eval()
    for name, output in first(x).items():
        assert torch.equal(output, second(x)[name])


def test_summary_is_one_readable_line():
    assert summarize(SPEC, ["a", "b", "c"]) == "tree 0:{a,b,c} 1:{a,b}{c} 2:{a}{b}{c} w=8/8/4 tower=4"


def test_summary_names_the_searched_input_encoder():
    # a GRU and an attention encoder under the same body must not read alike on the front
    gru = dict(SPEC, stem={"sequence_encoder": "gru", "sequence_width": 32, "embedding_dim": 8})
    attention = dict(SPEC, stem={"sequence_encoder": "attention", "sequence_width": 32, "embedding_dim": 8})
    assert summarize(gru, ["a", "b", "c"]).endswith("tower=4 seq=gru/32 emb=8")
    assert summarize(gru, ["a", "b", "c"]) != summarize(attention, ["a", "b", "c"])


@pytest.mark.parametrize(
    "groups",
    [
        [[["a", "b"]], [["a"], ["b"], ["c"]], [["a"], ["b"], ["c"]]],  # depth 0 misses c
        [[["a"], ["b", "c"]], [["a", "b"], ["c"]], [["a"], ["b"], ["c"]]],  # a and b rejoin
    ],
)
def test_invalid_trees_are_rejected_with_a_clear_error(groups):
    with pytest.raises(UserError, match="tree"):
        build_model(dict(SPEC, groups=groups), {"kind": "vector", "size": 5}, TASKS)


def test_malformed_spec_json_is_a_user_error():
    with pytest.raises(UserError, match="not valid JSON"):
        spec_from_json("{family: tree")


@pytest.mark.parametrize("family", [["tree"], {"name": "tree"}])
def test_an_unknown_family_is_a_user_error_even_when_not_a_string(family):
    with pytest.raises(UserError) as error:
        build_model(dict(SPEC, family=family), {"kind": "vector", "size": 5}, TASKS)
    assert str(error.value) == f"architecture family {family!r} is not known (known: {', '.join(family_names())})"


def test_an_unknown_top_level_key_is_refused_naming_it_and_the_known_keys():
    with pytest.raises(UserError) as error:
        build_model(dict(SPEC, widthz=[8]), {"kind": "vector", "size": 5}, TASKS)
    assert (
        str(error.value)
        == "tree spec: widthz is not a known key (known: widths, groups, family, block, tower, stem, relationship, ensemble)"
    )


@pytest.mark.parametrize("name", ["mmoe", "ple", "cross_stitch", "sluice", "hierarchy", "dselect_k", "adatt"])
def test_every_family_refuses_a_key_it_does_not_declare(name):
    family = get_family(name)
    spec = sampled_spec(name)
    validate_spec(spec, ["a", "b", "c"])
    with pytest.raises(
        UserError, match=f"^{name} spec: depht is not a known key \\(known: {', '.join(family.required_keys)}"
    ):
        validate_spec(dict(spec, depht=2), ["a", "b", "c"])
    missing = family.required_keys[-1]
    with pytest.raises(UserError, match=f"^{name} spec: {missing} is missing \\(required: "):
        validate_spec({key: value for key, value in spec.items() if key != missing}, ["a", "b", "c"])


def sampled_spec(name: str) -> dict:
    from mtl_search.search.space import parse_space

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    return parse_space({"families": {name: {}}}).sample(study.ask(), ["a", "b", "c"])["architecture"]


# a space that writes every key the search can put in a spec: all families, every tree
# grouping, explicit block type, searched stem settings and the relationship prior
EVERYTHING = {
    "families": {
        "tree": {"depth": {"low": 1, "high": 3}, "per_depth_width": True},
        "mmoe": {"bottom_depth": {"low": 0, "high": 2}},
        "ple": {"levels": {"low": 1, "high": 3}},
        "cross_stitch": {"units": "searched"},
        "sluice": {"subspaces": {"choices": [1, 2]}},
        "hierarchy": {"feed_upward": {"choices": [True, False]}, "successive": {"low": 0.0, "high": 1.0}},
        "dselect_k": {"entropy_weight": {"low": 0.0, "high": 0.1}},
        "adatt": {"levels": {"low": 1, "high": 3}},
    },
    "block": {"type": "mlp", "dropout": {"low": 0.0, "high": 0.5}},
    "tower": {"depth": {"low": 0, "high": 2}},
    "stem": {"embedding_dim": 4, "sequence_encoder": {"choices": ["gru", "attention"]}, "sequence_width": 8},
    "relationship": {"weight": {"low": 0.0, "high": 1.0}},
    "ensemble": {"members": {"choices": [2, 3]}},
}


@pytest.mark.parametrize(
    "space",
    [
        "branching",
        "default",
        "experts",
        "hierarchy",
        "loss_weights",
        "relationship",
        "sequences",
        "soft_sharing",
        "everything",
        "tree_affinity",
        "tree_branch_points",
        "tree_separate",
    ],
)
def test_every_spec_the_search_samples_is_valid(space):
    """What trials store must stay valid however strict the checks of hand-written specs get."""
    from mtl_search.search.space import load_space, parse_space

    chain = [[["a", "b", "c"]], [["a", "b"], ["c"]], [["a"], ["b"], ["c"]]]
    raw = {
        "everything": EVERYTHING,
        "tree_affinity": {"families": {"tree": {"grouping": "affinity", "chain": chain}}},
        "tree_branch_points": {"families": {"tree": {"grouping": "branch_points", "depth": 3}}},
        "tree_separate": {"families": {"tree": {"grouping": "separate"}}},
    }
    loaded = parse_space(raw[space]) if space in raw else load_space(space)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    families = set()
    for _ in range(40):
        architecture = loaded.sample(study.ask(), ["a", "b", "c"])["architecture"]
        validate_spec(architecture, ["a", "b", "c"])
        families.add(architecture["family"])
    assert families == set(loaded.families)


def test_the_docs_list_every_spec_key_of_every_family():
    from mtl_search.architectures.blocks import BLOCK_KEYS, TOWER_KEYS, stem_settings

    text = (Path(__file__).resolve().parents[2] / "docs" / "reference" / "architecture-spec.md").read_text(
        encoding="utf-8"
    )
    keys = text.split("## Spec keys", 1)[1].split("\n## ", 1)[0]
    for name in family_names():
        family = get_family(name)
        section = keys.split(f"**{name}**", 1)[1].split("\n\n**", 1)[0]
        for key in (*family.required_keys, *family.optional_keys):
            assert f"`{key}`" in section, (name, key)
    stem_keys = {key for keys in stem_settings().values() for key in keys}
    common = [
        *COMMON_KEYS,
        *(f"block.{k}" for k in BLOCK_KEYS),
        *(f"tower.{k}" for k in TOWER_KEYS),
        *(f"stem.{k}" for k in stem_keys),
    ]
    for key in common:
        assert f"`{key}`" in keys, key


def test_the_space_file_reference_lists_every_key_of_every_family_section():
    text = (Path(__file__).resolve().parents[2] / "docs" / "reference" / "space-file.md").read_text(encoding="utf-8")
    families = text.split("## `families`", 1)[1].split("\n## ", 1)[0]
    for name in family_names():
        assert f"**`{name}`**" in families, f"docs/reference/space-file.md: no section for family {name}"
        section = families.split(f"**`{name}`**", 1)[1].split("\n**`", 1)[0]
        for key in get_family(name).space_model().model_fields:
            assert f"| `{key}` |" in section, (name, key)
