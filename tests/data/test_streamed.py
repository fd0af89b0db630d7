"""Tables read in chunks into memory-mapped arrays (data/streamed.py) against the in-memory path."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("pyarrow")

from mtl_search.data import streamed  # noqa: E402
from mtl_search.data.registry import load_data  # noqa: E402
from mtl_search.errors import UserError  # noqa: E402
from mtl_search.training import train_candidate  # noqa: E402

TASKS = ["y1:binary", "y2:multiclass", "y3:regression"]
CANDIDATE = {
    "architecture": {
        "family": "tree",
        "widths": [16],
        "groups": [[["y1", "y2", "y3"]]],
        "tower": {"widths": [8]},
    },
    "training": {"epochs": 2, "batch_size": 64, "seed": 3},
}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("MTL_SEARCH_CACHE", str(folder))
    return folder / "data"


def write_table(path, n_rows=1500, seed=0):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "a": rng.normal(size=n_rows),
            "b": np.where(rng.random(n_rows) < 0.1, np.nan, rng.normal(size=n_rows) * 5),
            "small_int": rng.integers(0, 5, n_rows),  # whole numbers, few values: categorical
            "text": rng.choice(["x", "y", " z", "?", "NA"], n_rows),  # markers become missing
            "wide": rng.integers(0, 100, n_rows).astype(float),
            "y1": rng.integers(0, 2, n_rows),
            "y2": rng.choice(["p", "q", "r"], n_rows),
            "y3": np.where(rng.random(n_rows) < 0.05, np.nan, rng.normal(size=n_rows)),
        }
    )
    frame.to_parquet(path)
    return path


def test_streamed_table_gives_the_in_memory_tensors_and_metrics(tmp_path, cache):
    table = write_table(tmp_path / "t.parquet")
    in_memory = load_data("table", {"stream": "off"}, str(table), TASKS)
    on_disk = load_data("table", {"stream": "on", "chunk_rows": "100"}, str(table), TASKS)
    assert on_disk.train.mapped is not None and in_memory.train.mapped is None
    assert on_disk.preprocessing == in_memory.preprocessing
    assert on_disk.input_schema == in_memory.input_schema
    assert [t.to_dict() for t in on_disk.tasks] == [t.to_dict() for t in in_memory.tasks]
    for name in ("train", "validation", "test"):
        memory_split, disk_split = getattr(in_memory, name), getattr(on_disk, name)
        for key in memory_split.inputs:
            assert torch.equal(memory_split.inputs[key], disk_split.inputs[key]), (name, key)
        for key in memory_split.targets:
            assert torch.equal(memory_split.targets[key].nan_to_num(-9), disk_split.targets[key].nan_to_num(-9))
    first, second = train_candidate(in_memory, CANDIDATE), train_candidate(on_disk, CANDIDATE)
    assert first.validation == second.validation and first.test == second.test


def test_a_larger_table_than_the_sample_keeps_exact_means(tmp_path, cache, monkeypatch):
    """Beyond SAMPLE_ROWS train rows the median and quantiles come from the sample; the mean and
    standard deviation are still those of every train row."""
    monkeypatch.setattr(streamed, "SAMPLE_ROWS", 200)
    table = write_table(tmp_path / "t.parquet")
    in_memory = load_data("table", {"stream": "off"}, str(table), TASKS)
    on_disk = load_data("table", {"stream": "on", "chunk_rows": "128"}, str(table), TASKS)
    complete = 0
    for exact, streamed_entry in zip(in_memory.preprocessing["numeric"], on_disk.preprocessing["numeric"]):
        assert streamed_entry["missing_indicator"] == exact["missing_indicator"]
        assert streamed_entry["median"] == pytest.approx(exact["median"], abs=0.5 * exact["std"])
        if not exact["missing_indicator"]:  # else the mean counts missing values as the (sampled) median
            complete += 1
            assert streamed_entry["mean"] == pytest.approx(exact["mean"], rel=1e-9, abs=1e-12)
            assert streamed_entry["std"] == pytest.approx(exact["std"], rel=1e-9)
    assert complete == 2


def test_the_entry_is_read_back_and_a_csv_converted_once(tmp_path, cache):
    table = write_table(tmp_path / "t.parquet")
    csv = tmp_path / "t.csv"
    pd.read_parquet(table).to_csv(csv, index=False)
    before = dict(streamed.counts)
    from_csv = load_data("table", {"stream": "on"}, str(csv), TASKS)
    again = load_data("table", {"stream": "on"}, str(csv), TASKS)
    assert streamed.counts["built"] == before["built"] + 1 and streamed.counts["hits"] == before["hits"] + 1
    assert torch.equal(from_csv.train.inputs["numeric"], again.train.inputs["numeric"])
    assert len(list(cache.glob("*.parquet"))) == 1


@pytest.mark.parametrize("damage", ["truncate", "manifest", "codes"])
def test_a_damaged_entry_is_built_again(tmp_path, cache, damage, capsys):
    table = write_table(tmp_path / "t.parquet")
    # a copy: the mapped pages would show the damage written below
    original = load_data("table", {"stream": "on"}, str(table), TASKS).train.inputs["categorical"].clone()
    (entry,) = cache.glob("*.table")
    manifest = json.loads((entry / "manifest.json").read_text())
    if damage == "truncate":
        with open(entry / "array-0.bin", "r+b") as handle:
            handle.truncate(100)
    elif damage == "manifest":
        (entry / "manifest.json").write_text("{not json")
    else:
        number = next(i for i, a in enumerate(manifest["arrays"]) if a["name"] == "categorical")
        with open(entry / f"array-{number}.bin", "r+b") as handle:
            handle.write(np.array([10**6], dtype="<i8").tobytes())
    rebuilt = load_data("table", {"stream": "on"}, str(table), TASKS)
    note = capsys.readouterr().err.strip().splitlines()
    assert len(note) == 1 and "is unusable" in note[0] and "building it again" in note[0]
    assert torch.equal(original, rebuilt.train.inputs["categorical"])


def test_what_the_streamed_path_does_not_do_is_one_line(tmp_path, cache):
    table = write_table(tmp_path / "t.parquet")
    with pytest.raises(UserError, match="encoding=onehot: a streamed table is embedded"):
        load_data("table", {"stream": "on", "encoding": "onehot"}, str(table), TASKS)
    with pytest.raises(UserError, match="stream=maybe: expected one of auto, on, off"):
        load_data("table", {"stream": "maybe"}, str(table), TASKS)
    with pytest.raises(UserError, match="task column 'nope' not found"):
        load_data("table", {"stream": "on"}, str(table), ["nope:binary"])


def test_building_the_entry_never_holds_the_table(tmp_path, cache, monkeypatch):
    """Python-side allocations while a table is streamed stay a fraction of the table's size: the
    chunk, the sample and a few bytes a row, not the table (the in-memory path holds it several times)."""
    monkeypatch.setattr(streamed, "SAMPLE_ROWS", 2048)
    n_rows, columns = 100_000, 24
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({f"x{i}": rng.normal(size=n_rows) for i in range(columns)})
    frame["y"] = rng.integers(0, 2, n_rows)
    frame.to_parquet(tmp_path / "wide.parquet")
    table_bytes = n_rows * columns * 8
    del frame
    tracemalloc.start()
    try:
        data = load_data("table", {"stream": "on", "chunk_rows": "4096"}, str(tmp_path / "wide.parquet"), ["y:binary"])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(data.train) + len(data.validation) + len(data.test) == n_rows
    # the row places (8 bytes a row) and labels (4) are the largest things held
    assert peak < 0.35 * table_bytes, f"peak {peak / 2**20:.1f} MiB for a {table_bytes / 2**20:.1f} MiB table"


def test_export_retrains_on_adjacent_mapped_splits_without_copying(tmp_path, cache):
    table = write_table(tmp_path / "t.parquet")
    data = load_data("table", {"stream": "on"}, str(table), TASKS)
    joined = data.train.concat(data.validation)
    assert joined.mapped is data.train.mapped
    assert len(joined) == len(data.train) + len(data.validation)
    assert torch.equal(joined.inputs["numeric"][len(data.train) :], data.validation.inputs["numeric"])
