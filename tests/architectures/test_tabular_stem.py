"""The tabular stem's embeddings, one flat table read by one gather: the network a table per column gave."""

from __future__ import annotations

import math

import torch
from torch import nn

from mtl_search.architectures.blocks import TabularStem

# census-like: categorical columns of many sizes, so that the widths interleave
CARDINALITIES = [9, 2, 52, 17, 3, 9, 300, 2, 17, 24]
NUMERIC = 3


class TablePerColumn(nn.Module):
    """The stem as it was: an nn.Embedding per categorical column, looked up one by one."""

    def __init__(self, numeric: int, categorical: list[int], embedding_dim: int | None = None) -> None:
        super().__init__()
        dims = [embedding_dim or min(16, math.ceil(1.6 * c**0.56)) for c in categorical]
        self.embeddings = nn.ModuleList(nn.Embedding(c, d) for c, d in zip(categorical, dims))

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        categorical = inputs["categorical"]
        return torch.cat([inputs["numeric"], *(e(categorical[:, i]) for i, e in enumerate(self.embeddings))], dim=1)


def _inputs(rows: int = 64, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    categorical = torch.stack([torch.randint(0, c, (rows,), generator=generator) for c in CARDINALITIES], dim=1)
    return {"numeric": torch.randn(rows, NUMERIC, generator=generator), "categorical": categorical}


def _both(embedding_dim: int | None = None) -> tuple[nn.Module, TabularStem]:
    torch.manual_seed(7)
    before = TablePerColumn(NUMERIC, CARDINALITIES, embedding_dim)
    after_before = torch.rand(3)  # what the next layer would draw
    torch.manual_seed(7)
    stem = TabularStem(NUMERIC, CARDINALITIES, embedding_dim)
    assert torch.equal(torch.rand(3), after_before), "the stem must draw exactly what a table per column drew"
    return before, stem


def test_seeded_stems_give_exactly_the_outputs_a_table_per_column_gave():
    before, stem = _both()
    inputs = _inputs()
    assert stem.out_shape == (before(inputs).shape[1],)
    assert torch.equal(stem(inputs), before(inputs))


def test_a_width_given_for_every_column_gives_the_same_outputs_too():
    before, stem = _both(embedding_dim=4)
    assert torch.equal(stem(_inputs()), before(_inputs()))


def test_training_steps_keep_the_two_equal():
    before, stem = _both()
    heads = []
    for _ in (before, stem):
        torch.manual_seed(3)
        heads.append(nn.Linear(stem.out_shape[0], 2))
    optimizers = [torch.optim.Adam([*m.parameters(), *h.parameters()], lr=1e-2) for m, h in zip((before, stem), heads)]
    for step in range(5):
        inputs, target = _inputs(seed=step), torch.randn(64, 2, generator=torch.Generator().manual_seed(step))
        for module, head, optimizer in zip((before, stem), heads, optimizers):
            optimizer.zero_grad()
            nn.functional.mse_loss(head(module(inputs)), target).backward()
            optimizer.step()
    assert torch.equal(stem(_inputs(seed=9)), before(_inputs(seed=9)))
    # the gradients summed in the same order: the weights are still equal bit for bit after the steps
    flat = torch.cat([e.weight.detach().flatten() for e in before.embeddings])
    assert torch.equal(stem.embedding_weights.detach(), flat)


def test_weights_saved_with_a_table_per_column_load():
    before, stem = _both()
    with torch.no_grad():
        for embedding in before.embeddings:
            embedding.weight.add_(1.0)  # differ from the seeded start, so that loading must move them
    saved = {f"embeddings.{i}.weight": e.weight.detach().clone() for i, e in enumerate(before.embeddings)}
    result = stem.load_state_dict(saved, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert torch.equal(stem(_inputs()), before(_inputs()))
    # and the stem's own layout round-trips
    again = TabularStem(NUMERIC, CARDINALITIES)
    again.load_state_dict(stem.state_dict())
    assert torch.equal(again(_inputs()), before(_inputs()))


def test_data_with_a_category_code_beyond_its_columns_table_is_refused():
    # one flat table would read the next column's rows: the data is checked when it is made
    import pytest

    from mtl_search.data.base import MultiTaskData, Split
    from mtl_search.errors import UserError
    from mtl_search.tasks import Task

    def split(codes):
        return Split(
            inputs={"numeric": torch.zeros(len(codes), 1), "categorical": torch.tensor(codes)},
            targets={"y": torch.zeros(len(codes))},
        )

    schema = {"kind": "tabular", "numeric": 1, "categorical": [3, 2]}
    good = split([[0, 1], [2, 0]])
    MultiTaskData("t", [Task("y", "regression")], good, good, good, schema)
    with pytest.raises(UserError, match=r"categorical column 1 of the validation split has code 2, outside 0\.\.1"):
        MultiTaskData("t", [Task("y", "regression")], good, split([[0, 2], [1, 1]]), good, schema)
