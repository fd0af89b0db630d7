"""The serving example (examples/serve_model.py): real HTTP requests on 127.0.0.1 to an exported model.pt2."""

from __future__ import annotations

import importlib.util
import json
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch

import mtl_search
from tests.export.test_export_inputs import table_export  # noqa: F401  (fixture)

SERVER = Path(__file__).resolve().parents[2] / "examples" / "serve_model.py"


def serving_example():
    spec = importlib.util.spec_from_file_location("serve_model", SERVER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def server_url(table_export):  # noqa: F811
    folder, _, _ = table_export
    example = serving_example()
    server = example.make_server(example.Predictor(folder), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def call(url: str, body: bytes | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def test_predict_answers_what_mtl_search_load_predicts(server_url, table_export):  # noqa: F811
    folder, data, _ = table_export
    rows = {name: tensor[:5] for name, tensor in data.test.inputs.items()}
    status, answer = call(server_url + "/predict", json.dumps({k: v.tolist() for k, v in rows.items()}).encode())
    assert status == 200, answer
    with torch.no_grad():
        expected = mtl_search.load(folder)(rows)
    assert list(answer) == list(expected)
    for task, values in answer.items():
        torch.testing.assert_close(torch.tensor(values), expected[task], rtol=1e-5, atol=1e-6)
    assert call(server_url + "/health") == (200, {"status": "ok"})


def test_a_request_the_model_cannot_take_is_a_400_naming_the_input(server_url, table_export):  # noqa: F811
    _, data, _ = table_export
    rows = {name: tensor[:2].tolist() for name, tensor in data.test.inputs.items()}
    numeric, categorical = rows["numeric"], rows["categorical"]
    bad = {
        b"{not json": "the body is not JSON",
        json.dumps([numeric]).encode(): "expected a JSON object",
        json.dumps({"numeric": numeric}).encode(): "missing input 'categorical'",
        json.dumps(rows | {"extra": [1]}).encode(): "unknown input 'extra'",
        json.dumps(
            rows | {"numeric": [row[:-1] for row in numeric]}
        ).encode(): "input 'numeric': expected rows of shape",
        json.dumps(rows | {"categorical": [[0.5] * len(categorical[0])] * 2}).encode(): "expected whole numbers",
        json.dumps(rows | {"categorical": categorical[:1]}).encode(): "inputs differ in their number of rows",
    }
    for body, fragment in bad.items():
        status, answer = call(server_url + "/predict", body)
        assert status == 400 and fragment in answer["error"], (body, answer)
    assert call(server_url + "/other")[0] == 404
