"""Torch threads of a search: one by default, --threads / SearchSettings.threads to choose."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import optuna
import pytest
import torch

from mtl_search.errors import UserError
from mtl_search.threads import chosen_threads
from tests.conftest import REPO
from tests.helpers import assert_one_line_error

QUICK = ("--data-option", "rows=300", "--data-option", "dim=8", "--epochs", "1", "--quiet")


def test_one_thread_unless_asked_or_set_in_the_environment(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert chosen_threads() == 1
    assert chosen_threads(3) == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    assert chosen_threads() == 4
    assert chosen_threads(2) == 2  # the flag wins over the environment
    monkeypatch.setenv("OMP_NUM_THREADS", "many")
    assert chosen_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "100000")  # beyond any machine: not taken
    assert chosen_threads() == 1
    for bad in (0, -2, 1.5, True, 100000):
        with pytest.raises(UserError, match=f"threads {bad!r}: expected a whole number from 1 to 1024"):
            chosen_threads(bad)


@pytest.mark.parametrize("command", [("run",), ("refine", "study"), ("export", "study", "--trial", "0", "--out", "x")])
@pytest.mark.parametrize("value", ["0", "-1", "1.5", "two", "100000"])
def test_a_bad_thread_count_is_refused_in_one_line(cli, command, value):
    assert_one_line_error(cli(*command, "--threads", value), "--threads", repr(value))


# In a fresh process, as a user runs it: the trainer reports the thread count it trains with.
OBSERVER = textwrap.dedent("""
    import json, sys
    import torch
    import mtl_search.search.objective as objective

    seen = []
    train_candidate = objective.train_candidate

    def observed(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return train_candidate(*args, **kwargs)

    objective.train_candidate = observed
    from mtl_search.cli import main

    code = main(sys.argv[1:])
    print("THREADS " + json.dumps(seen))
    sys.exit(code)
""")


def _threads_seen(tmp_path, *flags, env=None):
    import os

    environment = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"} | (env or {})
    environment["PYTHONPATH"] = str(REPO)
    process = subprocess.run(
        [
            sys.executable,
            "-c",
            OBSERVER,
            "run",
            "--trials",
            "2",
            "--storage",
            f"sqlite:///{tmp_path / 's.db'}",
            *QUICK,
            *flags,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=environment,
        cwd=tmp_path,
    )
    assert process.returncode == 0, process.stderr[-2000:]
    line = next(line for line in process.stdout.splitlines() if line.startswith("THREADS "))
    return json.loads(line.split(" ", 1)[1])


def test_run_trains_with_one_thread_by_default_and_with_the_threads_asked_for(tmp_path):
    assert _threads_seen(tmp_path, "--study-name", "default") == [1, 1]
    assert _threads_seen(tmp_path, "--study-name", "three", "--threads", "3") == [3, 3]
    assert _threads_seen(tmp_path, "--study-name", "environment", env={"OMP_NUM_THREADS": "2"}) == [2, 2]


def test_a_search_from_python_trains_with_its_threads_and_gives_the_callers_count_back(tmp_path):
    from mtl_search.data import load_data
    from mtl_search.search import SearchSettings, load_space, run_search

    data = load_data("synthetic", {"rows": "300", "dim": "8"})
    seen = []
    before = torch.get_num_threads()
    settings = SearchSettings(
        study_name="t", storage=f"sqlite:///{tmp_path / 's.db'}", n_trials=1, epochs=1, threads=before + 1
    )
    run_search(data, load_space("default"), settings, epoch_hooks=[lambda *_: seen.append(torch.get_num_threads())])
    assert seen == [before + 1]
    assert torch.get_num_threads() == before
    for bad in (0, 2.5):
        settings = SearchSettings(study_name="bad", storage=f"sqlite:///{tmp_path / 's.db'}", threads=bad)
        with pytest.raises(UserError, match=f"threads {bad}: expected a whole number"):
            run_search(data, load_space("default"), settings)
    assert optuna.get_all_study_names(f"sqlite:///{tmp_path / 's.db'}") == ["t"]
