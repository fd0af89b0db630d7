"""Shared building blocks (mtl_search/architectures/blocks.py)."""

import torch

from mtl_search.architectures.blocks import Flatten, Tower


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
