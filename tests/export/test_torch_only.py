"""An exported ``model.pt2`` where PyTorch is all there is: the model card's snippet and the
serving example, run in a fresh virtual environment with torch alone (no numpy, no mtl-search)."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import urllib.request
from pathlib import Path

import pytest
import torch

import mtl_search
from tests.export.test_export_inputs import table_export  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow  # the environment takes about 2 minutes to make

REPO = Path(__file__).resolve().parents[2]
SERVER = REPO / "examples" / "serve_model.py"
# the same torch in the same process kind on the same rows: only float rounding may differ
TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}
# after the card's snippet: save the rows it made and what it printed, then run real rows too
AFTER_SNIPPET = """
import sys
rows = torch.load(sys.argv[1], weights_only=True)
with torch.no_grad():
    torch.save({"inputs": inputs, "outputs": outputs, "rows": model(rows)}, sys.argv[2])
"""


def isolated_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


def card_snippet(folder: Path) -> str:
    blocks = re.findall(r"```python\n(.*?)```", (folder / "README.md").read_text(), re.S)
    [snippet] = [block for block in blocks if "torch.export.load" in block]
    return snippet


def assert_same_outputs(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert list(got) == list(expected)
    for task in expected:
        torch.testing.assert_close(got[task], expected[task], **TOLERANCE)


def test_the_card_snippet_predicts_as_mtl_search_load_with_torch_alone(
    table_export,  # noqa: F811
    torch_only_python,
    tmp_path,
):
    folder, data, _ = table_export
    rows = {name: tensor[:17] for name, tensor in data.test.inputs.items()}  # real rows, a batch size never exported
    torch.save(rows, tmp_path / "rows.pt")
    script = tmp_path / "snippet.py"
    script.write_text(card_snippet(folder) + AFTER_SNIPPET)
    ran = subprocess.run(
        [str(torch_only_python), "-I", str(script), str(tmp_path / "rows.pt"), str(tmp_path / "out.pt")],
        cwd=folder,  # the snippet names model.pt2 as the card's folder holds it
        env=isolated_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ran.returncode == 0, ran.stderr
    saved = torch.load(tmp_path / "out.pt", weights_only=True)
    assert set(saved["inputs"]) == set(data.test.inputs)  # the example names every input
    printed = ast.literal_eval(ran.stdout.strip())  # the snippet prints {task: nested lists}
    assert printed == {task: output.tolist() for task, output in saved["outputs"].items()}
    model = mtl_search.load(folder)
    with torch.no_grad():
        assert_same_outputs(saved["outputs"], model(saved["inputs"]))
        assert_same_outputs(saved["rows"], model(rows))


def test_the_serving_example_answers_as_mtl_search_load_with_torch_alone(table_export, torch_only_python):  # noqa: F811
    folder, data, _ = table_export
    rows = {name: tensor[:9] for name, tensor in data.test.inputs.items()}
    server = subprocess.Popen(
        [str(torch_only_python), "-I", str(SERVER), str(folder), "--port", "0"],
        env=isolated_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = server.stdout.readline()
        assert line.startswith("serving on http://127.0.0.1:"), (line, server.stderr.read() if server.poll() else "")
        request = urllib.request.Request(
            line.split()[-1] + "/predict",
            data=json.dumps({name: tensor.tolist() for name, tensor in rows.items()}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.load(response)
    finally:
        server.terminate()
        server.communicate(timeout=30)
    with torch.no_grad():
        expected = mtl_search.load(folder)(rows)
    assert_same_outputs({task: torch.tensor(values) for task, values in answer.items()}, expected)
