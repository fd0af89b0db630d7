"""Checking the inputs of a loaded model against its ``model.json`` before the network runs.

Without it a wrong input fails deep inside torch (a matrix shape, an embedding index, a dtype
mismatch in a linear layer). The check looks only at names, dtypes, shapes and devices, plus
one min/max reduction per code input, so it costs nothing next to the network.

What it accepts as given, or converts without loss of meaning:

- a float input in another float precision (float64 from ``torch.from_numpy(df.values)``):
  cast to the precision the network computes in (float32 as exported, or float64 after
  ``model.double()``);
- integer codes in another integer type (int32, uint8): cast to int64;
- numpy arrays: taken as tensors (moved to the model's device).

It never turns floats into integer codes, nor integers or booleans into float features: those
are refused, as are missing or unknown input names, wrong shapes, mixed batch sizes, tensors on
another device and codes outside their column's vocabulary.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mtl_search.errors import UserError


class InputCheck:
    """A forward pre-hook (``register_forward_pre_hook(..., with_kwargs=True)``) checking
    ``forward(inputs)``'s ``{name: tensor}`` against the inputs ``model.json`` lists.

    ``inputs``: ``{name: {"shape": ["batch", ...], "dtype": "float32"}}``; ``codes``:
    ``{name: (exclusive upper bound per column, or one for every element; column labels)}``.
    """

    def __init__(
        self, inputs: dict[str, dict[str, Any]], codes: dict[str, tuple[list[int], list[str]]] | None = None
    ) -> None:
        self.inputs = {
            name: (tuple(int(s) for s in spec["shape"][1:]), getattr(torch, spec["dtype"]))
            for name, spec in inputs.items()
        }
        self.codes = {name: (torch.tensor(bounds), labels) for name, (bounds, labels) in (codes or {}).items()}

    @classmethod
    def for_model(cls, description: dict[str, Any], folder: Path) -> "InputCheck":
        """The check for an exported model: its inputs, and the vocabularies its input schema records."""
        schema = description.get("input_schema") or {}
        codes: dict[str, tuple[list[int], list[str]]] = {}
        if schema.get("kind") == "tabular" and schema.get("categorical"):
            columns = _categorical_columns(folder, description.get("preprocessing"))
            sizes = [int(c) for c in schema["categorical"]]
            labels = [
                f"column {i}" + (f" {columns[i]!r}" if len(columns) == len(sizes) else "") for i in range(len(sizes))
            ]
            codes["categorical"] = (sizes, labels)
        elif schema.get("kind") == "sequence":
            codes["events"] = ([int(schema["vocabulary"]) + 1], ["event ids; 0 is padding"])
            codes["lengths"] = ([int(schema["max_length"]) + 1], ["events in each history"])
        return cls(description["inputs"], {name: c for name, c in codes.items() if name in description["inputs"]})

    def __call__(
        self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
        # torch.export, torch.compile and the ONNX exporter of the loaded model capture the network alone
        if torch.compiler.is_compiling():
            return None
        if args:
            return (self.check(args[0], module), *args[1:]), kwargs
        if "inputs" in kwargs:
            return args, kwargs | {"inputs": self.check(kwargs["inputs"], module)}
        return None  # forward's own TypeError names what is missing

    def check(self, given: Any, module: nn.Module | None = None) -> dict[str, torch.Tensor]:
        """``given`` as the network takes it, or a one-line UserError naming the input at fault."""
        names = ", ".join(self.inputs)
        if not isinstance(given, Mapping):
            wanted = ", ".join(f"{name!r}: tensor" for name in self.inputs)
            raise UserError(f"model input: expected a dict {{{wanted}}}, got {type(given).__name__}")
        for name in self.inputs:
            if name not in given:
                also = f"; got {', '.join(map(str, given))}" if given else ""
                raise UserError(f"missing input {name!r} (inputs: {names}{also})")
        for name in given:
            if name not in self.inputs:
                raise UserError(f"unknown input {name!r} (inputs: {names})")
        parameter = next(module.parameters(), None) if module is not None else None
        device = parameter.device if parameter is not None else None
        # floats go in at the network's precision: float32 as exported, or what .double() or .half() made it
        floats = parameter.dtype if parameter is not None and parameter.is_floating_point() else None
        checked = {name: self._tensor(name, given[name], device, floats) for name in self.inputs}
        rows = {name: len(tensor) for name, tensor in checked.items()}
        if len(set(rows.values())) > 1:
            raise UserError(
                "inputs differ in batch size (" + ", ".join(f"{name}: {n} rows" for name, n in rows.items()) + ")"
            )
        for name, tensor in checked.items():
            if name in self.codes:
                self._check_codes(name, tensor)
        return checked

    def _tensor(
        self, name: str, value: Any, device: torch.device | None, floats: torch.dtype | None = None
    ) -> torch.Tensor:
        shape, dtype = self.inputs[name]
        if floats is not None and dtype.is_floating_point:
            dtype = floats
        wanted = f"{_dtype(dtype)} of shape {shape_text(('batch', *shape))}"
        if isinstance(value, np.ndarray):
            try:
                value = torch.from_numpy(np.ascontiguousarray(value))
            except TypeError:
                raise UserError(
                    f"input {name!r}: expected {wanted}, got a numpy array of dtype {value.dtype}"
                ) from None
            if device is not None:
                value = value.to(device)
        elif not isinstance(value, torch.Tensor):
            raise UserError(f"input {name!r}: expected a tensor, {wanted}, got {type(value).__name__}")
        given = f"got {_dtype(value.dtype)} of shape {shape_text(tuple(value.shape))}"
        if value.dim() != len(shape) + 1 or tuple(value.shape[1:]) != shape:
            one_row = "; one row is a batch of one: tensor.unsqueeze(0)" if tuple(value.shape) == shape else ""
            raise UserError(f"input {name!r}: expected {wanted}, {given}{one_row}")
        if value.dtype != dtype:
            if _kind(value.dtype) != _kind(dtype):
                floats = (
                    "; floats are never rounded into codes"
                    if _kind(dtype) == "integer" and _kind(value.dtype) == "float"
                    else ""
                )
                raise UserError(f"input {name!r}: expected {wanted}, {given}{floats}")
            value = value.to(dtype)  # same kind, another width: float64 -> float32, int32 -> int64
        if device is not None and value.device != device:
            raise UserError(
                f"input {name!r}: is on {value.device}, the model on {device}; move it with .to({str(device)!r})"
            )
        return value

    def _check_codes(self, name: str, tensor: torch.Tensor) -> None:
        bounds, labels = self.codes[name]
        if not tensor.numel():
            return
        columns = tensor.reshape(-1, len(bounds))
        low, high = columns.amin(dim=0).cpu(), columns.amax(dim=0).cpu()
        bad = (low < 0) | (high >= bounds)
        if bool(bad.any()):
            i = int(bad.nonzero()[0])
            value = int(low[i]) if low[i] < 0 else int(high[i])
            raise UserError(f"input {name!r}: codes must be in 0..{int(bounds[i]) - 1} ({labels[i]}), got {value}")


def _kind(dtype: torch.dtype) -> str:
    if dtype == torch.bool:
        return "bool"
    if dtype.is_complex:
        return "complex"
    return "float" if dtype.is_floating_point else "integer"


def _dtype(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def shape_text(shape: tuple[Any, ...]) -> str:
    """``(batch, 7)``, ``(batch,)``, ``(3000, 7)``: a shape as Python writes a tuple, without quotes."""
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def _categorical_columns(folder: Path, preprocessing_file: str | None) -> list[str]:
    """The categorical columns in code order, from the folder's preprocessing state ([] if it has none)."""
    if not preprocessing_file:
        return []
    try:
        state = json.loads((folder / preprocessing_file).read_text())
        return [str(entry["column"]) for entry in state.get("categorical", [])]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return []  # the names only label the error; the codes are checked without them
