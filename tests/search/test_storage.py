"""Opening study storages: the grace period's sources, the in-memory check and how SQLite files are opened."""

from __future__ import annotations

import pytest

from mtl_search.errors import UserError
from mtl_search.search.storage import GRACE_PERIOD, grace_period, heartbeat_interval, is_in_memory, open_storage


def test_grace_period_comes_from_the_flag_then_the_environment(monkeypatch):
    monkeypatch.delenv("MTL_SEARCH_GRACE_PERIOD", raising=False)
    assert grace_period() == GRACE_PERIOD
    monkeypatch.setenv("MTL_SEARCH_GRACE_PERIOD", "7")
    assert grace_period() == 7 and grace_period(30) == 30
    assert heartbeat_interval(7) == 2 and heartbeat_interval(2) == 1 and heartbeat_interval(600) == 10


@pytest.mark.parametrize(
    "value,fragment",
    [
        ("1", "$MTL_SEARCH_GRACE_PERIOD 1: must be at least 2"),
        ("soon", "$MTL_SEARCH_GRACE_PERIOD 'soon': expected a whole number"),
    ],
)
def test_a_bad_grace_period_in_the_environment_is_named(monkeypatch, value, fragment):
    monkeypatch.setenv("MTL_SEARCH_GRACE_PERIOD", value)
    with pytest.raises(UserError, match=fragment.replace("$", r"\$")):
        grace_period()


@pytest.mark.parametrize(
    "url,in_memory", [("sqlite://", True), ("sqlite:///:memory:", True), ("sqlite:///{tmp}/s.db", False)]
)
def test_in_memory_storages_are_recognised(tmp_path, url, in_memory):
    assert is_in_memory(open_storage(url.format(tmp=tmp_path), heartbeat=False)) is in_memory


def test_a_sqlite_file_gets_the_wal_journal_and_commits_without_waiting_for_the_disk(tmp_path):
    import sqlite3

    path = tmp_path / "studies.db"
    storage = open_storage(f"sqlite:///{path}", create=True)
    with storage.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL (FULL is 2)
    plain = sqlite3.connect(path)
    try:
        # the journal mode lives in the file: every other reader (optuna-dashboard) gets it too
        assert plain.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        plain.close()


def test_the_storage_retry_comes_from_the_flag_then_the_environment(monkeypatch):
    from mtl_search.search.reconnect import STORAGE_RETRY, storage_retry_seconds

    monkeypatch.delenv("MTL_SEARCH_STORAGE_RETRY", raising=False)
    assert storage_retry_seconds() == STORAGE_RETRY >= 60
    monkeypatch.setenv("MTL_SEARCH_STORAGE_RETRY", "5")
    assert storage_retry_seconds() == 5 and storage_retry_seconds(0) == 0
    monkeypatch.setenv("MTL_SEARCH_STORAGE_RETRY", "soon")
    with pytest.raises(UserError, match=r"\$MTL_SEARCH_STORAGE_RETRY 'soon': expected a number"):
        storage_retry_seconds()
    with pytest.raises(UserError, match="--storage-retry -1: must be 0"):
        storage_retry_seconds(-1)
