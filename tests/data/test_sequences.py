import pytest
import torch

from mtl_search.data import load_data
from mtl_search.errors import UserError


def test_sequences_are_padded_after_their_length_and_deterministic():
    data = load_data("sequences", {"rows": "200", "max_length": "7"})
    again = load_data("sequences", {"rows": "200", "max_length": "7"})
    events, lengths = data.train.inputs["events"], data.train.inputs["lengths"]
    assert events.shape[1] == 7 and lengths.min() >= 1 and lengths.max() <= 7
    positions = torch.arange(7)[None]
    assert ((events > 0) == (positions < lengths[:, None])).all()
    assert events.max() <= 60
    assert torch.equal(events, again.train.inputs["events"])
    assert data.input_schema == {"kind": "sequence", "vocabulary": 60, "max_length": 7, "numeric": 4}


def test_purchase_is_conditional_on_click_with_nan_where_not_clicked():
    data = load_data("sequences", {"rows": "400"})
    assert data.task("purchase").given == "click"
    for split in (data.train, data.validation, data.test):
        clicked = split.targets["click"] == 1
        assert torch.isnan(split.targets["purchase"][~clicked]).all()
        assert not torch.isnan(split.targets["purchase"][clicked]).any()
    assert 0 < float(data.train.targets["purchase"].nansum()) < float(data.train.targets["click"].sum())
    plain = load_data("sequences", {"rows": "400", "conditional": "false"})
    assert plain.task("purchase").given is None


def test_bad_options_are_user_errors():
    with pytest.raises(UserError, match="max_length"):
        load_data("sequences", {"max_length": "1"})
    with pytest.raises(UserError, match="--data-file"):
        load_data("sequences", {}, data_file="x.csv")
