"""Where LibMTL ships a weighting we also ship, ours gives its update on the same gradients.

LibMTL (``pip install --no-deps LibMTL==1.1.5``: its declared dependencies pull a CUDA build
of torch) is imported file by file, without its package ``__init__``, which imports
torchvision. The test skips without it.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
import types
from pathlib import Path

import pytest
import torch

from mtl_search.architectures import build_model
from mtl_search.tasks import Task
from mtl_search.weighting import get_method

TASKS = [Task(name="task1", kind="regression"), Task(name="task2", kind="regression")]


@functools.cache
def libmtl_folder() -> Path | None:
    """Where LibMTL is installed (found before any stub package takes its name), or None."""
    spec = importlib.util.find_spec("LibMTL")
    return Path(list(spec.submodule_search_locations)[0]) if spec and spec.submodule_search_locations else None


def libmtl_weighting(name: str) -> type:
    """LibMTL's weighting class ``name`` (its module LibMTL/weighting/<name>.py)."""
    if libmtl_folder() is None:
        pytest.skip("LibMTL is not installed (pip install --no-deps LibMTL==1.1.5)")
    folder = libmtl_folder() / "weighting"
    for package in ("LibMTL", "LibMTL.weighting"):
        if package not in sys.modules:
            module = types.ModuleType(package)
            module.__path__ = []  # a package whose __init__ is not run
            sys.modules[package] = module
    for module_name in ("abstract_weighting", name):
        full = f"LibMTL.weighting.{module_name}"
        if full not in sys.modules:
            module_spec = importlib.util.spec_from_file_location(full, folder / f"{module_name}.py")
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[full] = module
            module_spec.loader.exec_module(module)
    return getattr(sys.modules[f"LibMTL.weighting.{name}"], name)


def conflicting_case(seed: int):
    """A shared trunk and a batch whose two task gradients on it point apart (cosine < 0)."""
    torch.manual_seed(seed)
    model = build_model(
        {"family": "tree", "widths": [8], "groups": [[["task1", "task2"]]]}, {"kind": "vector", "size": 5}, TASKS
    )
    features = torch.randn(16, 5)
    target = torch.randn(16)
    targets = {"task1": target, "task2": -target}  # opposite targets: the tasks pull the trunk apart
    return model, features, targets


def losses_of(model, features, targets):
    outputs = model({"x": features})
    return {name: torch.nn.functional.mse_loss(outputs[name].squeeze(1), targets[name]) for name in targets}


def shared_gradients(model) -> torch.Tensor:
    return torch.cat([p.grad.reshape(-1) for p in model.shared_parameters()])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradvac_gives_libmtl_s_update_on_conflicting_gradients(seed):
    GradVac = libmtl_weighting("GradVac")
    beta = 0.3
    model, features, targets = conflicting_case(seed)

    theirs = GradVac()
    theirs.task_num, theirs.device, theirs.rep_grad = 2, torch.device("cpu"), False
    theirs.get_share_params = lambda: list(model.shared_parameters())
    theirs.zero_grad_share_params = lambda: [p.grad.zero_() for p in model.shared_parameters() if p.grad is not None]
    model.zero_grad()
    losses = losses_of(model, features, targets)
    batch_weight = theirs.backward([losses["task1"], losses["task2"]], beta=beta)
    libmtl_update = shared_gradients(model).clone()

    model.zero_grad()
    ours = get_method("gradvac")(["task1", "task2"], beta=beta)
    ours.backward(losses_of(model, features, targets), model, None)
    our_update = shared_gradients(model)

    gradients = torch.stack(
        [
            torch.cat(
                [g.reshape(-1) for g in torch.autograd.grad(loss, list(model.shared_parameters()), retain_graph=True)]
            )
            for loss in losses_of(model, features, targets).values()
        ]
    )
    assert torch.nn.functional.cosine_similarity(gradients[0], gradients[1], dim=0) < 0  # the correction runs
    assert not torch.allclose(our_update, gradients.sum(dim=0))  # and changes the plain sum
    torch.testing.assert_close(our_update, libmtl_update, rtol=1e-5, atol=1e-7)
    # the coefficient of each raw gradient in the sum, as LibMTL's batch weight
    assert list(ours.weights().values()) == pytest.approx(list(batch_weight), rel=1e-5)
    # both moved the target cosine of each pair the same way
    torch.testing.assert_close(ours.target_cosines, theirs.rho_T.to(ours.target_cosines.dtype), rtol=1e-5, atol=1e-7)
