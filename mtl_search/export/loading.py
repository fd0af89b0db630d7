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


def read_model_description(directory: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(directory) / MODEL_FILE
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
    """The exported network, weights loaded, in eval mode.

    ``model(inputs)`` takes ``{input name: tensor}`` (see the folder's README.md) and returns
    ``{task: raw output}``. Only tensors are read from the weights file (safetensors).
    """
    from mtl_search.architectures import build_model
    from mtl_search.search.artifacts import load_weights
    from mtl_search.tasks import Task

    description = read_model_description(directory)
    tasks = [Task.from_dict(t) for t in description["tasks"]]
    model = build_model(description["architecture"], description["input_schema"], tasks)
    load_weights(model, Path(directory) / description.get("weights", WEIGHTS_FILE))
    return model.to(device).eval()
