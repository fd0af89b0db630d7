"""Opening study storages: the grace period's sources and the in-memory check."""

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


@pytest.mark.parametrize("value,fragment", [("1", "$MTL_SEARCH_GRACE_PERIOD 1: must be at least 2"),
                                            ("soon", "$MTL_SEARCH_GRACE_PERIOD 'soon': expected a whole number")])
def test_a_bad_grace_period_in_the_environment_is_named(monkeypatch, value, fragment):
    monkeypatch.setenv("MTL_SEARCH_GRACE_PERIOD", value)
    with pytest.raises(UserError, match=fragment.replace("$", r"\$")):
        grace_period()


@pytest.mark.parametrize("url,in_memory", [("sqlite://", True), ("sqlite:///:memory:", True), ("sqlite:///{tmp}/s.db", False)])
def test_in_memory_storages_are_recognised(tmp_path, url, in_memory):
    assert is_in_memory(open_storage(url.format(tmp=tmp_path), heartbeat=False)) is in_memory
