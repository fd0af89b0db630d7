"""Exporting a trained trial and loading it back, with and without mtl-search installed."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import optuna
import pytest
import torch

import mtl_search
from mtl_search.architectures import build_model
from mtl_search.search.artifacts import artifact_dir, download_weights, open_artifact_store
from mtl_search.search.study import pareto_trials
from tests.helpers import assert_one_line_error

# Runs in a fresh `python -I` (no cwd, no PYTHONPATH, no user site) with mtl_search made
# unimportable even though it is pip-installed in editable mode: plain PyTorch only.
WITHOUT_MTL_SEARCH = textwrap.dedent("""
    import sys

    class Block:
        def find_spec(self, name, path=None, target=None):
            if name == "mtl_search" or name.startswith("mtl_search."):
                raise ImportError("blocked: " + name)

    sys.meta_path.insert(0, Block())
    try:
        import mtl_search
    except ImportError:
        pass
    else:
        raise SystemExit("mtl_search is importable")
    import torch
    folder, inputs_file, outputs_file = sys.argv[1:]
    inputs = torch.load(inputs_file, weights_only=True)
    model = torch.export.load(folder + "/model.pt2").module()
    with torch.no_grad():
        torch.save(model(inputs), outputs_file)
    print("ok")
""")


@pytest.fixture(scope="module")
def exported(trained_study, tmp_path_factory):
    """The knee trial of the shared study exported through the CLI."""
    from mtl_search.cli import main

    url, name, _ = trained_study
    out = tmp_path_factory.mktemp("export") / "model"
    assert main(["export", name, "--pick", "knee", "--storage", url, "--out", str(out)]) == 0
    return out


def test_export_writes_every_file_and_a_model_card(exported, trained_study):
    url, name, data = trained_study
    study = optuna.load_study(study_name=name, storage=url)
    trial = study.trials[json.loads((exported / "model.json").read_text())["trial"]]
    assert {p.name for p in exported.iterdir()} == {
        "architecture.json",
        "model.json",
        "weights.safetensors",
        "model.pt2",
        "model.onnx",
        "metrics.json",
        "README.md",
    }
    assert json.loads((exported / "architecture.json").read_text()) == trial.user_attrs["candidate"]["architecture"]
    written = json.loads((exported / "metrics.json").read_text())
    assert [(m["split"], m["values"]) for m in written["metrics"]] == [
        ("validation", trial.user_attrs["validation"]),
        ("test", trial.user_attrs["test"]),
    ]
    assert written["refined"] is None  # never refined: nothing to add, and the card says nothing of it
    card = (exported / "README.md").read_text()
    assert "mtl-search refine" not in card
    for fragment in (
        "task1",
        "task2",
        "mse",
        "mtl_search.load",
        "torch.export.load('model.pt2').module()",
        "with torch.no_grad():",
        "| validation |",
        "| test |",
        trial.user_attrs["summary"],
    ):
        assert fragment in card
    assert "torch.jit" not in card and "torchscript" not in card.lower()
    onnxruntime = pytest.importorskip("onnxruntime")
    session = onnxruntime.InferenceSession(str(exported / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["x"]
    assert [o.name for o in session.get_outputs()] == data.task_names


def test_loaded_model_predicts_exactly_as_the_trained_trial(exported, trained_study):
    url, name, data = trained_study
    study = optuna.load_study(study_name=name, storage=url)
    trial = study.trials[json.loads((exported / "model.json").read_text())["trial"]]
    original = build_model(trial.user_attrs["candidate"]["architecture"], data.input_schema, data.tasks).eval()
    assert download_weights(study, trial, open_artifact_store(artifact_dir(url)), original)
    loaded = mtl_search.load(exported)
    assert isinstance(loaded, torch.nn.Module) and not loaded.training
    with torch.no_grad():
        expected, got = original(data.test.inputs), loaded(data.test.inputs)
    for task in data.task_names:
        assert torch.equal(expected[task], got[task])


def test_python_export_finds_the_study_artifacts_by_itself(exported, trained_study, tmp_path):
    from mtl_search.export import export_trial

    url, name, _ = trained_study
    study = optuna.load_study(study_name=name, storage=url)
    trial = study.trials[json.loads((exported / "model.json").read_text())["trial"]]
    result = export_trial(study, trial, tmp_path / "api")  # no artifact_dir: the study's own, as the CLI finds it
    assert result.weights_source == "artifact" and not result.notes
    assert (tmp_path / "api" / "weights.safetensors").read_bytes() == (exported / "weights.safetensors").read_bytes()
    # or by its number, as the CLI's --trial takes it
    by_number = export_trial(study, trial.number, tmp_path / "by-number")
    assert by_number.weights_source == "artifact"
    assert (tmp_path / "by-number" / "weights.safetensors").read_bytes() == (
        exported / "weights.safetensors"
    ).read_bytes()


def test_a_trial_of_another_study_is_refused(trained_study, tmp_path):
    from mtl_search.errors import UserError
    from mtl_search.export import export_trial

    url, name, _ = trained_study
    study = optuna.load_study(study_name=name, storage=url)
    other = optuna.create_study(directions=study.directions)
    other.add_trial(optuna.trial.create_trial(values=[1.0, 1.0]))
    with pytest.raises(UserError, match=f"trial 0 is not a trial of study '{name}'"):
        export_trial(study, other.trials[0], tmp_path / "model")
    assert not (tmp_path / "model").exists()


def test_an_export_stopped_half_way_leaves_the_folder_as_it_was(exported, trained_study, tmp_path, monkeypatch):
    import mtl_search.export.model_card as card_module
    from mtl_search.export import export_trial

    url, name, _ = trained_study
    study = optuna.load_study(study_name=name, storage=url)
    before = {p.name: p.read_bytes() for p in exported.iterdir()}

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C or SIGTERM while the last file is written

    monkeypatch.setattr(card_module, "model_card", stopped)
    for folder, force in ((exported, True), (tmp_path / "new", False)):
        with pytest.raises(KeyboardInterrupt):
            export_trial(study, study.trials[0], folder, force=force)
    assert {p.name: p.read_bytes() for p in exported.iterdir()} == before
    assert not (tmp_path / "new").exists()


def test_the_exported_program_runs_where_mtl_search_cannot_be_imported(exported, trained_study, tmp_path):
    _, _, data = trained_study
    inputs = {"x": data.test.inputs["x"][:17]}  # a batch size the export never saw
    torch.save(inputs, tmp_path / "inputs.pt")
    process = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            WITHOUT_MTL_SEARCH,
            str(exported),
            str(tmp_path / "inputs.pt"),
            str(tmp_path / "outputs.pt"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert process.returncode == 0 and "ok" in process.stdout, process.stderr
    outputs = torch.load(tmp_path / "outputs.pt", weights_only=True)
    with torch.no_grad():
        expected = mtl_search.load(exported)(inputs)
    assert set(outputs) == set(data.task_names)
    for task in data.task_names:
        assert torch.equal(outputs[task], expected[task])


def test_non_empty_folder_needs_force(cli, exported, trained_study):
    url, name, _ = trained_study
    (exported / "notes.txt").write_text("mine")
    (exported / "model.torchscript.pt").write_bytes(b"what an older export wrote")
    result = cli("export", name, "--trial", "0", "--storage", url, "--out", str(exported))
    assert_one_line_error(result, "--out", "not empty", "--force")
    result = cli("export", name, "--trial", "0", "--storage", url, "--out", str(exported), "--force")
    assert result.code == 0, result
    assert json.loads((exported / "model.json").read_text())["trial"] == 0
    assert (exported / "notes.txt").read_text() == "mine"  # only exported files are replaced
    assert not (exported / "model.torchscript.pt").exists()  # no stale graph of another network survives


@pytest.mark.slow
def test_retraining_when_no_weights_are_stored_reproduces_the_trial(cli, trained_study, tmp_path):
    url, name, _ = trained_study
    study = optuna.load_study(study_name=name, storage=url)
    trial = pareto_trials(study)[0]
    empty = tmp_path / "no-artifacts"
    empty.mkdir()
    result = cli(
        "export",
        name,
        "--trial",
        str(trial.number),
        "--storage",
        url,
        "--artifacts",
        str(empty),
        "--out",
        str(tmp_path / "a"),
    )
    assert result.code == 0, result
    assert "retrained (train)" in result.out
    validation = json.loads((tmp_path / "a" / "metrics.json").read_text())["metrics"][0]
    for task, values in trial.user_attrs["validation"].items():
        assert validation["values"][task]["mse"] == pytest.approx(values["mse"], rel=1e-4)
    result = cli(
        "export", name, "--trial", str(trial.number), "--storage", url, "--retrain", "--out", str(tmp_path / "b")
    )
    assert result.code == 0, result
    description = json.loads((tmp_path / "b" / "model.json").read_text())
    assert description["weights_source"] == "retrained (train+validation)"
    # validation rows are training rows now: it trains as long as the epoch the search kept
    assert f"Retrained for {trial.user_attrs['kept_epoch']} epoch(s)" in (tmp_path / "b" / "README.md").read_text()
    assert (
        description["training"]["epochs"] == trial.user_attrs["kept_epoch"]
        and description["training"]["checkpoint"] == "last"
    )
    assert mtl_search.load(tmp_path / "b") is not None
