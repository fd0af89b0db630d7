"""The torchjd weightings: hand-computed updates on constructed Jacobians, agreement with torchjd
called directly, the backward that puts the update on the shared parameters, and the refusal
without torchjd."""

import sys

import optuna
import pytest
import torch

from mtl_search.architectures import build_model
from mtl_search.errors import UserError
from mtl_search.search.space import parse_space
from mtl_search.training.population import alone_reason
from mtl_search.weighting import make_weighting

aggregation = pytest.importorskip("torchjd.aggregation")
pytest.importorskip("quadprog")

JD_METHODS = ("upgrad", "dualproj", "aligned_mtl", "graddrop", "imtl", "config", "cagrad", "nash_mtl")
TASKS = ["task1", "task2"]


def update(method, rows, **settings):
    weighting = make_weighting({"method": method, **settings}, [f"task{i + 1}" for i in range(len(rows))])
    return weighting.aggregate(torch.tensor(rows, dtype=torch.float64))


def close(actual, expected, atol=1e-9):
    return torch.allclose(actual, torch.tensor(expected, dtype=actual.dtype), atol=atol)


def test_upgrad_projects_each_gradient_onto_the_dual_cone_and_sums():
    g1, g2 = [1.0, 0.0], [-2.0, 1.0]  # g1 . g2 = -2: they conflict
    result = update("upgrad", [g1, g2])
    # by hand: g1 - (g1.g2)/|g2|^2 g2 = (0.2, 0.4); g2 - (g2.g1)/|g1|^2 g1 = (0, 1); summed. torchjd
    # regularises the Gramian (1e-4 on its diagonal), hence the tolerance
    assert close(result, [0.2, 1.4], atol=5e-3)
    # the point of UPGrad: the update conflicts with no task
    assert all(float(result @ torch.tensor(g, dtype=torch.float64)) >= 0 for g in (g1, g2))


def test_upgrad_and_dualproj_sum_gradients_that_do_not_conflict():
    rows = [[1.0, 0.0, 2.0], [1.0, 1.0, 0.0]]
    for method in ("upgrad", "dualproj"):
        assert close(update(method, rows), [2.0, 1.0, 2.0], atol=1e-3), method


def test_dualproj_projects_the_sum_onto_the_dual_cone():
    # the sum (-1, 1) conflicts with g1; its projection onto {x : x.g1 >= 0, x.g2 >= 0} is (0, 1)
    assert close(update("dualproj", [[1.0, 0.0], [-2.0, 1.0]]), [0.0, 1.0], atol=5e-3)


def test_aligned_mtl_makes_the_gradients_orthogonal_and_of_equal_norm():
    rows = [[2.0, 0.0], [0.0, 1.0]]  # Gramian eigenvalues 4 and 1
    assert close(update("aligned_mtl", rows), [1.0, 1.0])  # both scaled to sqrt(min) = 1
    assert close(update("aligned_mtl", rows, scale_mode="rmse"), [2.5**0.5] * 2)  # sqrt(mean) = sqrt(2.5)


def test_imtl_g_has_an_equal_projection_on_every_unit_gradient():
    g1, g2 = torch.tensor([1.0, 0.0], dtype=torch.float64), torch.tensor([0.0, 2.0], dtype=torch.float64)
    result = update("imtl", [g1.tolist(), g2.tolist()], loss_scaling=False)
    # by hand: weights proportional to G^-1 (|g1|, |g2|) = (1, 0.5), summing to K = 2: (4/3, 2/3)
    assert close(result, [4 / 3, 4 / 3])
    assert abs(float(result @ g1 / g1.norm() - result @ g2 / g2.norm())) < 1e-9


def test_config_makes_an_equal_angle_with_every_gradient():
    g1, g2 = torch.tensor([1.0, 0.0], dtype=torch.float64), torch.tensor([0.0, 2.0], dtype=torch.float64)
    result = update("config", [g1.tolist(), g2.tolist()])
    # by hand: direction (1, 1)/sqrt(2) (pseudo-inverse of the unit gradients times ones), length the
    # sum of the projections 1/sqrt(2) + 2/sqrt(2)
    assert close(result, [1.5, 1.5])
    cosines = [float(result @ g / (result.norm() * g.norm())) for g in (g1, g2)]
    assert cosines[0] == pytest.approx(cosines[1]) and cosines[0] > 0


def test_cagrad_is_the_sum_at_radius_0_and_adds_to_every_weight_beyond():
    rows = [[1.0, 0.0], [-2.0, 1.0]]
    assert close(update("cagrad", rows, c=0.0), [-1.0, 1.0], atol=1e-6)
    weighting = make_weighting({"method": "cagrad", "c": 0.5}, TASKS)
    weighting.aggregate(torch.tensor(rows))
    # K / (1 + c) times (1/K + a non-negative correction): every task keeps at least 1 / (1 + c)
    assert all(weight >= 1 / 1.5 - 1e-6 for weight in weighting.weights().values())
    assert max(weighting.weights().values()) > 1 / 1.5 + 1e-3  # conflicting gradients: a correction is added


def test_nash_mtl_weights_are_the_bargaining_solution():
    jacobian = torch.tensor([[1.0, 0.0], [-2.0, 1.0]])
    weighting = make_weighting({"method": "nash_mtl", "max_norm": 0.0}, TASKS)
    result = weighting.aggregate(jacobian)
    alpha = torch.tensor([weighting.weights()[name] for name in TASKS])
    # alpha_t (G alpha)_t = 1: each task's first-order improvement g_t . update is 1 / alpha_t
    assert torch.allclose(alpha * (jacobian @ result), torch.ones(2), atol=1e-3)
    # orthogonal gradients of norms 1 and 2: alpha_t = 1 / |g_t|^2 ... by hand, (1, 1/2)
    orthogonal = make_weighting({"method": "nash_mtl", "max_norm": 0.0}, TASKS)
    orthogonal.aggregate(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
    assert orthogonal.weights() == pytest.approx({"task1": 1.0, "task2": 0.5}, abs=1e-3)


def test_graddrop_keeps_one_sign_per_parameter():
    rows = [[1.0, 2.0, -1.0], [1.0, -2.0, -3.0]]
    for seed in range(10):
        torch.manual_seed(seed)
        first, conflicting, last = update("graddrop", rows).tolist()
        assert first == 2.0  # both positive: sign purity 1, every draw keeps the positive parts
        assert last == -4.0  # both negative: purity 0, the negative parts are kept
        assert conflicting in (2.0, -2.0)  # purity 1/2: one task's component or the other's, never their sum
    # a leak of 1 lets every gradient through: the plain sum
    assert close(update("graddrop", rows, leak=1.0), [2.0, 0.0, -4.0])


@pytest.mark.filterwarnings("ignore:You are solving a parameterized problem")
@pytest.mark.parametrize("n_tasks", [2, 3])
def test_every_method_gives_the_update_torchjd_gives_on_the_same_jacobian(n_tasks):
    jacobian = torch.randn(n_tasks, 7, generator=torch.Generator().manual_seed(n_tasks), dtype=torch.float64)
    ones = torch.ones(n_tasks, dtype=torch.float64)
    references = {
        "upgrad": aggregation.UPGrad(pref_vector=ones),
        "dualproj": aggregation.DualProj(pref_vector=ones),
        "aligned_mtl": aggregation.AlignedMTL(pref_vector=ones),
        "graddrop": aggregation.GradDrop(),
        "imtl": lambda matrix: n_tasks * aggregation.IMTLG()(matrix),  # weights summing to K, not 1
        "config": aggregation.ConFIG(),
        "cagrad": lambda matrix: n_tasks / 1.5 * aggregation.CAGrad(c=0.5)(matrix),  # (1 + c) * mean -> sum
        "nash_mtl": aggregation.NashMTL(n_tasks=n_tasks),
    }
    for method, reference in references.items():
        torch.manual_seed(5)  # GradDrop's draws
        expected = reference(jacobian)
        torch.manual_seed(5)
        ours = update(method, jacobian.tolist(), **({"loss_scaling": False} if method == "imtl" else {}))
        assert torch.allclose(ours, expected, atol=1e-10), method
    # and the sum-of-gradients scale: on identical rows every method returns their sum (Nash-MTL
    # keeps the paper's weights, clipped to a norm of 1)
    same = [[1.0, -2.0, 0.5]] * n_tasks
    for method in set(JD_METHODS) - {"nash_mtl"}:
        assert close(update(method, same), [n_tasks * v for v in same[0]], atol=1e-3), method


def _flat(loss, parameters):
    grads = torch.autograd.grad(loss, parameters, retain_graph=True, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, parameters)])


def _conflicting_step(data):
    torch.manual_seed(0)
    spec = {"family": "tree", "widths": [8], "groups": [[["task1", "task2"]]], "tower": {"widths": []}}
    model = build_model(spec, data.input_schema, data.tasks)
    outputs = model({"x": data.train.inputs["x"][:32]})
    # task1 pushes its output up, task2 pulls its output down: the shared gradients conflict
    losses = {"task1": -outputs["task1"].mean(), "task2": (outputs["task2"] + 1.0).pow(2).mean()}
    shared = model.shared_parameters()
    own = [p for p in model.parameters() if all(p is not s for s in shared)]
    return model, losses, shared, own


@pytest.mark.parametrize("method", ["upgrad", "dualproj", "aligned_mtl", "imtl"])
def test_backward_puts_the_aggregate_on_shared_parameters_and_the_sum_elsewhere(tiny_synthetic, method):
    model, losses, shared, own = _conflicting_step(tiny_synthetic)
    jacobian = torch.stack([_flat(losses[name], shared) for name in TASKS])
    assert jacobian[0] @ jacobian[1] < 0
    settings = {"loss_scaling": False} if method == "imtl" else {}
    expected_shared = make_weighting({"method": method, **settings}, TASKS).aggregate(jacobian.detach())
    expected_own = _flat(losses["task1"] + losses["task2"], own)
    weighting = make_weighting({"method": method, **settings}, TASKS)

    weighting.backward(losses, model, None)

    assert torch.allclose(torch.cat([p.grad.reshape(-1) for p in shared]), expected_shared, atol=1e-5)
    assert torch.allclose(torch.cat([p.grad.reshape(-1) for p in own]), expected_own, atol=1e-6)
    # the recorded weights w reproduce the update: w @ J
    weights = torch.tensor([weighting.weights()[name] for name in TASKS])
    assert torch.allclose(weights @ jacobian, expected_shared, atol=1e-4)
    if method == "upgrad":
        assert all(float(expected_shared @ row) >= -1e-6 for row in jacobian)


def test_imtl_loss_scales_are_learned_and_scale_each_task_gradient(tiny_synthetic):
    model, losses, shared, _ = _conflicting_step(tiny_synthetic)
    weighting = make_weighting({"method": "imtl"}, TASKS)
    with torch.no_grad():
        weighting.log_scales.copy_(torch.tensor([0.5, -0.5]))
    jacobian = torch.stack([_flat(losses[name], shared) for name in TASKS])
    scaled = jacobian * torch.exp(torch.tensor([0.5, -0.5])).unsqueeze(1)

    weighting.backward(losses, model, None)

    expected = 2 * aggregation.IMTLG()(scaled.detach())
    assert torch.allclose(torch.cat([p.grad.reshape(-1) for p in shared]), expected, atol=1e-5)
    # d/ds (exp(s) L - s) = exp(s) L - 1
    loss_values = torch.stack([losses[name].detach() for name in TASKS])
    assert torch.allclose(weighting.log_scales.grad, torch.exp(torch.tensor([0.5, -0.5])) * loss_values - 1, atol=1e-6)


def test_a_jacobian_that_is_not_finite_keeps_the_plain_sum():
    assert update("upgrad", [[float("inf"), 0.0], [1.0, 1.0]]) is None


def test_gradient_methods_train_alone_in_a_population(tiny_synthetic):
    for method in JD_METHODS:
        candidate = {
            "architecture": {"family": "tree", "widths": [8], "groups": [[["task1", "task2"]]]},
            "training": {"epochs": 1, "batch_size": 64, "learning_rate": 0.01, "seed": 0},
            "loss_weighting": {"method": method},
        }
        assert (
            alone_reason(candidate, tiny_synthetic) == f"loss weighting {method} works on each member's own gradients"
        )


def test_bad_settings_are_refused_naming_the_key():
    with pytest.raises(UserError, match=r"loss_weighting.graddrop.leak.*at most 1"):
        parse_space({"families": {"tree": {}}, "loss_weighting": {"graddrop": {"leak": {"low": 0.0, "high": 2.0}}}})
    with pytest.raises(UserError, match=r"loss_weighting.aligned_mtl.scale_mode.*'max'"):
        parse_space({"families": {"tree": {}}, "loss_weighting": {"aligned_mtl": {"scale_mode": "max"}}})


@pytest.mark.parametrize(
    ("method", "missing", "extra"),
    [
        ("upgrad", "torchjd", "jd"),
        ("upgrad", "quadprog", "jd"),
        ("graddrop", "torchjd", "jd"),
        ("cagrad", "cvxpy", "jd-cvxpy"),
    ],
)
def test_without_torchjd_the_method_is_refused_naming_the_extra(monkeypatch, method, missing, extra):
    monkeypatch.setitem(sys.modules, missing, None)  # import raises ImportError
    message = rf"loss weighting '{method}' needs the optional package '{missing}': pip install 'mtl-search\[{extra}\]'"
    with pytest.raises(UserError, match=message) as error:
        make_weighting({"method": method}, TASKS)
    assert "\n" not in str(error.value)
    with pytest.raises(UserError, match=message):
        parse_space({"families": {"tree": {}}, "loss_weighting": {method: {}}})


def test_a_search_samples_the_methods_with_their_settings(tiny_synthetic):
    from mtl_search.search import SearchSettings, run_search

    space = parse_space(
        {
            "training": {"epochs": 1, "batch_size": 64},
            "families": {"tree": {"depth": 1, "width": 8}},
            "loss_weighting": {
                "upgrad": {},
                "graddrop": {"leak": {"low": 0.0, "high": 0.5}},
                "aligned_mtl": {"scale_mode": {"choices": ["min", "rmse"]}},
            },
        }
    )
    settings = SearchSettings(study_name="jd", storage="sqlite://", sampler="random", n_trials=6)
    study = run_search(tiny_synthetic, space, settings)
    complete = study.get_trials(states=[optuna.trial.TrialState.COMPLETE])
    assert len(complete) == 6
    drawn = {trial.params["loss_weighting"] for trial in complete}
    assert drawn <= {"upgrad", "graddrop", "aligned_mtl"} and len(drawn) >= 2
    for trial in complete:
        if trial.params["loss_weighting"] == "graddrop":
            assert 0.0 <= trial.params["graddrop.leak"] <= 0.5
