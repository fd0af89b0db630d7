"""Shared fixtures: tiny seeded data, a temporary SQLite storage, and CLI runners."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from mtl_search.data.synthetic import make_synthetic
from tests.helpers import CliResult
from tests.postgres import own_postgres_server, postgres_server, postgres_url  # noqa: F401  (fixtures)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Tests are small; one thread each keeps them fast and reproducible on 2 cores.
torch.set_num_threads(1)

# New studies seeded 0 unless a test passes a seed (the default draws one at random): tests stay
# seeded, in this process and in the commands they start. tests/search/test_seeds.py unsets it.
os.environ["MTL_SEARCH_SEED"] = "0"

# A data cache of the session's own (subprocesses inherit it): no test reads or fills the user's.
os.environ["MTL_SEARCH_CACHE"] = tempfile.mkdtemp(prefix="mtl-search-test-cache-")
atexit.register(shutil.rmtree, os.environ["MTL_SEARCH_CACHE"], ignore_errors=True)


@pytest.fixture
def tiny_synthetic():
    """400 rows, 10 features, two regression tasks with correlation 0.5."""
    return make_synthetic(dim=10, rows=400, correlation=0.5, seed=0)


@pytest.fixture
def tiny_synthetic3():
    """Three tasks, 300 rows."""
    return make_synthetic(dim=10, rows=300, tasks=3, correlation=0.5, seed=1)


@pytest.fixture
def storage_url(tmp_path):
    """A fresh SQLite database file in the test's temporary folder."""
    return f"sqlite:///{tmp_path / 'studies.db'}"


@pytest.fixture
def cli(capsys):
    """Run ``mtl-search ARGS`` in this process; returns code, stdout and stderr."""
    from mtl_search.cli import main

    def run(*args: str) -> CliResult:
        try:
            code = main(list(args))
        except SystemExit as exit:  # argparse exits on --help and usage errors
            code = exit.code if isinstance(exit.code, int) else 1
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture
def cli_process(tmp_path):
    """Run the real ``mtl-search`` console script in a subprocess (cwd: a temporary folder)."""

    def run(*args: str, timeout: float = 300, cwd: Path | None = None, env: dict | None = None) -> CliResult:
        full_env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
        full_env.update(env or {})
        process = subprocess.run(
            [sys.executable, "-m", "mtl_search", *args],
            cwd=cwd or tmp_path,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=full_env,
        )
        return CliResult(process.returncode, process.stdout, process.stderr)

    return run


@pytest.fixture(scope="session")
def trained_study(tmp_path_factory):
    """A finished search shared by the report, dashboard and export tests (treat it as read-only).

    Three random-sampler trials of two epochs on tiny synthetic data, in a SQLite file with
    the trial artifacts beside it. Returns (storage URL, study name, data).
    """
    from mtl_search.search.runner import SearchSettings, run_search
    from mtl_search.search.space import parse_space

    folder = tmp_path_factory.mktemp("trained-study")
    url = f"sqlite:///{folder / 'studies.db'}"
    data = make_synthetic(dim=8, rows=300, correlation=0.5, seed=0)
    space = parse_space(
        {
            "training": {"epochs": 2, "batch_size": 64},
            "tower": {"depth": 1, "width": 8},
            "families": {
                "tree": {"depth": {"low": 1, "high": 2}, "width": {"choices": [8, 16]}, "grouping": "partitions"}
            },
            "loss_weighting": {"static": {"weights": "simplex"}},
        }
    )
    run_search(data, space, SearchSettings(study_name="tiny", storage=url, sampler="random", seed=0, n_trials=3))
    return url, "tiny", data
