"""Turning raw table rows into model inputs, with state fitted on the train split only.

The state is plain JSON data (stored on the study as ``preprocessing``), so that an exported
model can take the same raw rows later through :func:`apply_preprocessing`::

    {"kind": "table", "encoding": "embedding",
     "numeric": [{"column": "age", "mean": 34.5, "std": 22.3, "median": 33.0, "missing_indicator": false}],
     "categorical": [{"column": "education", "categories": ["10th grade", ...]}],
     "dropped": [{"column": "notes", "reason": "empty"}],
     "targets": {"income": {"column": "income", "kind": "binary", "classes": [0, 1]}}}

Numeric columns: missing values become the train median, then ``(x - mean) / std`` with the
train mean and standard deviation; a column that had missing values in train also gets a 0/1
"was missing" column after the numeric block. Categorical columns: code 0 means missing *or*
not seen in train, codes 1.. are the train categories in sorted order. Values are compared as
trimmed text, with whole-number floats written as integers, so ``6``, ``6.0``, ``"6"`` and
``" 6"`` are one category. ``encoding``: ``embedding`` gives the inputs ``numeric`` (float)
and ``categorical`` (int64 codes) for a learned embedding per column; ``onehot`` gives one
dense float input ``x``: the numeric block followed by a one-hot block per categorical column.

Each numeric entry also keeps ``quantiles``: the column's train values at QUANTILE_LEVELS evenly
spaced levels (0, 1/128, ..., 1). ``scaling: quantile`` (default ``standard``) maps a value to the
normal score of its train quantile level (quantile normalisation, read off those quantiles by
linear interpolation; a run of equal quantiles, as a column that is mostly 0 has, maps to the
middle of its levels) instead of ``(x - mean) / std``. The input schema carries the quantiles
on the inputs' scale (``numeric_quantiles``), which is where the piecewise-linear numeric
encoding takes its bin edges from.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from mtl_search.errors import OneLineWarning, UserError
from mtl_search.tasks import Task

ENCODINGS = ("embedding", "onehot")
SCALINGS = ("standard", "quantile")
QUANTILE_LEVELS = 129
# quantile normalisation clips the levels to this distance from 0 and 1: the normal scores stay within +-3.1
QUANTILE_CLIP = 1e-3
FLOAT32_MAX = float(np.finfo(np.float32).max)  # the largest magnitude a model input or target can hold


class DataWarning(OneLineWarning):
    """Something in the data was changed to make it usable (for example an empty column dropped)."""


# -- missing values ----------------------------------------------------------------------

# Text read as a missing value by every source that reads a file: pandas' own markers and the
# '?' of UCI files. A cell holding nothing (or only spaces) is always missing.
MISSING_MARKERS = (
    "?",
    "NA",
    "N/A",
    "n/a",
    "NaN",
    "nan",
    "-NaN",
    "-nan",
    "NULL",
    "null",
    "None",
    "<NA>",
    "#N/A",
    "#N/A N/A",
    "#NA",
    "-1.#IND",
    "-1.#QNAN",
    "1.#IND",
    "1.#QNAN",
)


def blank_missing_markers(frame: pd.DataFrame, markers: Sequence[str]) -> pd.DataFrame:
    """``frame`` with every text cell that is, once trimmed, a marker or nothing made missing.

    A column left holding only numbers (Python numbers among the text) becomes numeric, as it
    would have been read without the markers; numbers written as text stay text.
    """
    markers = set(markers) | {""}
    result = frame
    for column in frame.columns:
        series = frame[column]
        if not (pd.api.types.is_object_dtype(series) or pd.api.types.is_string_dtype(series)):
            continue
        is_marker = series.notna() & series.astype(str).str.strip().isin(markers)
        if not bool(is_marker.any()):
            continue
        if result is frame:
            result = frame.copy()
        result[column] = series.mask(is_marker).infer_objects()
    return result


# -- values as category keys -------------------------------------------------------------


def category_keys(series: pd.Series) -> pd.Series:
    """Each value as trimmed text (object dtype), missing values as None.

    Whole-number floats lose their ``.0`` (a column of ints with gaps is read as floats),
    so the same category is one key whatever dtype the rows arrive in.
    """
    missing = series.isna().to_numpy()
    if pd.api.types.is_bool_dtype(series):
        text = series.astype(object).map(lambda v: str(bool(v)) if v is not None and v is not pd.NA else None)
    elif pd.api.types.is_float_dtype(series):
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
        whole = np.isfinite(values) & (np.floor(values) == values) & (np.abs(values) < 2**53)
        text = pd.Series(
            np.where(whole, np.char.mod("%d", np.where(whole, values, 0).astype(np.int64)), values.astype(str)),
            index=series.index,
            dtype=object,
        )
    elif pd.api.types.is_object_dtype(series):
        text = series.map(_key, na_action="ignore").astype(object)  # mixed types: one value at a time
    else:
        text = series.astype(str).str.strip().astype(object)
    text[missing] = None
    return text


def _key(value: Any) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


def encode_categories(series: pd.Series, categories: Sequence[str]) -> np.ndarray:
    """Codes: 0 for missing or unseen values, 1 + position in ``categories`` otherwise."""
    index = pd.Index(list(categories), dtype=object)
    if pd.api.types.is_object_dtype(series):  # mixed types: 1 and 1.0 are one value to factorize, not one key
        codes = index.get_indexer(category_keys(series))
        return codes.astype(np.int64) + 1  # get_indexer gives -1 for missing/unseen, which becomes 0
    # one type: the key of each distinct value, once (a column has far fewer values than rows)
    positions, uniques = pd.factorize(series, use_na_sentinel=True)
    unique_codes = index.get_indexer(category_keys(pd.Series(uniques))).astype(np.int64) + 1
    return np.where(positions < 0, 0, unique_codes[np.maximum(positions, 0)])


class NotNumeric(UserError):
    """Text in a column read as numbers."""


def numeric_values(series: pd.Series, column: str, where: str) -> np.ndarray:
    """The column as float64 with NaN for missing; text (:class:`NotNumeric`), infinite values
    and magnitudes beyond float32's range raise a UserError naming the column and the first
    such row (its index label: the data row counted from 0 for a file)."""
    if pd.api.types.is_bool_dtype(series):
        return series.astype(float).to_numpy()
    if pd.api.types.is_numeric_dtype(series):
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        converted = pd.to_numeric(series, errors="coerce")
        bad = converted.isna() & series.notna() & (series.astype(str).str.strip() != "")
        if bool(bad.any()):
            example = series[bad].iloc[0]
            raise NotNumeric(f"{where}: column {column!r} is numeric but holds text (e.g. {example!r})")
        values = converted.to_numpy(dtype=np.float64, na_value=np.nan)
    # inf, and finite magnitudes beyond float32's range: the network and its targets compute in
    # float32, where such a value is inf, and a scaler or a loss turns it into NaN for every row
    with np.errstate(invalid="ignore"):
        unusable = np.abs(values) > FLOAT32_MAX  # NaN (missing) compares False
    if unusable.any():
        positions = np.flatnonzero(unusable)
        value, row = values[positions[0]], series.index[positions[0]]
        more = f" (and {positions.size - 1} more row(s))" if positions.size > 1 else ""
        if np.isinf(value):
            fix = "leave such cells empty (missing) or give a finite number"
        else:
            fix = "beyond float32's range (±3.4e+38), which the network computes in; leave such cells empty or rescale"
        raise UserError(f"{where}: column {column!r} holds {value:g} in row {row}{more}; {fix}")
    return values


def check_class_labels(task: Task, column: str, series: pd.Series, n_classes: int, labelled: int, where: str) -> None:
    """Refuse a continuous column taken as classes: every value its own class, a task nothing can learn."""
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        values = series.dropna().to_numpy(dtype=np.float64)
        fractional = values[np.floor(values) != values]
        if fractional.size:
            raise UserError(
                f"{where}: task {task.name!r}: a multiclass target needs whole numbers or text as classes, "
                f"column {column!r} holds {float(fractional[0]):g}; for a continuous target use kind regression"
            )
    # fewer than two labelled rows a class on average: most classes could not be both trained and scored
    if n_classes * 2 > labelled:
        raise UserError(
            f"{where}: task {task.name!r}: a multiclass target needs at least two labelled rows per class, "
            f"column {column!r} has {n_classes} distinct values in {labelled} labelled rows; "
            "for a continuous target use kind regression"
        )


# -- fitting -----------------------------------------------------------------------------


def fit_preprocessing(
    train_rows: pd.DataFrame,
    numeric_columns: Sequence[str],
    categorical_columns: Sequence[str],
    *,
    encoding: str = "embedding",
    scaling: str = "standard",
    where: str = "data",
) -> dict[str, Any]:
    """Fit the feature state on the train rows (see the module docstring for its layout)."""
    if encoding not in ENCODINGS:
        raise UserError(f"--data-option encoding={encoding}: expected one of {', '.join(ENCODINGS)}")
    if scaling not in SCALINGS:
        raise UserError(f"--data-option scaling={scaling}: expected one of {', '.join(SCALINGS)}")
    levels = np.linspace(0.0, 1.0, QUANTILE_LEVELS)
    numeric = []
    for column in numeric_columns:
        values = numeric_values(train_rows[column], column, where)
        present = values[~np.isnan(values)]
        if present.size == 0:
            median = mean = 0.0
            std = 1.0
            quantiles = [0.0] * QUANTILE_LEVELS
        else:
            quantiles = [float(q) for q in np.quantile(present, levels)]
            median = float(np.median(present))
            filled = np.where(np.isnan(values), median, values)
            mean = float(filled.mean())
            std = float(filled.std())
            if not math.isfinite(std) or std < 1e-12:
                std = 1.0  # a constant column stays constant (0) instead of dividing by zero
        numeric.append(
            {
                "column": column,
                "mean": mean,
                "std": std,
                "median": median,
                "missing_indicator": bool(np.isnan(values).any()),
                "quantiles": quantiles,
            }
        )
    categorical = []
    for column in categorical_columns:
        keys = category_keys(train_rows[column]).dropna()
        categorical.append({"column": column, "categories": sorted(set(keys.tolist()))})
    return {
        "kind": "table",
        "encoding": encoding,
        "scaling": scaling,
        "numeric": numeric,
        "categorical": categorical,
        "dropped": [],
        "targets": {},
    }


def input_schema(preprocessing: dict[str, Any]) -> dict[str, Any]:
    """The stem's input schema for data preprocessed with this state."""
    n_numeric = numeric_width(preprocessing)
    cardinalities = [len(entry["categories"]) + 1 for entry in preprocessing["categorical"]]
    if preprocessing["encoding"] == "onehot":
        return {"kind": "vector", "size": n_numeric + sum(cardinalities), "key": "x"}
    schema: dict[str, Any] = {"kind": "tabular", "numeric": n_numeric, "categorical": cardinalities}
    entries = preprocessing["numeric"]
    if entries and all("quantiles" in entry for entry in entries):  # states stored before quantiles have none
        scaling = preprocessing.get("scaling", "standard")
        scaled = [scale_numeric(entry, np.array(entry["quantiles"]), scaling) for entry in entries]
        indicators = [[0.0, 1.0] for entry in entries if entry["missing_indicator"]]
        schema["numeric_quantiles"] = [[round(float(v), 6) for v in column] for column in scaled] + indicators
    return schema


def scale_numeric(entry: dict[str, Any], values: np.ndarray, scaling: str) -> np.ndarray:
    """A numeric column's values (missing ones filled) on the inputs' scale, by the entry's train statistics."""
    if scaling == "standard":
        return (values - entry["mean"]) / entry["std"]
    quantiles = np.asarray(entry["quantiles"], dtype=np.float64)
    levels = np.linspace(0.0, 1.0, len(quantiles))
    # equal quantiles (a spike of one value) become one point at the mean of their levels
    points, position = np.unique(quantiles, return_inverse=True)
    point_levels = np.bincount(position, weights=levels) / np.bincount(position)
    level = np.interp(values, points, point_levels) if len(points) > 1 else np.full(values.shape, 0.5)
    level = np.clip(level, QUANTILE_CLIP, 1.0 - QUANTILE_CLIP)
    return torch.special.ndtri(torch.from_numpy(level)).numpy()


def numeric_width(preprocessing: dict[str, Any]) -> int:
    entries = preprocessing["numeric"]
    return len(entries) + sum(1 for entry in entries if entry["missing_indicator"])


# -- applying ----------------------------------------------------------------------------


def _as_frame(rows: Any, where: str) -> pd.DataFrame:
    """A DataFrame of rows: one row may come as a Series or a {column: value} dict."""
    if isinstance(rows, pd.Series):
        rows = rows.to_frame().T.infer_objects()
    elif isinstance(rows, Mapping):
        values = list(rows.values())
        one_row = not any(isinstance(v, (list, tuple, np.ndarray, pd.Series)) for v in values)
        rows = pd.DataFrame([rows]) if one_row else pd.DataFrame(rows)
    if not isinstance(rows, pd.DataFrame):
        raise UserError(
            f"{where}: expected a pandas DataFrame (or one row as a Series or dict), got {type(rows).__name__}"
        )
    repeated = rows.columns[rows.columns.duplicated()]
    if len(repeated):
        raise UserError(f"{where}: column {repeated[0]!r} appears more than once")
    return rows


def apply_preprocessing(
    preprocessing: dict[str, Any], raw_rows: pd.DataFrame, where: str = "rows"
) -> dict[str, torch.Tensor]:
    """Model inputs for raw rows (a DataFrame with the original feature columns).

    Extra columns are ignored; a missing or repeated feature column or text in a numeric
    column raises :class:`UserError` naming it. Works on any number of rows, one included;
    one row may also be a Series or a ``{column: value}`` dict.
    """
    if preprocessing.get("kind") != "table":
        raise UserError(f"preprocessing of kind {preprocessing.get('kind')!r} does not take table rows")
    raw_rows = blank_missing_markers(_as_frame(raw_rows, where), preprocessing.get("missing", ()))
    needed = [e["column"] for e in preprocessing["numeric"]] + [e["column"] for e in preprocessing["categorical"]]
    absent = [column for column in needed if column not in raw_rows.columns]
    if absent:
        raise UserError(f"{where}: feature column {absent[0]!r} is missing ({len(absent)} missing in all)")
    n_rows = len(raw_rows)
    scaling = preprocessing.get("scaling", "standard")  # states stored before the option scale as standard
    numeric_parts, indicators = [], []
    for entry in preprocessing["numeric"]:
        values = numeric_values(raw_rows[entry["column"]], entry["column"], where)
        missing = np.isnan(values)
        numeric_parts.append(scale_numeric(entry, np.where(missing, entry["median"], values), scaling))
        if entry["missing_indicator"]:
            indicators.append(missing.astype(np.float64))
    columns = numeric_parts + indicators
    numeric = np.stack(columns, axis=1) if columns else np.zeros((n_rows, 0))
    codes = [encode_categories(raw_rows[e["column"]], e["categories"]) for e in preprocessing["categorical"]]
    numeric_tensor = torch.tensor(numeric, dtype=torch.float32)
    if preprocessing["encoding"] == "onehot":
        blocks = [numeric_tensor]
        for code, entry in zip(codes, preprocessing["categorical"]):
            blocks.append(torch.nn.functional.one_hot(torch.from_numpy(code), len(entry["categories"]) + 1).float())
        return {"x": torch.cat(blocks, dim=1)}
    inputs: dict[str, torch.Tensor] = {}
    if numeric.shape[1]:
        inputs["numeric"] = numeric_tensor
    if codes:
        inputs["categorical"] = torch.from_numpy(np.stack(codes, axis=1))
    return inputs


# -- warnings ----------------------------------------------------------------------------


def warn_data(message: str) -> None:
    warnings.warn(message, DataWarning, stacklevel=3)
