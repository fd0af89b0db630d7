"""An exported model with a regression target learned standardised predicts in the column's units,
in every format; a model exported before scaling existed still loads and predicts as it did."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import mtl_search
from mtl_search.data import load_data
from mtl_search.search.runner import SearchSettings, run_search
from mtl_search.search.space import parse_space
from tests.helpers import outputs_in_every_format, spend_and_churn

SHARED_TRUNK = {
    "training": {"epochs": 8, "learning_rate": 3.0e-3, "batch_size": 32},
    "families": {"tree": {"depth": 2, "width": 16, "grouping": "shared"}},
    "loss_weighting": {"static": {}},
    "pruning": {"enabled": False},
}


@pytest.fixture(scope="module")
def spend_export(tmp_path_factory):
    """One trial on the spend/churn table (spend: mean ~1000, std ~200), exported by the CLI."""
    from mtl_search.cli import main

    folder = tmp_path_factory.mktemp("scaled-export")
    spend_and_churn().to_csv(folder / "customers.csv", index=False)
    data = load_data("table", {}, str(folder / "customers.csv"), ["churn:binary", "spend:regression"])
    url = f"sqlite:///{folder / 'studies.db'}"
    run_search(
        data, parse_space(SHARED_TRUNK), SearchSettings(study_name="spend", storage=url, sampler="random", n_trials=1)
    )
    out = folder / "model"
    assert main(["export", "spend", "--trial", "0", "--storage", url, "--out", str(out)]) == 0
    return out, data


def test_every_format_predicts_spend_in_its_units(spend_export):
    out, data = spend_export
    description = json.loads((out / "model.json").read_text())
    stored = {t["name"]: t for t in description["tasks"]}["spend"]
    assert (stored["target_mean"], stored["target_std"]) == data.task("spend").target_scale
    assert "the predicted value in the target column's units" in description["output_meaning"]["spend"]
    # the one standardised number, `loss`, is labelled as such wherever metrics are written
    std = f"{data.task('spend').target_std:.6g}"
    scoring = json.loads((out / "metrics.json").read_text())["scoring"]["spend"]
    assert f"`loss` is the mean squared error of the standardised target (MSE / {std}²" in scoring
    card = (out / "README.md").read_text()
    assert f"spend: metrics {scoring}." in card and f"std {std}" in card
    outputs = outputs_in_every_format(out, {"numeric": data.test.inputs["numeric"]})
    truth = data.test.targets["spend"]
    assert abs(float(outputs["spend"].mean() - truth.mean())) < 0.25 * float(truth.std())


def test_a_model_exported_before_scaling_loads_as_the_raw_network_it_was(spend_export, tmp_path):
    out, data = spend_export
    old = tmp_path / "old"
    shutil.copytree(out, old)
    description = json.loads((old / "model.json").read_text())
    for task in description["tasks"]:  # what export wrote before 2026-12-03
        task.pop("target_mean", None), task.pop("target_std", None)
    (old / "model.json").write_text(json.dumps(description))
    inputs = {"numeric": data.test.inputs["numeric"][:16]}
    mean, std = data.task("spend").target_scale
    with torch.no_grad():
        now, before = mtl_search.load(out)(inputs), mtl_search.load(old)(inputs)
    # the same weights, read without statistics: the network's own output, unscaled
    torch.testing.assert_close(before["spend"], (now["spend"] - mean) / std, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(before["churn"], now["churn"])
