"""A Ctrl-C that Python drops (raised inside a finaliser, where exceptions are only printed)
still stops the command: the handler notes it, and the next safe point raises it again."""

from __future__ import annotations

import os
import signal
import sys

import optuna
import pytest

from mtl_search.cli import _stops_raised_and_noted
from mtl_search.search.runner import SearchSettings, run_search
from mtl_search.search.space import load_space
from mtl_search.stops import note_stop, noted_stop, raise_pending_stop


class StoppedWhileFinalised:
    """Sends Ctrl-C to this process from its finaliser, so the handler runs inside it."""

    def __del__(self) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(10_000):  # bytecode boundaries: the handler runs at one of them
            pass


def test_a_ctrl_c_dropped_in_a_finaliser_is_raised_at_the_next_safe_point(monkeypatch):
    dropped = []
    monkeypatch.setattr(sys, "unraisablehook", lambda unraisable: dropped.append(unraisable.exc_type))
    with _stops_raised_and_noted():
        StoppedWhileFinalised()  # finalised at once
        assert dropped == [KeyboardInterrupt]  # Python dropped the raise...
        assert noted_stop() is KeyboardInterrupt  # ... but the stop was noted
        with pytest.raises(KeyboardInterrupt):
            raise_pending_stop()  # what training calls after every step
    assert noted_stop() is None  # the command is over: nothing is left for the next one


def test_a_noted_stop_ends_a_search_before_its_first_trial(tiny_synthetic, tmp_path):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    with _stops_raised_and_noted():
        note_stop(KeyboardInterrupt)
        with pytest.raises(KeyboardInterrupt):
            run_search(tiny_synthetic, load_space("default"), SearchSettings(study_name="s", storage=url, n_trials=3))
    trials = optuna.load_study(study_name="s", storage=url).trials
    assert trials == []
