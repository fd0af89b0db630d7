"""Loading an exported table model from Python: where from, onto which device, which inputs it
takes (one-line errors for the usual mistakes) and what its class outputs mean."""

from __future__ import annotations

import json

import numpy as np
import optuna
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

import mtl_search
from mtl_search.data.preprocessing import apply_preprocessing
from mtl_search.data.table import TargetColumn, make_table_data, targets_from_declarations
from mtl_search.errors import UserError
from mtl_search.export.inputs import InputCheck
from mtl_search.export.model_card import output_meaning, scoring, with_labels
from mtl_search.tasks import Task
from tests.helpers import outputs_in_every_format

DECLARATIONS = ["churn:binary", "spend:regression", "segment:multiclass"]


def customers(rows: int = 400, seed: int = 0) -> pd.DataFrame:
    """churn 'yes' where a > 0; segment 'a', 'b', 'c' as c rises; two categorical features."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 3))
    return pd.DataFrame(
        {
            "a": x[:, 0],
            "b": x[:, 1],
            "c": x[:, 2],
            "region": rng.choice(["north", "south", "east"], rows),
            "plan": rng.choice(["basic", "pro"], rows),
            "churn": np.where(x[:, 0] > 0, "yes", "no"),
            "spend": 100 + 10 * x[:, 1],
            "segment": np.array(["a", "b", "c"])[(x[:, 2] > -0.5).astype(int) + (x[:, 2] > 0.5)],
        }
    )


@pytest.fixture(scope="module")
def table_export(tmp_path_factory):
    """One trial on a table made in Python (binary churn 'yes'/'no', multiclass segment), exported."""
    from mtl_search.export import export_trial
    from mtl_search.search import SearchSettings, parse_space, run_search

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    folder = tmp_path_factory.mktemp("table-export")
    frame = customers()
    data = make_table_data(frame, targets_from_declarations(DECLARATIONS))
    space = parse_space(
        {
            "training": {"epochs": 12, "learning_rate": 1e-2, "batch_size": 32},
            "families": {"tree": {"depth": 1, "width": 16, "grouping": "shared"}},
            "loss_weighting": {"static": {}},
            "pruning": {"enabled": False},
        }
    )
    study = run_search(
        data,
        space,
        SearchSettings(study_name="customers", storage=f"sqlite:///{folder / 's.db'}", sampler="random", n_trials=1),
    )
    export_trial(study, study.trials[0], folder / "model")
    return folder / "model", data, frame


def right_inputs(data):
    return {name: tensor[:6] for name, tensor in data.test.inputs.items()}


def outputs(model, inputs):
    with torch.no_grad():
        return model(inputs)


# -- where from and onto which device -------------------------------------------------------


@pytest.mark.parametrize("name", ["model.json", "README.md", "weights.safetensors"])
def test_a_file_in_the_export_folder_loads_the_folder(table_export, name):
    folder, data, _ = table_export
    inputs = right_inputs(data)
    expected = outputs(mtl_search.load(folder), inputs)
    got = outputs(mtl_search.load(folder / name), inputs)
    assert all(torch.equal(expected[task], got[task]) for task in expected)


def test_a_folder_that_is_not_there_is_named(tmp_path):
    with pytest.raises(
        UserError, match="^" + str(tmp_path / "nope") + ": no such folder; give the folder `mtl-search export` wrote$"
    ):
        mtl_search.load(tmp_path / "nope")


@pytest.mark.parametrize(
    "device, message",
    [
        ("cuda", "device 'cuda': no CUDA device is available on this machine"),
        ("cuda:1", "device 'cuda:1': no CUDA device is available on this machine"),
        ("mps", "device 'mps': no MPS (Apple GPU) device is available on this machine"),
        ("bogus", "device 'bogus': not a device name (cpu, cuda, cuda:1, mps, auto)"),
    ],
)
def test_a_device_this_machine_lacks_is_a_one_line_error(table_export, monkeypatch, device, message):
    folder, _, _ = table_export
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(UserError) as error:
        mtl_search.load(folder, device=device)
    assert str(error.value) == message


def test_auto_loads_on_the_cpu_without_a_gpu(table_export, monkeypatch):
    folder, data, _ = table_export
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    model = mtl_search.load(folder, device="auto")
    assert {p.device.type for p in model.parameters()} == {"cpu"}
    assert set(outputs(model, right_inputs(data))) == set(data.task_names)


# -- which inputs it takes ------------------------------------------------------------------


def test_the_usual_conversions_give_the_same_outputs(table_export):
    folder, data, frame = table_export
    model = mtl_search.load(folder)
    inputs = right_inputs(data)
    expected = outputs(model, inputs)
    # float64 numbers (torch.from_numpy(df.values)), numpy arrays, int32 codes: converted without loss
    for variant in (
        {"numeric": inputs["numeric"].double(), "categorical": inputs["categorical"]},
        {name: tensor.numpy() for name, tensor in inputs.items()},
        {"numeric": inputs["numeric"].double().numpy(), "categorical": inputs["categorical"].int()},
    ):
        got = outputs(model, variant)
        assert all(torch.equal(expected[task], got[task]) for task in expected)
    got = outputs(model, {"numeric": inputs["numeric"][:1], "categorical": inputs["categorical"][:1]})  # one row
    assert got["segment"].shape == (1, 3)
    # the preprocessing's own output goes in as it is
    raw = outputs(model, apply_preprocessing(json.loads((folder / "preprocessing.json").read_text()), frame.head(3)))
    assert raw["churn"].shape == (3, 1)


def wrong(inputs, **changes):
    return {name: tensor for name, tensor in inputs.items() if name not in changes} | {
        name: value for name, value in changes.items() if value is not None
    }


MISTAKES = {
    "float codes": (
        lambda i: wrong(i, categorical=i["categorical"].float()),
        "input 'categorical': expected int64 of shape (batch, 2), got float32 of shape (6, 2); floats are never rounded into codes",
    ),
    "integer numbers": (
        lambda i: wrong(i, numeric=i["numeric"].long()),
        "input 'numeric': expected float32 of shape (batch, 3), got int64 of shape (6, 3)",
    ),
    "missing": (
        lambda i: {"numeric": i["numeric"]},
        "missing input 'categorical' (inputs: numeric, categorical; got numeric)",
    ),
    "misspelt": (
        lambda i: {"numerical": i["numeric"], "categorical": i["categorical"]},
        "missing input 'numeric' (inputs: numeric, categorical; got numerical, categorical)",
    ),
    "unknown": (lambda i: wrong(i, churn=i["numeric"]), "unknown input 'churn' (inputs: numeric, categorical)"),
    "width": (
        lambda i: wrong(i, numeric=torch.randn(6, 7, dtype=torch.float64)),
        "input 'numeric': expected float32 of shape (batch, 3), got float64 of shape (6, 7)",
    ),
    "one row as 1-D": (
        lambda i: {"numeric": i["numeric"][0], "categorical": i["categorical"][0]},
        "input 'numeric': expected float32 of shape (batch, 3), got float32 of shape (3,); one row is a batch of one: tensor.unsqueeze(0)",
    ),
    "batch sizes": (
        lambda i: wrong(i, numeric=i["numeric"][:5]),
        "inputs differ in batch size (numeric: 5 rows, categorical: 6 rows)",
    ),
    "a list": (
        lambda i: wrong(i, numeric=i["numeric"].tolist()),
        "input 'numeric': expected a tensor, float32 of shape (batch, 3), got list",
    ),
    "a tensor, not a dict": (
        lambda i: i["numeric"],
        "model input: expected a dict {'numeric': tensor, 'categorical': tensor}, got Tensor",
    ),
    "code too large": (
        lambda i: wrong(i, categorical=torch.tensor([[0, 1]] * 5 + [[1, 3]])),
        "input 'categorical': codes must be in 0..2 (column 1 'plan'), got 3",
    ),
    "negative code": (
        lambda i: wrong(i, categorical=torch.tensor([[-1, 0]] * 6)),
        "input 'categorical': codes must be in 0..3 (column 0 'region'), got -1",
    ),
}


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_a_wrong_input_is_a_one_line_error_naming_it(table_export, mistake):
    folder, data, _ = table_export
    model = mtl_search.load(folder)
    make, message = MISTAKES[mistake]
    with pytest.raises(UserError) as error:
        outputs(model, make(right_inputs(data)))
    assert str(error.value) == message


def test_the_graphs_take_the_inputs_the_loaded_model_takes(table_export):
    folder, data, _ = table_export
    inputs = {name: tensor[:7] for name, tensor in data.test.inputs.items()}  # exported with 4 rows
    assert outputs_in_every_format(folder, inputs)["segment"].shape == (7, 3)
    # keyword form, and torch.export of the loaded model captures the network, not the check
    model = mtl_search.load(folder)
    assert torch.equal(outputs(model, inputs)["churn"], outputs(model.forward, inputs)["churn"])
    with torch.no_grad():
        assert torch.equal(model(inputs=inputs)["churn"], outputs(model, inputs)["churn"])
    batch = torch.export.Dim("batch")
    program = torch.export.export(model, (inputs,), dynamic_shapes=({name: {0: batch} for name in inputs},))
    assert "amax" not in str(program.graph)
    assert torch.equal(outputs(program.module(), inputs)["churn"], outputs(model, inputs)["churn"])


def test_an_input_on_another_device_is_named():
    check = InputCheck({"x": {"shape": ["batch", 2], "dtype": "float32"}})
    on_meta = torch.nn.Linear(2, 1, device="meta")
    with pytest.raises(UserError, match=r"^input 'x': is on cpu, the model on meta; move it with .to\('meta'\)$"):
        check(on_meta, ({"x": torch.zeros(3, 2)},), {})


def test_sequence_event_ids_are_checked_against_the_vocabulary(tmp_path):
    description = {
        "input_schema": {"kind": "sequence", "vocabulary": 9, "max_length": 4, "numeric": 0},
        "inputs": {
            "events": {"shape": ["batch", 4], "dtype": "int64"},
            "lengths": {"shape": ["batch"], "dtype": "int64"},
        },
    }
    check = InputCheck.for_model(description, tmp_path)
    given = {"events": torch.tensor([[1, 9, 0, 0]]), "lengths": torch.tensor([2], dtype=torch.int32)}
    assert check.check(given)["lengths"].dtype == torch.int64
    with pytest.raises(UserError, match=r"^input 'events': codes must be in 0..9 \(event ids; 0 is padding\), got 10$"):
        check.check(given | {"events": torch.tensor([[1, 10, 0, 0]])})
    with pytest.raises(
        UserError, match=r"^input 'lengths': expected int64 of shape \(batch,\), got int64 of shape \(\)"
    ):
        check.check(given | {"lengths": torch.tensor(2)})
    # a length the data could not have had (the network would clamp it silently)
    for length in (-1, 5):
        with pytest.raises(
            UserError, match=rf"^input 'lengths': codes must be in 0..4 \(events in each history\), got {length}$"
        ):
            check.check(given | {"lengths": torch.tensor([length])})


def test_a_model_moved_to_another_precision_takes_inputs_at_that_precision(table_export):
    folder, data, _ = table_export
    inputs = right_inputs(data)
    expected = outputs(mtl_search.load(folder), inputs)
    model = mtl_search.load(folder).double()
    for numeric in (inputs["numeric"], inputs["numeric"].double()):  # float32 as exported, or float64
        got = outputs(model, {"numeric": numeric, "categorical": inputs["categorical"]})
        assert got["churn"].dtype == torch.float64
        assert all(torch.allclose(expected[task].double(), got[task], atol=1e-5) for task in expected)
    # a first layer that reads the floats directly: they must arrive at the layer's precision
    check = InputCheck({"x": {"shape": ["batch", 2], "dtype": "float32"}})
    for precision in (torch.float64, torch.float16):
        linear = torch.nn.Linear(2, 1).to(precision)
        (given,), _ = check(linear, ({"x": torch.zeros(3, 2)},), {})
        assert given["x"].dtype == precision


# -- what the class outputs mean ------------------------------------------------------------


def test_model_json_and_the_card_name_class_1_and_the_class_order(table_export):
    folder, data, frame = table_export
    meaning = json.loads((folder / "model.json").read_text())["output_meaning"]
    assert meaning["churn"] == "one logit per row; torch.sigmoid(output) is P(churn = 'yes')"
    assert meaning["segment"] == (
        "one logit per class, over classes ['a', 'b', 'c'] in this order; "
        "torch.softmax(output, -1) gives the class probabilities"
    )
    card = (folder / "README.md").read_text()
    assert "| churn | binary | 2 | one logit per row; `torch.sigmoid(output)` is P(churn = 'yes') |" in card
    assert (
        "| segment | multiclass | 3 | one logit per class, over classes ['a', 'b', 'c'] in this order; "
        "`torch.softmax(output, -1)` gives the class probabilities |"
    ) in card
    assert (
        "Reading the outputs: `torch.sigmoid(outputs['churn'])` is P(churn = 'yes'); "
        "`torch.softmax(outputs['segment'], -1)` gives the probabilities of classes ['a', 'b', 'c'] in this order."
    ) in card
    # and the model agrees: sigmoid rises with churn == 'yes', softmax column i is segment i
    model = mtl_search.load(folder)
    inputs = apply_preprocessing(json.loads((folder / "preprocessing.json").read_text()), frame)
    got = outputs(model, inputs)
    assert roc_auc_score(frame["churn"] == "yes", torch.sigmoid(got["churn"]).reshape(-1).numpy()) > 0.9
    predicted = np.array(["a", "b", "c"])[torch.softmax(got["segment"], -1).argmax(-1).numpy()]
    assert (predicted == frame["segment"].to_numpy()).mean() > 0.6


def test_a_chosen_positive_label_and_conditions_are_worded_with_their_labels():
    # upsell is only known where churn is 'no', the label given as class 1
    frame = customers(rows=200).assign(
        upsell=lambda f: np.where(f["churn"] == "no", np.where(f["b"] > 0, "y", "n"), None)
    )
    targets = [
        TargetColumn(Task("churn", "binary"), "churn", positive="no"),
        TargetColumn(Task("upsell", "binary", given="churn"), "upsell"),
    ]
    data = make_table_data(frame, targets)
    tasks = with_labels([t.to_dict() for t in data.tasks], data.preprocessing["targets"])
    assert output_meaning(tasks[0], tasks) == "one logit per row; torch.sigmoid(output) is P(churn = 'no')"
    assert output_meaning(tasks[1], tasks) == (
        "one logit per row; torch.sigmoid(output) is P(upsell = 'y' | churn = 'no'), conditional on churn (not P(upsell = 'y')); "
        "the joint P(upsell = 'y' and churn = 'no') is torch.sigmoid(outputs['upsell']) * torch.sigmoid(outputs['churn'])"
    )
    assert scoring(tasks[1], tasks).startswith(
        "computed from P(upsell = 'y' | churn = 'no') over the rows of the split where churn = 'no';"
    )


def test_labels_0_and_1_and_unrecorded_labels_keep_the_plain_wording():
    tasks = [Task("big", "binary").to_dict(), Task("kind", "multiclass", n_classes=3).to_dict()]
    for targets in (None, {"big": {"classes": ["0", "1"]}}):
        labelled = with_labels(tasks, targets)
        assert output_meaning(labelled[0], labelled) == "one logit per row; torch.sigmoid(output) is P(big = 1)"
        assert (
            output_meaning(labelled[1], labelled)
            == "one logit per class; torch.softmax(output, -1) gives the class probabilities"
        )
    labelled = with_labels(tasks, {"kind": {"classes": ["x", "y"]}})  # classes=3 declared, two seen
    assert output_meaning(labelled[1], labelled).startswith(
        "one logit per class, over classes ['x', 'y'] in this order, then 1 declared class(es) the data never held;"
    )
