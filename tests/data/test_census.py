"""Census-Income (KDD): reading the UCI format, the two task groups, encodings."""

from __future__ import annotations

import gzip
import shutil

import pytest
import torch

from mtl_search.data import load_data
from mtl_search.data.census import COLUMNS, NUMERIC, read_census
from mtl_search.errors import UserError
from tests.helpers import assert_one_line_error


def census(path, **options):
    return load_data("census", {k: str(v) for k, v in options.items()}, str(path), [])


def test_reads_the_uci_format(census_head):
    frame = read_census(census_head)
    assert frame.shape == (400, 42)
    assert list(frame.columns) == list(COLUMNS)
    first = frame.iloc[0]  # 38, Private, 6, 36, 1st 2nd 3rd or 4th grade, ...
    assert (first["age"], first["class_worker"], first["det_ind_code"], first["education"]) == (
        38,
        "Private",
        "6",
        "1st 2nd 3rd or 4th grade",
    )
    assert frame["mig_chg_msa"].isna().iloc[0]  # "?" is missing


def test_group_1_income_and_never_married(census_head):
    frame = read_census(census_head)
    data = census(census_head)
    assert [(t.name, t.kind) for t in data.tasks] == [("income", "binary"), ("never_married", "binary")]
    labels = torch.cat(
        [
            data.train.targets["never_married"],
            data.validation.targets["never_married"],
            data.test.targets["never_married"],
        ]
    )
    assert labels.sum() == (frame["marital_stat"] == "Never married").sum()
    assert (len(data.train), len(data.validation), len(data.test)) == (160, 40, 200)  # half is test
    features = [e["column"] for e in data.preprocessing["numeric"] + data.preprocessing["categorical"]]
    assert [e["column"] for e in data.preprocessing["numeric"]] == list(NUMERIC)
    assert "det_ind_code" in features and "year" in features  # codes are categories
    for gone in ("instance_weight", "income_50k", "marital_stat"):  # a survey weight and the label sources
        assert gone not in features
    assert data.input_schema["kind"] == "tabular" and data.input_schema["numeric"] == 7
    assert len(data.input_schema["categorical"]) == 42 - 7 - 3


def test_group_2_onehot_and_plain_file(census_head, tmp_path):
    plain = tmp_path / "census.data"  # not gzipped and not named .gz: detected from the content
    with gzip.open(census_head, "rb") as source, open(plain, "wb") as target:
        shutil.copyfileobj(source, target)
    data = census(plain, group=2, encoding="onehot", rows=300, seed=1)
    assert [(t.name, t.kind) for t in data.tasks] == [("education", "multiclass"), ("marital", "multiclass")]
    assert data.task("education").n_classes == len(data.preprocessing["targets"]["education"]["classes"]) >= 10
    assert data.input_schema["kind"] == "vector"
    assert data.train.inputs["x"].shape[1] == data.input_schema["size"]
    assert len(data.train) + len(data.validation) + len(data.test) == 300


def test_numeric_statistics_come_from_train_rows_only(census_head):
    data = census(census_head)
    numeric = data.train.inputs["numeric"]
    assert torch.allclose(numeric.mean(dim=0), torch.zeros(7), atol=1e-4)  # standardised on train ...
    assert not torch.allclose(data.test.inputs["numeric"].mean(dim=0), torch.zeros(7), atol=1e-4)  # ... not on test


def test_file_with_other_columns(cli, storage_url, tmp_path):
    path = tmp_path / "wrong.csv"
    path.write_text("a,b,c\n1,2,3\n")
    result = cli("run", "--data", "census", "--data-file", str(path), "--storage", storage_url, "--quiet")
    assert_one_line_error(result, "wrong.csv", "expected the 42", "found 3")


def test_census_needs_a_file():
    with pytest.raises(UserError, match="--data-file"):
        load_data("census", {}, None, [])


def test_unknown_group(census_head):
    with pytest.raises(UserError, match="group=3"):
        census(census_head, group=3)
