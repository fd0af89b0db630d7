"""Every family, loss weighting and input kind, conditional tasks included, exports to a model.pt2
program and an ONNX graph that give the trained network's outputs on rows of any batch size."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest
import torch

from mtl_search.data.sequences import make_sequences
from mtl_search.data.synthetic import make_synthetic
from mtl_search.data.table import make_table_data, targets_from_declarations
from mtl_search.export.bundle import example_inputs, write_graphs
from mtl_search.training import train_candidate
from mtl_search.weighting import method_names
from tests.export.test_export_inputs import DECLARATIONS, customers
from tests.training.test_population import FAMILY_SPECS, candidate, image_data, reads, tabular_data

WEIGHTINGS = ["static", "uncertainty", "gradnorm", "dwa", "pcgrad", "mgda"]
SEQUENCE_STEM = {"sequence_width": 6, "embedding_dim": 4}


def synthetic(names: list[str]):
    return make_synthetic(dim=6, rows=160, tasks=len(names), correlation=0.5, seed=0)


def family_data(spec: dict[str, Any], names: list[str]):
    """Synthetic vectors, or a table for a family that reads tables only."""
    data = synthetic(names)
    return data if reads(spec, data) else tabular_data()


def sequences():
    data = make_sequences(rows=120, max_length=6, vocabulary=12)
    assert any(task.given for task in data.tasks)  # purchase given click: an entire-space task
    return data


# (data, architecture spec, loss weighting): each family once, each weighting at least once
CASES: dict[str, tuple[Any, dict[str, Any], str]] = {
    f"{family}-{WEIGHTINGS[i % len(WEIGHTINGS)]}": (
        lambda spec=spec, names=names: family_data(spec, names),
        spec,
        WEIGHTINGS[i % len(WEIGHTINGS)],
    )
    for i, (family, (spec, names)) in enumerate(FAMILY_SPECS.items())
}
CASES |= {
    "sequence-gru-conditional-ple": (
        sequences,
        {"family": "ple", "levels": 1, "shared_experts": 1, "task_experts": 1, "expert_widths": [6]}
        | {"stem": SEQUENCE_STEM | {"sequence_encoder": "gru"}},
        "gradnorm",
    ),
    "sequence-lstm-conditional-hierarchy": (
        sequences,
        {
            "family": "hierarchy",
            "widths": [6, 6],
            "head_depths": {"click": 1, "purchase": 2, "dwell": 2},
            "feed_upward": {"click": True, "purchase": False, "dwell": False},
            "prediction_embedding": 2,
            "stem": SEQUENCE_STEM | {"sequence_encoder": "lstm"},
        },
        "uncertainty",
    ),
    "sequence-attention-conditional-mmoe": (
        sequences,
        {
            "family": "mmoe",
            "experts": 2,
            "expert_widths": [6],
            "stem": SEQUENCE_STEM | {"sequence_encoder": "attention"},
        },
        "mgda",
    ),
    "table-cross_stitch": (
        lambda: make_table_data(customers(rows=160), targets_from_declarations(DECLARATIONS)),
        {"family": "cross_stitch", "widths": [6, 6], "units": [0], "alpha_self": 0.9},
        "dwa",
    ),
    "image-tree": (
        lambda: image_data(rows=80),
        {"family": "tree", "widths": [4], "groups": [[["left", "right"]]], "block": {"type": "conv"}},
        "pcgrad",
    ),
    "image-mtan": (
        lambda: image_data(rows=80),
        {"family": "mtan", "widths": [4, 4], "attention_width": 2, "block": {"type": "conv"}},
        "static",
    ),
    "sequence-ensemble-of-trees-conditional": (  # binary, conditional and regression outputs averaged
        sequences,
        {
            "family": "tree",
            "widths": [6],
            "groups": [[["click", "purchase", "dwell"]]],
            "stem": SEQUENCE_STEM | {"sequence_encoder": "attention"},
            "ensemble": {"members": 3},
        },
        "static",
    ),
    "image-ltb": (
        lambda: image_data(rows=80),
        {"family": "ltb", "widths": [4, 4], "nodes": [2, 2], "initial_temperature": 1.0, "annealing": 0.5}
        | {"block": {"type": "conv"}},
        "uncertainty",
    ),
}

# the loss-only weightings, each on a family of its own
CASES |= {
    f"{family}-{weighting}": (lambda names=names: synthetic(names), spec, weighting)
    for weighting, (family, (spec, names)) in zip(("famo", "rlw", "stch", "gls"), FAMILY_SPECS.items())
}
# the Jacobian aggregations change only the training step: one tree case each
CASES |= {
    f"tree-{method}": (lambda: synthetic(FAMILY_SPECS["tree"][1]), FAMILY_SPECS["tree"][0], method)
    for method in ("upgrad", "dualproj", "aligned_mtl", "graddrop", "imtl", "config", "cagrad", "nash_mtl")
}
# the gradient methods written here, likewise
CASES |= {
    f"tree-{method}": (lambda: synthetic(FAMILY_SPECS["tree"][1]), FAMILY_SPECS["tree"][0], method)
    for method in ("db_mtl", "gradvac")
}


def test_the_cases_cover_every_registered_family_and_weighting():
    from mtl_search.architectures import family_names

    assert set(family_names()) <= {spec["family"] for _, spec, _ in CASES.values()}
    assert set(method_names()) <= {weighting for _, _, weighting in CASES.values()}


@pytest.mark.parametrize("case", list(CASES))
def test_every_structure_exports_a_program_and_onnx_that_match_the_network(case, tmp_path):
    make_data, spec, weighting = CASES[case]
    data = make_data()
    trained = train_candidate(data, candidate(spec, {"method": weighting}, epochs=1, batch_size=32))
    model = trained.model.cpu().eval()
    notes: list[str] = []
    onnx_expected = all(importlib.util.find_spec(name) for name in ("onnx", "onnxscript", "onnxruntime"))
    written = write_graphs(model, example_inputs(data.input_schema, data), tmp_path, notes)
    assert written == (True, onnx_expected), notes
    program = torch.export.load(tmp_path / "model.pt2").module()
    for rows in (1, len(next(iter(data.test.inputs.values())))):
        inputs = {name: tensor[:rows] for name, tensor in data.test.inputs.items()}
        with torch.no_grad():
            expected = model(inputs)
            got = program(inputs)
        assert list(got) == list(expected)
        for task in expected:
            torch.testing.assert_close(got[task], expected[task])
        if onnx_expected:
            import onnxruntime

            session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
            names = [output.name for output in session.get_outputs()]
            values = session.run(names, {name: tensor.numpy() for name, tensor in inputs.items()})
            for task, value in zip(names, values):
                torch.testing.assert_close(torch.from_numpy(value), expected[task], rtol=1e-4, atol=1e-5)
