"""Device names: a device this machine lacks, or a name torch does not know, is a one-line error."""

from __future__ import annotations

import pytest
import torch

from mtl_search.errors import UserError
from mtl_search.training import resolve_device


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


@pytest.mark.parametrize(
    "name, message",
    [
        ("cuda", "--device 'cuda': no CUDA device is available on this machine"),
        ("mps", "--device 'mps': no MPS (Apple GPU) device is available on this machine"),
        ("toaster", "--device 'toaster': not a device name (cpu, cuda, cuda:1, mps, auto)"),
        ("meta", "--device 'meta': no meta device is available on this machine (cpu, cuda, mps, auto)"),
    ],
)
def test_a_device_this_machine_lacks_is_refused(no_gpu, name, message):
    with pytest.raises(UserError) as error:
        resolve_device(name)
    assert str(error.value) == message


def test_the_error_names_where_the_device_came_from(no_gpu):
    with pytest.raises(UserError, match=r"^device 'cuda': no CUDA device"):
        resolve_device(torch.device("cuda"), option="device")


def test_a_cuda_index_past_the_last_gpu_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(UserError, match=r"^--device 'cuda:2': this machine has 2 CUDA device\(s\), numbered from 0$"):
        resolve_device("cuda:2")


def test_cpu_and_auto_without_a_gpu(no_gpu):
    assert resolve_device("cpu") == resolve_device("auto") == resolve_device(None) == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
