"""A minimal HTTP endpoint around an exported model, with PyTorch and the standard library alone.

    python serve_model.py MODEL_FOLDER [--host 127.0.0.1] [--port 8000]

MODEL_FOLDER is what `mtl-search export` wrote. The server loads its ``model.pt2`` (a
``torch.export`` program) and reads the input names, shapes and dtypes from ``model.json``;
mtl-search need not be installed.

``POST /predict`` takes a JSON object ``{input name: rows}`` (the inputs after preprocessing,
as the model card's Inputs table lists them) and answers ``{task: rows of raw outputs}``;
``GET /health`` answers ``{"status": "ok"}``. A request the model cannot take is answered
400 with ``{"error": "..."}`` naming the input at fault.
"""

from __future__ import annotations

import argparse
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import torch

MAX_BODY_BYTES = 16 * 1024 * 1024  # a request larger than this is refused before it is read


class BadRequest(ValueError):
    """A request the model cannot take; its message is sent back to the client."""


class Predictor:
    """The exported program of one model folder, and the inputs its ``model.json`` lists."""

    def __init__(self, folder: str | Path) -> None:
        folder = Path(folder)
        description = json.loads((folder / "model.json").read_text())
        program_file = description.get("exported_program")
        if not program_file:
            raise SystemExit(f"{folder}: the export wrote no model.pt2 (its README.md says why)")
        self.model = torch.export.load(folder / program_file).module()
        # {name: (dtype, shape after the batch dimension)}
        self.inputs = {
            name: (getattr(torch, spec["dtype"]), [int(size) for size in spec["shape"][1:]])
            for name, spec in description["inputs"].items()
        }

    def predict(self, request: Any) -> dict[str, list[Any]]:
        if not isinstance(request, dict):
            raise BadRequest(f"expected a JSON object {{input name: rows}} with the inputs {', '.join(self.inputs)}")
        unknown = sorted(set(request) - set(self.inputs))
        if unknown:
            raise BadRequest(f"unknown input {unknown[0]!r} (inputs: {', '.join(self.inputs)})")
        inputs = {name: self._tensor(name, request.get(name)) for name in self.inputs}
        rows = {len(tensor) for tensor in inputs.values()}
        if len(rows) > 1:
            raise BadRequest("inputs differ in their number of rows")
        with torch.no_grad():
            outputs = self.model(inputs)
        return {task: output.tolist() for task, output in outputs.items()}

    def _tensor(self, name: str, rows: Any) -> torch.Tensor:
        dtype, shape = self.inputs[name]
        wanted = "rows of shape [" + ", ".join(["rows", *map(str, shape)]) + "]"
        if rows is None:
            raise BadRequest(f"missing input {name!r} (inputs: {', '.join(self.inputs)})")
        try:
            tensor = torch.tensor(rows)
        except (TypeError, ValueError, RuntimeError):
            raise BadRequest(f"input {name!r}: expected {wanted} of numbers") from None
        if tensor.dtype.is_floating_point and not dtype.is_floating_point:
            raise BadRequest(f"input {name!r}: expected whole numbers (codes), got fractions")
        if tensor.dim() != len(shape) + 1 or list(tensor.shape[1:]) != shape or not len(tensor):
            raise BadRequest(f"input {name!r}: expected {wanted}, got shape {list(tensor.shape)}")
        return tensor.to(dtype)


def make_server(predictor: Predictor, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    """A server answering /predict with ``predictor`` (``port=0``: a free port, ``server.server_port``)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/health":
                self._answer(200, {"status": "ok"})
            else:
                self._answer(404, {"error": f"no such path {self.path!r}; POST /predict or GET /health"})

        def do_POST(self) -> None:
            if self.path != "/predict":
                self._answer(404, {"error": f"no such path {self.path!r}; POST /predict or GET /health"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                self._answer(413, {"error": f"request body over {MAX_BODY_BYTES} bytes"})
                return
            try:
                request = json.loads(self.rfile.read(length))
            except (UnicodeDecodeError, json.JSONDecodeError) as error:
                self._answer(400, {"error": f"the body is not JSON: {error}"})
                return
            try:
                self._answer(200, predictor.predict(request))
            except BadRequest as error:
                self._answer(400, {"error": str(error)})
            except Exception as error:  # e.g. a code outside its column's vocabulary: the network's own error
                first_line = (str(error).strip().splitlines() or [""])[0]
                self._answer(400, {"error": f"the model refused the inputs: {type(error).__name__}: {first_line}"})

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # one line per request, on stderr
            sys.stderr.write(f"{self.address_string()} {format % args}\n")

    return ThreadingHTTPServer((host, port), Handler)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve an exported model.pt2 over HTTP.")
    parser.add_argument("folder", help="the folder `mtl-search export` wrote")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0: any free port")
    args = parser.parse_args(argv)
    server = make_server(Predictor(args.folder), args.host, args.port)
    print(f"serving on http://{args.host}:{server.server_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
