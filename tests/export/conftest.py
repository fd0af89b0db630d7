"""Fixtures of the export tests: a Python environment with PyTorch alone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def torch_only_python(tmp_path_factory) -> Path:
    """The python of a fresh virtual environment holding the running torch release and its own
    dependencies only: no numpy, no mtl-search (about 2 minutes to make, once per session)."""
    folder = tmp_path_factory.mktemp("torch-only-venv")
    release = torch.__version__.split("+")[0]  # 2.13.0+cpu: pip takes the CPU build the index offers
    python = folder / "bin" / "python"
    for command in (
        [sys.executable, "-m", "venv", str(folder)],
        [str(python), "-m", "pip", "install", "-q", "--no-input", f"torch=={release}"],
    ):
        made = subprocess.run(command, capture_output=True, text=True, timeout=900)
        assert made.returncode == 0, f"{' '.join(command)} failed:\n{made.stderr[-3000:]}"
    absent = subprocess.run(
        [
            str(python),
            "-I",
            "-c",
            "import importlib.util as u; print([n for n in ('numpy', 'mtl_search') if u.find_spec(n)])",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert absent.stdout.strip() == "[]", absent  # the environment really is torch alone
    return python
