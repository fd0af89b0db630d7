"""Training on a CUDA GPU: one candidate, a population, mixed precision. Skipped without a GPU."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from mtl_search.training import train_candidate
from mtl_search.training.population import train_population
from tests.training.test_population import FAMILY_SPECS, WEIGHTINGS, assert_close, candidate, population_of

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine"),
]

# fp32 on the GPU against the CPU, and a population against lone runs on the GPU: the same
# arithmetic in another order (cuBLAS, batched products), a little looser than on the CPU
FLOAT_REL, FLOAT_ABS = 1e-3, 1e-4
# 16-bit autocast against fp32, and a bf16 member against its lone bf16 run
LOW_REL = 5e-2
# (ltb draws Gumbel noise from the device's generator, so its CPU and GPU runs differ by design;
# stem reads tables: both are checked on the CPU only)
MLP_FAMILIES = ["tree", "mmoe", "ple", "hierarchy", "dselect_k", "adatt", "mtan", "aitm"]
SHARED_BOTTOM = {"family": "tree", "widths": [12], "groups": [[["task1", "task2"]]]}


def with_precision(item: dict[str, Any], precision: str) -> dict[str, Any]:
    return item | {"training": item["training"] | {"precision": precision}}


def data_for(family: str, request: pytest.FixtureRequest):
    names = FAMILY_SPECS[family][1]
    return request.getfixturevalue("tiny_synthetic3" if len(names) == 3 else "tiny_synthetic")


def assert_near(result: Any, reference: Any, rel: float, abs_: float) -> None:
    for task, metrics in reference.validation.items():
        for metric, value in metrics.items():
            mine = result.validation[task][metric]
            assert math.isfinite(mine), (task, metric)
            assert mine == pytest.approx(value, rel=rel, abs=abs_), (task, metric, mine, value)


def on_cuda(result: Any) -> bool:
    return all(p.device.type == "cuda" for p in result.model.parameters())


def require_bf16() -> None:
    if not torch.cuda.is_bf16_supported():
        pytest.skip(f"{torch.cuda.get_device_name()} has no bf16")


@pytest.mark.parametrize("family", MLP_FAMILIES)
def test_a_candidate_trains_on_cuda_as_on_the_cpu(family, request):
    data = data_for(family, request)
    item = candidate(FAMILY_SPECS[family][0], epochs=2)
    gpu = train_candidate(data, item, device="cuda")
    cpu = train_candidate(data, item, device="cpu")
    assert on_cuda(gpu)
    assert gpu.kept_epoch == cpu.kept_epoch
    assert_near(gpu, cpu, FLOAT_REL, FLOAT_ABS)
    assert_close(gpu.history[-1]["train_loss"], cpu.history[-1]["train_loss"], "train_loss", FLOAT_REL, FLOAT_ABS)


@pytest.mark.parametrize("method", list(WEIGHTINGS))
@pytest.mark.parametrize("family", ["tree", "mmoe"])
def test_a_population_on_cuda_matches_its_members_alone_on_cuda(family, method, request):
    data = data_for(family, request)
    members = population_of(FAMILY_SPECS[family][0], WEIGHTINGS[method], epochs=2)
    fused = train_population(data, members, device="cuda")
    for mine, item in zip(fused, members):
        assert not isinstance(mine, BaseException), mine
        assert mine.population_size == len(members)  # fused on the GPU: no operation without a batching rule
        assert on_cuda(mine)
        alone = train_candidate(data, item, device="cuda")
        assert mine.kept_epoch == alone.kept_epoch
        assert_close(mine.validation, alone.validation, "validation", FLOAT_REL, FLOAT_ABS)
        assert_close(mine.test, alone.test, "test", FLOAT_REL, FLOAT_ABS)
        assert_close(mine.history[-1]["weights"], alone.history[-1]["weights"], "weights", FLOAT_REL, FLOAT_ABS)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("method", ["static", "uncertainty", "pcgrad", "mgda", "upgrad", "graddrop", "imtl", "gradvac"])
def test_16_bit_training_on_cuda_is_near_fp32(tiny_synthetic, method, precision):
    if precision == "bf16":
        require_bf16()
    item = candidate(SHARED_BOTTOM, {"method": method}, epochs=2)
    fp32 = train_candidate(tiny_synthetic, item, device="cuda")
    low = train_candidate(tiny_synthetic, with_precision(item, precision), device="cuda")
    assert on_cuda(low) and all(p.dtype == torch.float32 for p in low.model.parameters())
    assert_near(low, fp32, LOW_REL, LOW_REL / 10)
    for record in low.history:
        assert all(math.isfinite(w) for w in record["weights"].values())


def test_fp16_loss_scaling_on_cuda_trains_with_sgd_as_fp32_does(tiny_synthetic):
    # SGD follows the gradients' scale: one left scaled by the GradScaler would blow the network up
    weighting = {"method": "uncertainty", "initial_log_variance": 2.0}
    item = candidate(SHARED_BOTTOM, weighting, epochs=3, optimizer="sgd", learning_rate=0.05)
    fp32 = train_candidate(tiny_synthetic, item, device="cuda")
    fp16 = train_candidate(tiny_synthetic, with_precision(item, "fp16"), device="cuda")
    assert_near(fp16, fp32, LOW_REL, LOW_REL / 10)
    for task, weight in fp32.history[-1]["weights"].items():
        assert fp16.history[-1]["weights"][task] == pytest.approx(weight, rel=2e-2)


@pytest.mark.parametrize("family", ["tree", "mmoe"])
def test_a_bf16_population_on_cuda_matches_its_members_alone(family, request):
    require_bf16()
    data = data_for(family, request)
    members = population_of(FAMILY_SPECS[family][0], epochs=2, precision="bf16")
    fused = train_population(data, members, device="cuda")
    for mine, item in zip(fused, members):
        assert not isinstance(mine, BaseException), mine
        assert mine.population_size == len(members)
        assert_near(mine, train_candidate(data, item, device="cuda"), LOW_REL, LOW_REL / 10)


def test_an_fp16_population_on_cuda_trains_each_member_alone(tiny_synthetic):
    members = population_of(SHARED_BOTTOM, epochs=2, precision="fp16")
    for mine, item in zip(train_population(tiny_synthetic, members, device="cuda"), members):
        assert not isinstance(mine, BaseException), mine
        assert mine.population_size == 1
        # alone is train_candidate itself; the GPU's kernels may still round differently run to run
        assert_near(mine, train_candidate(tiny_synthetic, item, device="cuda"), FLOAT_REL, FLOAT_ABS)
