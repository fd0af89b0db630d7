"""The user's own table: reading, detection, targets, description files, bad input."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import optuna
import pandas as pd
import pytest
import torch

from mtl_search.data import load_data
from mtl_search.data.base import split_indices
from mtl_search.data.preprocessing import DataWarning
from mtl_search.errors import UserError
from tests.helpers import assert_one_line_error

TASKS = ["churn:binary", "segment:multiclass", "spend:regression"]


def load(path, tasks=TASKS, **options):
    return load_data(None, {k: str(v) for k, v in options.items()}, str(path), tasks)


def test_csv_with_declared_tasks(customers_csv):
    data = load(customers_csv, ignore="customer_id")
    assert data.name == "customers"
    assert [t.name for t in data.tasks] == ["churn", "segment", "spend"]
    assert [t.kind for t in data.tasks] == ["binary", "multiclass", "regression"]
    assert data.task("segment").n_classes == 3
    assert (len(data.train), len(data.validation), len(data.test)) == (180, 60, 60)
    prep = data.preprocessing
    # text, small-int and boolean columns are categorical; the rest numeric; targets are no features
    assert [e["column"] for e in prep["categorical"]] == ["city", "plan", "premium"]
    assert [e["column"] for e in prep["numeric"]] == ["age", "score"]
    assert prep["targets"]["churn"]["classes"] == ["no", "yes"]  # 1 = "yes"
    assert prep["targets"]["segment"]["classes"] == ["a", "b", "c"]
    # age has gaps, so it gets a missing indicator: 2 numeric + 1 indicator column
    schema = dict(data.input_schema)
    quantiles = schema.pop("numeric_quantiles")  # the train quantiles on the inputs' scale, per numeric column
    assert schema == {"kind": "tabular", "numeric": 3, "categorical": [4, 4, 3]}
    assert len(quantiles) == 3 and quantiles[2] == [0.0, 1.0]  # the missing indicator's
    assert data.train.inputs["numeric"].shape == (180, 3)
    assert data.train.inputs["categorical"].dtype == torch.int64
    json.dumps(prep)  # stored on the study as JSON


def test_labels_follow_the_rows(customers, customers_csv):
    data = load(customers_csv, ignore="customer_id")
    train, _, _ = split_indices(len(customers), (0.6, 0.2, 0.2), 0)
    rows = customers.iloc[train.numpy()]
    assert data.train.targets["churn"].tolist() == (rows["churn"] == "yes").astype(float).tolist()
    assert data.train.targets["segment"].tolist() == (rows["plan"] - 1).astype(float).tolist()
    spend = data.train.targets["spend"].numpy()
    assert np.array_equal(np.isnan(spend), rows["spend"].isna().to_numpy())  # missing labels stay NaN
    assert np.allclose(spend[~np.isnan(spend)], rows["spend"].dropna(), atol=1e-5)


def test_onehot_encoding_gives_one_dense_vector(customers_csv):
    data = load(customers_csv, ignore="customer_id", encoding="onehot")
    assert data.input_schema == {"kind": "vector", "size": 3 + 4 + 4 + 3, "key": "x"}
    x = data.train.inputs["x"]
    assert torch.equal(x[:, 3:].sum(dim=1), torch.full((len(x),), 3.0))  # one hot per categorical column


def test_parquet_and_description_file(tmp_path, customers):
    customers.rename(columns={"churn": "churned"}).to_parquet(tmp_path / "customers.parquet")
    (tmp_path / "desc.yaml").write_text(
        "file: customers.parquet\n"
        "tasks:\n"
        "  - {name: churn, kind: binary, column: churned, positive: 'no'}\n"
        "  - {name: spend, kind: regression, metrics: [mae, rmse]}\n"
        "ignore: [customer_id, segment]\n"
        "numeric: [plan]\n"
        "options: {seed: 3}\n"
    )
    data = load_data(None, {}, str(tmp_path / "desc.yaml"), [])
    assert data.task("spend").metrics == ("mae", "rmse")
    assert data.preprocessing["targets"]["churn"]["classes"] == ["yes", "no"]  # positive: "no"
    assert "plan" in [e["column"] for e in data.preprocessing["numeric"]]  # declared, not detected
    assert data.description["options"]["seed"] == 3
    # the same file through --data-option description=
    again = load_data(None, {"description": str(tmp_path / "desc.yaml")}, str(tmp_path / "customers.parquet"), [])
    assert torch.equal(again.train.targets["churn"], data.train.targets["churn"])


def test_split_and_subsample_are_seeded(customers_csv):
    first = load(customers_csv, rows=100, seed=1, ignore="customer_id")
    second = load(customers_csv, rows=100, seed=1, ignore="customer_id")
    other = load(customers_csv, rows=100, seed=2, ignore="customer_id")
    assert len(first.train) + len(first.validation) + len(first.test) == 100
    assert torch.equal(first.train.inputs["numeric"], second.train.inputs["numeric"])
    assert not torch.equal(first.train.targets["spend"].nan_to_num(), other.train.targets["spend"].nan_to_num())


def test_empty_feature_column_is_dropped_with_a_warning(tmp_path, customers):
    customers["notes"] = np.nan
    customers.to_csv(tmp_path / "t.csv", index=False)
    with pytest.warns(DataWarning, match="'notes' has no values"):
        data = load(tmp_path / "t.csv", ignore="customer_id")
    assert data.preprocessing["dropped"] == [{"column": "notes", "reason": "empty"}]
    assert "notes" not in [e["column"] for e in data.preprocessing["numeric"] + data.preprocessing["categorical"]]


def test_multiclass_integer_labels_sort_numerically(tmp_path, customers):
    customers["level"] = np.where(customers["plan"] == 3, 10, customers["plan"])
    customers.to_csv(tmp_path / "t.csv", index=False)
    data = load(tmp_path / "t.csv", tasks=["level:multiclass:classes=5"], ignore="customer_id")
    assert data.preprocessing["targets"]["level"]["classes"] == ["1", "2", "10"]
    assert data.task("level").n_classes == 5  # declared classes are kept when the data shows fewer


# -- bad input: one clean line each ------------------------------------------------------


def test_a_data_warning_is_one_line_on_stderr(run_table, customers_csv):
    result = run_table(customers_csv, "--task", "churn:binary", "--epochs", "1")
    assert result.code == 0, result
    warned = [line for line in result.err.splitlines() if "customer_id" in line]
    assert warned == [
        f"mtl-search run: warning: --data-file {customers_csv}: numeric column 'customer_id' holds a different whole number "
        "in every row; if it is an identifier, ignore it (ignore: [customer_id] in a description file, or --data-option ignore=customer_id)"
    ]
    assert "DataWarning" not in result.err and "warn_data" not in result.err  # no file:line header, no source line


def test_missing_file(run_table, tmp_path):
    assert_one_line_error(run_table(tmp_path / "nope.csv", "--task", "y:binary"), "nope.csv", "no such file")


def test_malformed_csv(run_table, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("a,b,y\n1,2,0\n3,4,1,9,9\n")
    assert_one_line_error(run_table(path, "--task", "y:binary"), "bad.csv", "not a readable CSV file")


def test_unreadable_parquet(run_table, tmp_path):
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"this is not parquet at all")
    assert_one_line_error(run_table(path, "--task", "y:binary"), "bad.parquet", "not a readable Parquet file")


def test_task_column_absent(run_table, customers_csv):
    assert_one_line_error(run_table(customers_csv, "--task", "income:binary"), "customers.csv", "'income' not found")


def test_task_column_absent_from_a_description_file_names_its_key(run_table, tmp_path, customers_csv):
    # the misspelling is in the YAML, so the message points there and still names the table
    (tmp_path / "d.yaml").write_text(
        "tasks:\n  - {name: churn, kind: binary}\n  - {name: spend, kind: regression, column: spent}\n"
        "  - {name: income, kind: binary}\n"
    )
    result = run_table(customers_csv, "--data-option", f"description={tmp_path / 'd.yaml'}")
    assert_one_line_error(result, "d.yaml: key tasks.1.column: task column 'spent' not found in", "customers.csv")
    (tmp_path / "d.yaml").write_text("tasks:\n  - {name: churn, kind: binary}\n  - {name: income, kind: binary}\n")
    result = run_table(customers_csv, "--data-option", f"description={tmp_path / 'd.yaml'}")
    assert_one_line_error(result, "d.yaml: key tasks.1.name: task column 'income' not found in", "customers.csv")


def test_an_ignored_column_must_exist(run_table, customers_csv):
    # a misspelt identifier column would otherwise be kept as a feature
    assert_one_line_error(
        run_table(customers_csv, "--task", "churn:binary", "--data-option", "ignore=nosuch"),
        "customers.csv",
        "ignored column 'nosuch' not found",
    )


def test_unknown_task_kind(run_table, customers_csv):
    assert_one_line_error(run_table(customers_csv, "--task", "churn:ordinal"), "churn", "unknown kind 'ordinal'")


def test_multiclass_target_with_one_class(run_table, tmp_path, customers):
    customers["segment"] = "a"
    customers.to_csv(tmp_path / "t.csv", index=False)
    assert_one_line_error(
        run_table(tmp_path / "t.csv", "--task", "segment:multiclass"), "t.csv", "'segment'", "at least two classes"
    )


def test_binary_target_with_three_values(run_table, customers_csv):
    assert_one_line_error(
        run_table(customers_csv, "--task", "segment:binary"),
        "customers.csv",
        "'segment'",
        "exactly two values",
        "has 3",
    )


def test_regression_target_holding_text(run_table, customers_csv):
    assert_one_line_error(
        run_table(customers_csv, "--task", "city:regression"), "customers.csv", "'city'", "holds text"
    )


@pytest.mark.parametrize(
    "column,task,value",
    [
        ("age", "churn:binary", np.inf),
        ("score", "score:regression", -np.inf),
        ("age", "churn:binary", 1e308),  # finite, but inf in float32 and its square overflows float64
        ("score", "score:regression", -1e308),
        ("age", "churn:binary", 3.5e38),  # just beyond float32's range
    ],
)
def test_an_infinite_or_overflowing_value_is_refused_before_a_study_is_stored(
    run_table, tmp_path, customers, column, task, value, storage_url
):
    row = len(customers) - 1  # the last row: a validation or test row, whatever the split
    customers.loc[row, column] = value
    customers.to_csv(tmp_path / "t.csv", index=False)
    result = run_table(tmp_path / "t.csv", "--task", task)
    assert_one_line_error(result, "t.csv", f"column {column!r} holds {value:g} in row {row};", "leave such cells empty")
    assert optuna.get_all_study_names(storage_url) == []
    assert "RuntimeWarning" not in result.err


def test_the_largest_float32_magnitude_is_accepted(run_table, tmp_path, customers):
    customers.loc[0, "age"] = 3.4e38
    customers.to_csv(tmp_path / "t.csv", index=False)
    assert run_table(tmp_path / "t.csv", "--task", "churn:binary").code == 0


def test_an_overflowing_value_in_sampled_rows_names_its_row_of_the_file(run_table, tmp_path, customers):
    customers.loc[[5, 6], "score"] = 1e308  # one row is left out of the sample; at least one of these stays
    customers.to_csv(tmp_path / "t.csv", index=False)
    result = run_table(tmp_path / "t.csv", "--task", "churn:binary", "--data-option", f"rows={len(customers) - 1}")
    named = [f"column 'score' holds 1e+308 in row {row}" in result.err for row in (5, 6)]
    assert result.code == 2 and any(named), result


def test_a_study_continues_on_the_same_bytes_anywhere_and_not_on_changed_ones(run_table, tmp_path, customers):
    (tmp_path / "moved").mkdir()
    customers.to_csv(tmp_path / "t.csv", index=False)
    customers.to_csv(tmp_path / "moved" / "t.csv", index=False)  # another machine's copy, at another path
    tasks = ["--task", "churn:binary", "--epochs", "1", "--study-name", "same", "--data-option", "ignore=customer_id"]
    assert run_table(tmp_path / "t.csv", *tasks).code == 0
    assert run_table(tmp_path / "moved" / "t.csv", *tasks).code == 0
    customers["churn"] = customers["churn"].to_numpy()[::-1]  # other labels, same columns, same path
    customers.to_csv(tmp_path / "t.csv", index=False)
    assert_one_line_error(
        run_table(tmp_path / "t.csv", *tasks),
        "study 'same' was made with other data",
        "t.csv: its content changed since the study was made, sha256",
    )


def test_task_without_labels_in_train(run_table, tmp_path, customers):
    _, _, test = split_indices(len(customers), (0.6, 0.2, 0.2), 0)
    only_test = pd.Series(np.nan, index=customers.index)
    only_test.iloc[test.numpy()] = customers["score"].iloc[test.numpy()]
    customers["late"] = only_test  # labelled in the test rows only
    customers.to_csv(tmp_path / "t.csv", index=False)
    assert_one_line_error(
        run_table(tmp_path / "t.csv", "--task", "late:regression"), "'late'", "no labelled row in the train split"
    )


def test_column_declared_numeric_holding_text(run_table, customers_csv):
    result = run_table(customers_csv, "--task", "churn:binary", "--data-option", "numeric=age,city")
    assert_one_line_error(result, "customers.csv", "'city'", "numeric but holds text", "Lyon")


@pytest.mark.parametrize(
    "header,message",
    [
        ("customer_id,age,city,age", "column 'age' appears twice in the header"),  # pandas: 'age.1'
        ("customer_id,,city,plan", "column 2 has no name in the header"),  # pandas: 'Unnamed: 1'
        # after a row index, columns are still counted as in the file
        (",customer_id,age,,plan", "column 4 has no name in the header"),
    ],
)
def test_a_repeated_or_blank_column_name_is_refused(run_table, tmp_path, customers_csv, header, message, storage_url):
    text = customers_csv.read_text()
    (tmp_path / "t.csv").write_text(text.replace("customer_id,age,city,plan", header, 1))
    assert_one_line_error(
        run_table(tmp_path / "t.csv", "--task", "churn:binary"), f"--data-file {tmp_path / 't.csv'}: {message}"
    )
    assert optuna.get_all_study_names(storage_url) == []


def test_a_target_in_the_ignore_or_feature_option_is_refused(customers_csv):
    with pytest.raises(
        UserError, match=r"^--data-option ignore=customer_id,churn: column 'churn' is the target of task 'churn'$"
    ):
        load(customers_csv, tasks=["churn:binary"], ignore="customer_id,churn")
    with pytest.raises(
        UserError, match=r"^--data-option features=age,spend: column 'spend' is the target of task 'spend'$"
    ):
        load(customers_csv, features="age,spend")


def test_no_task_declared(run_table, customers_csv):
    assert_one_line_error(run_table(customers_csv), "no task declared", "--task")


CHURN = "tasks:\n  - {name: churn, kind: binary}\n"


@pytest.mark.parametrize(
    "text,message",
    [
        # the same words as a space file's typo
        (CHURN + "featurez: [age]\n", "key featurez: unknown key"),
        ("tasks:\n  - {name: churn, kind: binary, colum: churned}\n", "key tasks.0.colum: unknown key"),
        (
            CHURN + "options: {encodng: onehot}\n",
            "key options.encodng: unknown option (known: categorical, chunk_rows, encoding,",
        ),
        (CHURN + "options: {seed: abc}\n", "key options.seed: expected a whole number, got 'abc'"),
        (
            CHURN + "options: {encoding: onehott}\n",
            "key options.encoding: expected one of embedding, onehot, got 'onehott'",
        ),
        (CHURN + "  - {name: spend, kind: regresion}\n", "key tasks.1.kind: task 'spend': unknown kind 'regresion'"),
        (
            CHURN + "  - {name: spend, kind: regression, metrics: [mae, rmsee]}\n",
            "key tasks.1.metrics: task 'spend': unknown metric 'rmsee'",
        ),
        (
            CHURN + "  - {name: spend, kind: regression, metrics: [auc]}\n",
            "key tasks.1.metrics: task 'spend': metric 'auc' does not apply",
        ),
        # classes: 0 once became 2 unseen
        (
            CHURN + "  - {name: segment, kind: multiclass, classes: 0}\n",
            "key tasks.1.classes: task 'segment': a multiclass task needs at least 2 classes, got 0",
        ),
        (CHURN + "  - {name: 'spend!', kind: regression}\n", "key tasks.1.name: task name 'spend!'"),
        (
            "tasks:\n  - {name: churn, kind: binary, positive: [yes]}\n",
            "key tasks.0.positive: expected one value of the column",
        ),
        (CHURN + "features: age\n", "key features: Input should be a valid list"),
        # a key that would be ignored, a task twice, numbers out of range
        (
            CHURN + "  - {name: spend, kind: regression, classes: 3}\n",
            "key tasks.1.classes: only a multiclass task has classes (task 'spend' is regression)",
        ),
        (
            CHURN + "  - {name: churn, kind: binary, column: premium}\n",
            "key tasks.1.name: task 'churn' is declared twice (also tasks.0)",
        ),
        (CHURN + "options: {rows: -5}\n", "key options.rows: must be 0 (every row) or positive, got -5"),
        (CHURN + "options: {test_fraction: 1.5}\n", "key options.test_fraction: must be between 0 and 1, got 1.5"),
        # wrong only together: once named as command-line options, without the file
        (
            CHURN + "options: {validation_fraction: 0.7, test_fraction: 0.5}\n",
            "key options.validation_fraction, options.test_fraction: validation_fraction + test_fraction must be below 1, got 0.7 + 0.5",
        ),
        (
            CHURN + "options: {validation_fraction: 0.8}\n",
            "key options.validation_fraction: validation_fraction + test_fraction must be below 1, got 0.8 + 0.2",
        ),
        (
            CHURN + "  - {name: spend, kind: regression, given: bigg}\n",
            "key tasks.1.given: task 'spend': given=bigg is not a task of the data",
        ),
        (
            CHURN + "  - {name: spend, kind: regression, given: churn}\n",
            "key tasks.1.given: task 'spend': given=churn needs both tasks to be binary",
        ),
        (
            "tasks:\n  - {name: churn, kind: binary, given: premium}\n  - {name: premium, kind: binary, given: churn}\n",
            "key tasks.0.given: task 'churn': the given= conditions form a cycle",
        ),
        # a target as a feature, or ignored: a contradiction, once dropped without a word
        (CHURN + "features: [churn, age]\n", "key features: column 'churn' is the target of task 'churn'"),
        (
            CHURN.replace("binary}", "binary, column: premium}") + "ignore: [premium]\n",
            "key ignore: column 'premium' is the target of task 'churn'",
        ),
    ],
)
def test_bad_description_file_names_the_file_and_key(tmp_path, customers_csv, text, message):
    (tmp_path / "d.yaml").write_text(text)
    with pytest.raises(UserError) as error:
        load_data(None, {"description": str(tmp_path / "d.yaml")}, str(customers_csv), [])
    assert str(error.value).startswith(f"description file {tmp_path / 'd.yaml'}: {message}"), str(error.value)


def test_a_bad_description_file_is_one_line_on_the_command_line(run_table, tmp_path, customers_csv):
    (tmp_path / "d.yaml").write_text(CHURN + "options: {encodng: onehot}\n")
    result = run_table(customers_csv, "--data-option", f"description={tmp_path / 'd.yaml'}")
    assert_one_line_error(result, "d.yaml: key options.encodng: unknown option")
    # the command line's own options are still named as such
    result = run_table(customers_csv, "--task", "churn:binary", "--data-option", "encodng=onehot")
    assert_one_line_error(result, "--data-option encodng: unknown option")
    # a task in the file and on the command line
    (tmp_path / "d.yaml").write_text(CHURN)
    result = run_table(customers_csv, "--data-option", f"description={tmp_path / 'd.yaml'}", "--task", "churn:binary")
    assert_one_line_error(
        result, f"--task: task 'churn' is declared twice (also in description file {tmp_path / 'd.yaml'})"
    )


def test_fractions_from_the_file_and_the_command_line_name_both(tmp_path, customers_csv):
    (tmp_path / "d.yaml").write_text(CHURN + "options: {validation_fraction: 0.7}\n")
    with pytest.raises(UserError) as error:
        load_data(None, {"description": str(tmp_path / "d.yaml"), "test_fraction": "0.5"}, str(customers_csv), [])
    assert str(error.value) == (
        f"description file {tmp_path / 'd.yaml'}: key options.validation_fraction: validation_fraction + "
        "test_fraction must be below 1, got 0.7 + 0.5 (with --data-option test_fraction=0.5)"
    )


def test_a_continuous_column_is_no_multiclass_target(run_table, customers_csv):
    # it used to train one class per value, scoring accuracy 0, and exit 0
    assert_one_line_error(
        run_table(customers_csv, "--task", "spend:multiclass"),
        "customers.csv",
        "task 'spend'",
        "needs whole numbers or text as classes",
        "use kind regression",
    )


def test_a_multiclass_target_needs_two_labelled_rows_per_class(customers_csv, tmp_path, customers):
    with pytest.raises(
        UserError,
        match="'customer_id' has 300 distinct values in 300 labelled rows; for a continuous target use kind regression",
    ):
        load(customers_csv, tasks=["customer_id:multiclass"])
    customers["pairs"] = np.arange(len(customers)) // 2  # 150 classes of two rows each: the most allowed
    customers.to_csv(tmp_path / "t.csv", index=False)
    assert load(tmp_path / "t.csv", tasks=["pairs:multiclass"], ignore="customer_id").task("pairs").n_classes == 150
    customers.loc[0, "pairs"] = 1000  # one class more
    customers.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(UserError, match="'pairs' has 151 distinct values in 300 labelled rows"):
        load(tmp_path / "t.csv", tasks=["pairs:multiclass"], ignore="customer_id")


def test_an_identifier_column_earns_a_warning(customers_csv):
    with pytest.warns(
        DataWarning,
        match=r"numeric column 'customer_id' holds a different whole number in every row; .*ignore: \[customer_id\]",
    ):
        load(customers_csv)


def test_ordinary_numeric_columns_earn_no_identifier_warning(tmp_path, customers):
    rng = np.random.default_rng(0)
    customers["visits"] = rng.integers(0, 60, len(customers))  # whole numbers, many, but repeated
    customers["balance"] = rng.normal(0, 1000, len(customers))  # every value distinct, but not whole
    customers.to_csv(tmp_path / "t.csv", index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        data = load(tmp_path / "t.csv", ignore="customer_id")
        load(tmp_path / "t.csv", numeric="customer_id")  # declared numeric: the user knows
    assert {"visits", "balance"} <= {e["column"] for e in data.preprocessing["numeric"]}


def test_raw_rows_with_unseen_and_missing_values(customers_csv):
    from mtl_search.data.preprocessing import apply_preprocessing

    data = load(customers_csv, ignore="customer_id")
    rows = pd.DataFrame(
        {
            "age": [None, 40.0],
            "city": ["Paris", " Oslo "],
            "plan": ["2", 3.0],
            "premium": [True, False],
            "score": [0.0, 1.0],
            "unused": [1, 2],
        }
    )
    inputs = apply_preprocessing(data.preprocessing, rows)
    age = data.preprocessing["numeric"][0]
    assert math.isclose(float(inputs["numeric"][0, 0]), (age["median"] - age["mean"]) / age["std"], rel_tol=1e-5)
    assert inputs["numeric"][:, 2].tolist() == [1.0, 0.0]  # the age-was-missing indicator
    city = data.preprocessing["categorical"][0]["categories"]
    assert inputs["categorical"][:, 0].tolist() == [0, city.index("Oslo") + 1]  # unseen -> 0; spaces trimmed
    assert inputs["categorical"][:, 1].tolist() == [2, 3]  # "2" and 3.0 are the categories 2 and 3
    # one row may come as a dict or a Series: the same inputs as that row of a frame
    second = rows.iloc[1].to_dict()
    for one_row in (second, rows.iloc[1]):
        alone = apply_preprocessing(data.preprocessing, one_row)
        assert all(torch.equal(alone[name], inputs[name][1:]) for name in inputs)
    from mtl_search.errors import UserError

    with pytest.raises(UserError, match="^rows: column 'age' appears more than once$"):
        apply_preprocessing(data.preprocessing, pd.concat([rows, rows[["age"]]], axis=1))
    with pytest.raises(
        UserError, match="^rows: expected a pandas DataFrame \\(or one row as a Series or dict\\), got list$"
    ):
        apply_preprocessing(data.preprocessing, [1, 2])


def test_a_conditional_label_set_where_its_condition_is_not_is_warned_about(tmp_path):
    from mtl_search.data.table import make_table_data, targets_from_declarations
    from tests.helpers import spend_and_churn

    frame = spend_and_churn()
    frame["active"] = 1
    frame.loc[:2, "active"] = 0  # three rows: not active, yet churned
    frame.loc[:2, "churn"] = 1
    with pytest.warns(
        DataWarning,
        match=r"task 'churn' is given 'active', but 3 row\(s\) have active = 0 and churn = 1; "
        r"they are read as churn = 0",
    ):
        make_table_data(frame, targets_from_declarations(["active:binary", "churn:binary:given=active"]))
    frame.loc[:2, "churn"] = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        make_table_data(frame, targets_from_declarations(["active:binary", "churn:binary:given=active"]))
