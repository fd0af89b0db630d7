"""Training several candidates as one stacked network (a population).

A search spends most of its time in training steps of small networks, and such a step is
bound by per-step overhead (operator dispatch, the autograd graph, the optimiser loop), not
by arithmetic. Candidates of one structure can share that overhead: their parameters are
stacked along a leading member dimension; one ``vmap`` over a template network, run with
the members' tensors in place of its own (as ``functional_call`` does), computes every
member's forward pass on its own batch rows; one backward pass takes the gradient of the
members' summed losses (each member's slice depends on its own loss only); and one batched
optimiser step updates every member with its own learning rate and weight decay.

Each member is trained exactly as :func:`~mtl_search.training.trainer.train_network` would
train it alone, within float rounding: it is initialised from its own seed, shuffles with its
own generator, takes the same steps, and has its own per-epoch work (divergence checks, the
weighting's end of epoch, validation, the kept epoch, the callback). Each member also has a
real network of its own, the model it returns.

The end of an epoch is decided per group. Where the network has nothing to do between epochs
(every family but those below), the members stay in the stacked tensors: one ``vmap`` of the
template in evaluation mode, without gradients, computes every member's validation outputs
per chunk of rows, and each member's metrics come from its slice of them; a kept (best) epoch
is a copy of the member's slice of the stacked tensors. Only at the end does the member's
network get its weights (the last epoch's, then the kept epoch's), run the last validation
pass again where it has gate means to report (as alone, they cover the last validation and
the test pass), and score the test split. Where the network has work of its own between
epochs, each member's weights are loaded into its network after every epoch, which runs its
end of epoch and is validated as alone, and the weights are stored back: the hierarchy family
(its successive regularisation snapshots the epoch's weights) and the relationship prior
(re-estimated from the towers' weights). So does a group whose stacked evaluation pass fails
(an operation with no batching rule in evaluation mode), from that epoch on.

A member that diverges, is pruned by its callback or fails otherwise leaves the group with
that exception; the others go on.

Members whose specs differ only in layer widths (see :func:`pads_widths`) share a template built
at the widest of each width; each member's tensors are the leading slice of the template's,
zero elsewhere. The padding and its check happen once, when the group is set up; every copy
between the stack and a member's own network takes the leading slice.

:func:`train_candidate` (at the end, with deep ensembles) trains one candidate: its network,
or the members of its ensemble as a population of their own.

Under ``training.precision: bf16`` the equality holds within bf16 rounding only: the batching
rule of a linear layer computes the product in bf16 as alone but adds the bias in fp32, so
the activations are rounded to bf16 at other places than alone.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import time
import warnings
from typing import Any, Callable, ContextManager, Hashable, Iterator, Sequence

import numpy as np
import torch
from torch import nn
from torch.func import vmap

from mtl_search.architectures import (
    Body,
    EnsembleModel,
    MultiTaskModel,
    build_model,
    ensemble_members,
    validate_spec,
)
from mtl_search.architectures.conditional import evaluation_targets, joint_log_probability, joint_target, log1mexp
from mtl_search.architectures.ensemble import validate_ensemble, without_ensemble
from mtl_search.architectures.experts import GateMonitor
from mtl_search.architectures.hierarchy import HierarchyBody
from mtl_search.data.base import MultiTaskData, Split
from mtl_search.errors import OneLineWarning, TrialDiverged, UserError
from mtl_search.stops import raise_pending_stop
from mtl_search.tasks import Task
from mtl_search.training.optimizers import BETAS, EPS, fused_kernel
from mtl_search.training.trainer import (
    EVAL_CHUNK,
    OPTIMIZERS,
    EpochCallback,
    TrainResult,
    checked_epoch_losses,
    checked_training,
    checkpoint_score,
    count_parameters,
    evaluate,
    predict,
    replaces_kept,
    resolve_device,
    score_outputs,
    train_network,
)
from mtl_search.training.data_parallel import DataParallel
from mtl_search.training.precision import autocast, check_supported
from mtl_search.training.schedules import WARMUP_DEFAULTS, learning_rates, steps_per_epoch
from mtl_search.weighting import make_weighting
from mtl_search.weighting.base import LossWeighting

# Loss weightings whose total loss is a function of the member's own task losses and its own
# (stacked) state only, so that it runs inside the vmapped step exactly as alone.
FUSED_WEIGHTINGS = ("static", "dwa", "uncertainty")
# Loss-only weightings that still train alone: the stacked step computes a weighted sum with one
# weight row per member and epoch (or uncertainty weighting's total), not these totals.
LOSS_ONLY_ALONE = {
    "famo": "famo updates its task logits from each member's losses after every batch",
    "rlw": "rlw draws new weights for each member every batch, from the member's own generator",
    "stch": "stch's log-sum-exp of log losses has no stacked version",
    "gls": "gls's geometric mean of the losses has no stacked version",
}
# Families whose training step cannot be stacked, and why.
FAMILIES_ALONE = {
    "ltb": "ltb draws Gumbel noise for its branching every step: under vmap the draws cannot be the member's own",
}
BATCHED_OPTIMIZERS = ("adam", "adamw", "sgd")
# Spec keys that only set a network's initial values, not its structure: members may differ
# there (each is built from its own spec).
INITIAL_VALUE_KEYS = {"cross_stitch": ("alpha_self",), "sluice": ("alpha_self", "beta_init")}
# Spec keys holding layer widths (an int, or a list with one width per layer), per family whose
# members may differ there and still fuse: each member's tensors are zero-padded to the group's
# widest, which computes exactly the member's network where every padded unit outputs 0 and gets
# 0 gradient (checked for every member when its group is set up; see _FusedGroup._pad_members).
# The towers' ``tower.widths`` pad with these families.
WIDTH_KEYS = {
    "tree": ("widths",),
    "mmoe": ("expert_widths", "bottom_widths"),
    "ple": ("expert_widths",),
    "cross_stitch": ("widths",),
    "sluice": ("width",),
    "hierarchy": ("widths",),
}
# A padded group's members are at most this factor narrower than the group's widest, per width:
# a population of 8 tree networks measured 1.7-2.2x the CPU of width 32 at width 128 (about the
# cost of training the 8 alone), 1.3-1.6x at width 64.
MAX_PADDING = 4
# training rows on which a padded member is checked against its own network
PADDING_CHECK_ROWS = 8
RECURRENT_ENCODERS = ("gru", "lstm")

# Keys whose fused step failed in this process (an operation with no batching rule): their
# candidates train alone from then on.
_UNFUSABLE: dict[Hashable, str] = {}


class PopulationWarning(OneLineWarning):
    """A group of candidates could not train fused and trained alone instead."""


def alone_reason(candidate: dict[str, Any], data: MultiTaskData) -> str | None:
    """Why ``candidate`` must train alone on ``data``, or None when it can train fused; see :func:`fusion_key`."""
    return _key_and_reason(candidate, data)[1]


def fusion_key(candidate: dict[str, Any], data: MultiTaskData) -> Hashable | None:
    """Candidates with equal keys can train as one stacked network; None: the candidate trains alone.

    Members of one group share the network's structure (the architecture spec, less the keys
    that only set initial values: ``alpha_self`` of cross_stitch and sluice, sluice's
    ``beta_init``), the batch size, the number of epochs, the optimiser, the checkpoint rule,
    the precision (fp32 or bf16: the whole stacked step runs under one autocast) and the
    loss-weighting method. They may differ in seed (initialisation and shuffling),
    learning rate, weight decay and the weighting's settings (static weights, DWA's
    temperature, the initial log-variances of uncertainty weighting), and where
    :func:`pads_widths` says so, in their layer widths (``WIDTH_KEYS`` and the towers'): the
    key leaves them out, and :func:`train_population` groups such candidates by width (at
    most ``MAX_PADDING`` apart) into groups whose members are zero-padded to the widest,
    after a check that this computes each member exactly (else groups of one shape).

    A candidate trains alone (key None) when:

    ========================================  ===================================================
    the candidate                             why
    ========================================  ===================================================
    does not validate                         training it alone raises the one-line error
    weighting famo, rlw, stch, gls            loss-only, but their totals (per-batch logit steps,
                                              per-batch random weights, a log-sum-exp, a
                                              geometric mean) have no stacked version yet
    weighting gradnorm, pcgrad, mgda,         they work on each task's gradients of the shared
    db_mtl, gradvac, the torchjd ones         parameters, per batch (extra backward passes,
    (upgrad, dualproj, ...; any method not    projections, a solver, per-member averages of
    in FUSED_WEIGHTINGS)                      gradients or cosines): nothing to stack
    family ltb                                its Gumbel-softmax draws noise every step: stacked
                                              draws cannot be those of the member alone (as for
                                              dropout)
    block.norm batch                          batch statistics under vmap: running means and
                                              variances are updated in place, per member
    block.dropout > 0                         random masks under vmap cannot be those of the
                                              member alone: its result would depend on which
                                              candidates it trained with, and its seed would no
                                              longer reproduce it
    a sequence stem with a GRU or LSTM        PyTorch has no vmap batching rule for them
    encoder (the default)
    an optimizer other than adam, adamw, sgd  the batched optimiser has no version of it
    training.precision fp16                   fp16's loss scaling skips a step whose gradients
                                              overflowed: alone, only that candidate's step; a
                                              stacked step would skip every member's, or need
                                              per-member step counts the fused kernel lacks
    stem.ensemble_members above 1             the step would score the members' stacked rows
                                              against targets it does not repeat
    ``ensemble.members`` above 1              it trains its own members as one population
    a key whose fused step failed earlier     an operation without a batching rule (the group
    in this process                           then trained alone; the failure is remembered)
    ========================================  ===================================================

    :func:`train_population` trains every candidate alone when it is given a ``stem`` (a
    user's encoder: each candidate fine-tunes its own copy, which may hold anything).

    Partially labelled targets and conditional (entire-space) tasks fuse: the step computes
    their losses with a mask instead of selecting rows, equal to the loss alone within float
    rounding. Learned loss weights (uncertainty) are stacked beside the parameters.
    """
    return _key_and_reason(candidate, data)[0]


def _key_and_reason(candidate: dict[str, Any], data: MultiTaskData) -> tuple[Hashable | None, str | None]:
    key, reason = _structural_key(candidate, data)
    if key in _UNFUSABLE:
        return None, f"its fused step failed earlier in this process ({_UNFUSABLE[key]})"
    return key, reason


def _structural_key(candidate: dict[str, Any], data: MultiTaskData) -> tuple[Hashable | None, str | None]:
    """The key from what the candidate is, or None and why it must train alone."""
    try:
        config = checked_training(candidate)
        spec = candidate["architecture"]
        validate_spec(spec, data.task_names)
        weighting = make_weighting(
            candidate.get("loss_weighting"), data.task_names, {t.name: t.kind for t in data.tasks}
        )
    except UserError as error:
        return None, f"the candidate is not valid ({error})"
    if weighting.name in LOSS_ONLY_ALONE:
        return None, f"loss weighting {LOSS_ONLY_ALONE[weighting.name]}"
    if weighting.name not in FUSED_WEIGHTINGS:
        return None, f"loss weighting {weighting.name} works on each member's own gradients"
    if spec["family"] in FAMILIES_ALONE:
        return None, f"family {FAMILIES_ALONE[spec['family']]}"
    if config["optimizer"] not in BATCHED_OPTIMIZERS:
        return None, f"optimizer {config['optimizer']} has no batched version"
    if config["precision"] == "fp16":
        return None, "fp16 loss scaling skips the steps of one member whose gradients overflowed, not of a group"
    block = spec.get("block") or {}
    if block.get("norm") == "batch":
        return None, "batch normalisation keeps running statistics per member"
    if block.get("dropout", 0.0) > 0:
        return None, "dropout masks drawn for a population cannot be those of the member alone"
    if ensemble_members(spec) > 1:
        return None, "an ensemble trains its members as a population of its own"
    stem = spec.get("stem") or {}
    if (stem.get("ensemble_members") or 1) > 1:
        return None, "an ensemble's stacked member rows have no batched version"
    if data.input_schema.get("kind") == "sequence" and stem.get("sequence_encoder", "gru") in RECURRENT_ENCODERS:
        return None, f"the {stem.get('sequence_encoder', 'gru')} sequence encoder has no batching rule"
    structure = {key: value for key, value in spec.items() if key not in INITIAL_VALUE_KEYS.get(spec["family"], ())}
    padded = pads_widths(spec)
    if padded:  # the widths go: members differing there share the key, and train_population groups them by width
        structure = _without_widths(structure)
    key = (
        PADDED if padded else EXACT,
        json.dumps(structure, sort_keys=True),
        int(config["batch_size"]),
        int(config["epochs"]),
        config["optimizer"],
        config["checkpoint"],
        weighting.name,
        config["precision"],
        config["schedule"],
        # no warm-up given: the schedule's own, so that a default and the same value written out fuse
        WARMUP_DEFAULTS[config["schedule"]] if config["warmup_fraction"] is None else float(config["warmup_fraction"]),
    )
    return key, None


PADDED, EXACT = "padded widths", "exact shapes"


def pads_widths(spec: dict[str, Any]) -> bool:
    """Whether candidates of this spec may differ in their layer widths (``WIDTH_KEYS``, the
    towers') and still fuse. Not with a normalisation over a padded dimension, a relationship
    prior (a covariance of the towers' weights), sluice's subspaces (a split of the width) or a
    hierarchy whose predictions feed the block above (they join its input after the hidden units,
    where a wider member's units are)."""
    block = spec.get("block") or {}
    family = spec.get("family")
    if family not in WIDTH_KEYS or block.get("norm", "none") != "none" or spec.get("relationship"):
        return False
    if family == "sluice":
        return spec.get("subspaces") == 1
    if family == "hierarchy":
        top = max((spec.get("head_depths") or {"": 0}).values())
        return not any(
            on and spec["head_depths"].get(task, top) < top for task, on in spec.get("feed_upward", {}).items()
        )
    return True


def spec_widths(spec: dict[str, Any]) -> list[int]:
    """The spec's layer widths, one after the other (``WIDTH_KEYS``, then the towers')."""
    widths: list[int] = []
    for key in WIDTH_KEYS[spec["family"]]:
        value = spec.get(key, [])
        widths.extend(value if isinstance(value, list) else [value])
    return widths + list((spec.get("tower") or {}).get("widths", []))


def with_widths(spec: dict[str, Any], widths: Sequence[int]) -> dict[str, Any]:
    """``spec`` with its layer widths replaced, in the order of :func:`spec_widths`."""
    result = copy.deepcopy(spec)
    values = iter(widths)
    for key in WIDTH_KEYS[spec["family"]]:
        if isinstance(result.get(key), list):
            result[key] = [next(values) for _ in result[key]]
        elif key in result:
            result[key] = next(values)
    if (result.get("tower") or {}).get("widths"):
        result["tower"]["widths"] = [next(values) for _ in result["tower"]["widths"]]
    return result


def _without_widths(structure: dict[str, Any]) -> dict[str, Any]:
    return with_widths(structure, [None] * len(spec_widths(structure)))  # type: ignore[list-item]


def width_clusters(widths: Sequence[Sequence[int]], limit: int = MAX_PADDING) -> list[list[int]]:
    """Indices of ``widths`` (one list per candidate) in clusters where, at every position, the
    widest is at most ``limit`` times the narrowest; each joins the first cluster it fits."""
    clusters: list[tuple[list[int], list[int], list[int]]] = []  # members, narrowest, widest
    for index, mine in enumerate(widths):
        for members, low, high in clusters:
            if all(max(h, w) <= limit * min(lo, w) for lo, h, w in zip(low, high, mine)):
                members.append(index)
                low[:] = [min(lo, w) for lo, w in zip(low, mine)]
                high[:] = [max(h, w) for h, w in zip(high, mine)]
                break
        else:
            clusters.append(([index], list(mine), list(mine)))
    return [members for members, _, _ in clusters]


def train_population(
    data: MultiTaskData,
    candidates: Sequence[dict[str, Any]],
    *,
    device: torch.device | str | None = None,
    on_epoch: Sequence[EpochCallback | None] | None = None,
    stem: nn.Module | None = None,
    on_outcome: Callable[[int, TrainResult | BaseException], None] | None = None,
) -> list[TrainResult | BaseException]:
    """Train every candidate; return, in input order, its :class:`TrainResult` or the exception that ended it.

    Candidates are grouped by :func:`fusion_key` (and by width, for padded keys: see
    :func:`width_clusters`); each group of two or more trains as one stacked network, the
    others alone with :func:`train_candidate`. A member's result is what
    ``train_candidate`` would return for it (``population_size`` says how many trained in its
    group at the start); ``on_epoch[i]`` is called after each epoch of candidate ``i`` with
    the arguments ``train_candidate`` gives it. A member's failure (:class:`TrialDiverged`,
    an exception from its callback such as ``optuna.TrialPruned``, any other ``Exception``)
    is its outcome and never stops the others; ``KeyboardInterrupt`` stops everything.

    A fused member's ``seconds`` per epoch and ``wall_time`` are its share: the group's
    training steps divided among the members of that epoch, plus its own evaluation and
    callbacks. A group whose first fused step fails (an operation with no batching rule)
    trains alone instead, with one warning, and its key is not fused again in this process.

    ``on_outcome(i, outcome)`` is called as soon as candidate ``i``'s outcome is final (a group
    member that leaves early at once, the others when their group ends), so that a caller
    stopped by ``KeyboardInterrupt`` keeps the outcomes known by then.
    """
    candidates = list(candidates)
    callbacks = list(on_epoch) if on_epoch is not None else [None] * len(candidates)
    if len(callbacks) != len(candidates):
        raise ValueError(f"on_epoch: {len(callbacks)} callbacks for {len(candidates)} candidates")
    device = resolve_device(device) if not isinstance(device, torch.device) else device
    outcomes: list[TrainResult | BaseException | None] = [None] * len(candidates)
    groups: dict[Hashable, list[int]] = {}
    alone: list[int] = []
    for index, candidate in enumerate(candidates):
        key = fusion_key(candidate, data) if stem is None else None
        if key is None:
            alone.append(index)
        else:
            groups.setdefault(key, []).append(index)
    reported: set[int] = set()

    def report(index: int, outcome: TrainResult | BaseException) -> None:
        outcomes[index] = outcome
        if on_outcome is not None and index not in reported:
            reported.add(index)
            on_outcome(index, outcome)

    planned: list[tuple[Hashable, list[int]]] = []
    for key, indices in groups.items():
        if key[0] == PADDED:  # type: ignore[index]
            widths = [spec_widths(candidates[i]["architecture"]) for i in indices]
            planned.extend((key, [indices[i] for i in cluster]) for cluster in width_clusters(widths))
        else:
            planned.append((key, indices))
    while planned:
        key, indices = planned.pop(0)
        if len(indices) < 2:
            alone.extend(indices)
            continue
        try:
            fused = _FusedGroup(
                data,
                [candidates[i] for i in indices],
                [callbacks[i] for i in indices],
                device,
                on_leave=lambda slot, outcome, indices=indices: report(indices[slot], outcome),
            )
            results = fused.train()
        except _CannotPad:
            # members of one exact shape still fuse among themselves
            exact: dict[tuple[int, ...], list[int]] = {}
            for index in indices:
                exact.setdefault(tuple(spec_widths(candidates[index]["architecture"])), []).append(index)
            planned.extend((key, same) for same in exact.values())
            continue
        except _NotFusable as failure:
            if failure.remember:
                _UNFUSABLE[key] = failure.reason
                warnings.warn(
                    f"{len(indices)} candidates of one structure cannot train as one stacked network "
                    f"({failure.reason}); they train alone",
                    PopulationWarning,
                    stacklevel=2,
                )
            alone.extend(indices)
            continue
        for index, result in zip(indices, results):
            report(index, result)
    for index in sorted(alone):
        report(index, _train_alone(data, candidates[index], device, callbacks[index], stem))
    return outcomes  # type: ignore[return-value]


def _train_alone(
    data: MultiTaskData,
    candidate: dict[str, Any],
    device: torch.device,
    on_epoch: EpochCallback | None,
    stem: nn.Module | None,
) -> TrainResult | BaseException:
    try:
        return train_candidate(data, candidate, device=device, on_epoch=on_epoch, stem=stem)
    except Exception as error:  # the member's outcome; KeyboardInterrupt goes up
        return error


class _CannotPad(Exception):
    """A member's network is not computed exactly by the group's padded template."""


class _NotFusable(Exception):
    """The group cannot train fused; ``remember``: the cause is the fused step itself."""

    def __init__(self, reason: str, remember: bool) -> None:
        super().__init__(reason)
        self.reason, self.remember = reason, remember


# -- losses inside the vmapped step --------------------------------------------------------


def masked_loss(task: Task, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """:meth:`Task.loss` over the labelled rows, written without selecting rows (which vmap
    cannot batch): the per-row losses of labelled rows summed, divided by their count; 0 with
    a graph when none is labelled, as alone."""
    labelled = ~torch.isnan(target)
    filled = torch.where(labelled, target, torch.zeros_like(target))
    if task.kind == "binary":
        rows = nn.functional.binary_cross_entropy_with_logits(output.reshape(-1), filled, reduction="none")
    elif task.kind == "multiclass":
        rows = nn.functional.cross_entropy(output, filled.long(), reduction="none")
    else:
        rows = (output.reshape(-1) - filled) ** 2
    total = torch.where(labelled, rows, torch.zeros_like(rows)).sum() / labelled.sum().clamp(min=1)
    return total / task.target_scale[1] ** 2 if task.kind == "regression" else total


def masked_joint_loss(
    task: Task, tasks: Sequence[Task], outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]
) -> torch.Tensor:
    """:func:`~mtl_search.architectures.conditional.joint_loss` with a mask instead of row selection."""
    log_p = joint_log_probability(task, tasks, outputs)
    label = joint_target(task, tasks, targets)
    known = ~torch.isnan(label)
    label = torch.where(known, label, torch.zeros_like(label))
    log_q = log1mexp(log_p.clamp(max=-1e-7))
    rows = -(label * log_p + (1 - label) * log_q)
    return torch.where(known, rows, torch.zeros_like(rows)).sum() / known.sum().clamp(min=1)


def population_losses(
    tasks: Sequence[Task],
    outputs: dict[str, torch.Tensor],
    targets: dict[str, torch.Tensor],
    fully_labelled: dict[str, bool],
) -> dict[str, torch.Tensor]:
    """:func:`~mtl_search.training.trainer.training_losses` for one member inside vmap: a task
    with missing labels in the training split, and every conditional task, use a masked loss."""
    losses = {}
    for task in tasks:
        if task.given is not None:
            losses[task.name] = masked_joint_loss(task, tasks, outputs, targets)
        elif fully_labelled[task.name]:
            losses[task.name] = task.loss(outputs[task.name], targets[task.name], all_labelled=True)
        else:
            losses[task.name] = masked_loss(task, outputs[task.name], targets[task.name])
    return losses


class _Template:
    """A copy of one member's network that runs the tensors of any member (under vmap: of all).

    :meth:`run` puts a member's tensors in place of the template's parameters and buffers for
    one forward pass and the regularisation, as ``torch.func.functional_call`` does, through
    slots found once (``functional_call`` looks every name up again on each call, which is a
    measurable part of a small network's step).

    Two regularisers read tensors that are neither parameters nor buffers: the relationship
    prior holds its tower weights in a plain list, and the hierarchy's successive
    regularisation holds the previous epoch's weights (per member, passed in as ``anchors``).
    Both are pointed at the member's tensors for the call.
    """

    def __init__(self, model: MultiTaskModel) -> None:
        self.model = model.train()
        self.parameter_names = [name for name, p in model.named_parameters() if p.requires_grad]
        # frozen parameters and buffers: the same for every step of an epoch
        self.constant_names = [name for name, p in model.named_parameters() if not p.requires_grad]
        self.constant_names += [name for name, _ in model.named_buffers()]
        self._slots = [self._slot(name) for name in self.parameter_names + self.constant_names]
        where = {id(table[key]): (table, key) for table, key in self._slots}
        prior = model.relationship
        self._prior_slots = [[where[id(w)] for w in layer] for layer in prior._layers] if prior is not None else []
        self._anchored = isinstance(model.body, HierarchyBody)
        # the regularisation runs outside autocast, in fp32, as train_network runs it
        self.full_precision: Callable[[], ContextManager[Any]] = contextlib.nullcontext
        # an evaluation-mode pass under vmap cannot read gate weights out (the members' own
        # networks keep their gate means, see _FusedGroup._finish)
        for module in model.modules():
            if isinstance(getattr(module, "monitor", None), GateMonitor):
                module.monitor = _Unobserved()

    def _slot(self, name: str) -> tuple[dict[str, Any], str]:
        module_name, _, key = name.rpartition(".")
        module = self.model.get_submodule(module_name)
        return (module._parameters if key in module._parameters else module._buffers), key

    def run(
        self,
        parameters: list[torch.Tensor],
        constants: list[torch.Tensor],
        inputs: dict[str, torch.Tensor],
        anchors: list[torch.Tensor],
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        model = self.model
        saved_layers = model.relationship._layers if self._prior_slots else None
        saved_anchor = model.body._anchor if self._anchored else None
        try:
            with self._holding(parameters, constants):
                outputs = model(inputs)
                if self._prior_slots:
                    model.relationship._layers = [[table[key] for table, key in layer] for layer in self._prior_slots]
                if self._anchored:
                    model.body._anchor = list(anchors)
                with self.full_precision():
                    extra = model.regularization()
        finally:
            if self._prior_slots:
                model.relationship._layers = saved_layers
            if self._anchored:
                model.body._anchor = saved_anchor
        return outputs, extra

    def predict(
        self, parameters: list[torch.Tensor], constants: list[torch.Tensor], inputs: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """One member's forward pass alone (no regularisation), in the template's current mode."""
        with self._holding(parameters, constants):
            return self.model(inputs)

    @contextlib.contextmanager
    def _holding(self, parameters: list[torch.Tensor], constants: list[torch.Tensor]) -> Iterator[None]:
        """The template's slots hold these tensors for the block, its own again after it."""
        slots = self._slots
        saved = [table[key] for table, key in slots]
        try:
            for (table, key), tensor in zip(slots, [*parameters, *constants]):
                table[key] = tensor
            yield
        finally:
            for (table, key), tensor in zip(slots, saved):
                table[key] = tensor


class _Unobserved(GateMonitor):
    """A gate monitor that keeps nothing: the template's."""

    def observe(self, gate: str, weights: torch.Tensor, training: bool) -> None:
        return None


# -- the batched optimiser ---------------------------------------------------------------


class StackedParameters:
    """Every member's trainable tensors, stacked, with a batched optimiser.

    ``per_member[k]`` lists member k's tensors (equal shapes across members). They live in one
    flat buffer, tensor after tensor, each as a contiguous block (members, *shape), so the
    optimiser step is a few operations on the whole buffer whatever the number of tensors;
    :attr:`leaves` are views of it that require grad, and their ``.grad`` are views of one
    flat gradient buffer that backward accumulates into. Learning rate and weight decay are
    per member (and weight decay per tensor: ``decays[i]`` False exempts tensor i, as the
    trainer exempts the weighting's own parameters). The formulas are those of torch.optim's
    Adam, AdamW and SGD (momentum 0.9) as :func:`~mtl_search.training.trainer.make_optimizer`
    builds them, Adam's through PyTorch's own fused kernel where it has one; results agree
    within float rounding.
    """

    def __init__(
        self,
        per_member: Sequence[Sequence[torch.Tensor]],
        decays: Sequence[bool],
        optimizer: str,
        learning_rates: Sequence[float],
        weight_decays: Sequence[float],
    ) -> None:
        if optimizer not in BATCHED_OPTIMIZERS:
            raise ValueError(f"optimizer {optimizer!r}: expected one of {', '.join(BATCHED_OPTIMIZERS)}")
        self.optimizer = optimizer
        self.shapes = [tuple(t.shape) for t in per_member[0]]
        self.decays = list(decays)
        self.steps = 0
        with torch.no_grad():
            self.flat = torch.cat(
                [
                    torch.stack([tensors[i].detach() for tensors in per_member]).reshape(-1)
                    for i in range(len(self.shapes))
                ]
            )
        self.learning_rates = [float(v) for v in learning_rates]
        self.weight_decays = [float(v) for v in weight_decays]
        # the schedule's share of every member's learning rate at this step: members of one
        # group share the schedule, and a schedule's rate is its peak times the same fraction
        self.rate_factor = 1.0
        self._state: list[torch.Tensor] = []
        self._first_grads_checked = False
        # Adam's update at learning rate 1 (AdamW's decay is applied separately, per member)
        self._kernel = (
            fused_kernel(decoupled_weight_decay=False)
            if optimizer != "sgd" and self.flat.device.type in ("cpu", "cuda")
            else None
        )
        self._kernel_step = torch.zeros((), dtype=torch.float32, device=self.flat.device)
        self._prepare()

    @property
    def members(self) -> int:
        return len(self.learning_rates)

    def _prepare(self) -> None:
        """Views, gradient buffer and per-value hyperparameters for the current members."""
        count = self.members
        self.grad = torch.zeros_like(self.flat)
        self._delta = torch.zeros_like(self.flat) if self._kernel is not None else None
        self.leaves: list[torch.Tensor] = []
        self._blocks: list[tuple[int, int]] = []
        self._member_index: torch.Tensor | None = None  # built when first needed (member_copy)
        offset = 0
        for shape in self.shapes:
            size = count * math.prod(shape)
            self._blocks.append((offset, size))
            leaf = self.flat[offset : offset + size].view(count, *shape).detach().requires_grad_()
            if self._first_grads_checked:
                leaf.grad = self.grad[offset : offset + size].view(count, *shape)
            self.leaves.append(leaf)
            offset += size
        self._learning_rate = self._per_value(self.learning_rates, [True] * len(self.shapes))
        decayed = any(w != 0.0 for w in self.weight_decays) and any(self.decays)
        self._decay = None
        self._shrink = None
        self._decay_step: torch.Tensor | None = None
        if decayed and self.optimizer == "adamw":
            # param *= 1 - lr * wd, the factor rounded once as torch's kernel does
            factors = [
                [1.0 - lr * wd if decays else 1.0 for decays in self.decays]
                for lr, wd in zip(self.learning_rates, self.weight_decays)
            ]
            self._shrink = self._per_tensor(factors)
            # lr * wd per value, for the factor at a scheduled step's rates: 1 - lr * wd * rate_factor
            self._decay_step = self._per_tensor(
                [
                    [lr * wd if decays else 0.0 for decays in self.decays]
                    for lr, wd in zip(self.learning_rates, self.weight_decays)
                ]
            )
        elif decayed:
            self._decay = self._per_value(self.weight_decays, self.decays)

    def _per_value(self, per_member: Sequence[float], on: Sequence[bool]) -> torch.Tensor:
        return self._per_tensor([[value if flag else 0.0 for flag in on] for value in per_member])

    def _per_tensor(self, table: Sequence[Sequence[float]]) -> torch.Tensor:
        """One value per element of the flat buffer from ``table[member][tensor]``."""
        values = torch.tensor(table, dtype=torch.float64)  # (members, tensors)
        parts = [values[:, i : i + 1].expand(-1, math.prod(shape)).reshape(-1) for i, shape in enumerate(self.shapes)]
        return torch.cat(parts).to(self.flat)

    def member_tensors(self, member: int) -> list[torch.Tensor]:
        """Member ``member``'s tensors (views of the buffer)."""
        return [leaf.detach()[member] for leaf in self.leaves]

    def member_copy(self, member: int) -> torch.Tensor:
        """A copy of member ``member``'s tensors, one after the other in one flat tensor (one
        gather, whatever the number of tensors); :meth:`split_copy` gives them back."""
        if self._member_index is None:
            count = self.members
            self._member_index = torch.cat(
                [offset + torch.arange(size, device=self.flat.device).view(count, -1) for offset, size in self._blocks],
                dim=1,
            )
        with torch.no_grad():
            return self.flat[self._member_index[member]]

    def split_copy(self, copy: torch.Tensor) -> list[torch.Tensor]:
        """The tensors of a :meth:`member_copy`, in their shapes."""
        parts = torch.split(copy, [math.prod(shape) for shape in self.shapes])
        return [part.view(shape) for part, shape in zip(parts, self.shapes)]

    def check_first_gradients(self) -> None:
        """After the first backward: every tensor got a gradient (the lone optimiser skips a
        parameter without one, which the buffer could not), and from now on gradients
        accumulate into the flat buffer."""
        missing = [i for i, leaf in enumerate(self.leaves) if leaf.grad is None]
        if missing:
            raise RuntimeError(f"{len(missing)} parameter tensor(s) get no gradient")
        with torch.no_grad():
            for leaf, (offset, size) in zip(self.leaves, self._blocks):
                self.grad[offset : offset + size].copy_(leaf.grad.reshape(-1))
                leaf.grad = self.grad[offset : offset + size].view_as(leaf)
        self._first_grads_checked = True

    def zero_grad(self) -> None:
        if self._first_grads_checked:
            self.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        self.steps += 1
        grad, flat = self.grad, self.flat
        if self._decay is not None:
            grad.addcmul_(flat, self._decay)
        if self.optimizer == "sgd":
            momentum = OPTIMIZERS["sgd"][1]["momentum"]
            if not self._state:
                self._state = [grad.clone()]
            else:
                self._state[0].mul_(momentum).add_(grad)
            flat.sub_(self._state[0] * self._learning_rate * self.rate_factor)
            return
        if self._shrink is not None:
            if self.rate_factor == 1.0:
                flat.mul_(self._shrink)
            else:
                flat.mul_(1.0 - self._decay_step * self.rate_factor)
        if not self._state:
            self._state = [torch.zeros_like(flat), torch.zeros_like(flat)]
        exp_avg, exp_avg_sq = self._state
        beta1, beta2 = BETAS
        if self._kernel is not None:
            try:
                # PyTorch's fused Adam kernel at learning rate 1 writes the update into a
                # zeroed buffer; each member's learning rate then scales its part of it
                self._delta.zero_()
                self._kernel_step.fill_(self.steps)
                self._kernel(
                    [self._delta],
                    [grad],
                    [exp_avg],
                    [exp_avg_sq],
                    [],
                    [self._kernel_step],
                    lr=1.0,
                    beta1=beta1,
                    beta2=beta2,
                    weight_decay=0.0,
                    eps=EPS,
                    amsgrad=False,
                    maximize=False,
                )
                flat.addcmul_(self._learning_rate, self._delta, value=self.rate_factor)
                return
            except (RuntimeError, TypeError):  # no such kernel for this device or torch: the same formula below
                if self.steps > 1:
                    raise
                self._kernel = None
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        bias_correction1 = 1 - beta1**self.steps
        bias_correction2 = 1 - beta2**self.steps
        denominator = exp_avg_sq.sqrt().div_(math.sqrt(bias_correction2)).add_(EPS)
        flat.sub_(exp_avg.div(denominator).mul_(self._learning_rate).mul_(self.rate_factor).div_(bias_correction1))

    def keep(self, members: Sequence[int]) -> None:
        """Keep only these members (in this order), with their optimiser state."""
        index = torch.as_tensor(list(members), dtype=torch.long, device=self.flat.device)
        count = self.members

        def select(buffer: torch.Tensor) -> torch.Tensor:
            return torch.cat(
                [
                    buffer[offset : offset + size].view(count, -1).index_select(0, index).reshape(-1)
                    for offset, size in self._blocks
                ]
            )

        with torch.no_grad():
            self.flat = select(self.flat)
            self._state = [select(state) for state in self._state]
        self.learning_rates = [self.learning_rates[m] for m in members]
        self.weight_decays = [self.weight_decays[m] for m in members]
        self._prepare()


# -- one group ---------------------------------------------------------------------------


@dataclasses.dataclass(eq=False)
class _Member:
    candidate: dict[str, Any]
    config: dict[str, Any]
    callback: EpochCallback | None
    model: MultiTaskModel
    weighting: LossWeighting
    generator: torch.Generator
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    kept_epoch: int = 0
    kept_scores: dict[str, dict[str, float]] | None = None
    kept_score: float = math.inf
    kept_state: dict[str, torch.Tensor] | None = None  # the kept epoch's network (validated on it)
    kept_copy: torch.Tensor | None = None  # or its trainable tensors (validated fused): StackedParameters.member_copy
    seconds: float = 0.0  # its share of the group's time so far
    outcome: TrainResult | BaseException | None = None
    slot: int = 0  # its place among the group's candidates

    @property
    def learning_rate(self) -> float:
        return float(self.config["learning_rate"])


class _FusedGroup:
    """Candidates of one fusion key, trained as one stacked network."""

    def __init__(
        self,
        data: MultiTaskData,
        candidates: Sequence[dict[str, Any]],
        callbacks: Sequence[EpochCallback | None],
        device: torch.device,
        on_leave: Callable[[int, BaseException], None] | None = None,
    ) -> None:
        self.data, self.device = data, device
        self.tasks = data.tasks
        self.task_names = data.task_names
        self.on_leave = on_leave  # called with a member's slot and outcome when it leaves before the end
        try:
            self.members = [
                self._build_member(candidate, callback) for candidate, callback in zip(candidates, callbacks)
            ]
            for slot, member in enumerate(self.members):
                member.slot = slot
            self._setup()
        except _CannotPad:
            raise
        except Exception as error:  # whatever it is, training alone reports it per member
            raise _NotFusable(f"{type(error).__name__}: {error}", remember=False) from error
        self.size = len(self.members)

    def _build_member(self, candidate: dict[str, Any], callback: EpochCallback | None) -> _Member:
        # as train_network: the seed sets the initial weights, and then the shuffling generator
        config = checked_training(candidate)
        torch.manual_seed(int(config["seed"]))
        model = build_model(candidate["architecture"], self.data.input_schema, self.tasks).to(self.device)
        kinds = {task.name: task.kind for task in self.tasks}
        weighting = make_weighting(candidate.get("loss_weighting"), self.task_names, kinds).to(self.device)
        model.keep_representations = weighting.needs_representations
        generator = torch.Generator().manual_seed(int(config["seed"]))
        return _Member(candidate, config, callback, model, weighting, generator)

    def _setup(self) -> None:
        first = self.members[0]
        self.learned_weights = first.weighting.name == "uncertainty"
        self.template = _Template(self._template_model())
        self.train_split = self.data.train.to(self.device)
        self.validation = self.data.validation.to(self.device)
        if self.padded:
            per_member = self._pad_members()
        else:
            per_member = [self._trainable(m) for m in self.members]
            shapes = [tuple(p.shape) for p in per_member[0]]
            if any([tuple(p.shape) for p in tensors] != shapes for tensors in per_member):
                raise ValueError("members differ in their parameters' shapes")
        decays = [True] * len(self.template.parameter_names) + ([False] if self.learned_weights else [])
        self.stack = StackedParameters(
            per_member,
            decays,
            first.config["optimizer"],
            [m.learning_rate for m in self.members],
            [float(m.config["weight_decay"]) for m in self.members],
        )
        self.test: Split | None = None
        self.fully_labelled = {
            name: not bool(torch.isnan(self.train_split.targets[name]).any()) for name in self.task_names
        }
        self.constant_losses = {
            task.name: task.constant_loss(self.train_split.targets[task.name]) for task in self.tasks
        }
        if self.learned_weights:
            self.precision_factors = first.weighting.precision_factors.to(self.device)
        self.batch_size = int(first.config["batch_size"])
        self.epochs = int(first.config["epochs"])
        # a schedule's rates at peak 1: each member's rate is its own peak times the step's factor
        scheduled = first.config["schedule"] != "constant" or bool(first.config["warmup_fraction"])
        self.rate_factors = (
            learning_rates(
                first.config["schedule"],
                1.0,
                steps_per_epoch(len(self.train_split), self.batch_size) * self.epochs,
                first.config["warmup_fraction"],
            )
            if scheduled
            else None
        )
        self.keep_best = first.config["checkpoint"] == "best"
        check_supported(first.config["precision"], self.device)
        self.low_precision = autocast(first.config["precision"], self.device)
        if first.config["precision"] != "fp32":
            self.template.full_precision = lambda: torch.autocast(self.device.type, enabled=False)
        self.step_function = vmap(self._member_step)
        # validation with one stacked forward pass per chunk of rows, where the member's own
        # network has nothing to do between epochs (see the module docstring)
        model = first.model
        self.fused_validation = (
            type(model).end_epoch is MultiTaskModel.end_epoch
            and type(model.body).end_epoch is Body.end_epoch
            and model.relationship is None
        )
        self.validated_fused = False  # whether the last epoch was validated fused
        self.predict_function = vmap(self.template.predict, in_dims=(0, 0, None))
        self.validation_targets = evaluation_targets(self.tasks, self.validation.targets)
        self.monitored = any(isinstance(getattr(m, "monitor", None), GateMonitor) for m in model.modules())
        # two rows for the training-mode forward that marks a member's evaluation-time
        # observers (gate means) as stale, as training steps do alone
        self.probe = self.train_split.slice_inputs(0, 2, self.device)
        self._restack_state()

    def _template_model(self) -> MultiTaskModel:
        """The first member's network, or where members differ in width, one at the widest of each
        (``padded``: its trainable tensors are the members' zero-padded)."""
        first = self.members[0]
        spec = first.candidate["architecture"]
        widths = [spec_widths(m.candidate["architecture"]) for m in self.members] if pads_widths(spec) else []
        self.padded = any(mine != widths[0] for mine in widths)
        if not self.padded:
            return copy.deepcopy(first.model)
        widest = with_widths(spec, [max(column) for column in zip(*widths)])
        with torch.random.fork_rng(devices=[]):  # its initial values are never read
            model = build_model(widest, self.data.input_schema, self.tasks).to(self.device)
        model.keep_representations = first.model.keep_representations
        return model

    def _pad_members(self) -> list[list[torch.Tensor]]:
        """Every member's trainable tensors zero-padded to the template's shapes (the leading
        slice of each is the member's), once each member is checked to be computed exactly by
        the template; :class:`_CannotPad` if one is not."""
        template = self.template.model
        names = self.template.parameter_names
        shapes = [tuple(p.shape) for p in template.parameters() if p.requires_grad]
        constant_shapes = [tuple(_tensor_at(template, name).shape) for name in self.template.constant_names]
        padded = []
        for member in self.members:
            model = member.model
            if [name for name, p in model.named_parameters() if p.requires_grad] != names:
                raise _CannotPad("the members' networks have other parameters than the widest")
            constants = [_tensor_at(model, name) for name in self.template.constant_names]
            if [tuple(c.shape) for c in constants] != constant_shapes:
                raise _CannotPad("frozen tensors or buffers differ in shape")
            tensors = self._trainable(member)
            own = tensors[: len(names)]
            if any(
                t.dim() != len(shape) or any(a > b for a, b in zip(t.shape, shape)) for t, shape in zip(own, shapes)
            ):
                raise _CannotPad("a member's tensor is not a leading slice of the widest one's")
            mine = [_padded(t.detach(), shape) for t, shape in zip(own, shapes)]
            self._check_padding(member, own, mine, constants)
            padded.append(mine + [t.detach() for t in tensors[len(names) :]])
        return padded

    def _check_padding(
        self, member: _Member, own: list[torch.Tensor], padded: list[torch.Tensor], constants: list[torch.Tensor]
    ) -> None:
        """The template run with ``padded`` gives the member's own outputs and regularisation on a
        few training rows, and a backward pass of them gives every padded entry exactly 0 gradient
        (so that the optimiser keeps it at 0): else :class:`_CannotPad`."""
        rows = self.train_split.slice_inputs(0, min(PADDING_CHECK_ROWS, len(self.train_split)), self.device)
        leaves = [t.clone().requires_grad_() for t in padded]
        outputs, extra = self.template.run(leaves, constants, rows, [])
        with torch.no_grad():
            expected, expected_extra = member.model(rows), member.model.regularization()
        if set(outputs) != set(expected) or (extra is None) != (expected_extra is None):
            raise _CannotPad("the widest network computes other outputs")
        pairs = [(outputs[name], expected[name]) for name in expected]
        pairs += [(extra, expected_extra)] if extra is not None else []
        for theirs, mine in pairs:
            if theirs.shape != mine.shape or not torch.allclose(theirs, mine, rtol=1e-5, atol=1e-6):
                raise _CannotPad("the padded network's outputs differ from the member's")
        # a random weighting of the outputs: no padded unit can hide behind a zero cotangent
        generator = torch.Generator().manual_seed(0)
        total = sum((out * torch.randn(out.shape, generator=generator).to(out)).sum() for name, out in outputs.items())
        if extra is not None:
            total = total + extra
        grads = torch.autograd.grad(total, leaves, allow_unused=True)
        for grad, tensor in zip(grads, own):
            if grad is None:
                continue
            outside = grad.detach().clone()
            outside[_lead(tensor.shape)] = 0
            if bool(outside.any()):
                raise _CannotPad("a padded entry gets a gradient")

    def _trainable(self, member: _Member) -> list[torch.Tensor]:
        tensors = [p for p in member.model.parameters() if p.requires_grad]
        return tensors + ([p for p in member.weighting.parameters() if p.requires_grad] if self.learned_weights else [])

    # the per-member step, under vmap
    def _member_step(
        self,
        parameters: list[torch.Tensor],
        constants: list[torch.Tensor],
        anchors: list[torch.Tensor],
        inputs: dict[str, torch.Tensor],
        targets: dict[str, torch.Tensor],
        weighting: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        outputs, extra = self.template.run(parameters, constants, inputs, anchors)
        losses = population_losses(self.tasks, outputs, targets, self.fully_labelled)
        losses = {name: loss.float() for name, loss in losses.items()}  # as alone: fp32 losses under autocast
        stacked = torch.stack([losses[name] for name in self.task_names])
        if self.learned_weights:  # as UncertaintyWeighting.total_loss; ``weighting``: the log-variances
            weights = self.precision_factors * torch.exp(-weighting)
            total = (weights * stacked).sum() + 0.5 * weighting.sum()
        else:  # as weighting.base.combine; ``weighting``: this epoch's weights
            weights = weighting
            total = weighting[0] * losses[self.task_names[0]]
            for position, name in enumerate(self.task_names[1:], start=1):
                total = total + weighting[position] * losses[name]
        if extra is not None:
            total = total + extra
        return total, stacked.detach(), weights.detach()

    def _restack_state(self, networks: bool = True) -> None:
        """Per-member state the step reads that changes between epochs only (``networks``
        False: the members' networks are as they were, only the weighting's rows change)."""
        if not self.learned_weights:
            rows = [[m.weighting.weights()[name] for name in self.task_names] for m in self.members]
            self.weight_rows = torch.tensor(rows, dtype=torch.float32, device=self.device)
        if not networks:
            return
        models = [m.model for m in self.members]
        self.constants = [
            torch.stack([_tensor_at(model, name) for model in models]) for name in self.template.constant_names
        ]
        self.anchors = []
        if isinstance(models[0].body, HierarchyBody):
            anchors = [model.body._anchor for model in models]
            if self.padded and anchors[0]:  # a member's anchors are its own tensors' shapes
                widest = [tuple(p.shape) for block in self.template.model.body._anchored for p in block.parameters()]
                anchors = [[_padded(a, shape) for a, shape in zip(mine, widest)] for mine in anchors]
            self.anchors = [torch.stack(tensors) for tensors in zip(*anchors)]

    def train(self) -> list[TrainResult | BaseException]:
        with warnings.catch_warnings():
            # an operation vmap runs member by member (self-attention on CPU) warns once; it is correct
            warnings.filterwarnings("ignore", message="There is a performance drop because we have not yet implemented")
            return self._train()

    def _train(self) -> list[TrainResult | BaseException]:
        every = list(self.members)
        n_rows = len(self.train_split)
        steps = 0
        for epoch in range(self.epochs):
            epoch_started = time.perf_counter()
            orders = torch.stack([torch.randperm(n_rows, generator=m.generator) for m in self.members]).to(self.device)
            count = len(self.members)
            loss_sums = torch.zeros(count, len(self.task_names), device=self.device)
            weight_sums = torch.zeros_like(loss_sums)
            batches = 0
            for start in range(0, n_rows, self.batch_size):
                stop = min(start + self.batch_size, n_rows)
                if stop - start < 2 and batches:
                    break  # as alone
                rows = orders[:, start:stop]
                # each member's own rows, (members, rows, ...); index_select is the cheapest gather
                flat_rows = rows.reshape(-1)
                if self.train_split.mapped is None:
                    gathered = {key: value.index_select(0, flat_rows) for key, value in self.train_split.inputs.items()}
                else:  # read from disk batch by batch
                    gathered = self.train_split.gather_inputs(flat_rows, self.device)
                inputs = {key: value.view(*rows.shape, *value.shape[1:]) for key, value in gathered.items()}
                targets = {
                    name: self.train_split.targets[name].index_select(0, flat_rows).view(rows.shape)
                    for name in self.task_names
                }
                first_step = not steps and not batches
                if self.rate_factors is not None:
                    self.stack.rate_factor = self.rate_factors[steps + batches]
                try:
                    losses, weights = self._step(inputs, targets, first_step)
                except Exception as error:
                    if first_step:
                        raise _NotFusable(f"{type(error).__name__}: {_first_line(error)}", remember=True) from error
                    for member in self.members:  # no member's own failure: it ends every one still training
                        member.outcome = error
                    return [member.outcome for member in every]  # type: ignore[misc]
                loss_sums += losses
                if self.learned_weights:
                    weight_sums += weights
                batches += 1
                raise_pending_stop()  # a Ctrl-C kept while it could not be raised waits one step, not the epoch
            steps += batches
            self.train_split.release()
            epoch_losses = (loss_sums / max(batches, 1)).tolist()
            epoch_weights = (weight_sums / max(batches, 1)).tolist() if self.learned_weights else None
            outputs = self._validate_fused() if self.fused_validation else None
            self.validated_fused = outputs is not None
            share = (time.perf_counter() - epoch_started) / count
            for position, member in enumerate(self.members):
                try:
                    self._end_epoch(
                        member,
                        position,
                        epoch,
                        steps,
                        epoch_losses[position],
                        epoch_weights[position] if epoch_weights else None,
                        share,
                        {name: output[position] for name, output in outputs.items()} if outputs is not None else None,
                    )
                except Exception as error:  # the member leaves with it; KeyboardInterrupt goes up
                    member.outcome = error
                    if self.on_leave is not None:
                        self.on_leave(member.slot, error)
            staying = [position for position, member in enumerate(self.members) if member.outcome is None]
            if not staying:
                break
            changed = len(staying) < len(self.members)
            if changed:
                self.stack.keep(staying)
                self.members = [self.members[position] for position in staying]
            # validated fused, the members' networks were not touched: their frozen tensors are as stacked
            self._restack_state(networks=changed or not self.validated_fused)
        for position, member in enumerate(self.members):
            if member.outcome is None:
                try:
                    member.outcome = self._finish(member, position)
                except Exception as error:
                    member.outcome = error
        return [member.outcome for member in every]  # type: ignore[misc]

    def _step(
        self, inputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor], first_step: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        leaves = self.stack.leaves
        parameters = leaves[:-1] if self.learned_weights else leaves
        weighting = leaves[-1] if self.learned_weights else self.weight_rows
        with self.low_precision():  # the forward pass and losses; the optimiser's step stays fp32
            total, losses, weights = self.step_function(
                parameters, self.constants, self.anchors, inputs, targets, weighting
            )
        self.stack.zero_grad()
        total.sum().backward()
        if first_step:
            self.stack.check_first_gradients()
        self.stack.step()
        return losses, weights

    def _validate_fused(self) -> dict[str, torch.Tensor] | None:
        """Every member's raw validation outputs, (members, rows, ...), from one stacked forward
        pass per chunk of rows, as :func:`predict` runs a network alone (evaluation mode, fp32);
        None when that pass fails (an operation with no batching rule in evaluation mode): the
        group then validates on the members' own networks, this epoch and the next."""
        leaves = self.stack.leaves
        parameters = [leaf.detach() for leaf in (leaves[:-1] if self.learned_weights else leaves)]
        split = self.validation
        chunks: dict[str, list[torch.Tensor]] = {name: [] for name in self.task_names}
        model = self.template.model
        try:
            model.eval()
            with torch.no_grad():
                for start in range(0, len(split), EVAL_CHUNK):
                    inputs = split.slice_inputs(start, min(start + EVAL_CHUNK, len(split)), self.device)
                    for name, output in self.predict_function(parameters, self.constants, inputs).items():
                        chunks[name].append(output)
        except Exception:  # the members' own networks validate instead, as they always could
            self.fused_validation = False
            return None
        finally:
            model.train()
            split.release()
        return {name: torch.cat(parts, dim=1) for name, parts in chunks.items()}

    def _end_epoch(
        self,
        member: _Member,
        position: int,
        epoch: int,
        steps: int,
        epoch_losses: list[float],
        applied_weights: list[float] | None,
        share: float,
        outputs: dict[str, torch.Tensor] | None,
    ) -> None:
        """What train_network does after an epoch: on the member's raw validation ``outputs``
        (validated fused), or on its own network (``outputs`` None)."""
        started = time.perf_counter()
        train_losses = checked_epoch_losses(
            self.task_names, epoch_losses, self.constant_losses, epoch, member.learning_rate
        )
        used_weights = (
            dict(zip(self.task_names, applied_weights)) if applied_weights is not None else member.weighting.weights()
        )
        member.weighting.end_epoch(train_losses)
        if outputs is not None:
            with torch.no_grad():
                scores = score_outputs(self.data, self.validation, outputs, self.validation_targets)
        else:
            model = member.model
            self._load_member(position, member)
            model.end_epoch()
            self._store_member(position, member)  # end_epoch may move weights too
            with torch.no_grad():
                model.train()
                model(self.probe)
            scores = evaluate(model, self.data, self.validation)
        if not self.keep_best:
            member.kept_epoch, member.kept_scores = epoch + 1, scores
        else:
            score = checkpoint_score(scores)
            if member.kept_scores is None or replaces_kept(score, member.kept_score):
                member.kept_epoch, member.kept_scores, member.kept_score = epoch + 1, scores, score
                if outputs is not None:  # the network's trainable tensors are all that moved
                    member.kept_state, member.kept_copy = None, self.stack.member_copy(position)
                else:
                    member.kept_copy = None
                    member.kept_state = {k: v.detach().clone() for k, v in member.model.state_dict().items()}
        seconds = share + time.perf_counter() - started
        member.history.append(
            {
                "epoch": epoch + 1,
                "train_loss": train_losses,
                "validation": scores,
                "weights": used_weights,
                "seconds": seconds,
                "steps": steps,
                "kept_epoch": member.kept_epoch,
            }
        )
        member.seconds += seconds
        if member.callback is not None:
            called = time.perf_counter()
            try:
                member.callback(epoch, member.kept_scores, member.history[-1])
            finally:
                member.seconds += time.perf_counter() - called

    def _load_member(self, position: int, member: _Member) -> None:
        _copy_leading(self._trainable(member), self.stack.member_tensors(position))

    def _store_member(self, position: int, member: _Member) -> None:
        with torch.no_grad():
            for source, target in zip(self._trainable(member), self.stack.member_tensors(position)):
                target[_lead(source.shape)].copy_(source)

    def _finish(self, member: _Member, position: int) -> TrainResult:
        started = time.perf_counter()
        model = member.model
        if self.validated_fused:
            # the member's network gets its weights; then, as alone, its gate means cover the
            # last epoch's validation pass (and the test pass below)
            self._load_member(position, member)
            if self.monitored:
                predict(model, self.validation)
        if member.kept_epoch != len(member.history):
            if member.kept_state is not None:
                model.load_state_dict(member.kept_state)
            elif member.kept_copy is not None:  # the network's tensors only: the weighting keeps its last values
                trainable = [p for p in model.parameters() if p.requires_grad]
                _copy_leading(trainable, self.stack.split_copy(member.kept_copy))
        model.eval()
        if self.test is None:
            self.test = self.data.test.to(self.device)
        test_scores = evaluate(model, self.data, self.test)
        return TrainResult(
            history=member.history,
            validation=member.kept_scores
            if member.kept_scores is not None
            else evaluate(model, self.data, self.validation),
            kept_epoch=member.kept_epoch,
            test=test_scores,
            n_params=count_parameters(model),
            wall_time=member.seconds + time.perf_counter() - started,
            sharing=model.sharing_report(),
            weighting=member.weighting.describe(),
            model=model,
            population_size=self.size,
        )


def _lead(shape: Sequence[int]) -> tuple[slice, ...]:
    """The leading slice of a padded tensor that holds a tensor of ``shape``."""
    return tuple(slice(0, size) for size in shape)


@torch.no_grad()
def _copy_leading(targets: Sequence[torch.Tensor], sources: Sequence[torch.Tensor]) -> None:
    """Each target gets the leading slice of its source (the whole source where not padded)."""
    for target, source in zip(targets, sources):
        target.copy_(source[_lead(target.shape)])


def _padded(tensor: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """``tensor`` in the leading slice of zeros of ``shape``."""
    result = tensor.new_zeros(tuple(shape))
    result[_lead(tensor.shape)] = tensor
    return result


def _tensor_at(model: nn.Module, name: str) -> torch.Tensor:
    module_name, _, attribute = name.rpartition(".")
    return getattr(model.get_submodule(module_name) if module_name else model, attribute)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else ""


__all__ = [
    "FAMILIES_ALONE",
    "FUSED_WEIGHTINGS",
    "MAX_PADDING",
    "StackedParameters",
    "WIDTH_KEYS",
    "alone_reason",
    "fusion_key",
    "pads_widths",
    "spec_widths",
    "train_candidate",
    "train_ensemble",
    "train_population",
    "width_clusters",
    "with_widths",
]


# -- deep ensembles ----------------------------------------------------------------------
# Training a deep ensemble: the members of ``ensemble: {members: K}`` as one population.
#
# Member ``i`` is the candidate without its ``ensemble`` key, trained on its own seed (member 0
# on the candidate's seed, so the first member is exactly the candidate trained alone; the
# others on seeds derived from it). The members share every setting and the structure, so they
# train as one stacked network (the group above) whenever the candidate can train fused;
# otherwise, and when retraining on other rows or with a user's own stem, one after the other.
#
# The first member leads: the epoch callback (pruning, progress) sees its epochs, and when it
# stops the candidate (pruned, failed, interrupted) the others stop with it. A member that
# diverges fails the whole candidate with its reason. The candidate's validation and test
# scores are the ensemble's (architectures/ensemble.py averages the members' predictions);
# its history and kept epoch are the first member's.


class LeaderStopped(Exception):
    """The first member of an ensemble stopped, so the member raising this stops too."""


def member_seed(seed: int, member: int) -> int:
    """The training seed of ensemble member ``member`` (0: the candidate's own)."""
    if member == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed) % 2**63, member]).generate_state(1, dtype=np.uint32)[0])


def member_candidates(candidate: dict[str, Any]) -> list[dict[str, Any]]:
    """One plain candidate per member of ``candidate``'s ensemble."""
    validate_ensemble(candidate["architecture"].get("ensemble"), "architecture spec")
    members = ensemble_members(candidate["architecture"])
    seed = int(checked_training(candidate)["seed"])
    result = []
    for member in range(members):
        one = copy.deepcopy(candidate)
        one["architecture"] = without_ensemble(candidate["architecture"])
        one.setdefault("training", {})["seed"] = member_seed(seed, member)
        result.append(one)
    return result


def train_ensemble(
    data: MultiTaskData,
    candidate: dict[str, Any],
    *,
    device: torch.device,
    on_epoch: EpochCallback | None = None,
    stem: nn.Module | None = None,
    train_split: Split | None = None,
    data_parallel: DataParallel | None = None,
) -> TrainResult:
    """Train every member of ``candidate``'s ensemble; the result's model is the :class:`EnsembleModel`."""
    members = member_candidates(candidate)
    if data_parallel is not None and data_parallel.size > 1:
        raise UserError(
            f"architecture ensemble.members {len(members)}: an ensemble cannot train data-parallel; "
            f"train it in one process"
        )
    stopped = []

    def lead(epoch: int, scores: dict[str, dict[str, float]], record: dict[str, Any]) -> None:
        try:
            if on_epoch is not None:
                on_epoch(epoch, scores, record)
        except BaseException:
            stopped.append(epoch)
            raise

    def follow(epoch: int, scores: dict[str, dict[str, float]], record: dict[str, Any]) -> None:
        if stopped:
            raise LeaderStopped(f"the ensemble's first member stopped after epoch {stopped[0] + 1}")

    fused = train_split is None and stem is None and fusion_key(members[0], data) is not None
    outcomes: list[TrainResult | BaseException]
    if fused:
        outcomes = train_population(data, members, device=device, on_epoch=[lead] + [follow] * (len(members) - 1))
    else:
        outcomes = []
        for index, member in enumerate(members):
            try:
                outcomes.append(
                    train_network(
                        data,
                        member,
                        device=device,
                        on_epoch=lead if index == 0 else None,
                        stem=stem,
                        train_split=train_split,
                    )
                )
            except Exception as error:  # it ends the candidate before the other members train
                outcomes.append(error)
                break
    first = outcomes[0]
    if isinstance(first, BaseException):
        raise first
    for index, outcome in enumerate(outcomes[1:], start=2):
        if isinstance(outcome, TrialDiverged):
            raise TrialDiverged(f"ensemble member {index} of {len(members)}: {outcome}") from outcome
        if isinstance(outcome, BaseException):
            raise outcome
    results: list[TrainResult] = outcomes  # type: ignore[assignment]
    model = EnsembleModel([result.model for result in results], data.tasks, candidate["architecture"]).eval()
    validation = evaluate(model, data, data.validation.to(device))
    test = evaluate(model, data, data.test.to(device))
    return TrainResult(
        history=first.history,
        validation=validation,
        kept_epoch=first.kept_epoch,
        test=test,
        n_params=count_parameters(model),
        wall_time=sum(result.wall_time for result in results),
        sharing=model.sharing_report(),
        weighting=first.weighting,
        model=model,  # type: ignore[arg-type]
        population_size=1,  # the candidate trained alone; its members, fused among themselves, do not count
    )


def train_candidate(
    data: MultiTaskData,
    candidate: dict[str, Any],
    *,
    device: torch.device | str | None = None,
    on_epoch: EpochCallback | None = None,
    stem: nn.Module | None = None,
    train_split: Split | None = None,
    data_parallel: DataParallel | None = None,
) -> TrainResult:
    """Train ``candidate`` on ``data``: its network (:func:`~mtl_search.training.trainer.train_network`,
    which documents the arguments), or with ``architecture.ensemble.members`` above 1 each
    member of the ensemble (:func:`train_ensemble`). A spec whose ``ensemble`` is not valid
    goes to ``train_network``, whose build refuses it in one line."""
    if ensemble_members(candidate.get("architecture") if isinstance(candidate, dict) else None) > 1:
        return train_ensemble(
            data,
            candidate,
            device=resolve_device(device) if not isinstance(device, torch.device) else device,
            on_epoch=on_epoch,
            stem=stem,
            train_split=train_split,
            data_parallel=data_parallel,
        )
    return train_network(
        data,
        candidate,
        device=device,
        on_epoch=on_epoch,
        stem=stem,
        train_split=train_split,
        data_parallel=data_parallel,
    )
