"""`mtl_search.load` on a damaged or tampered folder: one UserError line naming the file and the
fault, nothing outside the folder opened, nothing unpickled."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import sys
import warnings
from pathlib import Path

import pytest
import torch

import mtl_search
from mtl_search.architectures import build_model
from mtl_search.errors import UserError
from mtl_search.export.loading import UncheckedWeightsWarning, file_digest
from mtl_search.search.artifacts import save_weights


@pytest.fixture(scope="module")
def pristine(trained_study, tmp_path_factory):
    """The knee trial of the shared study, exported once (copied before each tampering)."""
    from mtl_search.cli import main

    url, name, _ = trained_study
    out = tmp_path_factory.mktemp("load-checks") / "model"
    assert main(["export", name, "--pick", "knee", "--storage", url, "--out", str(out)]) == 0
    return out


@pytest.fixture
def folder(pristine, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(pristine, copy)
    return copy


def description(folder: Path) -> dict:
    return json.loads((folder / "model.json").read_text())


def rewrite(folder: Path, **changes) -> None:
    written = description(folder) | changes
    (folder / "model.json").write_text(json.dumps({k: v for k, v in written.items() if v is not ...}))


def record_weights_digest(folder: Path) -> None:
    """model.json made to agree with the weights file now there: only the later checks can refuse it."""
    size, digest = file_digest(folder / "weights.safetensors")
    rewrite(folder, weights_bytes=size, weights_sha256=digest)


def refusal(folder: Path) -> str:
    with pytest.raises(UserError) as caught:
        mtl_search.load(folder)
    message = str(caught.value)
    assert "\n" not in message and "Traceback" not in message
    return message


class OpenedFiles:
    """Every file this process opens while active, seen through Python's audit hooks (which
    cannot be removed once added, hence one hook for the whole session)."""

    active: list[str] | None = None

    @classmethod
    def hook(cls, event: str, args: tuple) -> None:
        if cls.active is not None and event == "open" and isinstance(args[0], (str, bytes, Path)):
            cls.active.append(str(Path(args[0] if not isinstance(args[0], bytes) else args[0].decode()).resolve()))


sys.addaudithook(OpenedFiles.hook)


def test_an_intact_export_records_its_weights_hash_and_loads_without_a_warning(folder):
    written = description(folder)
    assert (written["weights_bytes"], written["weights_sha256"]) == file_digest(folder / "weights.safetensors")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = mtl_search.load(folder)
    assert set(model({"x": torch.zeros(3, 8)})) == {"task1", "task2"}


def test_truncated_weights(folder):
    weights = folder / "weights.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    message = refusal(folder)
    assert str(weights) in message and f"{len(data) // 2} bytes" in message and f"records {len(data)}" in message
    rewrite(folder, weights_bytes=..., weights_sha256=...)  # an export without a hash: the format check still refuses
    with pytest.warns(UncheckedWeightsWarning):
        message = refusal(folder)
    assert str(weights) in message and "truncated" in message


def test_empty_weights(folder):
    (folder / "weights.safetensors").write_bytes(b"")
    assert "the file is empty" in refusal(folder)


def test_missing_weights(folder):
    (folder / "weights.safetensors").unlink()
    assert refusal(folder) == f"{folder / 'weights.safetensors'}: no such file"


def test_weights_of_another_network(folder, trained_study):
    _, _, data = trained_study
    other = build_model(
        {"family": "tree", "widths": [32], "groups": [[["task1", "task2"]]]}, data.input_schema, data.tasks
    )
    save_weights(other, folder / "weights.safetensors")
    assert "replaced by another file" in refusal(folder)  # the size tells first
    record_weights_digest(folder)  # model.json edited to match: the tensors themselves do not fit
    message = refusal(folder)
    assert str(folder / "weights.safetensors") in message and "weights of another network" in message


def test_a_changed_weight_value_is_caught_by_the_hash(folder):
    weights = folder / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01  # the last byte of the last tensor: same size, same shapes
    weights.write_bytes(bytes(data))
    assert (
        refusal(folder) == f"{weights}: its SHA-256 is not the one model.json records (changed or damaged since export)"
    )


def test_missing_tasks_key(folder):
    rewrite(folder, tasks=...)
    message = refusal(folder)
    assert str(folder / "model.json") in message and "no 'tasks' key" in message


def test_binary_model_json(folder):
    (folder / "model.json").write_bytes(bytes(range(256)) * 4)
    assert refusal(folder) == f"{folder / 'model.json'}: not text (binary content); not a model description"


def test_model_json_that_is_not_an_object(folder):
    (folder / "model.json").write_text("[1, 2]")
    assert "not an mtl-search model description" in refusal(folder)


def test_edited_input_schema(folder):
    schema = description(folder)["input_schema"]
    rewrite(folder, input_schema=schema | {"size": schema["size"] + 3})
    message = refusal(folder)
    assert message.startswith(f"{folder / 'model.json'}: ") and "does not take the inputs 'inputs' lists" in message
    # the inputs edited to match: the weights no longer fit the network
    rewrite(folder, inputs={"x": {"shape": ["batch", schema["size"] + 3], "dtype": "float32"}})
    message = refusal(folder)
    assert message.startswith(f"{folder / 'weights.safetensors'}: tensor ") and "has shape" in message


def test_edited_input_list(folder):
    rewrite(folder, inputs={"x": {"shape": ["batch", 11], "dtype": "float32"}})
    message = refusal(folder)
    assert str(folder / "model.json") in message and "does not take the inputs" in message


def test_a_weights_path_outside_the_folder_is_never_opened(folder, tmp_path):
    outside = tmp_path / "secret.safetensors"
    shutil.copy(folder / "weights.safetensors", outside)
    for named in ("../../../../etc/passwd", "/etc/passwd", "../secret.safetensors", str(outside)):
        rewrite(folder, weights=named)
        OpenedFiles.active = []
        try:
            message = refusal(folder)
        finally:
            opened, OpenedFiles.active = OpenedFiles.active, None
        assert message.startswith(f"{folder / 'model.json'}: key 'weights' names {named!r}, outside the folder")
        assert "/etc/passwd" not in opened and str(outside) not in opened
        assert str(folder / "model.json") in opened  # the hook does see this process's opens


def test_a_link_leading_out_of_the_folder_is_not_followed(folder, tmp_path):
    outside = tmp_path / "elsewhere.safetensors"
    shutil.move(folder / "weights.safetensors", outside)
    (folder / "weights.safetensors").symlink_to(outside)
    OpenedFiles.active = []
    try:
        message = refusal(folder)
    finally:
        opened, OpenedFiles.active = OpenedFiles.active, None
    assert message.startswith(f"{folder / 'weights.safetensors'}: a link to {outside}, outside the folder")
    assert str(outside) not in opened


def test_a_model_json_linked_from_outside_is_not_read(folder, tmp_path):
    outside = tmp_path / "elsewhere.json"
    shutil.move(folder / "model.json", outside)
    (folder / "model.json").symlink_to(outside)
    assert refusal(folder).startswith(f"{folder / 'model.json'}: a link to {outside}, outside the folder")


def test_weights_that_are_not_a_regular_file_are_not_read(folder):
    # a pipe would block the read for ever
    (folder / "weights.safetensors").unlink()
    os.mkfifo(folder / "weights.safetensors")
    assert refusal(folder) == f"{folder / 'weights.safetensors'}: not a regular file"


def test_a_link_inside_the_folder_is_fine(folder):
    (folder / "weights.safetensors").rename(folder / "kept.safetensors")
    (folder / "weights.safetensors").symlink_to("kept.safetensors")
    assert not mtl_search.load(folder).training


class _Planted:
    """Unpickling this creates the file it names: proof that a pickle was executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("how", ["pickle", "torch.save"])
def test_a_swapped_in_pickle_is_never_executed(folder, tmp_path, how):
    marker = tmp_path / "executed"
    weights = folder / "weights.safetensors"
    if how == "pickle":
        weights.write_bytes(pickle.dumps(_Planted(marker)))
    else:
        torch.save({"x": _Planted(marker)}, weights)
    for digest_recorded in (False, True):  # model.json edited to match: the file is still read as tensors only
        if digest_recorded:
            record_weights_digest(folder)
        message = refusal(folder)
        assert str(weights) in message
        assert not marker.exists()


def test_an_export_without_a_hash_loads_with_one_warning(folder):
    rewrite(folder, weights_bytes=..., weights_sha256=...)
    with pytest.warns(UncheckedWeightsWarning) as caught:
        model = mtl_search.load(folder)
    assert len(caught) == 1 and "records no SHA-256" in str(caught[0].message)
    assert "\n" not in str(caught[0].message)
    assert set(model({"x": torch.zeros(2, 8)})) == {"task1", "task2"}


def test_a_bad_task_or_architecture_names_model_json(folder):
    tasks = description(folder)["tasks"]
    rewrite(folder, tasks=[{"name": "task1"}])
    assert refusal(folder).startswith(f"{folder / 'model.json'}: key 'tasks'")
    rewrite(folder, tasks=tasks, architecture={"family": "no-such-family"})
    assert refusal(folder).startswith(f"{folder / 'model.json'}: ")
