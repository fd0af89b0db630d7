"""Writing one trial as a self-describing model folder.

The folder holds the spec (``architecture.json``), everything needed to rebuild the network
(``model.json``), the weights (``weights.safetensors``), the network as a ``torch.export``
program that PyTorch alone loads (``model.pt2``), the same graph in ONNX when the ``onnx``
extra is installed, the input preprocessing, the metrics with the split each came from, and a
README.md model card.

TorchScript is not written: ``torch.jit.trace`` is deprecated, and ``model.pt2`` serves the
same purpose (no mtl-search needed to run it) with a graph that is checked rather than traced.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import os
import re
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import optuna
import torch
from torch import nn

from mtl_search.errors import UserError, check_output_path, is_whole
from mtl_search.export.loading import FORMAT, MODEL_FILE, WEIGHTS_BYTES, WEIGHTS_FILE, WEIGHTS_SHA256, file_digest
from mtl_search.export.picks import find_trial, refusal
from mtl_search.records.study import StudyRecord
from mtl_search.records.trial import TrialRecord
from mtl_search.version import __version__

SPEC_FILE = "architecture.json"
PROGRAM_FILE = "model.pt2"
ONNX_FILE = "model.onnx"
# what older exports wrote instead of model.pt2: listed so that a forced export over such a folder removes it
TORCHSCRIPT_FILE = "model.torchscript.pt"
PREPROCESSING_FILE = "preprocessing.json"
METRICS_FILE = "metrics.json"
CARD_FILE = "README.md"
WRITTEN = (
    SPEC_FILE,
    MODEL_FILE,
    WEIGHTS_FILE,
    PROGRAM_FILE,
    ONNX_FILE,
    TORCHSCRIPT_FILE,
    PREPROCESSING_FILE,
    METRICS_FILE,
    CARD_FILE,
)


@dataclasses.dataclass
class ExportResult:
    directory: Path
    trial: int
    weights_source: str  # "artifact", "retrained (train)" or "retrained (train+validation)"
    notes: list[str]


def export_trial(
    study: optuna.Study,
    trial: optuna.trial.FrozenTrial | int,
    directory: str | os.PathLike[str],
    *,
    artifact_dir: str | os.PathLike[str] | None = None,
    retrain: bool = False,
    force: bool = False,
    device: str | None = None,
    data: Any = None,
) -> ExportResult:
    """Write ``trial`` of ``study`` (a trial, or its number) to ``directory`` (see the module
    docstring for the files).

    The weights come from ``artifact_dir`` (which must exist), by default the study's own
    artifact folder (:func:`mtl_search.search.artifacts.study_artifact_dir`); a trial without
    stored weights, or ``retrain=True``, is trained again, on the study's data reloaded from
    its description, or on ``data`` (the study's own :class:`MultiTaskData`, needed for a
    table made in Python, which has no file to reload).
    """
    from mtl_search.architectures import build_model

    # the model card draws with plotly: imported here so that mtl_search.load stays light
    from mtl_search.export.model_card import model_card, output_meaning, scoring, with_labels
    from mtl_search.search.artifacts import download_weights, open_artifact_store, save_weights, study_artifact_dir
    from mtl_search.tasks import Task
    from mtl_search.training import resolve_device, train_candidate

    meta = StudyRecord.read(study)
    if not meta.made_by_mtl_search:
        raise UserError(
            f"study {study.study_name!r} was not made by mtl-search: nothing records how to rebuild its models"
        )
    if is_whole(trial):  # a trial number: the trial it names
        trial = find_trial(study, trial)
    if not isinstance(trial, optuna.trial.FrozenTrial):
        raise UserError(f"export_trial: trial must be a trial of the study (or its number), got {type(trial).__name__}")
    ours = {t.number: (t._trial_id, t.datetime_start) for t in study.get_trials(deepcopy=False)}
    if ours.get(trial.number) != (trial._trial_id, trial.datetime_start):  # ids alone repeat across databases
        raise UserError(
            f"trial {trial.number} is not a trial of study {study.study_name!r} (take it from study.trials)"
        )
    if trial.state != optuna.trial.TrialState.COMPLETE:
        raise UserError(refusal(trial, study))
    if artifact_dir is not None:
        artifact_dir = Path(artifact_dir)
        if (
            not artifact_dir.is_dir()
        ):  # named on purpose: retraining instead would hide a typo for as long as the search took
            open_artifact_store(artifact_dir, create=False)  # raises the one-line error
    else:
        artifact_dir = study_artifact_dir(study)
    if data is not None:
        data = _given_data(meta, data)
    final = Path(directory)
    _check_directory(final, force)  # before any training; the folder is only touched once every file is written
    tasks = [Task.from_dict(t) for t in meta.tasks]
    record = TrialRecord.read(trial)
    candidate = record.candidate.to_dict()
    notes: list[str] = []
    metrics: list[dict[str, Any]] = []
    model = None
    trained = candidate  # the settings the exported weights were trained with
    if not retrain and artifact_dir is not None and artifact_dir.is_dir():
        model = build_model(record.candidate.architecture, meta.input_schema, tasks)
        try:
            found = download_weights(study, trial, open_artifact_store(artifact_dir, create=False), model)
        except RuntimeError as error:  # the stored tensors do not fit the rebuilt network
            raise UserError(
                f"trial {trial.number}: its stored weights do not fit the architecture rebuilt from its spec "
                f"(was it trained with a custom stem?): {str(error).splitlines()[0]}"
            ) from None
        if not found:
            model = None
    if model is not None:
        weights_source = "artifact"
        for split in ("validation", "test"):
            metrics.append({"split": split, "model": "these weights", "values": getattr(record, split)})
    else:
        if not retrain:
            where = f"in {artifact_dir}" if artifact_dir is not None else "(the study keeps no artifacts)"
            notes.append(
                f"No stored weights for trial {trial.number} {where}: the architecture was retrained "
                "with the trial's settings on the train split."
            )
        data = data if data is not None else reload_data(meta)
        train_split = concat_splits(data.train, data.validation) if retrain else None
        if retrain and record.kept_epoch:
            # validation rows are training rows now, so they cannot choose an epoch: train
            # as long as the search's kept epoch and keep the last
            kept = record.kept_epoch
            trained = candidate | {
                "training": dict(candidate.get("training", {})) | {"epochs": kept, "checkpoint": "last"}
            }
            notes.append(f"Retrained for {kept} epoch(s): the epoch whose weights trial {trial.number} kept.")
        result = train_candidate(data, trained, device=resolve_device(device), train_split=train_split)
        model = result.model
        weights_source = "retrained (train+validation)" if retrain else "retrained (train)"
        if retrain:
            metrics.append(
                {
                    "split": "validation",
                    "model": f"trial {trial.number} as searched (these weights trained on this split too)",
                    "values": record.validation,
                }
            )
        else:
            metrics.append({"split": "validation", "model": "these weights", "values": result.validation})
        metrics.append({"split": "test", "model": "these weights", "values": result.test})
    model = model.cpu().eval()
    model.keep_representations = False  # what some weightings read in training; a served graph keeps none
    if data is None and meta.input_schema.get("kind") not in ("vector", "image", "tabular"):
        data = reload_data(meta)
    example = example_inputs(meta.input_schema, data)

    # Written into a staging folder and moved into place at the end: an export stopped half
    # way (Ctrl-C, SIGTERM, a failed write) leaves the --out folder as it was.
    with tempfile.TemporaryDirectory(prefix="mtl-search-export-") as staging:
        target = Path(staging)
        spec = record.candidate.architecture
        task_dicts = [t.to_dict() for t in tasks]
        preprocessing = meta.preprocessing
        labelled = with_labels(task_dicts, preprocessing.get("targets"))  # class labels, for what the outputs mean
        (target / SPEC_FILE).write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n")
        save_weights(model, target / WEIGHTS_FILE)
        weights_bytes, weights_sha256 = file_digest(target / WEIGHTS_FILE)  # mtl_search.load verifies both
        if preprocessing:
            (target / PREPROCESSING_FILE).write_text(json.dumps(preprocessing, indent=2) + "\n")
        written_program, written_onnx = write_graphs(model, example, target, notes)
        description = {
            "format": FORMAT,
            "mtl_search_version": __version__,
            "study": study.study_name,
            "trial": trial.number,
            "architecture": spec,
            "input_schema": meta.input_schema,
            "inputs": {
                name: {"shape": ["batch", *tensor.shape[1:]], "dtype": str(tensor.dtype).removeprefix("torch.")}
                for name, tensor in example.items()
            },
            "tasks": task_dicts,
            "outputs": [t.name for t in tasks],
            "output_meaning": {t["name"]: output_meaning(t, labelled) for t in labelled},
            "weights": WEIGHTS_FILE,
            WEIGHTS_BYTES: weights_bytes,
            WEIGHTS_SHA256: weights_sha256,
            "weights_source": weights_source,
            "exported_program": PROGRAM_FILE if written_program else None,
            "torch_version": torch.__version__,  # the release that wrote model.pt2, and the one to load it with
            "onnx": ONNX_FILE if written_onnx else None,
            "preprocessing": PREPROCESSING_FILE if preprocessing else None,
            "training": trained.get("training", {}),
            "loss_weighting": candidate.get("loss_weighting", {}),
            "data": meta.data if meta.data is not None else {},
        }
        (target / MODEL_FILE).write_text(json.dumps(description, indent=2) + "\n")
        objectives = [dataclasses.asdict(objective) for objective in meta.objectives]
        refined = _refined(study, trial, weights_source)
        (target / METRICS_FILE).write_text(
            json.dumps(
                {
                    "objectives": objectives,
                    "metrics": metrics,
                    "scoring": {t["name"]: scoring(t, labelled) for t in labelled},
                    "refined": refined,
                },
                indent=2,
            )
            + "\n"
        )
        card_record = {
            "candidate": candidate,
            "summary": record.summary if record.recorded("summary") else None,
            "sharing": record.sharing if record.recorded("sharing") else None,
            "n_params": record.n_params,
        }
        (target / CARD_FILE).write_text(
            model_card(description, metrics, card_record, notes, preprocessing, refined, example)
        )
        _install(target, final)
    return ExportResult(final, trial.number, weights_source, notes)


def _refined(study: optuna.Study, trial: optuna.trial.FrozenTrial, weights_source: str) -> dict[str, Any] | None:
    """The trial's `mtl-search refine` record, labelled with how it relates to the exported weights (None if not refined)."""
    from mtl_search.analysis.refine import refined_record

    record = refined_record(study, trial.number)
    if not record:
        return None
    seeds = record["seeds"]
    exported = {
        "artifact": f"The exported weights are the seed-{seeds[0]} run",
        "retrained (train)": f"The exported weights are the seed-{seeds[0]} run, trained again",
    }.get(weights_source, "The exported weights are not among these runs: they were trained on train + validation")
    return {
        "model": f"Trial {trial.number}'s architecture trained {len(seeds)} times on the train split with its settings and "
        f"training seeds {', '.join(map(str, seeds))} (seed {seeds[0]} is the search's run, the others "
        "`mtl-search refine`'s): mean ± sample standard deviation over the n runs",
        "exported_weights": exported,
        "seeds": seeds,
        "validation": record.get("validation") or {},
        "test": record.get("test") or {},
    }


def _check_directory(directory: Path, force: bool) -> None:
    """Refuse an --out that export must not write to (a file, below a file, a non-empty
    folder without ``force``); changes nothing."""
    check_output_path(directory, "--out")
    if directory.exists() and not directory.is_dir():
        raise UserError(f"--out {directory}: is a file; give a folder")
    if directory.is_dir() and any(directory.iterdir()) and not force:
        raise UserError(f"--out {directory}: folder is not empty (use --force to overwrite the exported files)")


def _install(staging: Path, directory: Path) -> None:
    """Move the files written in ``staging`` into ``directory``, first removing what an
    earlier export wrote there (a stale ONNX file must not survive); other files stay."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"--out {directory}: cannot create it ({error.strerror})") from None
    for name in WRITTEN:
        path = directory / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    for path in staging.iterdir():
        shutil.move(str(path), str(directory / path.name))


def _given_data(meta: StudyRecord, given: Any) -> Any:
    """``given``, checked to be the study's data, with the study's tasks."""
    from mtl_search.search.study import data_differences

    differences = data_differences(meta, given)
    if differences:
        raise UserError(f"data= is not the data the study was made with ({differences})")
    return _with_stored_tasks(given, meta)


def _with_stored_tasks(data: Any, meta: StudyRecord) -> Any:
    """``data`` with the study's own tasks: a trial is retrained as it was trained, with the
    stored target statistics (a raw-unit task of a study of record format 0: mean 0, std 1),
    so that the model's output scaling is the one its weights were trained for."""
    from mtl_search.tasks import Task

    stored = [Task.from_dict(t) for t in meta.tasks]
    if [t.name for t in stored] == data.task_names:
        data = dataclasses.replace(data, tasks=stored)
    return data


def reload_data(meta: StudyRecord) -> Any:
    """The study's data again, from its stored description (source, options, file), with
    the study's stored tasks."""
    from mtl_search.data import load_data
    from mtl_search.search.study import description_differences

    described = meta.data or {}
    source = described.get("source")
    if not source:
        raise UserError("the study records no data source, so its data cannot be reloaded for retraining")
    options = dict(described.get("options") or {})
    declarations: list[str] = []
    if described.get("description_file"):
        options["description"] = described["description_file"]
    elif source == "table":
        declarations = [_declaration(t) for t in described.get("tasks", [])]
    if source == "table" and not described.get("file"):
        raise UserError(
            "the study's table was given from Python (make_table_data), so there is no file to reload it "
            "from; pass the same data to export_trial(..., data=...)"
        )
    data = load_data(source, options, described.get("file"), declarations)
    differences = description_differences(described, data.description)
    if differences:
        raise UserError(f"the data of source {source!r} changed since the search ({differences}); cannot retrain on it")
    return _with_stored_tasks(data, meta)


def _declaration(task: dict[str, Any]) -> str:
    text = f"{task.get('column', task['name'])}:{task['kind']}"
    if task["kind"] == "multiclass":
        text += f":classes={task['n_classes']}"
    if task.get("metrics"):
        text += ":metrics=" + "+".join(task["metrics"])
    if task.get("given"):
        text += f":given={task['given']}"
    return text


def concat_splits(first: Any, second: Any) -> Any:
    return first.concat(second)


def example_inputs(schema: dict[str, Any], data: Any, rows: int = 4) -> dict[str, torch.Tensor]:
    """A small batch of inputs of the right names, shapes and types (for torch.export and the model card)."""
    generator = torch.Generator().manual_seed(0)
    kind = schema.get("kind")
    if kind == "vector":
        return {schema.get("key", "x"): torch.randn(rows, int(schema["size"]), generator=generator)}
    if kind == "image":
        return {schema.get("key", "image"): torch.randn(rows, *[int(s) for s in schema["shape"]], generator=generator)}
    if kind == "tabular":
        inputs = {}
        if int(schema["numeric"]):
            inputs["numeric"] = torch.randn(rows, int(schema["numeric"]), generator=generator)
        if schema["categorical"]:
            inputs["categorical"] = torch.stack(
                [torch.randint(0, int(c), (rows,), generator=generator) for c in schema["categorical"]], dim=1
            )
        return inputs
    # other input kinds (sequences, ...): the first rows of the real data
    return {k: v[:rows] for k, v in data.test.inputs.items()}


def _unseen_batch(example: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The example with its first row once more: a batch size the export did not see."""
    return {k: torch.cat([v, v[:1]]) for k, v in example.items()}


# "RuntimeError: shape '[4, -1]' is invalid for input of size 5": the line of a wrapped error that names its cause
_CAUSE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception): ")


def _error_line(error: BaseException) -> str:
    """``Type: message`` of ``error`` in one line, for a note.

    An error whose text carries the traceback of the error it wraps names its cause on its last
    ``Type: message`` line; otherwise the message's first line says what failed.
    """
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    if any(line.startswith("Traceback") for line in lines):
        causes = [line for line in lines if _CAUSE.match(line)]
        if causes:
            return causes[-1]
    return f"{type(error).__name__}: {lines[0]}"


def write_graphs(
    model: nn.Module, example: dict[str, torch.Tensor], folder: Path, notes: list[str]
) -> tuple[bool, bool]:
    """Write ``model.pt2`` and ``model.onnx`` for ``model`` into ``folder``; whether each was written.

    Each file is read back and run on a batch size the export did not see, and kept only if it
    gives the model's outputs; a file that is not written gets a note saying why.
    """
    program = _write_program(model, example, folder / PROGRAM_FILE, notes)
    if program is None:
        notes.append(f"ONNX not written: it is converted from {PROGRAM_FILE}, which could not be written.")
        return False, False
    return True, _write_onnx(program, model, example, folder / ONNX_FILE, notes)


def _write_program(
    model: nn.Module, example: dict[str, torch.Tensor], path: Path, notes: list[str]
) -> torch.export.ExportedProgram | None:
    """``torch.export`` the model with a dynamic batch dimension, save it and check the saved file."""
    batch = torch.export.Dim("batch")
    try:
        # torch.export logs which symbols a reloaded graph no longer needs: nothing a user acts on
        with warnings.catch_warnings(), _quiet("torch._export", "torch.export"):
            warnings.simplefilter("ignore")
            program = torch.export.export(
                model, (example,), dynamic_shapes=({name: {0: batch} for name in example},), strict=False
            )
            torch.export.save(program, path)
            loaded = torch.export.load(path).module()
        _check_outputs(model, example, loaded, f"the saved {PROGRAM_FILE}")
        return program
    except Exception as error:  # a structure torch.export cannot capture: say so, keep the rest
        path.unlink(missing_ok=True)
        frozen = _FROZEN_BATCH.search(str(error))
        cause = (
            f"the network reads the batch size as a fixed number ({frozen.group(1)} rows), so the graph would take "
            "no other batch size"
            if frozen
            else _error_line(error)
        )
        notes.append(f"{PROGRAM_FILE} not written: {cause}")
        return None


# torch.export's words for a dynamic dimension the forward turned into a constant
_FROZEN_BATCH = re.compile(r"specialized it to be a constant \((\d+)\)")
ONNX_PACKAGES = ("onnx", "onnxscript", "onnxruntime")


def _write_onnx(
    program: torch.export.ExportedProgram,
    model: nn.Module,
    example: dict[str, torch.Tensor],
    path: Path,
    notes: list[str],
) -> bool:
    """Convert the exported program with PyTorch's ONNX exporter (``dynamo=True``) and check the
    graph with onnxruntime."""
    missing = [name for name in ONNX_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        notes.append(f"ONNX not written: {', '.join(missing)} not installed (pip install 'mtl-search[onnx]').")
        return False
    try:
        with torch.no_grad():
            output_names = list(program.module()(example))  # in the program's own output order
        with warnings.catch_warnings(), _quiet("torch.onnx", "onnxscript"):
            warnings.simplefilter("ignore")
            graph = torch.onnx.export(
                program, dynamo=True, input_names=list(example), output_names=output_names, verbose=False
            )
            graph.save(str(path))
        _check_outputs(model, example, _onnxruntime_runner(path, output_names), "the ONNX graph (onnxruntime)")
        return True
    except Exception as error:
        path.unlink(missing_ok=True)
        notes.append(f"ONNX not written: {_error_line(error)}")
        return False


def _onnxruntime_runner(path: Path, output_names: list[str]) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1  # a check on a few rows: no thread pool needed
    options.log_severity_level = 3  # errors only: its warnings about unused initializers are noise here
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        got = session.run(output_names, {name: tensor.numpy() for name, tensor in inputs.items()})
        return {name: torch.from_numpy(value) for name, value in zip(output_names, got)}

    return run


def _check_outputs(model: nn.Module, example: dict[str, torch.Tensor], run: Any, what: str) -> None:
    """Run ``run`` on a batch size the export did not see and compare it with the model.

    A size the forward reads as a Python number may be frozen into a graph whose inputs still
    declare a dynamic batch; only running it shows that.
    """
    check = _unseen_batch(example)
    rows = len(next(iter(check.values())))
    batch = f"a batch of {rows} rows (exported with {rows - 1})"
    try:
        with torch.no_grad():
            got = run(check)
    except Exception as error:
        raise RuntimeError(f"{what} fails on {batch}: {_error_line(error)}") from None
    with torch.no_grad():
        expected = model(check)
    if set(got) != set(expected) or not all(
        got[name].shape == expected[name].shape and torch.allclose(got[name], expected[name], rtol=1e-4, atol=1e-5)
        for name in expected
    ):
        raise RuntimeError(f"{what} disagrees with the model on {batch}")


class _quiet:
    """Loggers raised to ERROR for a block: the ONNX exporter logs what it skips (torchvision's
    operators when torchvision is absent) and its progress."""

    def __init__(self, *names: str) -> None:
        self.loggers = [logging.getLogger(name) for name in names]
        self.levels: list[int] = []

    def __enter__(self) -> None:
        self.levels = [logger.level for logger in self.loggers]
        for logger in self.loggers:
            logger.setLevel(logging.ERROR)

    def __exit__(self, *exc: object) -> None:
        for logger, level in zip(self.loggers, self.levels):
            logger.setLevel(level)
