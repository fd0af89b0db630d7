"""mtl-search against peer libraries on census group 1 (issue 9).

Peers (install with ``pip install -e .[bench]``; LibMTL needs ``--no-deps``, see
docs/benchmarks/index.md): DeepCTR-Torch (``deepctr-torch``) MMOE, PLE and SharedBottom, and
LibMTL's MMoE, CGC and HPS architectures.

What is matched, for every library:

- data: ``mtl_search.data.load_data("census", {"group": 1, ...})``: the same rows, the same
  fixed-seed split (half test, a tenth validation, the rest train), the same features (7
  standardised numeric columns, 32 categorical columns). Each peer receives exactly these
  arrays: numeric columns as dense features, each categorical column as an embedding with
  the width mtl-search's stem gives it (min(16, ceil(1.6 * cardinality ** 0.56))).
- structure: MMoE 8 experts x [16], a linear softmax gate per task on the stem output,
  towers [8]; PLE/CGC one level, 2 shared + 2 per-task experts x [16], towers [8] (equal
  counts on purpose: deepctr-torch 0.3.0's PLE builds ``specific_expert_num`` shared experts,
  so any shared_expert_num > specific_expert_num fails with "IndexError: index 1 is out of range");
  shared-bottom [64, 64] with towers [8]. ReLU, no dropout, no batch norm, no L2.
- training: Adam lr 1e-3, batch 256, the same number of epochs, binary cross-entropy per
  task summed with equal weights, one validation pass per epoch.

Initialisation: DeepCTR-Torch draws every weight and embedding from N(0, 1e-4) (its
``init_std``), which learns the rare income label very slowly; by default this script
re-initialises its Linear and Embedding layers with PyTorch's defaults, as the other two use
(``--deepctr-init deepctr`` keeps the library's own).

What is not matched (each library's own way): DeepCTR-Torch shuffles with a ``DataLoader`` over a
``TensorDataset`` and sums (not averages) the loss over a batch; LibMTL's architectures are
driven by a minimal loop written here that follows ``LibMTL.Trainer.train`` step by step
(``DataLoader`` shuffling, ``model.backward(losses)`` of the EW weighting), because the
stock Trainer cannot run on a CPU (see ``LIBMTL_TRAINER_PROBLEMS``).

Reported: seconds per epoch (training + validation pass; model building excluded) and test
AUC per task. Usage::

    python benchmarks/peers.py [--epochs 10] [--seeds 3] [--rows 0] [--models mmoe ple shared_bottom]
    python benchmarks/peers.py --quick
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
import types
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import CENSUS_FILE, write_result  # noqa: E402

from mtl_search.data import load_data  # noqa: E402
from mtl_search.training import train_candidate  # noqa: E402

TASKS = ("income", "never_married")
EXPERTS, EXPERT_WIDTH, TOWER = 8, 16, 8
BOTTOM = [64, 64]
LIBMTL_TRAINER_PROBLEMS = (
    "LibMTL 1.1.5 (the PyPI release) cannot run its Trainer on a CPU as shipped: "
    "(1) `import LibMTL` imports LibMTL/model/resnet.py, which does "
    "`from torchvision.models.utils import load_state_dict_from_url` (torchvision is not installed "
    "here: it would pull a new torch with CUDA wheels; and torchvision >= 0.13 no longer has "
    "torchvision.models.utils); (2) Trainer.__init__ hard-codes `self.device = torch.device('cuda:0')`; "
    "(3) Trainer._process_data calls `loader[1].next()`, which DataLoader iterators no longer have "
    "(Python 3 uses next(it)). This script stubs torchvision.models.utils with torch.hub's "
    "load_state_dict_from_url and drives LibMTL's architecture + EW weighting classes with a loop "
    "that mirrors Trainer.train."
)


def embedding_dims(schema: dict) -> list[int]:
    return [min(16, math.ceil(1.6 * c**0.56)) for c in schema["categorical"]]


def auc(y: np.ndarray, p: np.ndarray) -> float:
    return float(roc_auc_score(y, p))


# -- mtl-search --------------------------------------------------------------------------


def ours_spec(model: str) -> dict[str, Any]:
    block = {"norm": "none", "activation": "relu", "dropout": 0.0}
    tower = {"widths": [TOWER]}
    if model == "mmoe":
        return {
            "family": "mmoe",
            "experts": EXPERTS,
            "expert_widths": [EXPERT_WIDTH],
            "bottom_widths": [],
            "block": block,
            "tower": tower,
        }
    if model == "ple":
        return {
            "family": "ple",
            "levels": 1,
            "shared_experts": 2,
            "task_experts": 2,
            "expert_widths": [EXPERT_WIDTH],
            "block": block,
            "tower": tower,
        }
    return {"family": "tree", "widths": BOTTOM, "groups": [[list(TASKS)]] * len(BOTTOM), "block": block, "tower": tower}


def run_ours(data, model: str, epochs: int, seed: int) -> dict[str, Any]:
    candidate = {
        "architecture": ours_spec(model),
        "training": {"epochs": epochs, "learning_rate": 1e-3, "batch_size": 256, "optimizer": "adam", "seed": seed},
        "loss_weighting": {"method": "static", "weights": {t: 1.0 for t in TASKS}},
    }
    result = train_candidate(data, candidate, device="cpu")
    seconds = [h["seconds"] for h in result.history]
    return {
        "seconds_per_epoch": statistics.mean(seconds),
        "test_auc": {t: result.test[t]["auc"] for t in TASKS},
        "n_params": result.n_params,
    }


# -- DeepCTR-Torch -----------------------------------------------------------------------


def run_deepctr(data, model: str, epochs: int, seed: int) -> dict[str, Any]:
    from deepctr_torch.inputs import DenseFeat, SparseFeat
    from deepctr_torch.models import MMOE, PLE, SharedBottom

    schema = data.input_schema
    dims = embedding_dims(schema)
    columns = [
        SparseFeat(f"c{i}", vocabulary_size=c, embedding_dim=d)
        for i, (c, d) in enumerate(zip(schema["categorical"], dims))
    ]
    columns += [DenseFeat(f"n{i}", 1) for i in range(schema["numeric"])]

    def arrays(split) -> dict[str, np.ndarray]:
        out = {f"c{i}": split.inputs["categorical"][:, i].numpy() for i in range(len(schema["categorical"]))}
        out |= {f"n{i}": split.inputs["numeric"][:, i].numpy() for i in range(schema["numeric"])}
        return out

    def labels(split) -> np.ndarray:
        return np.stack([split.targets[t].numpy() for t in TASKS], axis=1).astype(np.float32)

    common = dict(
        tower_dnn_hidden_units=(TOWER,),
        l2_reg_linear=0.0,
        l2_reg_embedding=0.0,
        l2_reg_dnn=0.0,
        seed=seed,
        task_types=("binary", "binary"),
        task_names=TASKS,
        device="cpu",
    )
    if model == "mmoe":
        net = MMOE(
            columns, num_experts=EXPERTS, expert_dnn_hidden_units=(EXPERT_WIDTH,), gate_dnn_hidden_units=(), **common
        )
    elif model == "ple":
        net = PLE(
            columns,
            shared_expert_num=2,
            specific_expert_num=2,
            num_levels=1,
            expert_dnn_hidden_units=(EXPERT_WIDTH,),
            gate_dnn_hidden_units=(),
            **common,
        )
    else:
        net = SharedBottom(columns, bottom_dnn_hidden_units=tuple(BOTTOM), **common)
    if DEEPCTR_INIT == "pytorch":
        # the same initialisation as the other libraries (PyTorch's defaults), instead of
        # DeepCTR-Torch's N(0, 1e-4) for every weight and embedding
        torch.manual_seed(seed)
        for module in net.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                module.reset_parameters()
    net.compile(
        torch.optim.Adam(net.parameters(), lr=1e-3),
        loss=["binary_crossentropy", "binary_crossentropy"],
        metrics=["auc"],
    )
    started = time.perf_counter()
    net.fit(
        arrays(data.train),
        labels(data.train),
        batch_size=256,
        epochs=epochs,
        verbose=0,
        validation_data=(arrays(data.validation), labels(data.validation)),
        shuffle=True,
    )
    seconds = (time.perf_counter() - started) / epochs
    predicted = net.predict(arrays(data.test), batch_size=8192)
    y = labels(data.test)
    n_params = sum(p.numel() for p in net.parameters() if p.requires_grad)
    return {
        "seconds_per_epoch": seconds,
        "test_auc": {t: auc(y[:, i], predicted[:, i]) for i, t in enumerate(TASKS)},
        "n_params": n_params,
    }


# -- LibMTL ------------------------------------------------------------------------------


def import_libmtl():
    """``import LibMTL`` with torchvision.models.utils stubbed (see LIBMTL_TRAINER_PROBLEMS)."""
    if "torchvision.models.utils" not in sys.modules:
        try:
            import torchvision.models.utils  # noqa: F401
        except ImportError:
            stub = types.ModuleType("torchvision.models.utils")
            stub.load_state_dict_from_url = torch.hub.load_state_dict_from_url
            for name in ("torchvision", "torchvision.models"):
                sys.modules.setdefault(name, types.ModuleType(name))
            sys.modules["torchvision.models.utils"] = stub
    import LibMTL  # noqa: F401

    return LibMTL


class Embed(nn.Module):
    def __init__(self, schema: dict) -> None:
        super().__init__()
        self.embeddings = nn.ModuleList(
            nn.Embedding(c, d) for c, d in zip(schema["categorical"], embedding_dims(schema))
        )
        self.size = schema["numeric"] + sum(embedding_dims(schema))

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        return torch.cat([numeric] + [e(categorical[:, i]) for i, e in enumerate(self.embeddings)], dim=1)


def run_libmtl(data, model: str, epochs: int, seed: int) -> dict[str, Any]:
    import_libmtl()
    from LibMTL.architecture import CGC, HPS, MMoE
    from LibMTL.weighting import EW

    torch.manual_seed(seed)
    embed = Embed(data.input_schema)
    size = embed.size
    width = BOTTOM[-1] if model == "shared_bottom" else EXPERT_WIDTH

    def encoder_class() -> nn.Module:
        if model == "shared_bottom":
            return nn.Sequential(nn.Linear(size, BOTTOM[0]), nn.ReLU(), nn.Linear(BOTTOM[0], BOTTOM[1]), nn.ReLU())
        return nn.Sequential(nn.Linear(size, EXPERT_WIDTH), nn.ReLU())

    decoders = nn.ModuleDict({t: nn.Sequential(nn.Linear(width, TOWER), nn.ReLU(), nn.Linear(TOWER, 1)) for t in TASKS})
    architecture, arch_args = {
        "mmoe": (MMoE, {"img_size": [size], "num_experts": [EXPERTS]}),
        "ple": (CGC, {"img_size": [size], "num_experts": [2, 2, 2]}),
        "shared_bottom": (HPS, {}),
    }[model]

    class MTLmodel(architecture, EW):  # what LibMTL.Trainer._prepare_model builds
        def __init__(self) -> None:
            super().__init__(list(TASKS), encoder_class, decoders, False, False, torch.device("cpu"), **arch_args)
            self.init_param()

    mtl = MTLmodel()
    mtl.task_num = len(TASKS)
    parameters = list(embed.parameters()) + list(mtl.parameters())
    optimizer = torch.optim.Adam(parameters, lr=1e-3)
    train = data.train
    dataset = torch.utils.data.TensorDataset(
        train.inputs["numeric"], train.inputs["categorical"], *[train.targets[t] for t in TASKS]
    )
    generator = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(dataset, batch_size=256, shuffle=True, generator=generator)

    @torch.no_grad()
    def predict(split) -> list[np.ndarray]:
        embed.eval(), mtl.eval()
        out = mtl(embed(split.inputs["numeric"], split.inputs["categorical"]))
        embed.train(), mtl.train()
        return [torch.sigmoid(out[t].reshape(-1)).numpy() for t in TASKS]

    started = time.perf_counter()
    for epoch in range(epochs):
        mtl.epoch = epoch
        for numeric, categorical, *targets in loader:
            preds = mtl(embed(numeric, categorical))
            losses = torch.stack(
                [
                    nn.functional.binary_cross_entropy_with_logits(preds[t].reshape(-1), y)
                    for t, y in zip(TASKS, targets)
                ]
            )
            optimizer.zero_grad()
            mtl.backward(losses)
            optimizer.step()
        # validation pass, as Trainer.train does each epoch
        [auc(data.validation.targets[t].numpy(), p) for t, p in zip(TASKS, predict(data.validation))]
    seconds = (time.perf_counter() - started) / epochs
    test = predict(data.test)
    return {
        "seconds_per_epoch": seconds,
        "test_auc": {t: auc(data.test.targets[t].numpy(), p) for t, p in zip(TASKS, test)},
        "n_params": sum(p.numel() for p in parameters),
    }


DEEPCTR_INIT = "pytorch"
RUNNERS = {"mtl_search": run_ours, "deepctr_torch": run_deepctr, "libmtl": run_libmtl}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=0, help="census rows sampled before the split (0: all 99,762)")
    parser.add_argument(
        "--models", nargs="+", default=["mmoe", "ple", "shared_bottom"], choices=["mmoe", "ple", "shared_bottom"]
    )
    parser.add_argument("--libraries", nargs="+", default=list(RUNNERS), choices=list(RUNNERS))
    parser.add_argument("--data-file", type=Path, default=CENSUS_FILE)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--deepctr-init",
        choices=("pytorch", "deepctr"),
        default="pytorch",
        help="pytorch: re-initialise DeepCTR-Torch's layers with PyTorch's defaults like the others (default); "
        "deepctr: keep its own N(0, init_std=1e-4)",
    )
    parser.add_argument("--quick", action="store_true", help="20000 rows, 3 epochs, 1 seed")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.epochs, args.seeds = 20000, 3, 1
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    global DEEPCTR_INIT
    DEEPCTR_INIT = args.deepctr_init
    data = load_data("census", {"group": 1, "rows": args.rows, "seed": 0}, data_file=str(args.data_file))
    print(
        f"census group 1: {len(data.train)} train / {len(data.validation)} validation / {len(data.test)} test rows",
        flush=True,
    )
    results: dict[str, Any] = {}
    errors: dict[str, str] = {}
    # interleave libraries within each seed so that load drift hits all alike
    for model in args.models:
        for seed in range(args.seeds):
            for library in args.libraries:
                key = f"{model}/{library}"
                try:
                    run = RUNNERS[library](data, model, args.epochs, seed)
                except Exception as error:  # a peer that cannot run is reported, not fatal
                    errors[key] = f"{type(error).__name__}: {error}"
                    print(f"  {key}: FAILED {errors[key]}", flush=True)
                    continue
                results.setdefault(key, []).append(run)
                print(
                    f"  {key} seed {seed}: {run['seconds_per_epoch']:.2f} s/epoch, test AUC "
                    + ", ".join(f"{t} {v:.4f}" for t, v in run["test_auc"].items())
                    + f", {run['n_params']} params",
                    flush=True,
                )
    summary = {}
    print(
        f"\n{'model/library':<28}{'s/epoch':>9}{'AUC income':>12}{'AUC never_married':>19}{'params':>9}   (median over {args.seeds} seeds, {args.epochs} epochs)"
    )
    for key, runs in results.items():
        s = {
            "seconds_per_epoch": statistics.median(r["seconds_per_epoch"] for r in runs),
            "test_auc": {t: statistics.median(r["test_auc"][t] for r in runs) for t in TASKS},
            "test_auc_spread": {
                t: (min(r["test_auc"][t] for r in runs), max(r["test_auc"][t] for r in runs)) for t in TASKS
            },
            "n_params": runs[0]["n_params"],
        }
        summary[key] = s
        print(
            f"{key:<28}{s['seconds_per_epoch']:>9.2f}{s['test_auc']['income']:>12.4f}{s['test_auc']['never_married']:>19.4f}{s['n_params']:>9}"
        )
    for key, message in errors.items():
        print(f"{key}: could not run: {message}")
    write_result(
        "peers",
        vars(args) | {"data_file": str(args.data_file)},
        {"summary": summary, "runs": results, "errors": errors, "libmtl_notes": LIBMTL_TRAINER_PROBLEMS},
        split={"train": len(data.train), "validation": len(data.validation), "test": len(data.test)},
    )


if __name__ == "__main__":
    main()
