"""The user's own table: a CSV or Parquet file, tasks declared with ``--task`` or a YAML file.

``mtl-search run --data-file customers.csv --task churn:binary --task spend:regression``
reads the table, predicts each declared column from the others, and splits the rows at
random (seeded) into train, validation and test. A description file says more::

    file: customers.parquet          # relative to this file; or give --data-file
    tasks:
      - {name: churn, kind: binary, column: churned, positive: "yes"}
      - {name: segment, kind: multiclass}
      - {name: spend, kind: regression, metrics: [mae, rmse]}
    features: [age, plan, region, zip]   # default: every column that is not a target or ignored
    ignore: [customer_id]
    categorical: [zip]                   # override the detection
    numeric: [score]
    missing: ["?", "NA"]                 # text read as a missing value (default: MISSING_MARKERS)
    options: {encoding: onehot, seed: 1} # any --data-option; the command line wins

A binary task may be derived from another column: ``{name: expensive, kind: binary, column:
price, above: 100000}`` (or ``below:``), or ``{name: married, kind: binary, column: marital,
in: [married, civil union]}``; the column is then a target, not a feature.

A first column without a name in the header is the row index that R and pandas write: it is
dropped with a :class:`DataWarning`. Missing values: an empty cell, and any text in
``missing`` (:data:`~mtl_search.data.preprocessing.MISSING_MARKERS` unless given), the same
for every source that reads a file.

Detection: text and boolean columns are categorical, and so are whole-number columns with
at most ``max_int_categories`` distinct values; other numeric columns are numeric. How
features are encoded and missing values filled: see :mod:`mtl_search.data.preprocessing`.
A feature column with no value at all is dropped with a :class:`DataWarning`.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import numpy as np
import pandas as pd
import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mtl_search.data.base import EXPECTED_VALUE, DataSource, MultiTaskData, Split, parse_options, split_indices
from mtl_search.data.preprocessing import (
    ENCODINGS,
    MISSING_MARKERS,
    SCALINGS,
    blank_missing_markers,
    check_class_labels as _check_class_labels,
    NotNumeric,
    apply_preprocessing,
    category_keys,
    fit_preprocessing,
    input_schema,
    numeric_values,
    warn_data,
)
from mtl_search.errors import UserError, describe_validation_error
from mtl_search.tasks import Task, TaskError, parse_task_declaration, validate_conditions

DEFAULTS = {
    "description": "",  # path of a YAML description file
    "encoding": "embedding",  # or onehot
    "scaling": "standard",  # numeric columns: standard (mean and std) or quantile (normal scores of train quantiles)
    "rows": 0,  # 0: every row; else a seeded random sample of this many rows
    "seed": 0,
    "validation_fraction": 0.2,
    "test_fraction": 0.2,
    "features": "",  # comma-separated column lists, as in the description file
    "ignore": "",
    "numeric": "",
    "categorical": "",
    "max_int_categories": 10,
    "missing": "",  # comma-separated text read as missing; empty: MISSING_MARKERS
    "stream": "auto",  # read in chunks into arrays on disk (data/streamed.py): auto (large files), on or off
    "chunk_rows": 65536,  # rows a chunk when streamed
}
# options stored with a study only when not their default: studies made before them compare equal
UNSTORED_DEFAULTS = (("scaling", "standard"), ("missing", ""), ("stream", "auto"), ("chunk_rows", 65536))
DESCRIPTION_SUFFIXES = (".yaml", ".yml")
PARQUET_SUFFIXES = (".parquet", ".pq")


@dataclasses.dataclass(frozen=True)
class TargetColumn:
    """A task and the column that holds its labels.

    ``positive``: for a binary task, the value that means 1 (default: the larger of the two
    values, numerically or alphabetically). ``declared_classes``: whether the user gave the
    number of classes of a multiclass task (else it is read from the data). ``named_by``:
    where the column was named when that is not the table itself (a description file's key).
    ``rule``: a binary target derived from the column: ``("above", 100000.0)``,
    ``("below", 18.0)`` or ``("in", ("married", "civil union"))``; None: the column's own values.
    """

    task: Task
    column: str
    positive: Any = None
    declared_classes: bool = False
    named_by: str | None = None
    rule: tuple[str, Any] | None = None


T = TypeVar("T")

# -- reading files -----------------------------------------------------------------------


def interruptible(read: Callable[[], T]) -> T:
    """``read()`` (a file parse) run in a thread of its own while this one waits for it.

    A parse in C code sees Ctrl-C only once it is done, seconds later for a large file, and
    pandas' parallel CSV reader, stopped mid-parse, frees the buffers its threads still parse
    (a crash). Waiting here instead, Ctrl-C stops the wait at once; the parse left behind runs
    on until it ends or the process does. Its result or error comes back as if called here.
    """
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = read()
        except BaseException as error:  # handed to the waiting thread, which raises it
            outcome["error"] = error

    worker = threading.Thread(target=run, name="mtl-search-read", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(0.1)  # a timed wait: a signal handler runs between two
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def read_table(path: str | Path, missing: Sequence[str] = MISSING_MARKERS) -> pd.DataFrame:
    """A CSV (any compression pandas infers from the name) or Parquet file as a DataFrame.

    An empty cell and the text in ``missing`` are missing values. A first column without a
    name is a row index (as R and pandas write one): it is dropped with a one-line warning.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"--data-file {path}: no such file")
    if path.is_dir():
        raise UserError(f"--data-file {path}: is a folder, expected a CSV or Parquet file")
    if path.suffix.lower() in PARQUET_SUFFIXES:
        try:
            frame = interruptible(lambda: pd.read_parquet(path))
        except Exception as error:  # pyarrow raises several types for a damaged file
            raise UserError(f"--data-file {path}: not a readable Parquet file ({_first_line(error)})") from None
    else:
        separator = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
        try:
            frame = interruptible(
                lambda: pd.read_csv(path, sep=separator, na_values=["", *missing], keep_default_na=False)
            )
        except pd.errors.EmptyDataError:
            raise UserError(f"--data-file {path}: the file is empty") from None
        except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as error:
            raise UserError(f"--data-file {path}: not a readable CSV file ({_first_line(error)})") from None
    if len(frame) == 0:
        raise UserError(f"--data-file {path}: the table has no rows")
    frame.columns = [str(column) for column in frame.columns]
    if path.suffix.lower() in PARQUET_SUFFIXES:
        names = list(frame.columns)
    else:
        # the header as written: pandas renames a repeated name to 'age.1' and a blank one to
        # 'Unnamed: 0', names the user's raw rows (and exported models' inputs) never carry
        header = pd.read_csv(path, sep=separator, header=None, nrows=1, dtype=str, keep_default_na=False)
        names = [str(name) for name in header.iloc[0]]
    if len(names) > 1 and not names[0].strip():
        _check_header(names[1:], path, first_number=2)
        warn_data(f"--data-file {path}: the first column has no name in the header; read as a row index and ignored")
        return frame.iloc[:, 1:]
    _check_header(names, path)
    return frame


def _check_header(names: list[str], path: Path, first_number: int = 1) -> None:
    seen = set()
    for number, name in enumerate(names, first_number):
        if not name.strip():
            raise UserError(f"--data-file {path}: column {number} has no name in the header")
        if name in seen:
            raise UserError(f"--data-file {path}: column {name!r} appears twice in the header")
        seen.add(name)


def _first_line(error: Exception) -> str:
    text = " ".join(str(error).split())
    return text[:200] or type(error).__name__


class _TaskEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    name: str
    kind: str
    column: str | None = None
    classes: int | None = None
    metrics: list[str] = []
    positive: Any = None
    given: str | None = None
    above: Any = None
    below: Any = None
    in_values: Any = Field(None, alias="in")

    @field_validator("positive")
    @classmethod
    def _one_value(cls, value: Any) -> Any:
        # checked here, not as a union of types, so that a list gets one clear message
        if value is not None and not isinstance(value, (str, int, float)):
            raise ValueError(f"expected one value of the column (text, a number or true/false), got {value!r}")
        return value

    @field_validator("above", "below")
    @classmethod
    def _threshold(cls, value: Any) -> float | None:
        if value is None:
            return None
        try:  # YAML reads 1e5 as text
            number = float(value) if not isinstance(value, bool) else math.nan
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number):
            raise ValueError(f"expected a number, got {value!r}")
        return number

    @field_validator("in_values")
    @classmethod
    def _values(cls, value: Any) -> tuple | None:
        if value is None:
            return None
        if not isinstance(value, list) or not value or not all(isinstance(v, (str, int, float)) for v in value):
            raise ValueError(f"expected a list of values of the column, such as [a, b], got {value!r}")
        return tuple(value)

    def rules(self) -> list[tuple[str, Any]]:
        """The keys that derive a binary target from the column, with their values."""
        given = (("above", self.above), ("below", self.below), ("in", self.in_values))
        return [(key, value) for key, value in given if value is not None]


class TableDescription(BaseModel):
    """A YAML description file (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")
    file: str | None = None
    tasks: list[_TaskEntry] = []
    features: list[str] | None = None
    ignore: list[str] = []
    numeric: list[str] = []
    categorical: list[str] = []
    missing: list[str | int | float] | None = None
    options: dict[str, Any] = {}

    @field_validator("missing")
    @classmethod
    def _as_text(cls, value: list | None) -> list[str] | None:
        # a marker is compared with the cell's text: -999 in the file is the text '-999'
        return None if value is None else [str(v) for v in value]


def read_description(path: str | Path) -> TableDescription:
    path = Path(path)
    if not path.exists():
        raise UserError(f"description file {path}: no such file")
    try:
        raw = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError, OSError):
        raise UserError(f"description file {path}: not valid YAML") from None
    if not isinstance(raw, dict):
        raise UserError(f"description file {path}: expected a mapping (file, tasks, features, ...)")
    try:
        description = TableDescription.model_validate(raw)
    except ValidationError as error:
        raise UserError(f"description file {path}: {describe_validation_error(error)}") from None
    if description.file is not None and not Path(description.file).is_absolute():
        description.file = str(path.parent / description.file)  # relative to the description
    return description


# -- targets -----------------------------------------------------------------------------


def encode_target(target: TargetColumn, series: pd.Series, where: str) -> tuple[torch.Tensor, Task, dict[str, Any]]:
    """Labels as floats (class index or value, NaN = missing), the task refined, the label state."""
    task, column = target.task, target.column
    if target.rule is not None:
        labels, classes = derived_labels(target, series, where)
        state = {"column": column, "kind": "binary", "classes": classes, "rule": list(target.rule)}
        return torch.from_numpy(labels), task, state
    if task.kind == "regression":
        try:
            values = numeric_values(series, column, where)
        except NotNumeric:
            example = series[pd.to_numeric(series, errors="coerce").isna() & series.notna()].iloc[0]
            raise UserError(
                f"{where}: task {task.name!r}: regression target column {column!r} holds text (e.g. {example!r})"
            ) from None
        return torch.tensor(values, dtype=torch.float32), task, {"column": column, "kind": "regression"}
    keys = category_keys(series)
    classes = _sorted_classes(series, keys)
    if task.kind == "binary":
        if len(classes) != 2:
            shown = ", ".join(repr(c) for c in classes[:5]) + (", ..." if len(classes) > 5 else "")
            raise UserError(
                f"{where}: task {task.name!r}: a binary target needs exactly two values, column {column!r} has {len(classes)} ({shown})"
            )
        if target.positive is not None:
            positive = category_keys(pd.Series([target.positive])).iloc[0]
            if positive not in classes:
                raise UserError(
                    f"{where}: task {task.name!r}: positive={target.positive!r} is not a value of column {column!r} ({', '.join(classes)})"
                )
            classes = [c for c in classes if c != positive] + [positive]
    else:
        if len(classes) < 2:
            shown = repr(classes[0]) if classes else "no labels"
            raise UserError(
                f"{where}: task {task.name!r}: a multiclass target needs at least two classes, column {column!r} has one ({shown})"
            )
        _check_class_labels(task, column, series, len(classes), int(keys.notna().sum()), where)
        if target.declared_classes and len(classes) > task.n_classes:
            raise UserError(
                f"{where}: task {task.name!r}: declared classes={task.n_classes} but column {column!r} has {len(classes)} distinct values"
            )
        n_classes = max(len(classes), task.n_classes if target.declared_classes else 0)
        task = dataclasses.replace(task, n_classes=n_classes)
    index = {key: position for position, key in enumerate(classes)}
    labels = np.array([np.nan if key is None else index[key] for key in keys], dtype=np.float32)
    return torch.from_numpy(labels), task, {"column": column, "kind": task.kind, "classes": classes}


def derived_labels(target: TargetColumn, series: pd.Series, where: str) -> tuple[np.ndarray, list[str]]:
    """0/1 labels (NaN where the column is missing) of a target derived by its rule, and the
    wording of its two classes (``price <= 100000``, ``price > 100000``)."""
    name, column = target.task.name, target.column
    key, value = target.rule
    if key in ("above", "below"):
        try:
            values = numeric_values(series, column, where)
        except NotNumeric:
            example = series[pd.to_numeric(series, errors="coerce").isna() & series.notna()].iloc[0]
            raise UserError(
                f"{where}: task {name!r}: {key}={value:g} needs a numeric column, column {column!r} holds text "
                f"(e.g. {example!r})"
            ) from None
        holds = values > value if key == "above" else values < value
        labels = np.where(np.isnan(values), np.nan, holds.astype(np.float32)).astype(np.float32)
        classes = (
            [f"{column} <= {value:g}", f"{column} > {value:g}"]
            if key == "above"
            else [f"{column} >= {value:g}", f"{column} < {value:g}"]
        )
    else:
        keys = category_keys(series)
        wanted = category_keys(pd.Series(list(value), dtype=object)).tolist()
        present = set(keys.dropna())
        for text, original in zip(wanted, value):
            if text not in present:  # most likely a typo: the task would quietly lose its rows
                shown = ", ".join(repr(c) for c in sorted(present)[:6]) + (", ..." if len(present) > 6 else "")
                raise UserError(
                    f"{where}: task {name!r}: in: value {original!r} is not a value of column {column!r} ({shown})"
                )
        labels = np.where(keys.isna(), np.nan, keys.isin(wanted)).astype(np.float32)
        listed = ", ".join(wanted)
        classes = [f"{column} not in [{listed}]", f"{column} in [{listed}]"]
    labelled = labels[~np.isnan(labels)]
    if labelled.size and labelled.min() == labelled.max():
        rule = f"{key}={value:g}" if key != "in" else f"in: [{', '.join(str(v) for v in value)}]"
        found = numeric_values(series, column, where) if key != "in" else None
        span = "" if found is None else f" (it runs from {np.nanmin(found):g} to {np.nanmax(found):g})"
        raise UserError(
            f"{where}: task {name!r}: {rule} makes every labelled row of column {column!r} "
            f"{int(labelled[0])}, a binary target needs both classes{span}"
        )
    return labels, classes


def _sorted_classes(series: pd.Series, keys: pd.Series) -> list[str]:
    distinct = list(dict.fromkeys(keys.dropna().tolist()))
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        return sorted(distinct, key=float)  # 2 before 10
    return sorted(distinct)


# -- the table as MultiTaskData ----------------------------------------------------------


def make_table_data(
    frame: pd.DataFrame,
    targets: Sequence[TargetColumn],
    *,
    name: str = "table",
    where: str = "table",
    features: Sequence[str] | None = None,
    ignore: Sequence[str] = (),
    numeric: Sequence[str] = (),
    categorical: Sequence[str] = (),
    encoding: str = "embedding",
    scaling: str = "standard",
    rows: int = 0,
    seed: int = 0,
    validation_fraction: float = 0.2,
    test_fraction: float = 0.2,
    max_int_categories: int = 10,
    missing: Sequence[str] = MISSING_MARKERS,
    description: dict[str, Any] | None = None,
) -> MultiTaskData:
    """Split, encode and preprocess a DataFrame; every check names ``where`` and the column.

    The rows are split at random with ``seed``; feature preprocessing is fitted on the train
    rows only. Class lists of classification targets come from every labelled row. Text
    cells that are empty or in ``missing`` are missing values, here and in the rows that
    :func:`apply_preprocessing` later gets.
    """
    if not targets:
        raise UserError(
            f"{where}: no task declared; use --task NAME:KIND (e.g. --task churn:binary) or a description file"
        )
    if not (0 < validation_fraction < 1 and 0 < test_fraction < 1 and validation_fraction + test_fraction < 1):
        raise UserError("--data-option validation_fraction/test_fraction: must be in (0, 1) and sum below 1")
    if rows < 0:
        raise UserError(f"--data-option rows={rows}: must be 0 (every row) or positive")
    for target in targets:
        _check_columns(frame, [target.column], where, "task column", named_by=target.named_by)
    _check_columns(frame, list(numeric) + list(categorical) + list(features or []), where, "declared column")
    _check_columns(
        frame, list(ignore), where, "ignored column"
    )  # a misspelt identifier would otherwise become a feature
    both = set(numeric) & set(categorical)
    if both:
        raise UserError(f"{where}: column {sorted(both)[0]!r} is declared both numeric and categorical")
    # each row keeps its position in the file or frame (from 0) as its label, sampled or not, so
    # that an error names the row the user can find
    frame = frame.reset_index(drop=True)
    if rows and rows < len(frame):
        frame = frame.sample(n=rows, random_state=seed)
    frame = blank_missing_markers(frame, missing)

    target_columns = {t.column for t in targets}
    if features is None:
        features = [c for c in frame.columns if c not in target_columns and c not in set(ignore)]
    features = [c for c in features if c not in target_columns]
    for column in numeric:
        numeric_values(frame[column], column, where)  # declared numeric: text is an error here
    dropped = []
    kept = []
    for column in features:
        if _is_empty(frame[column]):
            warn_data(f"{where}: feature column {column!r} has no values; dropped")
            dropped.append({"column": column, "reason": "empty"})
        else:
            kept.append(column)
    if not kept:
        raise UserError(f"{where}: no feature column left (all are targets, ignored or empty)")
    numeric_columns, categorical_columns = [], []
    for column in kept:
        if column in numeric:
            numeric_columns.append(column)
        elif column in categorical or _looks_categorical(frame[column], max_int_categories):
            categorical_columns.append(column)
        else:
            numeric_columns.append(column)

    for column in numeric_columns:
        if column not in numeric:  # checked above
            # every row, before the train rows are fitted: the error names the table's first bad row
            numeric_values(frame[column], column, where)
    n_rows = len(frame)
    if n_rows < 3:
        raise UserError(f"{where}: need at least 3 rows to split into train, validation and test, got {n_rows}")
    train_index, validation_index, test_index = split_indices(
        n_rows,
        (1 - validation_fraction - test_fraction, validation_fraction, test_fraction),
        seed,
    )
    target_tensors, tasks, target_state = {}, [], {}
    for target in targets:
        labels, task, state = encode_target(target, frame[target.column], where)
        for split_name, index in (("train", train_index), ("validation", validation_index)):
            if not bool((~torch.isnan(labels[index])).any()):
                raise UserError(
                    f"{where}: task {task.name!r}: column {target.column!r} has no labelled row in the {split_name} split"
                )
        target_tensors[task.name] = labels
        tasks.append(task)
        target_state[task.name] = state

    train_rows = frame.iloc[train_index.numpy()]
    preprocessing = fit_preprocessing(
        train_rows, numeric_columns, categorical_columns, encoding=encoding, scaling=scaling, where=where
    )
    for entry in preprocessing["categorical"]:
        if len(entry["categories"]) > max(100, len(train_rows) // 2):
            warn_data(
                f"{where}: categorical column {entry['column']!r} has {len(entry['categories'])} distinct values in train; "
                "if it is an identifier, ignore it"
            )
    for column in numeric_columns:
        # declared numeric: the user has looked at it already
        if column not in numeric and _looks_like_identifier(frame[column]):
            warn_data(
                f"{where}: numeric column {column!r} holds a different whole number in every row; if it is an "
                f"identifier, ignore it (ignore: [{column}] in a description file, or --data-option ignore={column})"
            )
    preprocessing["dropped"] = dropped
    preprocessing["targets"] = target_state
    preprocessing["missing"] = list(missing)
    full = Split(inputs=apply_preprocessing(preprocessing, frame, where), targets=target_tensors)
    return MultiTaskData(
        name=name,
        tasks=tasks,
        train=full.rows(train_index),
        validation=full.rows(validation_index),
        test=full.rows(test_index),
        input_schema=input_schema(preprocessing),
        description=description or {"source": name},
        preprocessing=preprocessing,
    )


def _check_columns(
    frame: pd.DataFrame, columns: Sequence[str], where: str, what: str, named_by: str | None = None
) -> None:
    for column in columns:
        if column not in frame.columns:
            known = ", ".join(list(frame.columns)[:8]) + (", ..." if len(frame.columns) > 8 else "")
            if named_by:  # the fix belongs where the name was written; the table is still named
                raise UserError(f"{named_by}: {what} {column!r} not found in {where} (columns: {known})")
            raise UserError(f"{where}: {what} {column!r} not found (columns: {known})")


def _is_empty(series: pd.Series) -> bool:
    if series.notna().any():
        if pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
            return False
        return bool((series.dropna().astype(str).str.strip() == "").all())
    return True


def _looks_categorical(series: pd.Series, max_int_categories: int) -> bool:
    if pd.api.types.is_bool_dtype(series) or not pd.api.types.is_numeric_dtype(series):
        return True
    values = series.dropna().to_numpy(dtype=np.float64)
    whole = bool(np.all(np.floor(values) == values))
    return whole and np.unique(values).size <= max_int_categories


def _looks_like_identifier(series: pd.Series) -> bool:
    """Whole numbers, each in one row only: a row number or a customer id more than a measurement."""
    if pd.api.types.is_bool_dtype(series) or not pd.api.types.is_numeric_dtype(series):
        return False
    values = series.dropna().to_numpy(dtype=np.float64)
    return values.size > 0 and bool(np.all(np.floor(values) == values)) and np.unique(values).size == values.size


def _split_names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


# -- the registered source ---------------------------------------------------------------


def targets_from_declarations(declarations: Sequence[str]) -> list[TargetColumn]:
    """``--task name:kind[:classes=N][:metrics=a+b]``: the column is the task's name."""
    targets = []
    for text in declarations:
        task = parse_task_declaration(text)
        declared = any(part.startswith("classes=") for part in text.split(":")[2:])
        targets.append(TargetColumn(task=task, column=task.name, declared_classes=declared))
    return targets


def _targets_from_description(description: TableDescription, path: str | Path | None) -> list[TargetColumn]:
    targets = []
    for number, entry in enumerate(description.tasks):
        # the same key spelling as the file's validation errors; without column: the name is the column
        key = f"tasks.{number}.{'column' if entry.column else 'name'}"
        try:
            task = Task(
                name=entry.name,
                kind=entry.kind,
                n_classes=entry.classes if entry.classes is not None else (2 if entry.kind == "multiclass" else 0),
                metrics=tuple(entry.metrics),
                given=entry.given,
            )
        except TaskError as error:  # the fix belongs in the file: name its key, as for a missing column
            raise UserError(f"description file {path}: key tasks.{number}.{error.field}: {error}") from None
        if entry.classes is not None and entry.kind != "multiclass":  # would be ignored: say so rather than drop it
            raise UserError(
                f"description file {path}: key tasks.{number}.classes: only a multiclass task has classes "
                f"(task {entry.name!r} is {entry.kind})"
            )
        rules = [key for key, _ in entry.rules()]
        if len(rules) > 1:
            raise UserError(
                f"description file {path}: key tasks.{number}.{rules[1]}: task {entry.name!r} is derived with "
                f"{rules[0]} already; give one of above, below, in"
            )
        if rules and entry.kind != "binary":
            raise UserError(
                f"description file {path}: key tasks.{number}.{rules[0]}: a target derived with {rules[0]} is binary, "
                f"task {entry.name!r} is {entry.kind}"
            )
        if rules and entry.positive is not None:
            raise UserError(
                f"description file {path}: key tasks.{number}.positive: a target derived with {rules[0]} is 1 "
                f"where the rule holds; remove positive"
            )
        earlier = [other.task.name for other in targets]
        if entry.name in earlier:
            raise UserError(
                f"description file {path}: key tasks.{number}.name: task {entry.name!r} is declared twice "
                f"(also tasks.{earlier.index(entry.name)})"
            )
        targets.append(
            TargetColumn(
                task=task,
                column=entry.column or entry.name,
                positive=entry.positive,
                declared_classes=entry.classes is not None,
                named_by=f"description file {path}: key {key}",
                rule=entry.rules()[0] if rules else None,
            )
        )
    return targets


def _file_options(description: TableDescription, path: str | Path | None) -> dict[str, str]:
    """The file's ``options:`` as --data-option text; a bad one is named by its key in the file."""
    known = {k: v for k, v in DEFAULTS.items() if k != "description"}  # a description cannot name another
    options = {}
    for key, value in description.options.items():
        where = f"description file {path}: key options.{key}"
        if key not in known:
            raise UserError(f"{where}: unknown option (known: {', '.join(sorted(known))})")
        options[key] = str(value)
        try:
            parse_options("table", {key: options[key]}, known)
        except UserError:
            raise UserError(f"{where}: expected {EXPECTED_VALUE[type(known[key])]}, got {value!r}") from None
        if key == "encoding" and options[key] not in ENCODINGS:
            raise UserError(f"{where}: expected one of {', '.join(ENCODINGS)}, got {value!r}")
        if key == "scaling" and options[key] not in SCALINGS:
            raise UserError(f"{where}: expected one of {', '.join(SCALINGS)}, got {value!r}")
        if key == "rows" and int(options[key]) < 0:
            raise UserError(f"{where}: must be 0 (every row) or positive, got {value!r}")
        if key in ("validation_fraction", "test_fraction") and not 0 < float(options[key]) < 1:
            raise UserError(f"{where}: must be between 0 and 1, got {value!r}")
    return options


FRACTIONS = ("validation_fraction", "test_fraction")


def _check_description_against_targets(
    description: TableDescription,
    path: str | Path | None,
    targets: Sequence[TargetColumn],
    options: dict[str, Any],
    settings: dict[str, Any],
) -> None:
    """What the file gets wrong only together with other keys or the tasks, named by its keys:
    the two fractions, ``given:``, and a target listed under ``features:`` or ``ignore:`` (or
    their --data-option); make_table_data would drop such a column without a word."""
    columns = {target.column: target.task.name for target in targets}
    for key in ("features", "ignore"):
        for column in _split_names(str(options.get(key, ""))):
            if column in columns:
                raise UserError(
                    f"--data-option {key}={options[key]}: column {column!r} is the target of task {columns[column]!r}"
                )
    where = f"description file {path}"
    try:  # here, not when the data is made: before the warnings about its columns
        validate_conditions([target.task for target in targets])
    except TaskError as error:  # the file's tasks come first, in its order
        number = next((n for n, entry in enumerate(description.tasks) if entry.name == error.task), None)
        if number is None:
            raise
        raise UserError(f"{where}: key tasks.{number}.given: {error}") from None
    if path is None:
        return
    from_file = [key for key in FRACTIONS if key in description.options and key not in options]
    if from_file and not settings["validation_fraction"] + settings["test_fraction"] < 1:
        others = [f"--data-option {key}={options[key]}" for key in FRACTIONS if key in options]
        raise UserError(
            f"{where}: key {', '.join(f'options.{key}' for key in from_file)}: validation_fraction + test_fraction "
            f"must be below 1, got {settings['validation_fraction']} + {settings['test_fraction']}"
            + (f" (with {others[0]})" if others else "")
        )
    for key, listed in (("features", description.features or []), ("ignore", description.ignore)):
        for column in listed:
            if column in columns:
                raise UserError(
                    f"{where}: key {key}: column {column!r} is the target of task {columns[column]!r}; "
                    f"remove it from {key}"
                )


def _rule_record(target: TargetColumn) -> dict[str, Any]:
    if target.rule is None:
        return {}
    key, value = target.rule
    return {key: list(value) if key == "in" else value}


def missing_markers(text: str) -> tuple[str, ...]:
    """The ``missing`` option: comma-separated markers, or the defaults when empty."""
    markers = tuple(marker.strip() for marker in text.split(",") if marker.strip())
    return markers or MISSING_MARKERS


def file_fingerprint(path: str | Path) -> dict[str, Any]:
    """The file's size and SHA-256: a study continued on a changed file is refused, and one
    on the same bytes at another path (another machine) is not."""
    from mtl_search.data.cache import _file_digest

    digest, size = _file_digest(Path(path))
    return {"bytes": size, "sha256": digest}


class TableSource(DataSource):
    """A CSV or Parquet table of the user's (``--data table``, the default with ``--data-file``)."""

    name = "table"

    def load(self, options: dict, data_file: str | None, task_declarations: list[str]) -> MultiTaskData:
        return load_table(options, data_file, task_declarations)


def load_table(options: dict, data_file: str | None, task_declarations: list[str]) -> MultiTaskData:
    description_path = options.get("description") or None
    if data_file and Path(data_file).suffix.lower() in DESCRIPTION_SUFFIXES:
        description_path, data_file = data_file, None
    description = read_description(description_path) if description_path else TableDescription()
    merged = _file_options(description, description_path) | dict(options)
    merged.pop("description", None)
    settings = parse_options("table", merged, {k: v for k, v in DEFAULTS.items() if k != "description"})
    table_path = data_file or description.file
    if not table_path:
        raise UserError("--data-file: give the CSV or Parquet file of your table (or 'file:' in the description file)")
    if "missing" in options or description.missing is None:  # the command line wins over the file
        missing = missing_markers(settings["missing"])
    else:
        missing = tuple(description.missing)
    from mtl_search.data.streamed import streams

    streamed = streams(settings["stream"], table_path)
    frame = None if streamed else read_table(table_path, missing)
    targets = _targets_from_description(description, description_path) + targets_from_declarations(task_declarations)
    names = [t.task.name for t in targets]
    if len(set(names)) != len(names):
        twice = sorted(n for n in names if names.count(n) > 1)[0]
        also = (
            f" (also in description file {description_path})"
            if any(t.task.name == twice for t in targets if t.named_by)
            else ""
        )
        raise UserError(f"--task: task {twice!r} is declared twice{also}")
    _check_description_against_targets(description, description_path, targets, options, settings)
    if streamed:
        from mtl_search.data.streamed import load_streamed

        return load_streamed(
            table_path,
            targets,
            settings,
            name=Path(table_path).stem.split(".")[0] or "table",
            where=f"--data-file {table_path}",
            features=description.features
            if description.features is not None
            else (_split_names(settings["features"]) or None),
            ignore=description.ignore + _split_names(settings["ignore"]),
            numeric=description.numeric + _split_names(settings["numeric"]),
            categorical=description.categorical + _split_names(settings["categorical"]),
            missing=missing,
            description=table_description(table_path, description_path, targets, settings),
        )
    return make_table_data(
        frame,
        targets,
        name=Path(table_path).stem.split(".")[0] or "table",
        where=f"--data-file {table_path}",
        features=description.features
        if description.features is not None
        else (_split_names(settings["features"]) or None),
        ignore=description.ignore + _split_names(settings["ignore"]),
        numeric=description.numeric + _split_names(settings["numeric"]),
        categorical=description.categorical + _split_names(settings["categorical"]),
        encoding=settings["encoding"],
        scaling=settings["scaling"],
        rows=settings["rows"],
        seed=settings["seed"],
        validation_fraction=settings["validation_fraction"],
        test_fraction=settings["test_fraction"],
        max_int_categories=settings["max_int_categories"],
        missing=missing,
        description=table_description(table_path, description_path, targets, settings),
    )


def table_description(
    table_path: str | Path, description_path: str | None, targets: Sequence[TargetColumn], settings: dict[str, Any]
) -> dict[str, Any]:
    """Where the data came from, stored with the study so that later commands load it again."""
    return {
        "source": "table",
        "file": str(Path(table_path).resolve()),
        "content": file_fingerprint(table_path),
        "description_file": str(Path(description_path).resolve()) if description_path else None,
        "tasks": [t.task.to_dict() | {"column": t.column} | _rule_record(t) for t in targets],
        "options": {k: v for k, v in settings.items() if (k, v) not in UNSTORED_DEFAULTS},
    }
