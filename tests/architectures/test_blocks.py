"""Shared building blocks (mtl_search/architectures/blocks.py)."""

import pytest
import torch

from mtl_search.architectures import build_model
from mtl_search.architectures.blocks import BlockFactory, Flatten, Tower
from mtl_search.errors import UserError
from tests.architectures.family_checks import IMAGE, VECTOR, regression_tasks

SPEC = {
    "family": "tree",
    "widths": [8],
    "groups": [[["task1", "task2"]]],
    "block": {},
    "tower": {"widths": [4]},
    "stem": {},
}


def old_layout(tower: Tower) -> dict[str, torch.Tensor]:
    """The state dict a tower had when it wrapped an ``nn.Sequential`` named ``net`` that began with a Flatten."""
    shift = 0 if isinstance(tower[0], Flatten) else 1
    out = {}
    for key, value in tower.state_dict().items():
        index, rest = key.split(".", 1)
        out[f"net.{int(index) + shift}.{rest}"] = value
    return out


def test_vector_towers_skip_the_flatten_and_feature_map_towers_pool():
    assert not any(isinstance(layer, Flatten) for layer in Tower((16,), [8], 1))
    tower = Tower((4, 5, 5), [8], 3)
    assert isinstance(tower[0], Flatten)
    assert tower(torch.randn(2, 4, 5, 5)).shape == (2, 3)


def test_weights_saved_in_the_old_layout_still_load():
    for in_shape in ((16,), (4, 5, 5)):
        torch.manual_seed(0)
        saved = Tower(in_shape, [8], 2)
        fresh = Tower(in_shape, [8], 2)
        fresh.load_state_dict(old_layout(saved))  # strict
        x = torch.randn(3, *in_shape)
        assert torch.equal(fresh(x), saved(x))


def refusal(spec, schema=VECTOR) -> str:
    with pytest.raises(UserError) as error:
        build_model(spec, schema, regression_tasks(2))
    return str(error.value)


@pytest.mark.parametrize("widths", [[-8], [0], 8, "8", [8.0], [True]])
def test_tower_widths_must_be_a_list_of_positive_whole_numbers(widths):
    assert (
        refusal(dict(SPEC, tower={"widths": widths}))
        == f"tree spec: tower.widths must be a list of positive whole numbers, got {widths!r}"
    )


@pytest.mark.parametrize("dropout", [2.0, 1.0, -0.5, "0.1", True])
def test_block_dropout_must_lie_in_0_to_1(dropout):
    assert (
        refusal(dict(SPEC, block={"dropout": dropout}))
        == f"tree spec: block.dropout must be a number in [0, 1), got {dropout!r}"
    )
    with pytest.raises(UserError, match=r"block.dropout must be a number in \[0, 1\)"):
        BlockFactory(dropout=dropout)


@pytest.mark.parametrize("key, value", [("type", "dense"), ("norm", "group"), ("activation", ["relu"])])
def test_block_names_must_be_known(key, value):
    assert refusal(dict(SPEC, block={key: value})).startswith(f"tree spec: block.{key} must be one of ")


@pytest.mark.parametrize(
    "schema, source",
    [
        (VECTOR, "vector input has shape (10,)"),
        ({"kind": "tabular", "numeric": 3, "categorical": []}, "tabular input has shape (3,)"),
    ],
)
def test_conv_blocks_on_vector_input_say_they_need_an_image(schema, source):
    message = refusal(dict(SPEC, block={"type": "conv"}), schema)
    assert message == f"tree spec: block.type 'conv' needs image input (channels, height, width), but the {source}"


def test_mlp_blocks_on_image_input_still_become_conv_blocks():
    # as stored specs of searches over images with block.type mlp expect
    model = build_model(dict(SPEC, block={"type": "mlp"}), IMAGE, regression_tasks(2))
    assert isinstance(model.body.blocks[0][0][0], torch.nn.Conv2d)


@pytest.mark.parametrize(
    "section, value, message",
    [
        (
            "block",
            {"actvation": "relu"},
            "tree spec: block.actvation is not a known key (known: type, norm, activation, dropout)",
        ),
        ("tower", {"width": [8]}, "tree spec: tower.width is not a known key (known: widths)"),
        (
            "stem",
            {"embeding_dim": 4},
            "tree spec: stem.embeding_dim is not a known key (known: embedding_dim, ensemble_members, numeric_bins, "
            "numeric_embedding_dim, numeric_encoding, periodic_frequencies, periodic_sigma, sequence_encoder, "
            "sequence_width)",
        ),
        ("block", "mlp", "tree spec: block must be an object with keys type, norm, activation, dropout, got 'mlp'"),
        ("tower", [8], "tree spec: tower must be an object with keys widths, got [8]"),
    ],
)
def test_unknown_keys_and_non_objects_in_the_common_sections_are_refused(section, value, message):
    assert refusal(dict(SPEC, **{section: value})) == message
