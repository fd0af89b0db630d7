"""A search, an export and a load on a CUDA GPU, through the command line. Skipped without a GPU."""

from __future__ import annotations

import optuna
import pytest
import torch

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine"),
]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_population_search_on_cuda_then_export_and_load_on_cuda(precision, cli_process, tmp_path):
    import mtl_search
    from mtl_search.export.bundle import reload_data
    from mtl_search.records.attributes import STUDY_ATTR

    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip(f"{torch.cuda.get_device_name()} has no bf16")
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    result = cli_process(
        "run",
        "--device",
        "cuda",
        "--population",
        "4",
        "--trials",
        "4",
        "--epochs",
        "2",
        "--precision",
        precision,
        "--data-option",
        "rows=2000",
        "--no-prune",
        "--quiet",
        "--study-name",
        "gpu",
        "--storage",
        url,
        timeout=600,
    )
    assert result.code == 0, result
    assert "trained to the end: 4 fused with others (groups of 4), 0 alone" in result.out, result
    study = optuna.load_study(study_name="gpu", storage=url)
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 4
    stored = {t.user_attrs["candidate"]["training"].get("precision", "fp32") for t in trials}
    assert stored == {precision}

    number = study.best_trials[0].number
    folder = tmp_path / "export"
    exported = cli_process("export", "gpu", "--storage", url, "--trial", str(number), "--out", str(folder))
    assert exported.code == 0, exported
    on_gpu = mtl_search.load(folder, device="cuda")
    on_cpu = mtl_search.load(folder, device="cpu")
    assert all(p.device.type == "cuda" for p in on_gpu.parameters())
    data = reload_data(study.user_attrs[STUDY_ATTR])
    inputs = data.validation.inputs
    with torch.no_grad():
        from_gpu = on_gpu({name: tensor.to("cuda") for name, tensor in inputs.items()})
        from_cpu = on_cpu(inputs)
    for task, output in from_cpu.items():
        torch.testing.assert_close(from_gpu[task].cpu(), output, rtol=1e-4, atol=1e-4, msg=task)

    # retrained on the GPU, in the precision the trial was searched in
    retrained = cli_process(
        "export",
        "gpu",
        "--storage",
        url,
        "--trial",
        str(number),
        "--out",
        str(tmp_path / "retrained"),
        "--retrain",
        "--device",
        "cuda",
        timeout=600,
    )
    assert retrained.code == 0, retrained
    model = mtl_search.load(tmp_path / "retrained", device="cuda")
    with torch.no_grad():
        outputs = model({name: tensor.to("cuda") for name, tensor in inputs.items()})
    assert all(bool(torch.isfinite(output).all()) for output in outputs.values())
