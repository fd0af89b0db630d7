"""Numeric column encodings of the tabular stem, quantile scaling and the learning-rate schedules."""

from __future__ import annotations

import json
import math

import numpy as np
import optuna
import pandas as pd
import pytest
import torch

from mtl_search.architectures import build_model
from mtl_search.architectures.blocks import TabularStem, build_stem
from mtl_search.architectures.numeric import PeriodicEncoding, PiecewiseLinearEncoding, bin_edges
from mtl_search.data.base import split_indices
from mtl_search.data.preprocessing import apply_preprocessing, fit_preprocessing, input_schema
from mtl_search.data.table import make_table_data, targets_from_declarations
from mtl_search.errors import UserError
from mtl_search.search.runner import SearchSettings, run_search
from mtl_search.search.space import parse_space
from mtl_search.training import train_candidate
from mtl_search.training.schedules import learning_rates, steps_per_epoch
from tests.helpers import spend_and_churn

# quantiles at levels 0, 1/3, 2/3, 1: three bins [0, 1], [1, 3], [3, 6]; a constant column: one bin [5, 6]
QUANTILES = [[0.0, 1.0, 3.0, 6.0], [5.0, 5.0, 5.0, 5.0]]


def test_bin_edges_come_from_the_quantiles_with_equal_edges_merged():
    assert bin_edges([0.0, 1.0, 3.0, 6.0], 3).tolist() == [0.0, 1.0, 3.0, 6.0]
    assert bin_edges([0.0, 0.0, 0.0, 2.0], 3).tolist() == [0.0, 2.0]  # a column mostly at one value
    assert bin_edges([0.0, 1.0, 2.0, 3.0, 4.0], 2).tolist() == [0.0, 2.0, 4.0]  # fewer bins than quantiles
    assert bin_edges([5.0, 5.0], 4).tolist() == [5.0, 6.0]


def test_piecewise_linear_values_for_a_known_bin_layout():
    encoding = PiecewiseLinearEncoding(QUANTILES, bins=3, embedding_dim=0)
    x = torch.tensor([[-1.0, 7.0], [0.5, 4.0], [2.0, 5.5], [6.0, 5.0], [9.0, 6.0]])
    expected_first = [  # below the first edge the first bin goes negative; above the last the last exceeds 1
        [-1.0, 0.0, 0.0],
        [0.5, 0.0, 0.0],
        [1.0, 0.5, 0.0],
        [1.0, 1.0, 1.0],
        [1.0, 1.0, 2.0],
    ]
    expected_second = [[2.0, 0, 0], [-1.0, 0, 0], [0.5, 0, 0], [0.0, 0, 0], [1.0, 0, 0]]  # one bin, padding reads 0
    encoded = encoding.encode(x)
    assert encoded.shape == (5, 2, 3)
    torch.testing.assert_close(encoded[:, 0], torch.tensor(expected_first))
    torch.testing.assert_close(encoded[:, 1], torch.tensor(expected_second))
    assert encoding(x).shape == (5, 6)  # the encoding itself, flattened per row
    with_linear = PiecewiseLinearEncoding(QUANTILES, bins=3, embedding_dim=4)
    out = with_linear(x)
    assert out.shape == (5, 8) and bool((out >= 0).all())  # a linear layer per column, then ReLU
    # column 0's features read column 0 only
    changed = x.clone()
    changed[:, 1] += 1.0
    torch.testing.assert_close(with_linear(changed)[:, :4], out[:, :4])


def test_periodic_encoding_is_sines_and_cosines_of_learned_frequencies():
    torch.manual_seed(0)
    encoding = PeriodicEncoding(columns=3, frequencies=4, sigma=0.5, embedding_dim=0)
    x = torch.tensor([[0.0, 1.0, -2.0], [0.3, 0.0, 2.5]])
    encoded = encoding.encode(x)
    assert encoded.shape == (2, 3, 8)
    angles = 2 * math.pi * encoding.frequencies.detach()[None] * x[..., None]
    torch.testing.assert_close(encoded, torch.cat([angles.sin(), angles.cos()], dim=-1))
    torch.testing.assert_close(encoded[0, 0], torch.tensor([0.0] * 4 + [1.0] * 4))  # x = 0
    assert encoding(x).shape == (2, 24)
    assert PeriodicEncoding(3, 4, 0.5, embedding_dim=5)(x).shape == (2, 15)
    # the frequencies learn: the loss has a gradient with respect to them
    encoding(x).sum().backward()
    assert encoding.frequencies.grad is not None and bool(encoding.frequencies.grad.abs().sum() > 0)


@pytest.mark.parametrize(
    "settings, numeric_width",
    [
        ({}, 2),
        ({"numeric_encoding": "piecewise_linear", "numeric_bins": 3, "numeric_embedding_dim": 0}, 6),
        ({"numeric_encoding": "piecewise_linear", "numeric_bins": 3}, 32),  # 16 features per column by default
        ({"numeric_encoding": "periodic", "periodic_frequencies": 2, "numeric_embedding_dim": 0}, 8),
        ({"numeric_encoding": "periodic", "numeric_embedding_dim": 5}, 10),
    ],
)
def test_the_tabular_stem_gives_the_shape_it_announces(settings, numeric_width):
    schema = {"kind": "tabular", "numeric": 2, "categorical": [4, 3], "numeric_quantiles": QUANTILES}
    stem = build_stem(schema, settings | {"embedding_dim": 2})
    assert stem.out_shape == (numeric_width + 4,)
    inputs = {"numeric": torch.randn(7, 2), "categorical": torch.tensor([[1, 2]] * 7)}
    assert stem(inputs).shape == (7, numeric_width + 4)


def test_stem_settings_are_checked_with_one_line_errors():
    schema = {"kind": "tabular", "numeric": 2, "categorical": [4]}
    with pytest.raises(UserError, match="no training quantiles"):
        build_stem(schema, {"numeric_encoding": "piecewise_linear"})
    with pytest.raises(UserError, match="stem.numeric_encoding 'splines': expected one of none, piecewise_linear"):
        build_stem(schema, {"numeric_encoding": "splines"})
    with pytest.raises(UserError, match="stem.numeric_bins: expected a whole number >= 1, got 0"):
        build_stem(schema, {"numeric_encoding": "periodic", "numeric_bins": 0})
    with pytest.raises(UserError, match="stem.periodic_sigma: expected a finite number above 0"):
        build_stem(schema, {"numeric_encoding": "periodic", "periodic_sigma": -1.0})
    # without an encoding the stem is the one it always was, value for value
    torch.manual_seed(3)
    plain = TabularStem(2, [4, 3])
    torch.manual_seed(3)
    same = build_stem({"kind": "tabular", "numeric": 2, "categorical": [4, 3]}, {"numeric_encoding": "none"})
    torch.testing.assert_close(plain.embedding_weights, same.embedding_weights)


def test_quantile_scaling_is_fitted_on_the_training_rows_only():
    train = pd.DataFrame({"x": np.arange(100.0)})
    state = fit_preprocessing(train, ["x"], [], scaling="quantile")
    quantiles = state["numeric"][0]["quantiles"]
    assert len(quantiles) == 129 and quantiles[0] == 0.0 and quantiles[64] == 49.5 and quantiles[-1] == 99.0
    later = pd.DataFrame({"x": [49.5, 0.0, 99.0, 1000.0, -50.0, 24.75]})
    scaled = apply_preprocessing(state, later)["numeric"][:, 0]
    # the median of the training rows maps to 0; the training range to the clipped levels' normal scores (+-3.09);
    # rows outside it, whatever their values, to the same ends; a quarter of the way to its normal score
    assert scaled.tolist() == pytest.approx([0.0, -3.0902, 3.0902, 3.0902, -3.0902, -0.6745], abs=1e-3)
    # standard scaling is still the default
    standard = fit_preprocessing(train, ["x"], [])
    assert apply_preprocessing(standard, later)["numeric"][0, 0].item() == pytest.approx(0.0)

    # through a table: the quantiles are those of the train split's rows, not of all rows
    frame = spend_and_churn(rows=400, seed=1)
    frame["a"] = np.arange(400.0) ** 2  # skewed, and each row's value says which row it is
    data = make_table_data(frame, targets_from_declarations(["churn:binary"]), numeric=["a"], scaling="quantile")
    train_index = split_indices(400, (0.6, 0.2, 0.2), 0)[0].numpy()
    entry = next(e for e in data.preprocessing["numeric"] if e["column"] == "a")
    np.testing.assert_allclose(
        entry["quantiles"], np.quantile(frame["a"].to_numpy()[train_index], np.linspace(0, 1, 129))
    )
    assert not np.allclose(entry["quantiles"], np.quantile(frame["a"], np.linspace(0, 1, 129)))
    column = data.preprocessing["numeric"].index(entry)
    train_scaled = data.train.inputs["numeric"][:, column]
    assert abs(float(train_scaled.mean())) < 0.05 and 0.9 < float(train_scaled.std()) < 1.1  # normal scores
    # the schema carries the quantiles on the inputs' scale, as the piecewise-linear bins need them
    schema = input_schema(data.preprocessing)
    assert schema["numeric_quantiles"][column][64] == pytest.approx(0.0, abs=1e-6)


def test_schedule_learning_rates_at_known_steps():
    assert learning_rates("constant", 0.1, 4) == [0.1] * 4
    cosine = learning_rates("cosine", 1.0, 20, warmup_fraction=0.2)  # 4 warm-up steps, then 16 of decay
    assert cosine[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert cosine[4] == 1.0
    assert cosine[12] == pytest.approx(0.5)  # halfway through the decay
    assert cosine[19] == pytest.approx((1 + math.cos(math.pi * 15 / 16)) / 2)
    assert learning_rates("cosine", 1.0, 100)[4] == 1.0  # the default warm-up: 5 %
    one_cycle = learning_rates("one_cycle", 1.0, 10)  # warm-up 30 %: 3 steps from 1/25 up
    assert one_cycle[:3] == pytest.approx([0.04 + 0.96 / 3, 0.04 + 0.96 * 2 / 3, 1.0])
    assert one_cycle[-1] == pytest.approx(1e-4 + (1 - 1e-4) * (1 + math.cos(math.pi * 6 / 7)) / 2)
    assert learning_rates("constant", 2.0, 4, warmup_fraction=0.5) == [1.0, 2.0, 2.0, 2.0]
    with pytest.raises(UserError, match="training.schedule 'step': expected one of constant, cosine, one_cycle"):
        learning_rates("step", 1.0, 4)
    with pytest.raises(UserError, match="training.warmup_fraction"):
        learning_rates("cosine", 1.0, 4, warmup_fraction=1.5)
    assert steps_per_epoch(257, 256) == 1 and steps_per_epoch(258, 256) == 2 and steps_per_epoch(5, 8) == 1


def test_the_trainer_steps_with_the_scheduled_rates(tiny_synthetic, monkeypatch):
    spec = {"family": "tree", "widths": [8], "groups": [[tiny_synthetic.task_names]]}
    candidate = {
        "architecture": spec,
        "training": {"epochs": 2, "batch_size": 64, "learning_rate": 0.01, "schedule": "cosine", "optimizer": "sgd"},
    }
    seen = []
    original = torch.optim.SGD.step

    def step(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "step", step)  # records the real optimiser's rate at each step
    train_candidate(tiny_synthetic, candidate)
    total = 2 * steps_per_epoch(len(tiny_synthetic.train), 64)
    assert seen == pytest.approx(learning_rates("cosine", 0.01, total))


def test_a_tiny_search_samples_the_new_options_end_to_end(storage_url):
    frame = spend_and_churn(rows=300, seed=2)
    frame["plan"] = np.random.default_rng(2).choice(["basic", "plus", "pro"], size=len(frame))
    data = make_table_data(
        frame, targets_from_declarations(["churn:binary", "spend:regression"]), categorical=["plan"], scaling="quantile"
    )
    space = parse_space(
        {
            "training": {
                "epochs": 2,
                "batch_size": 64,
                "schedule": {"choices": ["constant", "cosine", "one_cycle"]},
            },
            "stem": {
                "numeric_encoding": {"choices": ["none", "piecewise_linear", "periodic"]},
                "numeric_bins": {"choices": [4, 8]},
                "numeric_embedding_dim": {"choices": [0, 4]},
                "periodic_sigma": {"low": 0.05, "high": 1.0, "log": True},
            },
            "families": {"tree": {"depth": 1, "width": 8}},
            "loss_weighting": {"static": {}},
        }
    )
    settings = SearchSettings("tabular", storage=storage_url, sampler="random", n_trials=9, save_artifacts=False)
    study = run_search(data, space, settings)
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == 9
    encodings = {t.params["stem.numeric_encoding"] for t in trials}
    assert encodings == {"none", "piecewise_linear", "periodic"}
    assert {t.params["training.schedule"] for t in trials} == {"constant", "cosine", "one_cycle"}
    for trial in trials:
        candidate = trial.user_attrs["candidate"]
        stem = candidate["architecture"]["stem"]
        assert candidate["training"]["schedule"] == trial.params["training.schedule"]
        # an encoding's settings are sampled only with it
        assert ("stem.numeric_bins" in trial.params) == (stem["numeric_encoding"] == "piecewise_linear")
        assert ("stem.periodic_sigma" in trial.params) == (stem["numeric_encoding"] == "periodic")
        model = build_model(candidate["architecture"], data.input_schema, data.tasks)
        assert model(data.test.inputs)["churn"].shape == (len(data.test), 1)


@pytest.mark.parametrize(
    "stem",
    [
        {"numeric_encoding": "piecewise_linear", "numeric_bins": 8, "numeric_embedding_dim": 4},
        {"numeric_encoding": "periodic", "periodic_frequencies": 3, "numeric_embedding_dim": 0},
    ],
)
def test_an_encoded_model_exports_and_takes_the_same_raw_rows(tmp_path, stem):
    from mtl_search.export import export_trial
    from tests.helpers import outputs_in_every_format

    frame = spend_and_churn(rows=200, seed=4)
    data = make_table_data(frame, targets_from_declarations(["churn:binary"]), scaling="quantile")
    space = parse_space(
        {
            "training": {"epochs": 2, "batch_size": 32, "schedule": "cosine"},
            "stem": {key: {"choices": [value]} for key, value in stem.items()},
            "families": {"tree": {"depth": 1, "width": 8}},
            "loss_weighting": {"static": {}},
        }
    )
    settings = SearchSettings("encoded", storage=f"sqlite:///{tmp_path / 's.db'}", sampler="random", n_trials=1)
    study = run_search(data, space, settings)
    export_trial(study, study.trials[0], tmp_path / "model")
    # the export's preprocessing quantile-normalises raw rows as the study's data did
    state = json.loads((tmp_path / "model" / "preprocessing.json").read_text())
    inputs = apply_preprocessing(state, frame)
    test_rows = data.test.inputs["numeric"]
    assert any(torch.allclose(test_rows[0], row, atol=1e-6) for row in inputs["numeric"])
    loaded = outputs_in_every_format(tmp_path / "model", {"numeric": inputs["numeric"][:5]})
    assert loaded["churn"].shape == (5, 1)


def test_the_one_line_summary_names_the_numeric_encoding():
    from mtl_search.architectures import summarize

    spec = {"family": "tree", "widths": [8], "groups": [[["a", "b"]]]}
    assert summarize(spec, ["a", "b"]) == "tree 0:{a,b} w=8"
    pl = {"numeric_encoding": "piecewise_linear", "numeric_bins": 32, "numeric_embedding_dim": 8}
    assert summarize(spec | {"stem": pl}, ["a", "b"]) == "tree 0:{a,b} w=8 num=pl32x8"
    assert summarize(spec | {"stem": {"numeric_encoding": "periodic"}}, ["a", "b"]) == "tree 0:{a,b} w=8 num=per16x16"


def test_an_ensemble_scores_each_member_in_training_and_averages_them_when_predicting():
    frame = spend_and_churn(rows=120, seed=5)
    data = make_table_data(frame, targets_from_declarations(["churn:binary", "spend:regression"]))
    spec = {"family": "tree", "widths": [8], "groups": [[data.task_names]], "stem": {"ensemble_members": 3}}
    torch.manual_seed(0)
    model = build_model(spec, data.input_schema, data.tasks)
    assert model.members == 3
    scales = model.stem.member_scales.detach()
    assert scales.shape == (3, model.stem.out_shape[0]) and set(scales.flatten().tolist()) <= {-1.0, 1.0}
    inputs = {name: tensor[:5] for name, tensor in data.test.inputs.items()}
    model.train()
    stacked = model(inputs)
    assert stacked["churn"].shape == (15, 1)  # member after member
    model.eval()
    averaged = model(inputs)
    torch.testing.assert_close(averaged["churn"], stacked["churn"].view(3, 5, 1).mean(0))
    torch.testing.assert_close(averaged["spend"], stacked["spend"].view(3, 5, -1).mean(0))
    # member 0's rows are the stem's features times its scales
    model.stem.members = 1
    plain = model.stem(inputs)
    model.stem.members = 3
    torch.testing.assert_close(model.stem(inputs)[:5], plain * scales[0])

    result = train_candidate(data, {"architecture": spec, "training": {"epochs": 2, "batch_size": 32}})
    assert result.model.members == 3 and len(result.history) == 2
    assert math.isfinite(result.test["churn"]["auc"])
    with pytest.raises(UserError, match="stem.ensemble_members: expected a whole number >= 1, got 0"):
        build_model(spec | {"stem": {"ensemble_members": 0}}, data.input_schema, data.tasks)
