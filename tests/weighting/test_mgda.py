"""MGDA: the min-norm solver against closed forms and optimality, and which gradients it uses."""

import numpy as np
import pytest
import torch

from mtl_search.architectures import build_model
from mtl_search.weighting import make_weighting
from mtl_search.weighting.mgda import min_norm_weights


def gram(*vectors):
    g = np.array(vectors, dtype=np.float64)
    return g @ g.T


def closed_form(g1, g2):
    """gamma minimising |gamma g1 + (1 - gamma) g2|^2 over [0, 1]."""
    g1, g2 = np.asarray(g1, dtype=np.float64), np.asarray(g2, dtype=np.float64)
    return float(np.clip((g2 - g1) @ g2 / ((g1 - g2) @ (g1 - g2)), 0.0, 1.0))


def test_two_gradients_give_the_closed_form_min_norm_point():
    # |(gamma, 2 - 2 gamma)|^2 is smallest at gamma = 0.8, worked by hand
    assert np.allclose(min_norm_weights(gram([1.0, 0.0], [0.0, 2.0])), [0.8, 0.2])
    rng = np.random.default_rng(0)
    for _ in range(20):
        g1, g2 = rng.standard_normal(5), rng.standard_normal(5)
        gamma = closed_form(g1, g2)
        assert np.allclose(min_norm_weights(gram(g1, g2)), [gamma, 1 - gamma])


def test_a_gradient_inside_the_hull_of_the_other_takes_all_the_weight():
    # the segment from (1, 0) to (2, 0) is nearest the origin at (1, 0)
    assert np.allclose(min_norm_weights(gram([1.0, 0.0], [2.0, 0.0])), [1.0, 0.0])


@pytest.mark.parametrize("n_tasks", [3, 5])
def test_frank_wolfe_reaches_the_min_norm_point(n_tasks):
    rng = np.random.default_rng(n_tasks)
    g = rng.standard_normal((n_tasks, 8)) + 0.5  # a common component, so the min-norm point is not 0
    alpha = min_norm_weights(g @ g.T)
    v = alpha @ g
    assert alpha.min() >= 0 and abs(alpha.sum() - 1) < 1e-9
    # optimality on the simplex: no gradient points closer to the origin than v does
    assert (g @ v).min() >= v @ v - 1e-4
    # and v is at least as short as every vertex, edge midpoint and the centre
    candidates = list(g) + [(g[i] + g[j]) / 2 for i in range(n_tasks) for j in range(i)] + [g.mean(axis=0)]
    assert v @ v <= min(c @ c for c in candidates) + 1e-9


def test_opposite_gradients_cancel():
    alpha = min_norm_weights(gram([1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]))
    v = alpha @ np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    assert np.linalg.norm(v) < 1e-3


def _setup(data, groups):
    torch.manual_seed(0)
    spec = {"family": "tree", "widths": [8, 8], "groups": groups, "tower": {"widths": [4]}}
    model = build_model(spec, data.input_schema, data.tasks)
    model.keep_representations = True
    outputs = model({"x": data.train.inputs["x"][:32]})
    losses = {t.name: t.loss(outputs[t.name], data.train.targets[t.name][:32]) for t in data.tasks}
    return model, losses


def _expected_weights(losses, inputs):
    g = [
        torch.cat([x.reshape(-1) for x in torch.autograd.grad(loss, inputs, retain_graph=True)])
        for loss in losses.values()
    ]
    gamma = closed_form(g[0].detach().numpy(), g[1].detach().numpy())
    return {"task1": 2 * gamma, "task2": 2 * (1 - gamma)}


def test_a_shared_representation_gives_the_gradients(tiny_synthetic):
    model, losses = _setup(tiny_synthetic, [[["task1", "task2"]], [["task1", "task2"]]])
    assert model.representations["task1"] is model.representations["task2"]
    expected = _expected_weights(losses, [model.representations["task1"]])
    mgda = make_weighting({"method": "mgda"}, ["task1", "task2"])
    assert mgda.needs_representations
    mgda.backward(losses, model, None)
    assert mgda.weights() == pytest.approx(expected, rel=1e-4)


def test_different_tower_inputs_fall_back_to_the_shared_parameters(tiny_synthetic):
    model, losses = _setup(tiny_synthetic, [[["task1", "task2"]], [["task1"], ["task2"]]])
    expected = _expected_weights(losses, model.shared_parameters())
    mgda = make_weighting({"method": "mgda"}, ["task1", "task2"])
    mgda.backward(losses, model, None)
    assert mgda.weights() == pytest.approx(expected, rel=1e-4)


def test_without_shared_parameters_the_weights_stay_equal(tiny_synthetic):
    model, losses = _setup(tiny_synthetic, [[["task1"], ["task2"]], [["task1"], ["task2"]]])
    assert model.shared_parameters() == []
    mgda = make_weighting({"method": "mgda"}, ["task1", "task2"])
    mgda.backward(losses, model, None)
    assert mgda.weights() == {"task1": 1.0, "task2": 1.0}
    assert all(p.grad is not None for p in model.parameters())
