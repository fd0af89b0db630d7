"""The architecture spec: JSON round trip, validation and one-line summaries."""

import json

import pytest
import torch

from mtl_search.architectures import build_model, spec_from_json, spec_to_json, summarize
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
