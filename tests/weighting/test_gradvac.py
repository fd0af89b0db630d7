"""GradVac: hand-computed two-task steps, the correction re-derived by bisection, and the
backward that puts the corrected sum on the shared parameters."""

import math

import pytest
import torch
from torch import nn

from mtl_search.errors import UserError
from mtl_search.training.population import alone_reason
from mtl_search.weighting import make_weighting
from mtl_search.weighting.gradvac import vaccinate

TASKS = ["task1", "task2"]


class KnownGradients(nn.Module):
    """A shared vector w and one offset per task: L_t = w . g_t + b_t has gradient g_t on w, 1 on b_t."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(2, dtype=torch.float64))
        self.offsets = nn.ParameterList([nn.Parameter(torch.zeros((), dtype=torch.float64)) for _ in TASKS])

    def shared_parameters(self):
        return [self.w]


def step(weighting, model, g1, g2):
    model.zero_grad(set_to_none=True)
    losses = {
        name: model.w @ torch.tensor(g, dtype=torch.float64) + model.offsets[t]
        for t, (name, g) in enumerate(zip(TASKS, (g1, g2)))
    }
    weighting.backward(losses, model, None)
    return model.w.grad.clone(), [float(b.grad) for b in model.offsets]


def test_two_task_steps_by_hand():
    weighting = make_weighting({"method": "gradvac", "beta": 0.5}, TASKS).double()
    model = KnownGradients()

    # targets start at 0: a conflicting pair is projected as PCGrad would
    shared, own = step(weighting, model, [1.0, 0.0], [-1.0, 1.0])
    # g1 + (1/2) g2 = (0.5, 0.5) and g2 + g1 = (0, 1), summed
    assert torch.allclose(shared, torch.tensor([0.5, 1.5], dtype=torch.float64))
    assert own == pytest.approx([1.0, 1.0])  # towers and offsets: the plain sum
    # each target moved half-way to the cosine seen, -1/sqrt(2)
    assert torch.allclose(
        weighting.target_cosines, torch.full((2, 2), -(2**-0.5) / 2, dtype=torch.float64).fill_diagonal_(0)
    )
    assert weighting.weights() == pytest.approx({"task1": 2.0, "task2": 1.5})

    # orthogonal gradients are above the (negative) targets: nothing added, but the targets still move
    shared, _ = step(weighting, model, [1.0, 0.0], [0.0, 1.0])
    assert torch.allclose(shared, torch.tensor([1.0, 1.0], dtype=torch.float64))
    assert math.isclose(float(weighting.target_cosines[0, 1]), -(2**-0.5) / 4, rel_tol=1e-6)


def test_a_positive_target_lifts_orthogonal_gradients_to_it():
    weighting = make_weighting({"method": "gradvac", "beta": 0.0}, TASKS).double()
    weighting.target_cosines.fill_(0.5)  # 60 degrees
    model = KnownGradients()
    shared, _ = step(weighting, model, [1.0, 0.0], [0.0, 2.0])
    # by hand, in the plane: g1 + c g2 at 60 degrees from g2 needs 2c = tan(30 deg), c = 1/(2 sqrt 3):
    # (1, 1/sqrt 3); g2 + c' g1 at 60 degrees from g1 needs c' = 2 tan(30 deg): (2/sqrt 3, 2)
    root3 = 3**0.5
    assert torch.allclose(shared, torch.tensor([1 + 2 / root3, 2 + 1 / root3], dtype=torch.float64))
    assert weighting.weights() == pytest.approx({"task1": 1 + 2 / root3, "task2": 1 + 1 / (2 * root3)})


def bisected_step(g_i, g_j, target):
    """The c >= 0 with cos(g_i + c g_j, g_j) = target, by bisection (the cosine grows with c)."""

    def cosine(c):
        moved = g_i + c * g_j
        return float(moved @ g_j / (moved.norm() * g_j.norm()))

    low, high = 0.0, 1.0
    while cosine(high) < target:
        high *= 2
    for _ in range(200):
        middle = (low + high) / 2
        low, high = (middle, high) if cosine(middle) < target else (low, middle)
    return (low + high) / 2


def test_the_closed_form_is_the_step_that_reaches_the_target():
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        gradients = torch.randn(2, 5, generator=generator, dtype=torch.float64)
        targets = torch.rand(2, 2, generator=generator, dtype=torch.float64) * 1.8 - 0.9
        coefficients, _ = vaccinate(gradients, targets, 0.1, torch.Generator().manual_seed(0))
        for i, j in ((0, 1), (1, 0)):
            cosine = float(gradients[i] @ gradients[j] / (gradients[i].norm() * gradients[j].norm()))
            expected = (
                bisected_step(gradients[i], gradients[j], float(targets[i, j])) if cosine < targets[i, j] else 0.0
            )
            assert math.isclose(float(coefficients[i, j]), expected, rel_tol=1e-9, abs_tol=1e-12)


def test_the_random_order_comes_from_the_seed():
    gradients = torch.randn(4, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    targets = torch.full((4, 4), 0.3, dtype=torch.float64)

    def run(seed):
        return vaccinate(gradients, targets, 0.1, torch.Generator().manual_seed(seed))[0]

    assert torch.equal(run(1), run(1))
    assert any(not torch.allclose(run(1), run(seed)) for seed in range(2, 12))


def test_gradients_that_are_not_finite_keep_the_plain_sum_and_the_targets():
    weighting = make_weighting({"method": "gradvac", "beta": 0.5}, TASKS)
    weighting.step(torch.tensor([[1.0, 0.0], [-1.0, 1.0]]))
    kept = weighting.target_cosines.clone()
    assert weighting.step(torch.tensor([[float("nan"), 0.0], [0.0, 1.0]])) is None
    assert torch.equal(weighting.target_cosines, kept)


def test_bad_beta_is_refused_and_it_trains_alone_in_a_population(tiny_synthetic):
    with pytest.raises(UserError, match=r"loss_weighting\.gradvac\.beta: 1\.5 is not in \[0, 1\]"):
        make_weighting({"method": "gradvac", "beta": 1.5}, TASKS)
    candidate = {
        "architecture": {"family": "tree", "widths": [8], "groups": [[["task1", "task2"]]]},
        "training": {"epochs": 1, "batch_size": 64, "learning_rate": 0.01, "seed": 0},
        "loss_weighting": {"method": "gradvac"},
    }
    assert alone_reason(candidate, tiny_synthetic) == "loss weighting gradvac works on each member's own gradients"
