"""GradNorm: the weights move towards their gradient-norm targets."""

import pytest
import torch

from mtl_search.architectures import build_model
from mtl_search.weighting import make_weighting


def test_with_alpha_zero_the_weights_equalise_the_weighted_gradient_norms():
    gradnorm = make_weighting({"method": "gradnorm", "alpha": 0.0, "weight_learning_rate": 0.02}, ["a", "b"])
    losses = torch.tensor([1.0, 1.0])
    norms = torch.tensor([1.0, 10.0])  # task b's gradient is ten times larger
    gaps = []
    for _ in range(150):
        w = gradnorm.task_weights.detach()
        gaps.append(float(abs(w[0] * norms[0] - w[1] * norms[1])))
        gradnorm.update_weights(losses, norms)
        assert float(gradnorm.task_weights.detach().sum()) == pytest.approx(2.0)
    assert gaps[1] < gaps[0]
    w = gradnorm.task_weights.detach()
    # the target w_a * 1 = w_b * 10 with w_a + w_b = 2 is w = (20/11, 2/11)
    assert w.tolist() == pytest.approx([20 / 11, 2 / 11], abs=0.05)


def test_a_task_that_trains_slower_gains_weight():
    gradnorm = make_weighting({"method": "gradnorm", "alpha": 1.5}, ["slow", "fast"])
    norms = torch.tensor([2.0, 2.0])
    gradnorm.update_weights(torch.tensor([1.0, 1.0]), norms)  # the first losses, L(0)
    before = gradnorm.task_weights.detach().clone()
    for _ in range(5):
        gradnorm.update_weights(torch.tensor([0.9, 0.3]), norms)  # "fast" lost 70 %, "slow" 10 %
    after = gradnorm.task_weights.detach()
    assert after[0] > before[0] and after[1] < before[1]


def test_backward_uses_the_shared_gradients_and_keeps_the_weights_summing_to_k(tiny_synthetic3):
    torch.manual_seed(0)
    names = tiny_synthetic3.task_names
    spec = {"family": "tree", "widths": [8], "groups": [[names]], "tower": {"widths": []}}
    model = build_model(spec, tiny_synthetic3.input_schema, tiny_synthetic3.tasks)
    gradnorm = make_weighting({"method": "gradnorm", "alpha": 0.5}, names)
    x = tiny_synthetic3.train.inputs["x"][:64]
    for _ in range(3):
        model.zero_grad()
        outputs = model({"x": x})
        # task3's loss is scaled up, so its gradient norm is the largest and its weight drops
        losses = {t: (10.0 if t == "task3" else 1.0) * outputs[t].pow(2).mean() for t in names}
        gradnorm.backward(losses, model, None)
    weights = gradnorm.task_weights.detach()
    assert float(weights.sum()) == pytest.approx(3.0)
    assert int(weights.argmin()) == 2
    assert all(p.grad is not None for p in model.parameters())
