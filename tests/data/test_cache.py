"""The cache of parsed data files: a second load reads it, a damaged or stale entry is parsed again."""

from __future__ import annotations

import pytest
import torch

from mtl_search.data import load_data
from mtl_search.data import cache
from tests.helpers import spend_and_churn

TASKS = ["churn:binary", "spend:regression"]


@pytest.fixture
def table(tmp_path, monkeypatch):
    monkeypatch.setenv("MTL_SEARCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(cache, "counts", {"hits": 0, "stored": 0, "rejected": 0})
    path = tmp_path / "customers.csv"
    spend_and_churn(rows=300).to_csv(path, index=False)
    return path


def _same(first, second) -> None:
    assert first.name == second.name and first.tasks == second.tasks
    assert first.input_schema == second.input_schema and first.description == second.description
    assert first.preprocessing == second.preprocessing
    for split in ("train", "validation", "test"):
        a, b = getattr(first, split), getattr(second, split)
        for part in ("inputs", "targets"):
            assert getattr(a, part).keys() == getattr(b, part).keys()
            for name, tensor in getattr(a, part).items():
                other = getattr(b, part)[name]
                assert tensor.dtype == other.dtype and torch.equal(tensor.nan_to_num(-7.0), other.nan_to_num(-7.0))


def test_a_second_load_reads_the_cache_and_gives_the_same_data(table, tmp_path):
    parsed = load_data("table", {}, str(table), TASKS)
    assert cache.counts == {"hits": 0, "stored": 1, "rejected": 0}
    assert len(list((tmp_path / "cache" / "data").glob("*.safetensors"))) == 1
    again = load_data("table", {}, str(table), TASKS)
    assert cache.counts == {"hits": 1, "stored": 1, "rejected": 0}
    _same(parsed, again)


def test_other_options_tasks_or_file_content_miss(table):
    original = load_data("table", {}, str(table), TASKS)
    load_data("table", {"rows": "200"}, str(table), TASKS)
    load_data("table", {}, str(table), ["churn:binary"])
    frame = spend_and_churn(rows=300)
    frame.loc[0, "spend"] += 1.0
    frame.to_csv(table, index=False)
    changed = load_data("table", {}, str(table), TASKS)
    assert cache.counts == {"hits": 0, "stored": 4, "rejected": 0}
    assert changed.description["content"] != original.description["content"]  # parsed from the changed file
    _same(changed, load_data("table", {}, str(table), TASKS))
    assert cache.counts["hits"] == 1


@pytest.mark.parametrize("damage", ["flip a byte of the tensors", "truncate", "garbage"])
def test_a_damaged_entry_is_noted_in_one_line_parsed_again_and_replaced(table, tmp_path, capsys, damage):
    parsed = load_data("table", {}, str(table), TASKS)
    (entry,) = (tmp_path / "cache" / "data").glob("*.safetensors")
    content = bytearray(entry.read_bytes())
    if damage == "flip a byte of the tensors":
        content[-5] ^= 0xFF
    elif damage == "truncate":
        content = content[: len(content) // 2]
    else:
        content = bytearray(b"not a safetensors file")
    entry.write_bytes(bytes(content))
    again = load_data("table", {}, str(table), TASKS)
    _same(parsed, again)
    assert cache.counts == {"hits": 0, "stored": 2, "rejected": 1}
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"mtl-search: note: data cache entry {entry} is unusable (")
    assert lines[0].endswith(f"parsing {table} again")
    load_data("table", {}, str(table), TASKS)  # the entry was written again
    assert cache.counts["hits"] == 1


def test_an_entry_for_other_inputs_is_not_read(table, tmp_path):
    load_data("table", {}, str(table), TASKS)
    load_data("table", {"rows": "200"}, str(table), TASKS)
    first, second = sorted((tmp_path / "cache" / "data").glob("*.safetensors"), key=lambda p: p.stat().st_mtime)
    second.write_bytes(first.read_bytes())  # a valid entry under the wrong name
    small = load_data("table", {"rows": "200"}, str(table), TASKS)
    assert cache.counts["rejected"] == 1 and len(small.train) + len(small.validation) + len(small.test) == 200


def test_off_keeps_no_entry(table, tmp_path, monkeypatch):
    monkeypatch.setenv("MTL_SEARCH_CACHE", "off")
    load_data("table", {}, str(table), TASKS)
    load_data("table", {}, str(table), TASKS)
    assert cache.counts == {"hits": 0, "stored": 0, "rejected": 0}
    assert not (tmp_path / "cache").exists()
