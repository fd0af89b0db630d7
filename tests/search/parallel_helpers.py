"""Helpers of the multi-worker tests: a tiny space, CLI processes, and the study's trial states."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import sqlalchemy

# Two epochs of a tiny tree: a trial takes well under a second, so the tests measure the
# coordination between workers, not training.
TINY_SPACE = """\
training:
  epochs: {epochs}
  learning_rate: {{low: 1.0e-3, high: 1.0e-2, log: true}}
  batch_size: 64
families:
  tree:
    depth: {{low: 1, high: 2}}
    width: {{choices: [8, 16]}}
loss_weighting:
  static: {{}}
"""
TINY_DATA = ["--data-option", "rows=300", "--data-option", "dim=8"]
RAN_TO_END = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
FINISHED = (*RAN_TO_END, optuna.trial.TrialState.FAIL)


def write_space(folder: Path, epochs: int = 2) -> Path:
    path = folder / "tiny.yaml"
    path.write_text(TINY_SPACE.format(epochs=epochs))
    return path


def run_args(space: Path, storage: str, study: str, trials: int, *extra: str) -> list[str]:
    return [
        "run",
        "--space",
        str(space),
        *TINY_DATA,
        "--storage",
        storage,
        "--study-name",
        study,
        "--trials",
        str(trials),
        "--quiet",
        "--sampler",
        "random",
        *extra,
    ]


def start_cli(args: list[str], cwd: Path, env: dict | None = None) -> subprocess.Popen:
    """``mtl-search ARGS`` in its own process group (so a test can send it Ctrl-C like a terminal)."""
    full_env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", **(env or {}))
    return subprocess.Popen(
        [sys.executable, "-m", "mtl_search", *args],
        cwd=cwd,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def study_created(path: Path, study: str) -> bool:
    """Whether the run has created ``study`` in the SQLite file at ``path``, read without
    writing: opening an Optuna storage on a file whose schema is still being created would
    race the run for the schema's version row and can fail either side."""
    if not path.exists():
        return False
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1) as connection:
            return connection.execute("SELECT 1 FROM studies WHERE study_name = ?", (study,)).fetchone() is not None
    except sqlite3.OperationalError:  # tables not there yet, or the file is locked for a moment
        return False


def trials(storage: str, study: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=False)


def states(storage: str, study: str) -> Counter:
    """Trial counts by state name (none while the study is not created yet)."""
    try:
        return Counter(t.state.name for t in trials(storage, study))
    except (KeyError, sqlalchemy.exc.OperationalError):  # not created yet, or tables being created
        return Counter()


def wait_for(condition, timeout: float = 120.0, every: float = 0.1):
    """Poll ``condition()`` until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"condition not met within {timeout} s")


def worker_pids(parent: int) -> list[int]:
    """The spawned worker processes of ``parent`` (not multiprocessing's resource tracker)."""
    try:
        children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    except OSError:
        return []
    pids = []
    for child in map(int, children):
        try:
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                pids.append(child)
        except OSError:
            pass
    return pids
