"""Tables as people write them: a row index without a name, missing-value markers, targets
derived from another column."""

from __future__ import annotations

import gzip
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from mtl_search.data import load_data
from mtl_search.data.census import COLUMNS, make_census, read_census
from mtl_search.data.preprocessing import MISSING_MARKERS, DataWarning, apply_preprocessing
from mtl_search.errors import UserError
from tests.helpers import assert_one_line_error


def load(path, tasks=("churn:binary",), **options):
    return load_data(None, {k: str(v) for k, v in options.items()}, str(path), list(tasks))


def same_data(one, other) -> bool:
    splits = [(one.train, other.train), (one.validation, other.validation), (one.test, other.test)]
    return one.preprocessing == other.preprocessing and all(
        a.inputs.keys() == b.inputs.keys()
        and all(torch.equal(a.inputs[k], b.inputs[k]) for k in a.inputs)
        and all(torch.equal(a.targets[k].nan_to_num(-1), b.targets[k].nan_to_num(-1)) for k in a.targets)
        for a, b in splits
    )


# -- a row index without a name ------------------------------------------------------------


def r_write_csv(frame: pd.DataFrame, path) -> None:
    """What R's write.csv writes: every text quoted, row names "1", "2", ... under an empty name."""
    lines = [",".join(['""'] + [f'"{c}"' for c in frame.columns])]
    for number, row in enumerate(frame.itertuples(index=False), 1):
        cells = ["NA" if pd.isna(v) else (f'"{v}"' if isinstance(v, str) else str(v)) for v in row]
        lines.append(",".join([f'"{number}"'] + cells))
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("writer", ["pandas", "R"])
def test_an_unnamed_first_column_is_a_row_index_and_ignored(tmp_path, customers, customers_csv, writer):
    path = tmp_path / "indexed.csv"
    if writer == "pandas":
        customers.set_axis(range(1000, 1000 + len(customers))).to_csv(path)  # index=True, the default
    else:
        r_write_csv(customers, path)
    with pytest.warns(DataWarning) as caught:
        indexed = load(path, ignore="customer_id")
    assert [str(w.message) for w in caught if "first column" in str(w.message)] == [
        f"--data-file {path}: the first column has no name in the header; read as a row index and ignored"
    ]
    plain = load(customers_csv, ignore="customer_id")
    assert same_data(indexed, plain)  # the index is no feature: the same inputs as without it
    assert all(e["column"] != "Unnamed: 0" for e in indexed.preprocessing["numeric"])


def test_the_row_index_note_is_one_line_on_the_command_line(run_table, tmp_path, customers):
    path = tmp_path / "indexed.csv"
    customers.to_csv(path)
    result = run_table(path, "--task", "churn:binary", "--epochs", "1", "--data-option", "ignore=customer_id")
    assert result.code == 0, result
    assert [line for line in result.err.splitlines() if "row index" in line] == [
        f"mtl-search run: warning: --data-file {path}: the first column has no name in the header; "
        "read as a row index and ignored"
    ]


# -- missing-value markers -------------------------------------------------------------------


def with_markers(customers: pd.DataFrame) -> pd.DataFrame:
    """The customer table with '?' and 'NA' written where some ages and cities are missing."""
    frame = customers.copy()
    frame["age"] = frame["age"].astype(object)
    frame.loc[frame["age"].isna(), "age"] = "?"
    frame.loc[frame["city"].isna(), "city"] = ["NA", "?"] * int(frame["city"].isna().sum() // 2) + (
        ["?"] if frame["city"].isna().sum() % 2 else []
    )
    return frame


def test_question_marks_and_na_are_missing_by_default(tmp_path, customers, customers_csv):
    marked = tmp_path / "marked.csv"
    with_markers(customers).to_csv(marked, index=False)
    assert "?" in marked.read_text() and ",NA," in marked.read_text()
    data = load(marked, ignore="customer_id")
    # age is still numeric (with a was-missing column), and '?' is no city
    assert same_data(data, load(customers_csv, ignore="customer_id"))
    age = next(e for e in data.preprocessing["numeric"] if e["column"] == "age")
    assert age["missing_indicator"]
    assert data.preprocessing["missing"] == list(MISSING_MARKERS)
    # rows given to an exported model later read the markers alike
    rows = pd.DataFrame({"age": ["?", 40.0], "city": ["?", "Oslo"], "plan": [1, 2], "premium": [True, False]})
    inputs = apply_preprocessing(data.preprocessing, rows.assign(score=[0.0, 1.0], segment="a", spend=1.0))
    assert float(inputs["numeric"][0, 0]) == pytest.approx((age["median"] - age["mean"]) / age["std"], rel=1e-5)
    assert int(inputs["categorical"][0, 0]) == 0  # missing city


def test_missing_markers_are_configurable(tmp_path, customers):
    marked = tmp_path / "marked.csv"
    with_markers(customers).to_csv(marked, index=False)
    # only '?': 'NA' becomes a city (North America, say)
    data = load(marked, ignore="customer_id", missing="?")
    cities = next(e for e in data.preprocessing["categorical"] if e["column"] == "city")["categories"]
    assert "NA" in cities and "?" not in cities
    assert data.preprocessing["missing"] == ["?"]
    # the description file's list, and the command line over it
    (tmp_path / "d.yaml").write_text(
        'file: marked.csv\ntasks: [{name: churn, kind: binary}]\nignore: [customer_id]\nmissing: ["?", NA]\n'
    )
    data = load_data(None, {}, str(tmp_path / "d.yaml"), [])
    cities = next(e for e in data.preprocessing["categorical"] if e["column"] == "city")["categories"]
    assert "NA" not in cities and "?" not in cities
    with warnings.catch_warnings():  # '?' is now text, so age is read as categories, and warned about
        warnings.simplefilter("ignore", DataWarning)
        data = load_data(None, {"missing": "NA"}, str(tmp_path / "d.yaml"), [])
    cities = next(e for e in data.preprocessing["categorical"] if e["column"] == "city")["categories"]
    assert "?" in cities and "NA" not in cities


def test_a_python_frame_and_census_read_the_same_markers(census_head, customers, tmp_path):
    from mtl_search.data.table import make_table_data, targets_from_declarations

    data = make_table_data(with_markers(customers), targets_from_declarations(["churn:binary"]), ignore=["customer_id"])
    cities = next(e for e in data.preprocessing["categorical"] if e["column"] == "city")["categories"]
    assert cities == ["Lyon", "Oslo", "Quito"]
    assert "age" in {e["column"] for e in data.preprocessing["numeric"]}  # '?' among numbers: still numeric
    census = make_census(census_head, rows=0)
    assert census.preprocessing["missing"] == data.preprocessing["missing"] == list(MISSING_MARKERS)
    for entry in census.preprocessing["categorical"]:
        assert "?" not in entry["categories"] and "NA" not in entry["categories"], entry["column"]
    # the UCI file writes 'NA' in hisp_origin now and then: missing by default, a category if told
    lines = gzip.decompress(census_head.read_bytes()).decode().splitlines()
    fields = lines[0].split(", ")
    fields[COLUMNS.index("hisp_origin")] = "NA"
    path = tmp_path / "census-na.csv"
    path.write_text("\n".join([", ".join(fields)] + lines[1:]) + "\n")
    assert pd.isna(read_census(path)["hisp_origin"].iloc[0])
    assert read_census(path, missing=["?"])["hisp_origin"].iloc[0] == "NA"
    assert pd.isna(read_census(path, missing=["?"])["mig_chg_msa"].iloc[0])


# -- derived targets -----------------------------------------------------------------------------


def describe(tmp_path, customers_csv, task: str, **more: str) -> dict:
    text = f"file: {customers_csv}\ntasks:\n  - {task}\nignore: [customer_id]\n" + "".join(
        f"{k}: {v}\n" for k, v in more.items()
    )
    (tmp_path / "d.yaml").write_text(text)
    return tmp_path / "d.yaml"


def labels_of(data, task: str, customers: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray]:
    """The task's labels over every split, and the source column's values on the same rows."""
    from mtl_search.data.base import split_indices

    index = torch.cat(split_indices(len(customers), (0.6, 0.2, 0.2), 0))
    labels = torch.cat([data.train.targets[task], data.validation.targets[task], data.test.targets[task]])
    return labels.numpy(), customers[column].to_numpy()[index.numpy()]


def test_a_binary_target_above_a_threshold_keeps_its_column_out_of_the_features(tmp_path, customers, customers_csv):
    path = describe(tmp_path, customers_csv, "{name: big_spender, kind: binary, column: spend, above: 1.5}")
    data = load_data(None, {}, str(path), [])
    labels, spend = labels_of(data, "big_spender", customers, "spend")
    assert np.array_equal(np.isnan(labels), np.isnan(spend))  # a missing spend is a missing label
    labelled = ~np.isnan(spend)
    assert np.array_equal(labels[labelled], (spend[labelled] > 1.5).astype(np.float32))
    assert 0 < labels[labelled].mean() < 1
    features = {e["column"] for e in data.preprocessing["numeric"] + data.preprocessing["categorical"]}
    assert "spend" not in features and "score" in features
    assert data.preprocessing["targets"]["big_spender"]["classes"] == ["spend <= 1.5", "spend > 1.5"]
    # below, and YAML's 1e5 (text to YAML) is a number too
    path = describe(tmp_path, customers_csv, "{name: low, kind: binary, column: spend, below: 2e-1}")
    labels, spend = labels_of(load_data(None, {}, str(path), []), "low", customers, "spend")
    assert np.array_equal(labels[labelled], (spend[labelled] < 0.2).astype(np.float32))


def test_a_binary_target_from_a_set_of_values(tmp_path, customers, customers_csv):
    path = describe(tmp_path, customers_csv, "{name: basic, kind: binary, column: segment, in: [a, c]}")
    data = load_data(None, {}, str(path), ["churn:binary"])
    labels, segment = labels_of(data, "basic", customers, "segment")
    assert np.array_equal(labels, np.isin(segment, ["a", "c"]).astype(np.float32))
    assert data.task_names == ["basic", "churn"]
    assert "segment" not in {e["column"] for e in data.preprocessing["categorical"]}
    # whole numbers match however the column holds them
    path = describe(tmp_path, customers_csv, "{name: plan_two, kind: binary, column: plan, in: ['2']}")
    labels, plan = labels_of(load_data(None, {}, str(path), []), "plan_two", customers, "plan")
    assert np.array_equal(labels, (plan == 2).astype(np.float32))


@pytest.mark.parametrize(
    "task,message",
    [
        (
            "{name: rich, kind: binary, column: spnd, above: 1}",
            "description file {d}: key tasks.0.column: task column 'spnd' not found in --data-file {csv}",
        ),
        (
            "{name: rich, kind: binary, column: spend, above: lots}",
            "description file {d}: key tasks.0.above: expected a number, got 'lots'",
        ),
        (
            "{name: rich, kind: binary, column: spend, below: [1]}",
            "description file {d}: key tasks.0.below: expected a number, got [1]",
        ),
        (
            "{name: rich, kind: regression, column: spend, above: 1}",
            "description file {d}: key tasks.0.above: a target derived with above is binary, task 'rich' is regression",
        ),
        (
            "{name: rich, kind: binary, column: spend, above: 1, below: 3}",
            "description file {d}: key tasks.0.below: task 'rich' is derived with above already; "
            "give one of above, below, in",
        ),
        (
            "{name: rich, kind: binary, column: spend, above: 1, positive: 1}",
            "description file {d}: key tasks.0.positive: a target derived with above is 1 where the rule holds",
        ),
        (
            "{name: rich, kind: binary, column: city, above: 1}",
            "--data-file {csv}: task 'rich': above=1 needs a numeric column, column 'city' holds text (e.g. 'Lyon')",
        ),
        (
            "{name: rich, kind: binary, column: spend, above: 1000}",
            "--data-file {csv}: task 'rich': above=1000 makes every labelled row of column 'spend' 0, "
            "a binary target needs both classes (it runs from -",
        ),
        (
            "{name: south, kind: binary, column: city, in: [Quito, Lima]}",
            "--data-file {csv}: task 'south': in: value 'Lima' is not a value of column 'city' ('Lyon', 'Oslo', 'Quito')",
        ),
        (
            "{name: south, kind: binary, column: city, in: Quito}",
            "description file {d}: key tasks.0.in: expected a list of values of the column, such as [a, b], got 'Quito'",
        ),
    ],
)
def test_a_bad_derived_target_is_one_line_naming_the_field(tmp_path, customers_csv, task, message):
    path = describe(tmp_path, customers_csv, task)
    with pytest.raises(UserError) as error:
        load_data(None, {}, str(path), [])
    assert str(error.value).startswith(message.format(d=path, csv=customers_csv)), str(error.value)
    assert "\n" not in str(error.value)


def test_a_bad_derived_target_stops_the_command_with_status_2(run_table, tmp_path, customers_csv):
    path = describe(tmp_path, customers_csv, "{name: rich, kind: binary, column: spend, above: lots}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        result = run_table(path)
    assert_one_line_error(result, f"description file {path}: key tasks.0.above: expected a number, got 'lots'")
