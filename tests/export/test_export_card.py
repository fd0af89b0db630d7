"""What the exported model card and metrics.json say: conditional (given=) outputs and refined numbers."""

from __future__ import annotations

import json

import numpy as np
import optuna
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

import mtl_search
from mtl_search.analysis.refine import refined_record
from mtl_search.architectures.conditional import joint_probabilities
from mtl_search.export.bundle import reload_data
from mtl_search.export.model_card import output_meaning, scoring
from mtl_search.records.study import StudyRecord
from mtl_search.tasks import Task


def accounts_table(rows: int = 400, seed: int = 0) -> pd.DataFrame:
    """big for about half the rows; upsell only defined (else empty) where big = 1; churn for all."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 4))
    big = (x[:, 0] + 0.5 * rng.normal(size=rows) > 0).astype(int)
    upsell = np.where(big == 1, (x[:, 1] + 0.5 * rng.normal(size=rows) > 0).astype(float), np.nan)
    churn = (x[:, 2] - x[:, 3] + 0.5 * rng.normal(size=rows) > 0).astype(int)
    return pd.DataFrame(
        {"f1": x[:, 0], "f2": x[:, 1], "f3": x[:, 2], "f4": x[:, 3], "big": big, "upsell": upsell, "churn": churn}
    )


@pytest.fixture(scope="module")
def refined_export(tmp_path_factory):
    """A one-trial search with upsell given big, refined with 2 more seeds, exported twice (stored weights, --retrain)."""
    from mtl_search.cli import main

    folder = tmp_path_factory.mktemp("card")
    accounts_table().to_csv(folder / "accounts.csv", index=False)
    url = f"sqlite:///{folder / 'studies.db'}"
    assert (
        main(
            [
                "run",
                "--data-file",
                str(folder / "accounts.csv"),
                "--task",
                "big:binary",
                "--task",
                "upsell:binary:given=big",
                "--task",
                "churn:binary",
                "--storage",
                url,
                "--study-name",
                "accounts",
                "--trials",
                "1",
                "--epochs",
                "2",
                "--quiet",
            ]
        )
        == 0
    )
    assert main(["refine", "accounts", "--seeds", "2", "--storage", url]) == 0
    assert main(["export", "accounts", "--trial", "0", "--storage", url, "--out", str(folder / "stored")]) == 0
    assert (
        main(["export", "accounts", "--trial", "0", "--storage", url, "--retrain", "--out", str(folder / "retrained")])
        == 0
    )
    return optuna.load_study(study_name="accounts", storage=url), folder


def test_card_says_a_conditional_output_is_given_its_condition_and_how_to_get_the_joint(refined_export):
    study, folder = refined_export
    card = (folder / "stored" / "README.md").read_text()
    assert (
        "| upsell | binary | 2 | one logit per row; `torch.sigmoid(output)` is P(upsell = 1 \\| big = 1), conditional on big: see below |"
        in card
    )
    assert "| big | binary | 2 | one logit per row; `torch.sigmoid(output)` is P(big = 1) |" in card
    expression = "torch.sigmoid(outputs['upsell']) * torch.sigmoid(outputs['big'])"
    assert (
        "**upsell is conditional on big** (entire-space task, declared `given=big`): `torch.sigmoid(outputs['upsell'])` is "
        "P(upsell = 1 | big = 1), the probability of upsell for a row where big happens, not P(upsell = 1). "
        f"The joint P(upsell = 1 and big = 1) is `{expression}`."
    ) in card
    assert (
        "upsell: metrics computed from P(upsell = 1 | big = 1) over the rows of the split where big = 1; its loss is the "
        "joint (entire-space) loss of P(upsell = 1 and big = 1) over every labelled row."
    ) in card
    description = json.loads((folder / "stored" / "model.json").read_text())
    assert description["output_meaning"]["upsell"] == (
        "one logit per row; torch.sigmoid(output) is P(upsell = 1 | big = 1), conditional on big (not P(upsell = 1)); "
        f"the joint P(upsell = 1 and big = 1) is {expression}"
    )
    assert description["output_meaning"]["churn"] == "one logit per row; torch.sigmoid(output) is P(churn = 1)"
    scoring = json.loads((folder / "stored" / "metrics.json").read_text())["scoring"]
    assert (
        "where big = 1" in scoring["upsell"]
        and scoring["churn"] == "computed over the rows of the split where churn is labelled"
    )

    # the card's claims checked against the exported model itself
    model = mtl_search.load(folder / "stored")
    data = reload_data(StudyRecord.read(study))
    with torch.no_grad():
        outputs = model(data.validation.inputs)
    tasks = [Task.from_dict(t) for t in description["tasks"]]
    card_joint = eval(expression, {"torch": torch, "outputs": outputs}).reshape(-1)  # binary outputs are (rows, 1)
    assert torch.allclose(card_joint, joint_probabilities(tasks, outputs)["upsell"])
    # the stored upsell AUC is the AUC of sigmoid(output) as P(upsell | big) on the rows where big = 1
    big = data.validation.targets["big"] == 1
    auc = roc_auc_score(
        data.validation.targets["upsell"][big].numpy(), torch.sigmoid(outputs["upsell"].reshape(-1)[big]).numpy()
    )
    assert auc == pytest.approx(study.trials[0].user_attrs["validation"]["upsell"]["auc"], abs=1e-6)


def test_a_chain_of_conditions_multiplies_down_the_chain():
    tasks = [
        Task("visit", "binary").to_dict(),
        Task("click", "binary", given="visit").to_dict(),
        Task("buy", "binary", given="click").to_dict(),
    ]
    assert output_meaning(tasks[2], tasks) == (
        "one logit per row; torch.sigmoid(output) is P(buy = 1 | click = 1), conditional on click (not P(buy = 1)); the joint "
        "P(buy = 1 and click = 1 and visit = 1) is "
        "torch.sigmoid(outputs['buy']) * torch.sigmoid(outputs['click']) * torch.sigmoid(outputs['visit'])"
    )
    assert scoring(tasks[2], tasks).startswith(
        "computed from P(buy = 1 | click = 1) over the rows of the split where click = 1 and visit = 1;"
    )


def test_refined_numbers_are_exported_beside_the_weights_own(refined_export):
    study, folder = refined_export
    record = refined_record(study, 0)
    trial = study.trials[0]
    exported = json.loads((folder / "stored" / "metrics.json").read_text())
    assert [(m["split"], m["model"], m["values"]) for m in exported["metrics"]] == [
        ("validation", "these weights", trial.user_attrs["validation"]),
        ("test", "these weights", trial.user_attrs["test"]),
    ]
    refined = exported["refined"]
    assert (refined["seeds"], refined["validation"], refined["test"]) == (
        [0, 1, 2],
        record["validation"],
        record["test"],
    )
    assert refined["exported_weights"] == "The exported weights are the seed-0 run"
    card = (folder / "stored" / "README.md").read_text()
    stats = record["test"]["churn"]["auc"]
    for fragment in (
        "### Over several training seeds (`mtl-search refine`)",
        "Trial 0's architecture trained 3 times on the train split with its settings and training seeds 0, 1, 2 (seed 0 is "
        "the search's run, the others `mtl-search refine`'s): mean ± sample standard deviation over the n runs. "
        "The exported weights are the seed-0 run.",
        f"| test | churn | auc | {stats['mean']:.4g} ± {stats['std']:.2g} | 3 |",
        f"| test | these weights | churn | auc | {trial.user_attrs['test']['churn']['auc']:.4g} |",
    ):
        assert fragment in card, fragment
    # retrained on train + validation: the refined runs are not these weights, and the card says so
    retrained = json.loads((folder / "retrained" / "metrics.json").read_text())["refined"]
    assert (
        retrained["exported_weights"]
        == "The exported weights are not among these runs: they were trained on train + validation"
    )
    assert retrained["validation"] == record["validation"]
