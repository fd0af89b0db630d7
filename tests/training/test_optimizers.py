"""FusedAdam: torch's fused Adam/AdamW kernel without torch.optim, bit for bit the same updates."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from mtl_search.training.optimizers import FusedAdam
from mtl_search.training.trainer import make_optimizer
from tests.conftest import REPO


def _parameters(seed: int) -> list[torch.nn.Parameter]:
    generator = torch.Generator().manual_seed(seed)
    shapes = [(5, 3), (3,), (4, 2), (2,)]
    return [torch.nn.Parameter(torch.randn(shape, generator=generator)) for shape in shapes]


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_the_updates_are_torchs_fused_adam_bit_for_bit(name):
    ours, theirs = _parameters(0), _parameters(0)
    groups = lambda params: [{"params": params[:3]}, {"params": params[3:], "weight_decay": 0.0, "lr": 3e-2}]  # noqa: E731
    optimizer = make_optimizer(name, groups(ours), 1e-2, 0.1)
    assert isinstance(optimizer, FusedAdam)
    reference_class = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
    reference = reference_class(groups(theirs), lr=1e-2, weight_decay=0.1, fused=True)
    generator = torch.Generator().manual_seed(1)
    for step in range(6):
        gradients = [torch.randn(p.shape, generator=generator) for p in ours]
        for params in (ours, theirs):
            for index, (parameter, gradient) in enumerate(zip(params, gradients)):
                # the second parameter gets no gradient on odd steps: skipped, as torch skips it
                parameter.grad = None if index == 1 and step % 2 else gradient.clone()
        optimizer.step()
        reference.step()
        for mine, other in zip(ours, theirs):
            assert torch.equal(mine, other), step
        optimizer.zero_grad(set_to_none=True)
        assert all(p.grad is None for p in ours)


def test_a_plain_parameter_list_is_one_group_and_sgd_stays_torchs():
    parameters = _parameters(2)
    optimizer = make_optimizer("adam", parameters, 1e-3, 0.0)
    assert isinstance(optimizer, FusedAdam) and len(optimizer.param_groups) == 1
    assert optimizer.param_groups[0]["params"] == parameters
    assert isinstance(make_optimizer("sgd", parameters, 1e-3, 0.0), torch.optim.SGD)


def test_training_a_candidate_does_not_import_torch_dynamo():
    # torch.optim imports torch._dynamo when an optimiser is built: over a second of CPU per process
    script = textwrap.dedent("""
        import sys
        from mtl_search.data.synthetic import make_synthetic
        from mtl_search.training import train_candidate

        data = make_synthetic(dim=6, rows=200, seed=0)
        candidate = {"architecture": {"family": "mmoe", "experts": 2, "expert_widths": [8], "tower": {"widths": [4]}},
                     "training": {"epochs": 1, "batch_size": 64}, "loss_weighting": {"method": "uncertainty"}}
        train_candidate(data, candidate)
        print("dynamo imported" if "torch._dynamo" in sys.modules else "dynamo not imported")
    """)
    environment = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=environment)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "dynamo not imported"
