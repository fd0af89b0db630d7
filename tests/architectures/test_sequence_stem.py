import pytest
import torch

from mtl_search.architectures import build_model, build_stem
from mtl_search.architectures.sequence import ENCODERS, SequenceStem
from mtl_search.errors import UserError
from mtl_search.tasks import Task

SCHEMA = {"kind": "sequence", "vocabulary": 9, "max_length": 10, "numeric": 2}


def stem(encoder):
    torch.manual_seed(0)
    return build_stem(SCHEMA, {"sequence_encoder": encoder, "sequence_width": 6, "embedding_dim": 4}).eval()


def batch(events, lengths, numeric):
    return {"events": torch.tensor(events), "lengths": torch.tensor(lengths), "numeric": torch.tensor(numeric)}


@pytest.mark.parametrize("encoder", ENCODERS)
def test_padding_does_not_change_the_encoding(encoder):
    module = stem(encoder)
    numeric = [[0.5, -1.0], [1.0, 2.0]]
    tight = batch([[3, 1, 4, 1, 5], [9, 2, 6, 0, 0]], [5, 3], numeric)
    # the same histories padded to the full length, with junk-free zeros after the last event
    padded = batch([[3, 1, 4, 1, 5, 0, 0, 0, 0, 0], [9, 2, 6, 0, 0, 0, 0, 0, 0, 0]], [5, 3], numeric)
    with torch.no_grad():
        torch.testing.assert_close(module(tight), module(padded), rtol=1e-5, atol=1e-6)
        # and a row is encoded the same whatever else is in its batch
        alone = batch([[9, 2, 6]], [3], [numeric[1]])
        torch.testing.assert_close(module(alone)[0], module(padded)[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("encoder", ENCODERS)
def test_events_after_the_length_are_ignored_but_real_events_matter(encoder):
    module = stem(encoder)
    numeric = [[0.0, 0.0]]
    with torch.no_grad():
        base = module(batch([[3, 1, 4, 0, 0]], [3], numeric))
        # whatever lies beyond the length is padding
        beyond = module(batch([[3, 1, 4, 7, 8]], [3], numeric))
        changed = module(batch([[3, 1, 8, 0, 0]], [3], numeric))
    torch.testing.assert_close(base, beyond, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(base, changed)


def test_output_shape_is_encoder_width_plus_numeric_and_feeds_a_family():
    module = stem("gru")
    assert module.out_shape == (8,)
    tasks = [Task("a", "binary"), Task("b", "regression")]
    spec = {
        "family": "tree",
        "widths": [5],
        "groups": [[["a", "b"]]],
        "tower": {"widths": []},
        "stem": {"sequence_encoder": "attention", "sequence_width": 6},
    }
    model = build_model(spec, SCHEMA, tasks)
    assert isinstance(model.stem, SequenceStem)
    outputs = model(batch([[1, 2, 0], [4, 0, 0]], [2, 1], [[0.0, 1.0], [1.0, 0.0]]))
    assert outputs["a"].shape == (2, 1)


def test_empty_history_reads_one_padding_event():
    module = stem("lstm")
    with torch.no_grad():
        out = module(batch([[0, 0, 0]], [0], [[0.0, 0.0]]))
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(
    "spec, fragment",
    [
        ({"sequence_encoder": "rnn"}, "sequence_encoder 'rnn'"),
        ({"sequence_width": 0}, "sequence_width"),
    ],
)
def test_bad_stem_settings_are_user_errors(spec, fragment):
    with pytest.raises(UserError, match=fragment):
        build_stem(SCHEMA, spec)
