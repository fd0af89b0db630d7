"""Trial artifacts: each completed trial's architecture spec and trained weights.

They go to an Optuna artifact store (a plain folder, :class:`optuna.artifacts.FileSystemArtifactStore`)
and are linked to the trial in the study database, so that ``mtl-search export`` can rebuild
the trained network and optuna-dashboard can offer the files for download.

Where the folder is, first match wins:

1. ``--artifacts DIR`` (``artifact_dir`` in Python);
2. ``$MTL_SEARCH_ARTIFACTS``;
3. for a SQLite file, ``artifacts/`` beside the database (``studies/artifacts`` for the
   default ``studies/mtl-search.db``);
4. for a database server (PostgreSQL, MySQL), ``studies/artifacts`` in the current folder.
   Workers on several machines must then point ``--artifacts`` at one shared folder.

In-memory SQLite studies keep no artifacts unless a folder is named.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import optuna
import torch
from sqlalchemy.engine import make_url

from mtl_search.errors import UserError, check_output_path
from mtl_search.records.attributes import ARTIFACT_DIR_ATTR
from mtl_search.records.study import StudyRecord
from mtl_search.search.storage import DEFAULT_STORAGE_DIR, is_memory_url, storage_url

SPEC_FILE = "architecture.json"
WEIGHTS_FILE = "weights.safetensors"
ENV_VAR = "MTL_SEARCH_ARTIFACTS"


def artifact_dir(url: str | None, explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The artifact folder for the study database at ``url`` (None: keep no artifacts)."""
    if explicit:
        return Path(explicit)
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    try:
        parsed = make_url(storage_url(url))
    except Exception:  # a bad URL is reported by open_storage, with the flag's name
        return DEFAULT_STORAGE_DIR / "artifacts"
    if parsed.get_backend_name() == "sqlite":
        if is_memory_url(parsed):
            return None
        return Path(parsed.database).parent / "artifacts"
    return DEFAULT_STORAGE_DIR / "artifacts"


# study user attribute: the absolute artifact folder the search wrote to (the last run's)


def study_artifact_dir(study: optuna.Study) -> Path | None:
    """The artifact folder of ``study``: $MTL_SEARCH_ARTIFACTS, else the folder its search
    recorded (when it exists here: another machine's may not), else the default for its
    storage URL (:func:`artifact_dir`); None for a storage without a URL or folder."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    recorded = StudyRecord.read(study).artifact_dir
    if recorded and Path(recorded).is_dir():
        return Path(recorded)
    storage = getattr(study, "_storage", None)
    url = getattr(getattr(storage, "_backend", storage), "url", None)
    return artifact_dir(url) if url is not None else None


def record_artifact_dir(study: optuna.Study, directory: Path) -> None:
    """Keep on ``study`` the folder its trials' artifacts go to, for export to find them."""
    absolute = str(directory.resolve())
    if StudyRecord.read(study).artifact_dir != absolute:
        study.set_user_attr(ARTIFACT_DIR_ATTR, absolute)


def open_artifact_store(directory: Path, *, create: bool = True) -> optuna.artifacts.FileSystemArtifactStore:
    check_output_path(directory, "--artifacts")
    if not directory.exists():
        if not create:
            raise UserError(f"--artifacts {directory}: no such folder")
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UserError(f"--artifacts {directory}: cannot create it ({error.strerror})") from None
    elif not directory.is_dir():
        raise UserError(f"--artifacts {directory}: not a folder")
    return optuna.artifacts.FileSystemArtifactStore(directory)


def cpu_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    # Cloned so that tied tensors become separate entries, which safetensors requires.
    return {name: tensor.detach().cpu().contiguous().clone() for name, tensor in model.state_dict().items()}


def save_weights(model: torch.nn.Module, path: str | os.PathLike[str]) -> None:
    from safetensors.torch import save_file

    save_file(cpu_state_dict(model), str(path))


def load_weights(model: torch.nn.Module, path: str | os.PathLike[str]) -> torch.nn.Module:
    """Load safetensors weights (tensors only: nothing is unpickled) into ``model``."""
    from safetensors.torch import load_file

    model.load_state_dict(load_file(str(path)), strict=True)
    return model


class ArtifactUploader:
    """A result hook: uploads the spec and the trained weights of every trained trial."""

    def __init__(self, store: optuna.artifacts.FileSystemArtifactStore) -> None:
        self.store = store

    def __call__(self, trial: optuna.trial.Trial, candidate: dict[str, Any], result: Any) -> None:
        with tempfile.TemporaryDirectory(prefix="mtl-search-") as folder:
            spec_path = Path(folder) / SPEC_FILE
            spec_path.write_text(json.dumps(candidate["architecture"], indent=2, sort_keys=True))
            weights_path = Path(folder) / WEIGHTS_FILE
            save_weights(result.model, weights_path)
            for path, mimetype in ((spec_path, "application/json"), (weights_path, "application/octet-stream")):
                optuna.artifacts.upload_artifact(
                    artifact_store=self.store,
                    file_path=str(path),
                    study_or_trial=trial,
                    mimetype=mimetype,
                )


def trial_artifact_id(study: optuna.Study, trial: optuna.trial.FrozenTrial, filename: str) -> str | None:
    """The id of the trial's artifact called ``filename`` (the latest when there are several)."""
    metas = optuna.artifacts.get_all_artifact_meta(trial, storage=study._storage)
    matching = [meta.artifact_id for meta in metas if meta.filename == filename]
    return matching[-1] if matching else None


def download_weights(study: optuna.Study, trial: optuna.trial.FrozenTrial, store: Any, model: torch.nn.Module) -> bool:
    """Load the trial's stored weights into ``model``; False when the trial has none in ``store``."""
    artifact_id = trial_artifact_id(study, trial, WEIGHTS_FILE)
    if artifact_id is None:
        return False
    with tempfile.TemporaryDirectory(prefix="mtl-search-") as folder:
        path = Path(folder) / WEIGHTS_FILE
        try:
            optuna.artifacts.download_artifact(artifact_store=store, file_path=str(path), artifact_id=artifact_id)
        except optuna.artifacts.exceptions.ArtifactNotFound:
            return False
        load_weights(model, path)
    return True
