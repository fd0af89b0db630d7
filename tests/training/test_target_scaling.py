"""A regression target in large units next to a binary task: learned standardised, reported in its units."""

import pytest

from mtl_search.data.table import make_table_data, targets_from_declarations
from mtl_search.training import predict, train_candidate
from tests.helpers import spend_and_churn


def test_a_large_regression_target_leaves_the_binary_task_learnable_and_is_predicted_in_its_units():
    data = make_table_data(spend_and_churn(), targets_from_declarations(["churn:binary", "spend:regression"]))
    spend = data.task("spend")
    assert spend.target_mean == pytest.approx(1000, abs=30) and spend.target_std == pytest.approx(200, abs=20)
    # one fully shared trunk, no towers, equal static weights: the setting where the user's binary heads collapsed
    spec = {
        "family": "tree",
        "widths": [16, 16],
        "groups": [[["churn", "spend"]], [["churn", "spend"]]],
        "tower": {"widths": []},
    }
    result = train_candidate(
        data,
        {
            "architecture": spec,
            "training": {"epochs": 10, "learning_rate": 3e-3, "batch_size": 32},
            "loss_weighting": {"method": "static"},
        },
    )
    # with raw targets (before 2026-12-03) this run gave AUC 0.74 and a mean prediction of 51,
    # 4.8 std below the target's mean; standardised it gives 0.94 and within 0.06 std
    assert result.validation["churn"]["auc"] > 0.9
    predicted = predict(result.model, data.validation)["spend"]
    assert abs(float(predicted.mean()) - float(data.validation.targets["spend"].mean())) < 0.25 * spend.target_std
    # metrics are in the column's units; the loss the weighting and the checkpoint see is standardised
    spend_scores = result.validation["spend"]
    assert spend_scores["mse"] > 1000
    assert spend_scores["loss"] == pytest.approx(spend_scores["mse"] / spend.target_std**2, rel=1e-5)
    assert result.history[0]["train_loss"]["spend"] < 5
