"""Tables larger than memory: read in chunks with pyarrow into memory-mapped arrays on disk.

``--data-option stream=auto`` (the default) takes this path for a table file of at least
:data:`STREAM_BYTES`; ``stream=on`` takes it for any size and ``stream=off`` never. A CSV file is
first converted, once, to a Parquet file in the cache folder. The Parquet file is then read
:data:`CHUNK_ROWS` rows at a time (``--data-option chunk_rows=N``), twice:

1. statistics, on the train rows of each chunk: which columns are empty or categorical, each
   categorical column's train categories (a set), each numeric column's count, mean and sum of
   squares (merged chunk by chunk), whether it has missing values, and the values of the first
   :data:`SAMPLE_ROWS` train rows (a uniform random sample, the split being random), from
   which the median and quantiles come; the classes of classification targets.
2. the preprocessing of :mod:`mtl_search.data.preprocessing` applied to each chunk, its rows
   written to their place in the arrays: train rows first, then validation, then test.

Memory is bounded by the chunk, the sample and a few bytes a row (the row's place, its labels),
not by the table. With at most :data:`SAMPLE_ROWS` train rows the state is the one the in-memory
path fits (the same code on the same values); beyond, the median and quantiles are those of the
sample, and the mean and standard deviation are still exact.

The arrays are raw little-endian files, one per input (``numeric`` float32, ``categorical``
int64) and per task (float32 labels, read into memory: they are small), next to a
``manifest.json`` naming their shapes and the data's tasks, schema and preprocessing. Raw files
map straight into numpy and torch without a parser, and each can be checked against its
expected size. An entry is a folder ``<key>.table`` in the data cache folder (see
:mod:`mtl_search.data.cache`), its key a SHA-256 of the file's content, the options, the tasks and
the code; it is built under a temporary name and renamed into place, so workers that build it at
the same time each see a whole entry. Nothing read back is trusted: a manifest that does not
parse or name this key, an array of the wrong size, a category code out of range or an infinite
value makes the entry rebuilt, with a one-line note on stderr.

Not on this path (one-line error): one-hot encoding, ``rows`` sampling and targets derived with
``above``/``below``/``in``; the warning about identifier-like numeric columns is not given.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import math
import mmap
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd
import torch

from mtl_search.data.base import MappedInputs, MultiTaskData, Split, split_indices
from mtl_search.data.preprocessing import (
    apply_preprocessing,
    category_keys,
    check_class_labels,
    encode_categories,
    fit_preprocessing,
    input_schema,
    numeric_values,
    NotNumeric,
    warn_data,
)
from mtl_search.errors import UserError
from mtl_search.tasks import Task

STREAM_BYTES = 256 << 20  # stream=auto streams files at least this large
CHUNK_ROWS = 65536
SAMPLE_ROWS = 262144  # train rows whose numeric values give the median and quantiles
FORMAT = 1
STREAM_SETTINGS = ("auto", "on", "off")
PARQUET_SUFFIXES = (".parquet", ".pq")

counts = {"hits": 0, "built": 0, "rejected": 0}


class _Unusable(Exception):
    """A cache entry that cannot be used; the message says why."""


def streams(setting: str, path: str | Path) -> bool:
    """Whether the table at ``path`` takes this path under ``--data-option stream=setting``."""
    if setting not in STREAM_SETTINGS:
        raise UserError(f"--data-option stream={setting}: expected one of {', '.join(STREAM_SETTINGS)}")
    if setting == "off":
        return False
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        if setting == "on":
            raise UserError("--data-option stream=on: needs pyarrow (pip install 'mtl-search[parquet]')") from None
        return False
    if setting == "on":
        return True
    path = Path(path)
    return path.is_file() and path.stat().st_size >= STREAM_BYTES


# -- reading the file in chunks ----------------------------------------------------------


def _parquet_path(path: Path, missing: Sequence[str], folder: Path) -> Path:
    """``path`` itself for Parquet; a CSV converted once (kept in ``folder`` by its content)."""
    if path.suffix.lower() in PARQUET_SUFFIXES:
        return path
    from mtl_search.data.cache import _code_digest, _file_digest

    digest, _ = _file_digest(path)
    key = hashlib.sha256(json.dumps([digest, list(missing), _code_digest()]).encode()).hexdigest()
    converted = folder / f"{key}.parquet"
    if converted.is_file():
        return converted
    import pyarrow.csv as csv
    import pyarrow.parquet as pq

    delimiter = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    folder.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".", suffix=".part")
    os.close(handle)
    try:
        reader = csv.open_csv(
            path,
            read_options=csv.ReadOptions(block_size=16 << 20),
            parse_options=csv.ParseOptions(delimiter=delimiter),
            convert_options=csv.ConvertOptions(
                null_values=["", *missing], strings_can_be_null=True, quoted_strings_can_be_null=True
            ),
        )
        with pq.ParquetWriter(temporary, reader.schema) as writer:
            for batch in reader:
                writer.write_batch(batch)
        os.replace(temporary, converted)
    except Exception as error:  # pyarrow raises several types for a malformed or inconsistent CSV
        text = " ".join(str(error).split())[:200]
        raise UserError(
            f"--data-file {path}: cannot be read in chunks ({text}); if a column changes type after the "
            "first rows, use --data-option stream=off"
        ) from None
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return converted


def _chunks(
    path: Path, columns: list[str], chunk_rows: int, missing: Sequence[str], numeric: set[str]
) -> Iterator[tuple[int, pd.DataFrame]]:
    """``(first row, frame)`` for each chunk, rows labelled by their position in the file.

    Text columns come as pandas categoricals (a chunk's distinct values are keyed once, not once
    a row), with trimmed text in ``missing`` made missing, as the in-memory path reads them.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    markers = pa.array(["", *missing], type=pa.string())
    first = 0
    # pre_buffer (pyarrow's default) keeps every row group's column chunks it has read until the
    # file is closed: memory would grow with the table (about 120 bytes a row measured here)
    for batch in pq.ParquetFile(path, pre_buffer=False).iter_batches(batch_size=chunk_rows, columns=columns):
        series = {}
        for name, column in zip(batch.schema.names, batch.columns):
            kind = column.type
            if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
                values = column.to_pandas()
            else:
                text = column.cast(pa.string()) if not pa.types.is_string(kind) else column
                text = pc.if_else(pc.is_in(pc.utf8_trim_whitespace(text), value_set=markers), None, text)
                values = text.to_pandas() if name in numeric else text.dictionary_encode().to_pandas()
            values.index = pd.RangeIndex(first, first + len(batch))
            series[name] = values
        yield first, pd.DataFrame(series)
        first += len(batch)


def _is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


# -- statistics --------------------------------------------------------------------------


class _Moments:
    """Count, mean and sum of squared deviations of a column's present values, merged chunk by chunk."""

    def __init__(self) -> None:
        self.count, self.mean, self.squares = 0, 0.0, 0.0

    def add(self, values: np.ndarray) -> None:
        if not values.size:
            return
        count, mean = values.size, float(values.mean())
        squares = float(((values - mean) ** 2).sum())
        self.merge(count, mean, squares)

    def merge(self, count: int, mean: float, squares: float) -> None:
        total = self.count + count
        delta = mean - self.mean
        self.squares += squares + delta * delta * self.count * count / total
        self.mean += delta * count / total
        self.count = total


class _Statistics:
    """What the first pass learns about each column."""

    def __init__(self, features: list[str], numeric_dtype: set[str], sample_rows: int, max_int_categories: int):
        self.nonempty = {column: False for column in features}
        self.whole = {column: True for column in numeric_dtype}
        self.distinct: dict[str, set | None] = {column: set() for column in numeric_dtype}
        self.train_keys: dict[str, set | None] = {column: set() for column in features}
        self.moments = {column: _Moments() for column in numeric_dtype}
        self.train_missing = {column: 0 for column in numeric_dtype}
        self.sample = {column: np.full(sample_rows, np.nan) for column in numeric_dtype}
        self.cap = max_int_categories


def _first_pass(
    chunks: Iterator[tuple[int, pd.DataFrame]],
    stats: _Statistics,
    destination: np.ndarray,
    n_train: int,
    declared_numeric: set[str],
    declared_categorical: set[str],
    targets: Sequence[Any],
    where: str,
) -> dict[str, dict[str, Any]]:
    target_state: dict[str, dict[str, Any]] = {
        t.task.name: {"keys": set(), "labelled": 0, "numeric": True, "fractional": None} for t in targets
    }
    sample_rows = len(next(iter(stats.sample.values()))) if stats.sample else 0
    for first, frame in chunks:
        places = destination[first : first + len(frame)]
        train = places < n_train
        sampled = places < min(n_train, sample_rows)
        for column in stats.nonempty:
            series = frame[column]
            if not stats.nonempty[column]:
                stats.nonempty[column] = _has_values(series)
            if column in stats.moments and column not in declared_categorical:
                if _is_numeric(series) or column in declared_numeric:
                    values = numeric_values(series, column, where)
                    _numeric_chunk(stats, column, values, train, places, sampled)
            if column in stats.distinct and column not in declared_categorical:
                if not stats.whole[column] or stats.distinct[column] is None:
                    stats.train_keys[column] = None  # numeric: its keys are not needed
            keys = stats.train_keys[column]
            if keys is not None:
                train_values = series[train]
                keys.update(_distinct_keys(train_values))
                if column in stats.distinct and len(keys) > stats.cap and column not in declared_categorical:
                    stats.train_keys[column] = None  # a numeric column; its keys are not needed
        for target in targets:
            _target_chunk(target_state[target.task.name], target, frame[target.column], where)
    return target_state


def _numeric_chunk(
    stats: _Statistics, column: str, values: np.ndarray, train: np.ndarray, places: np.ndarray, sampled: np.ndarray
) -> None:
    present = values[~np.isnan(values)]
    if stats.whole[column] and present.size and not bool(np.all(np.floor(present) == present)):
        stats.whole[column] = False
    distinct = stats.distinct[column]
    if distinct is not None:
        distinct.update(np.unique(present).tolist())
        if len(distinct) > stats.cap:
            stats.distinct[column] = None
    train_values = values[train]
    stats.moments[column].add(train_values[~np.isnan(train_values)])
    stats.train_missing[column] += int(np.isnan(train_values).sum())
    stats.sample[column][places[sampled]] = values[sampled]


def _has_values(series: pd.Series) -> bool:
    if not series.notna().any():
        return False
    if pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
        return True
    return bool((series.dropna().astype(str).str.strip() != "").any())


def _distinct_keys(series: pd.Series) -> list[str]:
    """The category keys of the values in ``series``: of each distinct value once (one type a column)."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        series = series.cat.remove_unused_categories()
        return category_keys(pd.Series(series.cat.categories)).dropna().tolist()
    if pd.api.types.is_object_dtype(series):
        return pd.unique(category_keys(series).dropna()).tolist()
    return category_keys(pd.Series(pd.unique(series.dropna()))).dropna().tolist()


def _target_chunk(state: dict[str, Any], target: Any, series: pd.Series, where: str) -> None:
    task = target.task
    if task.kind == "regression":
        try:
            numeric_values(series, target.column, where)
        except NotNumeric:
            example = series[pd.to_numeric(series.astype(object), errors="coerce").isna() & series.notna()].iloc[0]
            raise UserError(
                f"{where}: task {task.name!r}: regression target column {target.column!r} holds text (e.g. {example!r})"
            ) from None
        return
    state["keys"].update(_distinct_keys(series))
    state["labelled"] += int(series.notna().sum())
    if not _is_numeric(series):
        state["numeric"] = False
    elif state["fractional"] is None:
        values = series.dropna().to_numpy(dtype=np.float64)
        fractional = values[np.floor(values) != values]
        if fractional.size:
            state["fractional"] = float(fractional[0])


def _target_classes(state: dict[str, Any], target: Any, where: str) -> tuple[Task, list[str]]:
    """The task (classes refined) and its sorted classes, checked as the in-memory path checks them."""
    task, column = target.task, target.column
    classes = sorted(state["keys"], key=float) if state["numeric"] else sorted(state["keys"])
    if task.kind == "binary":
        if len(classes) != 2:
            shown = ", ".join(repr(c) for c in classes[:5]) + (", ..." if len(classes) > 5 else "")
            raise UserError(
                f"{where}: task {task.name!r}: a binary target needs exactly two values, "
                f"column {column!r} has {len(classes)} ({shown})"
            )
        if target.positive is not None:
            positive = category_keys(pd.Series([target.positive])).iloc[0]
            if positive not in classes:
                raise UserError(
                    f"{where}: task {task.name!r}: positive={target.positive!r} is not a value of column "
                    f"{column!r} ({', '.join(classes)})"
                )
            classes = [c for c in classes if c != positive] + [positive]
        return task, classes
    if len(classes) < 2:
        shown = repr(classes[0]) if classes else "no labels"
        raise UserError(
            f"{where}: task {task.name!r}: a multiclass target needs at least two classes, "
            f"column {column!r} has one ({shown})"
        )
    example = pd.Series([state["fractional"]] if state["fractional"] is not None else [], dtype=np.float64)
    check_class_labels(task, column, example, len(classes), state["labelled"], where)
    if target.declared_classes and len(classes) > task.n_classes:
        raise UserError(
            f"{where}: task {task.name!r}: declared classes={task.n_classes} but column {column!r} "
            f"has {len(classes)} distinct values"
        )
    import dataclasses

    n_classes = max(len(classes), task.n_classes if target.declared_classes else 0)
    return dataclasses.replace(task, n_classes=n_classes), classes


def _target_labels(task: Task, classes: list[str] | None, series: pd.Series, column: str, where: str) -> np.ndarray:
    if classes is None:
        return numeric_values(series, column, where).astype(np.float32)
    codes = encode_categories(series, classes) - 1  # -1: missing
    return np.where(codes < 0, np.nan, codes).astype(np.float32)


def _numeric_state(
    stats: _Statistics, numeric_columns: list[str], n_train: int, encoding: str, scaling: str, where: str
) -> list[dict[str, Any]]:
    """Numeric entries as :func:`fit_preprocessing` fits them: on the sample, which is every train
    row of a table with at most SAMPLE_ROWS of them; else mean and std from the streamed moments."""
    sample_size = min(n_train, len(next(iter(stats.sample.values()))) if stats.sample else 0)
    sample = pd.DataFrame({column: stats.sample[column][:sample_size] for column in numeric_columns})
    entries = fit_preprocessing(sample, numeric_columns, [], encoding=encoding, scaling=scaling, where=where)["numeric"]
    if n_train <= sample_size:
        return entries
    for entry in entries:
        column = entry["column"]
        moments, missing = stats.moments[column], stats.train_missing[column]
        # missing values count as the median, as the in-memory path fills them before the mean
        filled = _Moments()
        if moments.count:
            filled.merge(moments.count, moments.mean, moments.squares)
        if missing:
            filled.merge(missing, entry["median"], 0.0)
        entry["mean"] = filled.mean if filled.count else 0.0
        std = math.sqrt(filled.squares / filled.count) if filled.count else 1.0
        entry["std"] = std if math.isfinite(std) and std >= 1e-12 else 1.0
        entry["missing_indicator"] = bool(missing)
    return entries


# -- the cache entry ---------------------------------------------------------------------


def _folder() -> tuple[Path, bool]:
    """The cache folder for entries, and whether it is a temporary one (the cache is off)."""
    from mtl_search.data.cache import cache_folder

    folder = cache_folder()
    if folder is not None:
        return folder, False
    temporary = Path(tempfile.mkdtemp(prefix="mtl-search-table-"))
    atexit.register(shutil.rmtree, temporary, True)
    return temporary, True


def _entry_key(path: Path, settings: dict[str, Any], targets: Sequence[Any], lists: dict[str, Any]) -> str:
    from mtl_search.data.cache import _code_digest, _file_digest

    digest, size = _file_digest(path)
    inputs = {
        "format": FORMAT,
        "code": _code_digest(),
        "sha256": digest,
        "bytes": size,
        "settings": {k: str(v) for k, v in sorted(settings.items()) if k != "stream"},
        "targets": [[t.task.to_dict(), t.column, str(t.positive), t.declared_classes] for t in targets],
        "lists": lists,
        "sample_rows": SAMPLE_ROWS,
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()


def _map(path: Path, dtype: np.dtype, shape: tuple[int, ...], write: bool) -> tuple[np.ndarray, mmap.mmap | None]:
    expected = int(np.prod(shape)) * dtype.itemsize
    if expected == 0:
        return np.zeros(shape, dtype=dtype), None
    with open(path, "r+b" if write else "rb") as handle:
        mapping = mmap.mmap(handle.fileno(), expected, access=mmap.ACCESS_WRITE if write else mmap.ACCESS_COPY)
    return np.frombuffer(mapping, dtype=dtype).reshape(shape), mapping


ALLOWED_DTYPES = {"float32": np.dtype("<f4"), "int64": np.dtype("<i8")}


def read_entry(folder: Path, key: str) -> MultiTaskData:
    """The data of the entry in ``folder``; :class:`_Unusable` unless it checks out."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        if manifest.get("key") != key or manifest.get("format") != FORMAT:
            raise _Unusable("made for other inputs")
        rows = {name: int(manifest["rows"][name]) for name in ("train", "validation", "test")}
        n_rows = sum(rows.values())
        arrays, maps, targets = {}, [], {}
        for number, entry in enumerate(manifest["arrays"]):
            dtype = ALLOWED_DTYPES[entry["dtype"]]
            shape = tuple(int(size) for size in entry["shape"])
            if not shape or shape[0] != n_rows or any(size < 0 for size in shape):
                raise _Unusable(f"array {number} has shape {shape} for {n_rows} rows")
            path = folder / f"array-{number}.bin"
            expected = int(np.prod(shape)) * dtype.itemsize
            if path.stat().st_size != expected:
                raise _Unusable(f"{path.name} holds {path.stat().st_size} bytes, expected {expected}")
            if entry["part"] == "targets":
                targets[str(entry["name"])] = torch.from_numpy(np.fromfile(path, dtype=dtype).reshape(shape))
            elif entry["part"] == "inputs":
                values, mapping = _map(path, dtype, shape, write=False)
                arrays[str(entry["name"])] = torch.from_numpy(values)
                maps += [mapping] if mapping is not None else []
            else:
                raise _Unusable(f"array {number} is of an unknown part")
        data = manifest["data"]
        mapped = MappedInputs(arrays, maps)
        splits, start = {}, 0
        for name, count in rows.items():
            splits[name] = Split(
                inputs=mapped.rows(start, start + count),
                targets={task: values[start : start + count] for task, values in targets.items()},
                mapped=mapped,
                offset=start,
            )
            start += count
        return MultiTaskData(
            name=data["name"],
            tasks=[Task.from_dict(task) for task in data["tasks"]],
            input_schema=data["input_schema"],
            description=data["description"],
            preprocessing=data["preprocessing"],
            **splits,
        )
    except _Unusable:
        raise
    except UserError as error:  # a code out of range or an inf value: the files were changed
        raise _Unusable(str(error)) from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, json.JSONDecodeError) as error:
        raise _Unusable(f"cannot be read ({type(error).__name__}: {' '.join(str(error).split())[:100]})") from None


def load_streamed(
    table_path: str | Path,
    targets: Sequence[Any],
    settings: dict[str, Any],
    *,
    name: str,
    where: str,
    features: Sequence[str] | None,
    ignore: Sequence[str],
    numeric: Sequence[str],
    categorical: Sequence[str],
    missing: Sequence[str],
    description: dict[str, Any],
) -> MultiTaskData:
    """The table's data, from its cache entry, built first when there is none (or it is unusable)."""
    path = Path(table_path)
    if not path.exists():
        raise UserError(f"--data-file {path}: no such file")
    if settings["encoding"] != "embedding":
        raise UserError(
            f"--data-option encoding={settings['encoding']}: a streamed table is embedded; one-hot columns "
            "would multiply its size on disk (use encoding=embedding, or stream=off)"
        )
    if settings["rows"]:
        raise UserError(f"--data-option rows={settings['rows']}: not available with a streamed table (use stream=off)")
    if settings["chunk_rows"] < 1:
        raise UserError(f"--data-option chunk_rows={settings['chunk_rows']}: must be a positive whole number")
    for target in targets:
        if target.rule is not None:
            raise UserError(
                f"{target.named_by or where}: task {target.task.name!r}: a target derived with {target.rule[0]} "
                "is not available with a streamed table (use --data-option stream=off)"
            )
    folder, temporary = _folder()
    parquet = _parquet_path(path, missing, folder)
    lists = {
        "features": None if features is None else list(features),
        "ignore": list(ignore),
        "numeric": list(numeric),
        "categorical": list(categorical),
        "missing": list(missing),
    }
    key = _entry_key(parquet, settings, targets, lists)
    entry = folder / f"{key}.table"
    if entry.is_dir():
        try:
            data = read_entry(entry, key)
        except _Unusable as reason:
            counts["rejected"] += 1
            print(
                f"mtl-search: note: table cache entry {entry} is unusable ({reason}); building it again",
                file=sys.stderr,
            )
            shutil.rmtree(entry, ignore_errors=True)
        else:
            counts["hits"] += 1
            return data
    _build(parquet, entry, key, targets, settings, name=name, where=where, lists=lists, description=description)
    counts["built"] += 1
    try:
        return read_entry(entry, key)
    except _Unusable as reason:
        raise UserError(f"table cache entry {entry}: unusable right after it was built ({reason})") from None


def _build(
    parquet: Path,
    entry: Path,
    key: str,
    targets: Sequence[Any],
    settings: dict[str, Any],
    *,
    name: str,
    where: str,
    lists: dict[str, Any],
    description: dict[str, Any],
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        file = pq.ParquetFile(parquet)
    except Exception as error:  # pyarrow raises several types for a damaged file
        raise UserError(f"{where}: not a readable Parquet file ({' '.join(str(error).split())[:200]})") from None
    schema = file.schema_arrow
    columns = [str(c) for c in schema.names]
    n_rows = file.metadata.num_rows
    if n_rows == 0:
        raise UserError(f"{where}: the table has no rows")
    numeric, categorical, ignore = set(lists["numeric"]), set(lists["categorical"]), set(lists["ignore"])
    for target in targets:
        _check_present(columns, target.column, where, "task column", target.named_by)
    for column in [*lists["numeric"], *lists["categorical"], *(lists["features"] or [])]:
        _check_present(columns, column, where, "declared column")
    for column in lists["ignore"]:
        _check_present(columns, column, where, "ignored column")
    both = numeric & categorical
    if both:
        raise UserError(f"{where}: column {sorted(both)[0]!r} is declared both numeric and categorical")
    target_columns = {t.column for t in targets}
    features = lists["features"]
    if features is None:
        features = [c for c in columns if c not in target_columns and c not in ignore]
    features = [c for c in features if c not in target_columns]
    if n_rows < 3:
        raise UserError(f"{where}: need at least 3 rows to split into train, validation and test, got {n_rows}")
    fractions = settings["validation_fraction"], settings["test_fraction"]
    if not (0 < fractions[0] < 1 and 0 < fractions[1] < 1 and sum(fractions) < 1):
        raise UserError("--data-option validation_fraction/test_fraction: must be in (0, 1) and sum below 1")
    split = split_indices(n_rows, (1 - sum(fractions), *fractions), settings["seed"])
    sizes = [len(index) for index in split]
    destination = np.empty(n_rows, dtype=np.int64)  # each file row's place: train rows, then validation, then test
    start = 0
    for index in split:
        destination[index.numpy()] = np.arange(start, start + len(index))
        start += len(index)
    del split
    n_train = sizes[0]

    def is_number(column: str) -> bool:
        kind = schema.field(column).type
        return pa.types.is_integer(kind) or pa.types.is_floating(kind)

    numeric_dtype = {c for c in features if (is_number(c) or c in numeric) and c not in categorical}
    stats = _Statistics(features, numeric_dtype, min(SAMPLE_ROWS, n_train), settings["max_int_categories"])
    needed = list(dict.fromkeys([*features, *target_columns]))
    chunk_rows = settings["chunk_rows"]
    states = _first_pass(
        _chunks(parquet, needed, chunk_rows, lists["missing"], numeric),
        stats, destination, n_train, numeric, categorical, targets, where,
    )  # fmt: skip

    dropped, kept = [], []
    for column in features:
        if stats.nonempty[column]:
            kept.append(column)
        else:
            warn_data(f"{where}: feature column {column!r} has no values; dropped")
            dropped.append({"column": column, "reason": "empty"})
    if not kept:
        raise UserError(f"{where}: no feature column left (all are targets, ignored or empty)")
    numeric_columns, categorical_columns = [], []
    for column in kept:
        looks_categorical = column not in numeric_dtype or (stats.whole[column] and stats.distinct[column] is not None)
        if column in numeric or (column not in categorical and not looks_categorical):
            numeric_columns.append(column)
        else:
            categorical_columns.append(column)

    tasks, classes, target_state = [], {}, {}
    for target in targets:
        if target.task.kind == "regression":
            task, classes[target.task.name] = target.task, None
            target_state[task.name] = {"column": target.column, "kind": "regression"}
        else:
            task, classes[target.task.name] = _target_classes(states[target.task.name], target, where)
            target_state[task.name] = {"column": target.column, "kind": task.kind, "classes": classes[task.name]}
        tasks.append(task)

    preprocessing = {
        "kind": "table",
        "encoding": "embedding",
        "scaling": settings["scaling"],
        "numeric": _numeric_state(stats, numeric_columns, n_train, "embedding", settings["scaling"], where)
        if numeric_columns
        else [],
        "categorical": [{"column": c, "categories": sorted(stats.train_keys[c] or ())} for c in categorical_columns],
        "dropped": dropped,
        "targets": target_state,
        "missing": list(lists["missing"]),
    }
    for entry_state in preprocessing["categorical"]:
        if len(entry_state["categories"]) > max(100, n_train // 2):
            warn_data(
                f"{where}: categorical column {entry_state['column']!r} has {len(entry_state['categories'])} "
                "distinct values in train; if it is an identifier, ignore it"
            )
    del stats
    schema_out = input_schema(preprocessing)

    entry.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(dir=entry.parent, prefix=f".{key[:16]}-", suffix=".part"))
    try:
        train_labels = _write_arrays(
            building, parquet, needed, preprocessing, tasks, targets, classes, destination, sizes, settings, where
        )
        # as MultiTaskData measures them: stored, so that a read entry does not measure them on its own rows
        tasks = [
            task.with_target_statistics(train_labels[task.name]) if task.kind == "regression" else task
            for task in tasks
        ]
        manifest_data = {
            "name": name,
            "tasks": [task.to_dict() for task in tasks],
            "input_schema": schema_out,
            "description": description,
            "preprocessing": preprocessing,
        }
        manifest = json.loads((building / "manifest.json").read_text())
        manifest |= {"key": key, "format": FORMAT, "data": manifest_data}
        (building / "manifest.json").write_text(json.dumps(manifest))
        try:
            os.rename(building, entry)
        except OSError:
            if not entry.is_dir():  # another process's whole entry is there: use it, drop this one
                raise
    except OSError as error:
        raise UserError(
            f"table cache {entry.parent}: cannot write the table's arrays ({error.strerror or error})"
        ) from None
    finally:
        shutil.rmtree(building, ignore_errors=True)


def _check_present(columns: list[str], column: str, where: str, what: str, named_by: str | None = None) -> None:
    if column not in columns:
        known = ", ".join(columns[:8]) + (", ..." if len(columns) > 8 else "")
        if named_by:
            raise UserError(f"{named_by}: {what} {column!r} not found in {where} (columns: {known})")
        raise UserError(f"{where}: {what} {column!r} not found (columns: {known})")


def _write_arrays(
    building: Path,
    parquet: Path,
    needed: list[str],
    preprocessing: dict[str, Any],
    tasks: list[Task],
    targets: Sequence[Any],
    classes: dict[str, list[str] | None],
    destination: np.ndarray,
    sizes: list[int],
    settings: dict[str, Any],
    where: str,
) -> dict[str, torch.Tensor]:
    """The second pass: every chunk preprocessed and its rows written to their places; the train labels."""
    n_rows = len(destination)
    width = len(preprocessing["numeric"]) + sum(1 for e in preprocessing["numeric"] if e["missing_indicator"])
    layout = []
    if width:
        layout.append(("inputs", "numeric", "float32", (n_rows, width)))
    if preprocessing["categorical"]:
        layout.append(("inputs", "categorical", "int64", (n_rows, len(preprocessing["categorical"]))))
    layout += [("targets", task.name, "float32", (n_rows,)) for task in tasks]
    arrays = {}
    for number, (part, name, dtype, shape) in enumerate(layout):
        path = building / f"array-{number}.bin"
        with open(path, "wb") as handle:
            handle.truncate(int(np.prod(shape)) * ALLOWED_DTYPES[dtype].itemsize)
        arrays[(part, name)] = _map(path, ALLOWED_DTYPES[dtype], shape, write=True)
    declared_numeric = {e["column"] for e in preprocessing["numeric"]}
    chunks = _chunks(parquet, needed, settings["chunk_rows"], preprocessing["missing"], declared_numeric)
    for first, frame in chunks:
        places = destination[first : first + len(frame)]
        inputs = apply_preprocessing(preprocessing, frame, where)
        for name, values in inputs.items():
            array, mapping = arrays[("inputs", name)]
            array[places] = values.numpy()
        for target, task in zip(targets, tasks):
            array, _ = arrays[("targets", task.name)]
            array[places] = _target_labels(task, classes[task.name], frame[target.column], target.column, where)
        for _, mapping in arrays.values():
            if mapping is not None:  # written pages go to the page cache, not this process's resident memory
                mapping.madvise(mmap.MADV_DONTNEED)
    labels = {}
    for (part, name), (array, mapping) in arrays.items():
        if mapping is not None:
            mapping.flush()
        if part == "targets":
            labels[name] = torch.from_numpy(np.array(array))
    starts = np.cumsum([0, *sizes])
    for task in tasks:  # as the in-memory path refuses them
        for split_name, number in (("train", 0), ("validation", 1)):
            part = labels[task.name][starts[number] : starts[number + 1]]
            if not bool((~torch.isnan(part)).any()):
                column = next(t.column for t in targets if t.task.name == task.name)
                raise UserError(
                    f"{where}: task {task.name!r}: column {column!r} has no labelled row in the {split_name} split"
                )
    manifest = {
        "rows": dict(zip(("train", "validation", "test"), (int(s) for s in sizes))),
        "arrays": [
            {"part": part, "name": name, "dtype": dtype, "shape": list(shape)} for part, name, dtype, shape in layout
        ],
    }
    (building / "manifest.json").write_text(json.dumps(manifest))
    return {name: values[: sizes[0]] for name, values in labels.items()}
