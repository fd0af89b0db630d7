import math

import pytest
import torch
import torch.nn.functional as F

from mtl_search.architectures.conditional import evaluation_targets, joint_losses, joint_probabilities, joint_target
from mtl_search.data.sequences import make_sequences
from mtl_search.errors import UserError
from mtl_search.tasks import Task, validate_conditions
from mtl_search.training import train_candidate
from mtl_search.training.trainer import evaluate

nan = math.nan
CLICK = Task("click", "binary")
CONVERSION = Task("conversion", "binary", given="click")
TASKS = [CLICK, CONVERSION]
OUTPUTS = {
    "click": torch.tensor([[0.3], [-1.0], [2.0], [0.0]]),
    "conversion": torch.tensor([[1.5], [0.2], [-0.7], [3.0]]),
}
# conversion is only defined where click = 1 (NaN elsewhere)
TARGETS = {"click": torch.tensor([1.0, 0.0, 1.0, 0.0]), "conversion": torch.tensor([1.0, nan, 0.0, nan])}


def test_joint_probability_is_the_product_of_click_and_conditional_conversion():
    joint = joint_probabilities(TASKS, OUTPUTS)["conversion"]
    expected = torch.sigmoid(OUTPUTS["click"].reshape(-1)) * torch.sigmoid(OUTPUTS["conversion"].reshape(-1))
    torch.testing.assert_close(joint, expected)


def test_conditional_loss_is_joint_cross_entropy_on_all_rows():
    loss = joint_losses(TASKS, OUTPUTS, TARGETS)["conversion"]
    p = torch.sigmoid(OUTPUTS["click"].reshape(-1)) * torch.sigmoid(OUTPUTS["conversion"].reshape(-1))
    joint_label = torch.tensor([1.0, 0.0, 0.0, 0.0])  # click & conversion, on every row
    torch.testing.assert_close(loss, F.binary_cross_entropy(p, joint_label))
    # a zero instead of NaN where click = 0 is read the same way
    zeros = dict(TARGETS, conversion=torch.tensor([1.0, 0.0, 0.0, 0.0]))
    torch.testing.assert_close(joint_losses(TASKS, OUTPUTS, zeros)["conversion"], loss)
    assert list(joint_losses(TASKS, OUTPUTS, TARGETS)) == ["conversion"]


def test_conditional_loss_gradient_reaches_both_towers_from_unclicked_rows():
    outputs = {name: value.clone().requires_grad_(True) for name, value in OUTPUTS.items()}
    joint_losses(TASKS, outputs, TARGETS)["conversion"].backward()
    # row 1 has click = 0: the joint label 0 still trains both the click and the conversion logit
    assert outputs["click"].grad[1, 0] != 0
    assert outputs["conversion"].grad[1, 0] != 0


def test_loss_is_finite_at_extreme_logits():
    outputs = {"click": torch.tensor([[40.0], [-40.0]]), "conversion": torch.tensor([[40.0], [40.0]])}
    targets = {"click": torch.tensor([1.0, 0.0]), "conversion": torch.tensor([0.0, nan])}
    assert torch.isfinite(joint_losses(TASKS, outputs, targets)["conversion"])


def test_metrics_use_only_rows_where_the_condition_holds():
    scored = evaluation_targets(TASKS, TARGETS | {"conversion": torch.tensor([1.0, 0.0, 0.0, 0.0])})
    assert torch.equal(torch.isnan(scored["conversion"]), torch.tensor([False, True, False, True]))
    assert torch.equal(scored["click"], TARGETS["click"])


def test_chained_conditions_multiply_down_the_chain():
    order = Task("order", "binary", given="conversion")
    tasks = [CLICK, CONVERSION, order]
    outputs = OUTPUTS | {"order": torch.tensor([[0.5], [0.5], [0.5], [0.5]])}
    expected = torch.sigmoid(OUTPUTS["click"]) * torch.sigmoid(OUTPUTS["conversion"]) * torch.sigmoid(torch.tensor(0.5))
    torch.testing.assert_close(joint_probabilities(tasks, outputs)["order"], expected.reshape(-1))
    targets = TARGETS | {"order": torch.tensor([1.0, nan, nan, nan])}
    assert joint_target(order, tasks, targets).tolist() == [1.0, 0.0, 0.0, 0.0]


@pytest.mark.parametrize(
    "tasks, fragment",
    [
        ([Task("b", "binary", given="a")], "given=a is not a task"),
        ([Task("a", "regression"), Task("b", "binary", given="a")], "binary"),
        ([Task("a", "binary", given="b"), Task("b", "binary", given="a")], "cycle"),
    ],
)
def test_bad_conditions_are_user_errors(tasks, fragment):
    with pytest.raises(UserError, match=fragment):
        validate_conditions(tasks)


def test_training_scores_conditional_task_on_clicked_rows():
    data = make_sequences(rows=300, max_length=6, seed=0)
    spec = {
        "family": "tree",
        "widths": [8],
        "groups": [[["click", "purchase", "dwell"]]],
        "tower": {"widths": []},
        "stem": {"sequence_width": 8, "embedding_dim": 4},
    }
    result = train_candidate(data, {"architecture": spec, "training": {"epochs": 1, "batch_size": 64}}, device="cpu")
    scores = evaluate(result.model, data, data.validation)
    with torch.no_grad():
        model_outputs = result.model.eval()(data.validation.inputs)
    clicked = data.validation.targets["click"] == 1
    expected = Task("purchase", "binary").evaluate(
        model_outputs["purchase"][clicked], data.validation.targets["purchase"][clicked]
    )
    assert scores["purchase"]["auc"] == pytest.approx(expected["auc"])
    joint = joint_losses(data.tasks, model_outputs, data.validation.targets)["purchase"]
    assert scores["purchase"]["loss"] == pytest.approx(float(joint), rel=1e-5)
