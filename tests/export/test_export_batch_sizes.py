"""Exported model.pt2 programs and ONNX graphs serve any batch size, and say why when they cannot."""

from __future__ import annotations

import logging
import pytest
import torch
from torch import nn

from mtl_search.data.synthetic import make_synthetic
from mtl_search.export.bundle import write_graphs
from tests.helpers import outputs_in_every_format


@pytest.fixture(scope="module")
def hierarchy_export(tmp_path_factory):
    """A one-trial hierarchy study (task1's head at depth 1 feeding task2's at depth 2), exported by the CLI."""
    from mtl_search.cli import main
    from mtl_search.search.runner import SearchSettings, run_search
    from mtl_search.search.space import parse_space

    folder = tmp_path_factory.mktemp("hierarchy-export")
    url = f"sqlite:///{folder / 'studies.db'}"
    data = make_synthetic(dim=6, rows=200, correlation=0.5, seed=0)
    space = parse_space(
        {
            "training": {"epochs": 1, "batch_size": 64},
            "tower": {"depth": 1, "width": 4},
            "families": {"hierarchy": {"depth": 2, "width": 8, "feed_upward": True, "prediction_embedding": 3}},
        }
    )
    study = run_search(
        data,
        space,
        SearchSettings(study_name="h", storage=url, sampler="random", n_trials=1),
        enqueue=[{"hierarchy.head_task1": 1, "hierarchy.head_task2": 2}],
    )
    assert "task1@1^ task2@2" in study.trials[0].user_attrs["summary"]  # the fed prediction is in the graph
    out = folder / "model"
    assert main(["export", "h", "--trial", "0", "--storage", url, "--out", str(out)]) == 0
    return out, data


def test_hierarchy_exports_a_program_and_onnx_that_run_on_a_new_batch_size(hierarchy_export):
    out, data = hierarchy_export
    assert "not written" not in (out / "README.md").read_text()
    outputs = outputs_in_every_format(out, {"x": data.test.inputs["x"][:7]})  # exported with 4 rows
    assert all(output.shape == (7, 1) for output in outputs.values())


class FrozenBatch(nn.Module):
    """Reads the batch size as a Python number, which would freeze it into the graph."""

    task_names = ["y"]

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 1)

    def forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        x = inputs["x"]
        return {"y": self.linear(x).reshape(len(x), -1)}


def test_a_graph_frozen_to_the_example_batch_is_not_written_and_the_note_names_the_cause(tmp_path):
    torch.manual_seed(0)
    model, example, notes = FrozenBatch(), {"x": torch.randn(4, 3)}, []
    assert write_graphs(model, example, tmp_path, notes) == (False, False)
    assert not list(tmp_path.iterdir())  # nothing that only works on 4 rows is left behind
    # the cause in the model's terms, not torch.export's "Constraints violated (batch)!"
    assert notes == [
        "model.pt2 not written: the network reads the batch size as a fixed number (4 rows), so the graph would "
        "take no other batch size",
        "ONNX not written: it is converted from model.pt2, which could not be written.",
    ]


@pytest.mark.parametrize("encoder", ["gru", "lstm", "attention"])
def test_sequence_models_export_quietly(encoder, tmp_path, capfd, monkeypatch):
    # the ONNX exporter logs the operators it skips (torchvision's, when absent) and its progress; torch.export
    # logs the symbols a reloaded MMoE graph no longer needs
    from mtl_search.architectures import build_model
    from mtl_search.data.sequences import make_sequences
    from mtl_search.export.bundle import example_inputs

    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    data = make_sequences(rows=60, max_length=6, vocabulary=12)
    spec = {
        "family": "mmoe",
        "experts": 2,
        "expert_widths": [4],
        "tower": {"widths": []},
        "stem": {"sequence_encoder": encoder, "sequence_width": 4, "embedding_dim": 3},
    }
    model = build_model(spec, data.input_schema, data.tasks).eval()
    example = example_inputs(data.input_schema, data)
    notes: list[str] = []
    # torch's loggers write to the stream they found at import, which pytest may have swapped since: every
    # record that gets past its logger's level is caught where it would be handled
    records: list[logging.LogRecord] = []
    monkeypatch.setattr(logging.Logger, "callHandlers", lambda logger, record: records.append(record))
    assert write_graphs(model, example, tmp_path, notes) == (True, True), notes  # and they ran on 5 rows
    monkeypatch.undo()
    assert not [record.getMessage() for record in records if record.levelno >= logging.WARNING]
    printed = capfd.readouterr()
    assert not printed.err.strip() and not printed.out.strip(), printed
