"""Loading an exported model folder back as a ready ``nn.Module``.

The folder is checked before anything in it is trusted: every file ``model.json`` names must
lie inside the folder (no ``..``, no absolute path, no link leading out), the weights file must
have the size and SHA-256 that export recorded in ``model.json``, its tensors the names and
shapes of the network rebuilt from ``model.json``, and that network must take the inputs
``model.json`` lists. Each failure is one :class:`~mtl_search.errors.UserError` line naming the
file and what is wrong. The weights are read as safetensors: tensors only, nothing is unpickled.

The hash guards against damage and accidental edits (a truncated copy, a file replaced by
another export's), not against someone who can rewrite ``model.json`` too. A folder exported
before hashes were recorded loads with a one-line :class:`UncheckedWeightsWarning`; every other
check still applies.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import warnings
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import torch

from mtl_search.errors import OneLineWarning, UserError

MODEL_FILE = "model.json"
WEIGHTS_FILE = "weights.safetensors"
FORMAT = "mtl-search-model"
WEIGHTS_SHA256 = "weights_sha256"  # model.json keys export records the weights file with
WEIGHTS_BYTES = "weights_bytes"
# model.json keys that name a file of the folder (None where the file was not written)
FILE_KEYS = ("weights", "preprocessing", "exported_program", "onnx", "torchscript")
INPUT_DTYPES = ("float32", "float64", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "bool")


class UncheckedWeightsWarning(OneLineWarning):
    """An export that records no hash of its weights: they are loaded without that check."""


def model_folder(path: str | os.PathLike[str]) -> Path:
    """The export folder ``path`` names: itself, or the folder of a file in it (``DIR/model.json``)."""
    path = Path(path)
    return path.parent if path.is_file() else path


def file_digest(path: str | os.PathLike[str]) -> tuple[int, str]:
    """(size in bytes, SHA-256 hex digest) of a file, as export records them for the weights."""
    data = Path(path).read_bytes()
    return len(data), hashlib.sha256(data).hexdigest()


def read_model_description(directory: str | os.PathLike[str]) -> dict[str, Any]:
    directory = model_folder(directory)
    if not directory.exists():
        raise UserError(f"{directory}: no such folder; give the folder `mtl-search export` wrote")
    if not directory.is_dir():
        raise UserError(f"{directory}: not a folder; give the folder `mtl-search export` wrote")
    path = directory / MODEL_FILE
    if not path.exists() and not path.is_symlink():
        raise UserError(f"{directory}: no {MODEL_FILE}; not a folder written by `mtl-search export`")
    path = _inside(directory, path)
    try:
        text = _read_regular_file(path).decode("utf-8")
        description = json.loads(text)
    except UnicodeDecodeError:
        raise UserError(f"{path}: not text (binary content); not a model description") from None
    except json.JSONDecodeError as error:
        raise UserError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(description, dict) or description.get("format") != FORMAT:
        raise UserError(f"{path}: not an mtl-search model description")
    return description


def load(directory: str | os.PathLike[str], device: str | torch.device = "cpu") -> torch.nn.Module:
    """The exported network, weights loaded, in eval mode, on ``device``.

    ``directory``: the export folder (or a file in it). ``device``: "cpu" (the default),
    "cuda", "cuda:1", "mps" or "auto" (the GPU when there is one), whatever device the search
    trained on; a device this machine lacks is a one-line :class:`UserError`.
    ``model(inputs)`` takes ``{input name: tensor}`` (see the folder's README.md) and returns
    ``{task: raw output}``; the inputs are checked against ``model.json`` first
    (:class:`mtl_search.export.inputs.InputCheck`). The folder is checked first (see the module
    docstring); anything wrong with it is a one-line :class:`UserError` naming the file. Only
    tensors are read from the weights file (safetensors).
    """
    from mtl_search.export.inputs import InputCheck
    from mtl_search.training import resolve_device

    device = resolve_device(device, option="device")  # before the weights are read: a typo costs nothing
    folder = model_folder(directory)
    description = read_model_description(folder)
    described_in = folder / MODEL_FILE
    files = {key: _named_file(folder, description, key) for key in FILE_KEYS}
    model = _rebuild(description, described_in).eval()
    if description.get("inputs") is not None:
        _check_inputs(model, description, described_in)  # before the weights: the probe may touch no state of theirs
    weights = files["weights"] or folder / WEIGHTS_FILE
    model.load_state_dict(_read_weights(weights, description, described_in, model), strict=True)
    if description.get("inputs") is not None:
        model.register_forward_pre_hook(InputCheck.for_model(description, folder), with_kwargs=True)
    return model.to(device)


# -- paths -------------------------------------------------------------------------------


def _named_file(folder: Path, description: dict[str, Any], key: str) -> Path | None:
    """The file ``model.json``'s ``key`` names, checked to lie inside ``folder`` (None if it names none)."""
    name = description.get(key, WEIGHTS_FILE if key == "weights" else None)
    if name is None:
        return None
    described_in = folder / MODEL_FILE
    if not isinstance(name, str) or not name.strip():
        raise UserError(f"{described_in}: key {key!r} must name a file of the folder, got {name!r}")
    posix, windows = PurePosixPath(name), PureWindowsPath(name)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or ".." in posix.parts or ".." in windows.parts:
        raise UserError(
            f"{described_in}: key {key!r} names {name!r}, outside the folder; an export names its own files only"
        )
    return _inside(folder, folder / posix)


def _inside(folder: Path, path: Path) -> Path:
    """``path``, refused when a link (it, or a folder on the way) leads out of ``folder``."""
    resolved = path.resolve()
    if not resolved.is_relative_to(folder.resolve()):
        raise UserError(f"{path}: a link to {resolved}, outside the folder {folder}; not read")
    return path


def _read_regular_file(path: Path) -> bytes:
    """The content of ``path``, a regular file (a device or a pipe could block or never end)."""
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if not path.is_file():
        raise UserError(f"{path}: not a regular file")
    try:
        return path.read_bytes()
    except OSError as error:
        raise UserError(f"{path}: cannot read it ({error.strerror})") from None


# -- the network -------------------------------------------------------------------------


def _rebuild(description: dict[str, Any], described_in: Path) -> torch.nn.Module:
    """The network ``model.json`` describes, freshly initialised."""
    from mtl_search.architectures import build_model
    from mtl_search.tasks import Task

    for key, kind in (("architecture", dict), ("input_schema", dict), ("tasks", list)):
        if key not in description:
            raise UserError(f"{described_in}: no {key!r} key; the file is incomplete (export the trial again)")
        if not isinstance(description[key], kind) or not description[key]:
            raise UserError(f"{described_in}: key {key!r} must be a non-empty {'mapping' if kind is dict else 'list'}")
    try:
        tasks = [Task.from_dict(task) for task in description["tasks"]]
    except UserError as error:
        raise UserError(f"{described_in}: key 'tasks': {error}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise UserError(
            f"{described_in}: key 'tasks': not a list of task descriptions ({_error_text(error)})"
        ) from None
    try:
        return build_model(description["architecture"], description["input_schema"], tasks)
    except UserError as error:
        raise UserError(f"{described_in}: {error}") from None
    except Exception as error:  # an edited spec or schema fails wherever the builder first reads it
        raise UserError(
            f"{described_in}: the network cannot be rebuilt from 'architecture' and 'input_schema' "
            f"({_error_text(error)})"
        ) from None


def _check_inputs(model: torch.nn.Module, description: dict[str, Any], described_in: Path) -> None:
    """The rebuilt network takes the inputs ``model.json`` lists (two rows of zeros) and answers
    every task: an input schema edited apart from the inputs fails here, not on the first batch."""
    inputs = description["inputs"]
    if not isinstance(inputs, dict) or not inputs:
        raise UserError(f"{described_in}: key 'inputs' must map each input name to its shape and dtype")
    probe = {}
    for name, spec in inputs.items():
        shape = spec.get("shape") if isinstance(spec, dict) else None
        dtype = spec.get("dtype") if isinstance(spec, dict) else None
        if (
            not isinstance(shape, list)
            or not shape
            or shape[0] != "batch"
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape[1:])
        ):
            raise UserError(f"{described_in}: input {name!r}: shape must be ['batch', sizes...], got {shape!r}")
        if dtype not in INPUT_DTYPES:
            raise UserError(f"{described_in}: input {name!r}: unknown dtype {dtype!r}")
        probe[name] = torch.zeros((2, *shape[1:]), dtype=getattr(torch, dtype))
    try:
        with torch.no_grad():
            outputs = model(probe)
    except Exception as error:
        raise UserError(
            f"{described_in}: the network rebuilt from 'architecture' and 'input_schema' does not take the "
            f"inputs 'inputs' lists ({_error_text(error)})"
        ) from None
    tasks = [task["name"] for task in description["tasks"]]
    if not isinstance(outputs, dict) or sorted(outputs) != sorted(tasks):
        raise UserError(f"{described_in}: the rebuilt network does not answer the tasks 'tasks' lists")


# -- the weights -------------------------------------------------------------------------


def _read_weights(
    path: Path, description: dict[str, Any], described_in: Path, model: torch.nn.Module
) -> dict[str, torch.Tensor]:
    """The weights file's tensors, once its size, hash, and tensor names and shapes are checked."""
    from safetensors.torch import load as load_safetensors

    recorded_size, recorded_hash = description.get(WEIGHTS_BYTES), description.get(WEIGHTS_SHA256)
    if recorded_size is not None and (not isinstance(recorded_size, int) or isinstance(recorded_size, bool)):
        raise UserError(f"{described_in}: key {WEIGHTS_BYTES!r} must be a whole number, got {recorded_size!r}")
    if recorded_hash is not None and not _is_sha256(recorded_hash):
        raise UserError(f"{described_in}: key {WEIGHTS_SHA256!r} must be a SHA-256 in hex, got {recorded_hash!r}")
    if path.exists() and path.is_file() and recorded_size is not None and path.stat().st_size != recorded_size:
        # compared before reading: a file swapped for a huge one is never read into memory
        size = path.stat().st_size
        raise UserError(
            f"{path}: {size} bytes, but {MODEL_FILE} records {recorded_size}"
            + (" (the file is empty)" if size == 0 else " (truncated, or replaced by another file)")
        )
    data = _read_regular_file(path)
    if not data:
        raise UserError(f"{path}: the file is empty")
    if recorded_hash is None:
        warnings.warn(
            f"{described_in}: records no SHA-256 of {path.name} (an export by an earlier mtl-search); "
            "its weights are loaded unverified, export the trial again to have them checked",
            UncheckedWeightsWarning,
            stacklevel=3,
        )
    elif hashlib.sha256(data).hexdigest() != recorded_hash.lower():
        raise UserError(f"{path}: its SHA-256 is not the one {MODEL_FILE} records (changed or damaged since export)")
    _check_tensors(path, _safetensors_header(path, data), model)
    try:
        return load_safetensors(data)
    except Exception as error:  # safetensors' own error for what the header check let through
        raise UserError(f"{path}: not a readable safetensors file ({_error_text(error)})") from None


def _is_sha256(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdefABCDEF" for c in value)


def _safetensors_header(path: Path, data: bytes) -> dict[str, Any]:
    """The tensor table of a safetensors file (8 bytes of header length, then a JSON header)."""
    unreadable = f"{path}: not a safetensors weights file"
    if len(data) < 8:
        raise UserError(f"{unreadable} ({len(data)} bytes)")
    (length,) = struct.unpack("<Q", data[:8])
    if length > len(data) - 8:
        raise UserError(f"{unreadable} (its header runs past the end of the file: truncated?)")
    try:
        header = json.loads(data[8 : 8 + length].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise UserError(f"{unreadable} (no readable header)") from None
    if not isinstance(header, dict):
        raise UserError(f"{unreadable} (no readable header)")
    tensors = {name: entry for name, entry in header.items() if name != "__metadata__"}
    end = 0
    for name, entry in tensors.items():
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not isinstance(entry, dict) or not isinstance(entry.get("shape"), list) or not isinstance(offsets, list):
            raise UserError(f"{unreadable} (tensor {name!r} is described wrongly)")
        end = max([end, *offsets]) if all(isinstance(o, int) for o in offsets) else end
    if 8 + length + end > len(data):
        raise UserError(f"{unreadable} (its tensors run past the end of the file: truncated?)")
    return tensors


def _check_tensors(path: Path, tensors: dict[str, Any], model: torch.nn.Module) -> None:
    """The file holds exactly the tensors of the network ``model.json`` describes, shape for shape."""
    needed = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    network = f"the network {MODEL_FILE} describes"
    missing = [name for name in needed if name not in tensors]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise UserError(f"{path}: no tensor {missing[0]!r}{more}, which {network} has (weights of another network?)")
    extra = [name for name in tensors if name not in needed]
    if extra:
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        raise UserError(f"{path}: tensor {extra[0]!r}{more} is not part of {network} (weights of another network?)")
    for name, shape in needed.items():
        given = tuple(tensors[name]["shape"])
        if given != shape:
            raise UserError(
                f"{path}: tensor {name!r} has shape {_shape(given)}, {network} needs {_shape(shape)} "
                "(weights of another network, or an edited model.json?)"
            )


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def _error_text(error: BaseException) -> str:
    text = " ".join(str(error).split())[:200]
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
