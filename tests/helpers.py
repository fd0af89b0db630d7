"""Helpers the tests import (fixtures live in conftest.py)."""

from __future__ import annotations


class CliResult:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    def __repr__(self) -> str:
        return f"CliResult(code={self.code}, out={self.out[-2000:]!r}, err={self.err[-2000:]!r})"


def assert_one_line_error(result: CliResult, *fragments: str) -> None:
    """A clean user error: non-zero exit, one line on stderr naming the fault, no traceback."""
    assert result.code == 2, result
    lines = [line for line in result.err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result
    assert "Traceback" not in result.err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def require_chromium() -> str:
    """The chromium executable; skips the test without one, fails when CI requires services."""
    import os
    import shutil

    import pytest

    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path:
        return path
    if os.environ.get("MTL_SEARCH_REQUIRE_SERVICES") == "1":
        pytest.fail("chromium is not installed but MTL_SEARCH_REQUIRE_SERVICES=1 (apt-get install chromium)")
    pytest.skip("chromium is not installed (apt-get install chromium)")


def spend_and_churn(rows: int = 600, seed: int = 0):
    """A seeded table: churn (binary) follows a and b; spend (regression, mean ~1000, std ~200)
    follows c, so the two tasks share no signal and spend's raw scale dwarfs churn's loss."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, 4))
    churn = (x[:, 0] + x[:, 1] + 0.5 * rng.standard_normal(rows) > 0).astype(int)
    spend = 1000 + 200 * (0.8 * x[:, 2] + 0.6 * rng.standard_normal(rows))
    return pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "d": x[:, 3], "churn": churn, "spend": spend})


def outputs_in_every_format(folder, inputs):
    """What an exported folder's model returns for ``inputs`` through ``mtl_search.load``, checked
    to be what its ``model.pt2`` program returns too, and its ONNX graph under onnxruntime where the onnx
    extra is installed."""
    import importlib.util
    import json
    from pathlib import Path

    import torch

    import mtl_search

    folder = Path(folder)
    description = json.loads((folder / "model.json").read_text())
    with torch.no_grad():
        loaded = mtl_search.load(folder)(inputs)
        exported = torch.export.load(folder / description["exported_program"]).module()(inputs)
    assert set(exported) == set(loaded)
    for task in loaded:
        torch.testing.assert_close(exported[task], loaded[task])
    if importlib.util.find_spec("onnxruntime") is None:  # without the onnx extra there is no graph to compare
        assert description["onnx"] is None
        return loaded
    import onnxruntime

    session = onnxruntime.InferenceSession(str(folder / description["onnx"]), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == list(description["inputs"])
    names = [o.name for o in session.get_outputs()]
    assert sorted(names) == sorted(description["outputs"])
    from_onnx = session.run(names, {name: tensor.numpy() for name, tensor in inputs.items()})
    for task, graph_output in zip(names, from_onnx):
        torch.testing.assert_close(torch.from_numpy(graph_output), loaded[task], rtol=1e-4, atol=1e-5)
    return loaded
