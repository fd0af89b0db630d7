"""Loading an exported model folder back as a ready ``nn.Module``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from mtl_search.errors import UserError

MODEL_FILE = "model.json"
WEIGHTS_FILE = "weights.safetensors"
FORMAT = "mtl-search-model"


def model_folder(path: str | os.PathLike[str]) -> Path:
    """The export folder ``path`` names: itself, or the folder of a file in it (``DIR/model.json``)."""
    path = Path(path)
    return path.parent if path.is_file() else path


def read_model_description(directory: str | os.PathLike[str]) -> dict[str, Any]:
    directory = model_folder(directory)
    path = directory / MODEL_FILE
    if not directory.exists():
        raise UserError(f"{directory}: no such folder; give the folder `mtl-search export` wrote")
    try:
        description = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{directory}: no {MODEL_FILE}; not a folder written by `mtl-search export`") from None
    except (OSError, json.JSONDecodeError) as error:
        raise UserError(f"{path}: cannot read it ({error})") from None
    if description.get("format") != FORMAT:
        raise UserError(f"{path}: not an mtl-search model description")
    return description


def load(directory: str | os.PathLike[str], device: str | torch.device = "cpu") -> torch.nn.Module:
    """The exported network, weights loaded, in eval mode, on ``device``.

    ``directory``: the export folder (or a file in it). ``device``: "cpu" (the default),
    "cuda", "cuda:1", "mps" or "auto" (the GPU when there is one), whatever device the search
    trained on; a device this machine lacks is a one-line :class:`UserError`.
    ``model(inputs)`` takes ``{input name: tensor}`` (see the folder's README.md) and returns
    ``{task: raw output}``; the inputs are checked against ``model.json`` first
    (:class:`mtl_search.export.inputs.InputCheck`). Only tensors are read from the weights
    file (safetensors).
    """
    from mtl_search.architectures import build_model
    from mtl_search.export.inputs import InputCheck
    from mtl_search.search.artifacts import load_weights
    from mtl_search.tasks import Task
    from mtl_search.training import resolve_device

    device = resolve_device(device, option="device")  # before the weights are read: a typo costs nothing
    folder = model_folder(directory)
    description = read_model_description(folder)
    tasks = [Task.from_dict(t) for t in description["tasks"]]
    model = build_model(description["architecture"], description["input_schema"], tasks)
    load_weights(model, folder / description.get("weights", WEIGHTS_FILE))
    if description.get("inputs"):
        model.register_forward_pre_hook(InputCheck.for_model(description, folder), with_kwargs=True)
    return model.to(device).eval()
