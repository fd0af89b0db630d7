"""Weightings are nn.Modules: parameters() is what the trainer trains, .to() moves the rest too."""

import pytest
import torch

from mtl_search.weighting import LossWeighting, make_weighting, method_names

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU"))]


@pytest.mark.parametrize("method", method_names())
def test_every_method_is_a_module_that_describes_itself(method):
    weighting = make_weighting({"method": method}, ["a", "b"], {"a": "binary", "b": "regression"})
    assert isinstance(weighting, LossWeighting) and isinstance(weighting, torch.nn.Module)
    assert weighting.describe()["method"] == method
    # only uncertainty weighting and IMTL's loss scales learn with the network; GradNorm steps its weights itself
    expected = {"uncertainty": ["log_variances"], "imtl": ["log_scales"]}.get(method, [])
    assert [name for name, _ in weighting.named_parameters()] == expected


@pytest.mark.parametrize("device", DEVICES)
def test_to_moves_learned_parameters_in_place_and_buffers(device):
    uncertainty = make_weighting({"method": "uncertainty"}, ["a", "b"], {"a": "binary", "b": "regression"})
    parameter = uncertainty.log_variances
    assert uncertainty.to(device, torch.float64) is uncertainty
    # the same Parameter object: an optimiser made before or after holds the one that moves
    assert uncertainty.log_variances is parameter
    assert (parameter.device.type, parameter.dtype) == (device, torch.float64)
    assert (uncertainty.precision_factors.device.type, uncertainty.precision_factors.dtype) == (device, torch.float64)
    losses = {
        "a": torch.tensor(0.5, device=device, dtype=torch.float64),
        "b": torch.tensor(2.0, device=device, dtype=torch.float64),
    }
    uncertainty.backward(losses, torch.nn.Identity(), None)
    assert parameter.grad is not None and parameter.grad.device.type == device

    gradnorm = make_weighting({"method": "gradnorm"}, ["a", "b"]).to(device)
    assert gradnorm.task_weights.device.type == device
    gradnorm.update_weights(torch.tensor([1.0, 1.0], device=device), torch.tensor([1.0, 3.0], device=device))
    assert float(gradnorm.task_weights.sum()) == pytest.approx(2.0)


def test_gradnorm_steps_its_weights_on_the_gradient_of_its_own_loss():
    """The step GradNorm takes is Adam's on L_grad = sum_t |w_t n_t - target_t| (target held
    constant), as autograd computes it: the weights need no parameter for that."""
    alpha, learning_rate = 1.5, 0.025
    settings = {"method": "gradnorm", "alpha": alpha, "weight_learning_rate": learning_rate}
    gradnorm = make_weighting(settings, ["a", "b", "c"])
    reference = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.Adam([reference], lr=learning_rate)
    first = torch.tensor([1.0, 2.0, 0.5])
    batches = [
        (first, [1.0, 4.0, 0.5]),
        (torch.tensor([0.9, 1.0, 0.4]), [2.0, 1.0, 1.0]),
        (torch.tensor([0.5, 1.5, 0.45]), [1.0, 1.0, 3.0]),
    ]
    for losses, norms in batches:
        norms = torch.tensor(norms)
        gradnorm.update_weights(losses, norms)
        weighted = reference * norms
        ratios = losses / first
        target = weighted.detach().mean() * (ratios / ratios.mean()) ** alpha
        optimizer.zero_grad()
        (weighted - target).abs().sum().backward()
        optimizer.step()
        with torch.no_grad():
            reference.clamp_(min=1e-8)
            reference.mul_(3 / reference.sum())
        torch.testing.assert_close(gradnorm.task_weights, reference.detach())
