"""Training one candidate network.

The loop is deliberately plain: the splits live on the device as tensors (or, for a table
mapped from disk, the inputs stay in their files), each epoch shuffles the row order once and
gathers a batch of rows at a time, and nothing per sample runs in Python.
Validation metrics are computed after every epoch on the validation split; the test split
is scored once at the end and is never used to choose anything.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import time
from typing import Any, Callable, Sequence

import torch
from torch import nn

from mtl_search.architectures import EnsembleModel, MultiTaskModel, build_model
from mtl_search.architectures.conditional import evaluation_targets, joint_losses, joint_target
from mtl_search.data.base import MultiTaskData, Split
from mtl_search.errors import TrialDiverged, UserError, is_number, is_whole
from mtl_search.stops import raise_pending_stop
from mtl_search.tasks import Task
from mtl_search.training.data_parallel import DataParallel, StoppedByRankZero, check_weighting, has_batch_norm
from mtl_search.training.optimizers import FusedAdam, fused_kernel
from mtl_search.training.schedules import check_schedule, learning_rates, steps_per_epoch
from mtl_search.training.precision import (
    FP16_REFUSED_WEIGHTINGS,
    LossScaling,
    autocast,
    check_precision,
    check_supported,
)
from mtl_search.weighting import make_weighting
from mtl_search.weighting.base import across_ranks

EVAL_CHUNK = 8192
# A training loss this many times that of the best constant prediction (see
# Task.constant_loss; floored at BLOWN_UP_FLOOR) means the weights blew up: the trial fails as
# if the loss were NaN. Left to finish, such a trial (MSE 1e16 at a huge learning rate) counts
# as complete and its worst values set the hypervolume's bounds and the figures' axes.
BLOWN_UP_FACTOR = 1e6
BLOWN_UP_FLOOR = 0.01

DEFAULT_TRAINING = {
    "epochs": 10,
    "learning_rate": 1e-3,
    "batch_size": 256,
    "weight_decay": 0.0,
    "optimizer": "adam",
    "seed": 0,
    # "last": the weights after the last epoch (how candidates stored before the option
    # existed were trained); the search space's default is "best" (``checkpoint_score``)
    "checkpoint": "last",
    # fp32, or bf16/fp16 autocast in the training steps (training/precision.py)
    "precision": "fp32",
    # the learning rate over the run (training/schedules.py): constant, cosine or one_cycle, with
    # learning_rate as the peak; warmup_fraction None: the schedule's own warm-up
    "schedule": "constant",
    "warmup_fraction": None,
}
CHECKPOINTS = ("best", "last")

# epoch callback: (epoch index, validation metrics {task: {metric: value}} of the weights
# kept so far, the epoch's history record) -> None; it may raise (for example
# optuna.TrialPruned) to stop training.
EpochCallback = Callable[[int, dict[str, dict[str, float]], dict[str, Any]], None]


@dataclasses.dataclass
class TrainResult:
    history: list[dict[str, Any]]
    validation: dict[str, dict[str, float]]  # of the kept epoch
    kept_epoch: int  # the epoch whose weights the model holds (training.checkpoint)
    test: dict[str, dict[str, float]]
    n_params: int
    wall_time: float
    sharing: dict[str, Any]
    weighting: dict[str, Any]  # the weighting's state after the last epoch
    model: MultiTaskModel = dataclasses.field(repr=False)
    # how many candidates trained as one stacked network with this one at the start (see
    # training/population.py); 1: it trained alone
    population_size: int = 1

    def to_record(self) -> dict[str, Any]:
        """Everything but the model, as JSON data."""
        return {
            "history": self.history,
            "validation": self.validation,
            "kept_epoch": self.kept_epoch,
            "test": self.test,
            "n_params": self.n_params,
            "wall_time": self.wall_time,
            "sharing": self.sharing,
            "weighting": self.weighting,
        }


def checkpoint_score(scores: dict[str, dict[str, float]]) -> float:
    """Lower is better: the sum of the log validation losses of the tasks (the log of their
    geometric mean). It is blind to each task's loss scale, and an epoch better on every task
    always scores lower, so the kept epoch is never dominated by another epoch of the trial."""
    total = 0.0
    for metrics in scores.values():
        loss = metrics.get("loss", math.nan)
        if not math.isfinite(loss):
            return math.inf
        total += math.log(max(loss, 1e-12))
    return total


def resolve_device(name: str | torch.device | None = None, option: str = "--device") -> torch.device:
    """``None``/"auto": the GPU when one is present, else the CPU; otherwise the device named,
    checked to be present on this machine. ``option`` names where the name came from in the
    one-line error (the CLI flag; ``mtl_search.load`` passes ``device=``)."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    shown = f"{option} {str(name)!r}"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise UserError(f"{shown}: not a device name (cpu, cuda, cuda:1, mps, auto)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"{shown}: no CUDA device is available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"{shown}: this machine has {torch.cuda.device_count()} CUDA device(s), numbered from 0")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"{shown}: no MPS (Apple GPU) device is available on this machine")
    elif device.type != "cpu":
        # another accelerator torch knows by name (xpu, ...): present only if its backend says so
        backend = getattr(torch, device.type, None)
        if not callable(getattr(backend, "is_available", None)) or not backend.is_available():
            raise UserError(f"{shown}: no {device.type} device is available on this machine (cpu, cuda, mps, auto)")
    return device


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


OPTIMIZERS: dict[str, tuple[type[torch.optim.Optimizer], dict[str, Any]]] = {
    "adam": (torch.optim.Adam, {}),
    "adamw": (torch.optim.AdamW, {}),
    "sgd": (torch.optim.SGD, {"momentum": 0.9}),
}


def make_optimizer(
    name: str, parameters: list[nn.Parameter] | list[dict[str, Any]], learning_rate: float, weight_decay: float
) -> torch.optim.Optimizer | FusedAdam:
    """The optimiser ``training.optimizer`` names, with PyTorch's fused kernel where it has one.

    PyTorch's default on CPU updates parameter after parameter in a Python loop; the fused
    kernel updates them all at once, the same algorithm in a different order of float
    operations. On the small networks a search trains, that loop was a quarter of a trial's
    time (``benchmarks/training_overhead.py`` measures both). A torch or a device without the
    kernel gets the default: torch < 2.4 on CPU, or parameters that are not real floating point
    tensors on a CPU or CUDA device (PyTorch would only refuse those at the first step).
    Adam and AdamW call the kernel through :class:`FusedAdam`, which spares every process
    torch.optim's import of ``torch._dynamo``.
    """
    if name not in OPTIMIZERS:
        raise UserError(f"training.optimizer {name!r}: expected one of {', '.join(OPTIMIZERS)}")
    optimizer_class, options = OPTIMIZERS[name]
    options = options | {"lr": learning_rate, "weight_decay": weight_decay}
    fusable = all(_fusable(p) for p in _flat_parameters(parameters))
    if fusable and name in ("adam", "adamw") and fused_kernel(name == "adamw") is not None:
        # the same kernel without torch.optim's per-process import and per-step wrapping (training/optimizers.py)
        groups = list(parameters) if parameters and isinstance(parameters[0], dict) else [{"params": list(parameters)}]
        return FusedAdam(groups, lr=learning_rate, weight_decay=weight_decay, decoupled_weight_decay=name == "adamw")
    if fusable:
        try:
            return optimizer_class(parameters, fused=True, **options)
        except (RuntimeError, TypeError):  # no fused kernel in this torch
            pass
    return optimizer_class(parameters, **options)


def _flat_parameters(parameters: list[nn.Parameter] | list[dict[str, Any]]) -> list[torch.Tensor]:
    return [p for item in parameters for p in (item["params"] if isinstance(item, dict) else [item])]


def _fusable(parameter: torch.Tensor) -> bool:
    return parameter.is_floating_point() and parameter.device.type in ("cpu", "cuda") and not parameter.is_sparse


def replaces_kept(score: float, kept_score: float) -> bool:
    """Whether an epoch scoring ``score`` replaces the kept one. An epoch with no finite score
    replaces one that had none either: with nothing to choose from, the latest is kept."""
    return score < kept_score or score == kept_score == math.inf


def training_losses(
    tasks: Sequence[Task],
    outputs: dict[str, torch.Tensor],
    targets: dict[str, torch.Tensor],
    fully_labelled: dict[str, bool] | None = None,
) -> dict[str, torch.Tensor]:
    """Every task's training loss on one batch, in task order (as weightings expect).

    Entire-space (conditional) tasks learn from their joint probability on all rows.
    ``fully_labelled[name]`` True skips the task's missing-label check.
    """
    fully_labelled = fully_labelled or {}
    losses = {
        task.name: task.loss(outputs[task.name], targets[task.name], all_labelled=fully_labelled.get(task.name, False))
        for task in tasks
        if task.given is None
    }
    if len(losses) < len(tasks):
        losses |= joint_losses(tasks, outputs, targets)
        losses = {task.name: losses[task.name] for task in tasks}
    return losses


def checked_epoch_losses(
    task_names: Sequence[str],
    values: Sequence[float],
    constant_losses: dict[str, float],
    epoch: int,
    learning_rate: float,
) -> dict[str, float]:
    """The epoch's mean training loss per task; raise :class:`TrialDiverged` when one is not
    finite or has blown up (:func:`check_blown_up`)."""
    if not all(math.isfinite(v) for v in values):
        bad = [name for name, v in zip(task_names, values) if not math.isfinite(v)]
        raise TrialDiverged(f"non-finite training loss in epoch {epoch + 1} for task(s) {', '.join(bad)}")
    losses = dict(zip(task_names, values))
    check_blown_up(losses, constant_losses, epoch, learning_rate)
    return losses


def check_blown_up(
    losses: dict[str, float], constant_losses: dict[str, float], epoch: int, learning_rate: float
) -> None:
    """Raise :class:`TrialDiverged` when a task's epoch loss is :data:`BLOWN_UP_FACTOR` times
    that of predicting a constant (see :meth:`Task.constant_loss`)."""
    for name, loss in losses.items():
        reference = max(constant_losses[name], BLOWN_UP_FLOOR)
        if loss > BLOWN_UP_FACTOR * reference:
            raise TrialDiverged(
                f"training loss of task {name} reached {loss:.3g} in epoch {epoch + 1}, over {BLOWN_UP_FACTOR:.0e} "
                f"times that of a constant prediction ({reference:.3g}): the weights blew up (learning rate {learning_rate:g})"
            )


CANDIDATE_KEYS = ("architecture", "training", "loss_weighting")


def checked_training(candidate: dict[str, Any]) -> dict[str, Any]:
    """The candidate's training settings over :data:`DEFAULT_TRAINING`, each checked.

    A candidate written by hand must not train quietly on defaults because of a typo
    (``epoch``, ``lr``, ``trainng``), nor return an untrained model for ``epochs: 0``.
    """
    if not isinstance(candidate, dict):
        raise UserError(
            f"candidate: expected a mapping with keys {', '.join(CANDIDATE_KEYS)}, got {type(candidate).__name__}"
        )
    unknown = [key for key in candidate if key not in CANDIDATE_KEYS]
    if unknown:
        raise UserError(f"candidate: unknown key {unknown[0]!r} (expected {', '.join(CANDIDATE_KEYS)})")
    if "architecture" not in candidate:
        raise UserError("candidate: 'architecture' (the spec) is missing")
    given = candidate.get("training") or {}
    if not isinstance(given, dict):
        raise UserError(f"candidate training: expected a mapping, got {given!r}")
    unknown = [key for key in given if key not in DEFAULT_TRAINING]
    if unknown:
        raise UserError(f"training.{unknown[0]}: unknown key (expected one of {', '.join(DEFAULT_TRAINING)})")
    config = DEFAULT_TRAINING | given
    for key, minimum in (("epochs", 1), ("batch_size", 1), ("seed", 0)):
        value = config[key]
        if not is_whole(value) or value < minimum or value >= 2**64:
            expected = (
                "a whole number from 0 to 2**64 - 1 (torch's seeds)"
                if key == "seed"
                else f"a whole number >= {minimum}"
            )
            raise UserError(f"training.{key}: expected {expected}, got {value!r}")
    for key, positive in (("learning_rate", True), ("weight_decay", False)):
        value = config[key]
        if not is_number(value) or not math.isfinite(value) or value < 0 or (positive and value == 0):
            raise UserError(
                f"training.{key}: expected a finite number {'above' if positive else 'at least'} 0, got {value!r}"
            )
    if config["checkpoint"] not in CHECKPOINTS:
        raise UserError(f"training.checkpoint {config['checkpoint']!r}: expected best or last")
    check_precision(config["precision"])
    check_schedule(config["schedule"], config["warmup_fraction"])
    return config


def train_network(
    data: MultiTaskData,
    candidate: dict[str, Any],
    *,
    device: torch.device | str | None = None,
    on_epoch: EpochCallback | None = None,
    stem: nn.Module | None = None,
    train_split: Split | None = None,
    data_parallel: DataParallel | None = None,
) -> TrainResult:
    """Build and train the candidate's network; raise :class:`TrialDiverged` on a non-finite or blown-up loss.

    :func:`mtl_search.training.train_candidate` calls this for a candidate of one network, and
    for each member of an ensemble (``train_candidate`` and ``train_ensemble`` in training/population.py).

    ``candidate`` holds ``architecture`` (the spec), ``training`` (epochs, learning_rate,
    batch_size, weight_decay, optimizer, seed, checkpoint, precision, schedule, warmup_fraction) and
    ``loss_weighting``. A schedule sets every parameter group's learning rate before each step. With
    ``checkpoint: best`` the returned model holds the weights of the epoch with the best
    :func:`checkpoint_score`, and ``validation``/``test`` are that epoch's. ``train_split``
    replaces the training rows (used to retrain on train + validation for export).

    ``data_parallel``: the processes that train this candidate together, each on its shard of
    every batch (training/data_parallel.py). Rank 0 alone scores the epochs and calls
    ``on_epoch``, and its verdict (go on, or stop) reaches the others, which raise
    :class:`~mtl_search.training.data_parallel.StoppedByRankZero` when it stopped; their result
    holds no scores.
    """
    config = checked_training(candidate)
    keep_best = config["checkpoint"] == "best"
    device = resolve_device(device) if not isinstance(device, torch.device) else device
    precision = config["precision"]
    check_supported(precision, device)
    torch.manual_seed(int(config["seed"]))
    ranks = data_parallel if data_parallel is not None and data_parallel.size > 1 else None
    if ranks is not None and int(config["batch_size"]) < ranks.size:
        raise UserError(
            f"training.batch_size {config['batch_size']}: below the {ranks.size} processes training it "
            f"data-parallel, which each need a row of every batch"
        )
    if stem is not None:
        # Each candidate gets its own copy of the user's encoder: fine-tuning in one trial, or
        # moving it to the device, must not change what the next trial (or the caller) holds.
        stem = copy.deepcopy(stem)
    model = build_model(candidate["architecture"], data.input_schema, data.tasks, stem=stem).to(device)
    if isinstance(model, EnsembleModel):  # its members train apart: training the averaged output is another model
        raise ValueError("train_network trains one network; train an ensemble with train_candidate")
    task_names = data.task_names
    if ranks is not None:
        given = candidate.get("loss_weighting")
        check_weighting(given if isinstance(given, str) else str((given or {}).get("method", "static")))
    weighting = make_weighting(
        candidate.get("loss_weighting"), task_names, {task.name: task.kind for task in data.tasks}
    ).to(device)
    model.keep_representations = weighting.needs_representations
    if ranks is not None and ranks.rank > 0:
        # the weights are the same on every process (built above); dropout masks are not
        torch.manual_seed((int(config["seed"]) + ranks.rank) % 2**64)
    if precision == "fp16" and weighting.name in FP16_REFUSED_WEIGHTINGS:
        raise UserError(
            f"training.precision fp16: loss weighting {weighting.name} {FP16_REFUSED_WEIGHTINGS[weighting.name]}; "
            f"use bf16 or fp32"
        )
    trainable = [p for p in model.parameters() if p.requires_grad]
    # the weighting's own parameters (e.g. log-variances) get no weight decay: it would pull them to 0
    groups = [{"params": trainable}]
    weighting_parameters = [p for p in weighting.parameters() if p.requires_grad]
    if weighting_parameters:  # an empty group would still cost Adam a pass per step
        groups.append({"params": weighting_parameters, "weight_decay": 0.0})
    optimizer = make_optimizer(
        config["optimizer"], groups, float(config["learning_rate"]), float(config["weight_decay"])
    )
    low_precision = autocast(precision, device)
    scaling = LossScaling(device) if precision == "fp16" else None

    train = (train_split or data.train).to(device)
    validation = data.validation.to(device)
    generator = torch.Generator().manual_seed(int(config["seed"]))
    batch_size = int(config["batch_size"])
    n_rows = len(train)
    fully_labelled = {name: not bool(torch.isnan(train.targets[name]).any()) for name in task_names}
    # with shards, the smallest batch gives each process a row (two with batch normalisation)
    smallest_batch = 2 if ranks is None else ranks.size * (2 if has_batch_norm(model) else 1)
    scores_epochs = ranks is None or ranks.leads
    constant_losses = {task.name: task.constant_loss(train.targets[task.name]) for task in data.tasks}
    history: list[dict[str, Any]] = []
    # the weights a trial returns: the last epoch's, or the best-scoring epoch's (a copy)
    kept_epoch, kept_scores, kept_score, kept_state = 0, None, math.inf, None
    steps = 0  # optimiser steps so far: the amount of training, whatever the batch size
    started = time.perf_counter()
    epoch_steps = steps_per_epoch(n_rows, batch_size)
    scheduled = config["schedule"] != "constant" or bool(config["warmup_fraction"])
    rates = (
        learning_rates(
            config["schedule"],
            float(config["learning_rate"]),
            epoch_steps * int(config["epochs"]),
            config["warmup_fraction"],
        )
        if scheduled
        else None
    )

    for epoch in range(int(config["epochs"])):
        epoch_started = time.perf_counter()
        model.train()
        order = torch.randperm(n_rows, generator=generator).to(device)
        loss_sums = torch.zeros(len(task_names), device=device)
        batches = 0
        counted = (
            counted_rows(data.tasks, {name: train.targets[name][order] for name in task_names})
            if ranks is not None
            else {}
        )
        for start in range(0, n_rows, batch_size):
            stop = min(start + batch_size, n_rows)
            if stop - start < smallest_batch and batches:
                break  # a lone last row would break batch normalisation and teaches little
            # a batch at a time, not the shuffled split at once: a table mapped from disk is read batch by batch
            first, last = (start, stop) if ranks is None else ranks.shard(start, stop)
            rows = order[first:last]
            inputs = train.gather_inputs(rows, device)
            targets = {name: train.targets[name][rows] for name in task_names}
            if model.members > 1:  # each ensemble member is scored on the batch (rows stacked member-major)
                targets = {
                    name: target.repeat(model.members, *[1] * (target.dim() - 1)) for name, target in targets.items()
                }
            with low_precision():
                outputs = model(inputs)
                losses = training_losses(data.tasks, outputs, targets, fully_labelled)
            if precision != "fp32":  # weightings combine and log the losses in fp32
                losses = {name: loss.float() for name, loss in losses.items()}
            extra = model.regularization()
            sum_gradients = None
            if ranks is not None:
                losses, extra = ranks.whole_batch_losses(losses, ranks.shard_shares(counted, start, stop), extra)
                sum_gradients = functools.partial(ranks.sum_gradients, trainable)
            if rates is not None:
                for group in optimizer.param_groups:
                    group["lr"] = rates[steps + batches]
            optimizer.zero_grad(set_to_none=True)
            with across_ranks(ranks):
                if scaling is None:
                    weighting.backward(losses, model, extra)
                    if sum_gradients is not None:
                        sum_gradients()
                    optimizer.step()
                else:
                    scaling.backward_and_step(
                        weighting, losses, model, extra, optimizer, weighting_parameters, sum_gradients
                    )
            loss_sums += torch.stack([losses[name].detach() for name in task_names])
            batches += 1
            raise_pending_stop()  # a Ctrl-C kept while it could not be raised waits one step, not the epoch
        steps += batches
        train.release()
        epoch_losses = (loss_sums / max(batches, 1)).tolist()
        learning_rate = float(config["learning_rate"])
        train_losses = checked_epoch_losses(task_names, epoch_losses, constant_losses, epoch, learning_rate)
        used_weights = weighting.weights()  # read before end_epoch, which may set the next epoch's
        weighting.end_epoch(train_losses)
        model.end_epoch()  # closed-form steps between epochs (task covariance, weight snapshots)
        if ranks is not None:
            ranks.average_buffers(model)
        scores = evaluate(model, data, validation) if scores_epochs else {}
        if not scores_epochs:
            kept_epoch = epoch + 1
        elif not keep_best:
            kept_epoch, kept_scores = epoch + 1, scores
        else:
            score = checkpoint_score(scores)
            if kept_scores is None or replaces_kept(score, kept_score):
                kept_epoch, kept_scores, kept_score = epoch + 1, scores, score
                kept_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        history.append(
            {
                "epoch": epoch + 1,
                "train_loss": train_losses,
                "validation": scores,
                "weights": used_weights,
                "seconds": time.perf_counter() - epoch_started,
                "steps": steps,
                "kept_epoch": kept_epoch,
            }
        )
        if ranks is None:
            if on_epoch is not None:
                on_epoch(epoch, kept_scores, history[-1])  # kept_scores: what the trial would return if it stopped now
        elif ranks.leads:
            try:
                if on_epoch is not None:
                    on_epoch(epoch, kept_scores, history[-1])
            except BaseException:  # pruned, a hook failed, or a Ctrl-C: the others stop too
                ranks.verdict(stop=True)
                raise
            ranks.verdict(stop=False)
        elif ranks.verdict(stop=False):
            raise StoppedByRankZero(f"rank 0 stopped the candidate after epoch {epoch + 1}")

    if kept_state is not None and kept_epoch != len(history):
        model.load_state_dict(kept_state)
    # returned ready to predict, as mtl_search.load returns a model: dropout off, batch norm
    # on its running statistics (which predicting in train mode would also overwrite)
    model.eval()
    test_scores = evaluate(model, data, data.test.to(device)) if scores_epochs else {}
    if kept_scores is None:
        kept_scores = evaluate(model, data, validation) if scores_epochs else {}
    return TrainResult(
        history=history,
        validation=kept_scores,
        kept_epoch=kept_epoch,
        test=test_scores,
        n_params=count_parameters(model),
        wall_time=time.perf_counter() - started,
        sharing=model.sharing_report(),
        weighting=weighting.describe(),
        model=model,
    )


def counted_rows(tasks: Sequence[Task], targets: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per task, the rows its training loss is a mean over: its labelled rows, or for a
    conditional task those whose joint label is known (architectures/conditional.py)."""
    counted = {}
    for task in tasks:
        label = joint_target(task, tasks, targets) if task.given is not None else targets[task.name]
        known = ~torch.isnan(label)
        counted[task.name] = known.reshape(known.shape[0], -1).all(dim=1)
    return counted


@torch.inference_mode()
def predict(model: MultiTaskModel, split: Split) -> dict[str, torch.Tensor]:
    """Raw outputs for every row of ``split``, in chunks so that large splits fit in memory."""
    was_training = model.training
    model.eval()
    chunks: dict[str, list[torch.Tensor]] = {name: [] for name in model.task_names}
    n_rows = len(split)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    for start in range(0, n_rows, EVAL_CHUNK):
        outputs = model(split.slice_inputs(start, min(start + EVAL_CHUNK, n_rows), device))
        for name, output in outputs.items():
            chunks[name].append(output)
    split.release()
    model.train(was_training)
    return {name: torch.cat(parts) for name, parts in chunks.items()}


def evaluate(model: MultiTaskModel, data: MultiTaskData, split: Split) -> dict[str, dict[str, float]]:
    """Every task's metrics and mean loss on ``split`` (labelled rows only)."""
    return score_outputs(data, split, predict(model, split))


def score_outputs(
    data: MultiTaskData,
    split: Split,
    outputs: dict[str, torch.Tensor],
    targets: dict[str, torch.Tensor] | None = None,
) -> dict[str, dict[str, float]]:
    """:func:`evaluate` from a model's raw outputs for every row of ``split`` (``targets``: the
    split's :func:`evaluation_targets`, when already computed)."""
    # a conditional task is scored where its condition holds, and its loss is the joint one
    if targets is None:
        targets = evaluation_targets(data.tasks, split.targets)
    joint = joint_losses(data.tasks, outputs, split.targets)
    scores = {}
    for task in data.tasks:
        target = targets[task.name]
        metrics = task.evaluate(outputs[task.name], target)
        metrics["loss"] = (
            float(joint[task.name]) if task.name in joint else float(task.loss(outputs[task.name], target))
        )
        scores[task.name] = metrics
    return scores
