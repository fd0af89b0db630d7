"""One candidate trained data-parallel by several processes (started by ``torchrun``).

Every process holds the whole model, the whole data and the same shuffled order; each step,
each takes its own contiguous shard of the batch (the batch size stays the global one, so a
step is the same step as one process's). The gradients are summed over the processes before
the optimiser steps, so every process takes the same step. What makes that sum the whole
batch's gradient, whatever the loss weighting:

- a task's loss is a mean over the rows that count for it (labelled rows); the whole batch's
  loss is the processes' losses weighted by their shares of those rows. Each process trains on
  ``share * own loss + (whole loss - share * own loss)``, the second term without a gradient:
  its value is the whole batch's loss (on every process alike), and its gradient is this
  process's part of the whole batch's gradient. A weighting then sees the same loss values on
  every process (its state after the epoch is the same) and its total's gradients, summed over
  the processes, are the whole batch's, even for totals that are not linear in the losses
  (gls, famo, stch, uncertainty);
- the architecture's own loss term (a regulariser of the weights) enters each process with a
  share of 1/N, the same way;
- a weighting's own learned parameters (uncertainty's log-variances) read loss values only:
  every process computes the same gradient for them, which is not summed;
- gradient methods get the whole batch's per-task gradients (weighting/base.py
  ``task_gradients`` sums them over the processes) and so combine them exactly as one process
  would; MGDA's gradients of the shared representation are each process's own rows, and their
  Gram matrices are summed instead.

Not exact: batch normalisation normalises by each shard's statistics (the running statistics
are averaged over the processes after every epoch), and dropout draws other masks. A global
batch that cannot give every process a row (two with batch normalisation) is skipped, like a
lone last row.

The processes talk through torch.distributed: gloo on CPU, NCCL on CUDA (each process on the
GPU of its ``LOCAL_RANK``), and a gloo group for the small messages between steps (the
candidate, rank 0's verdict after each epoch) that never touches a GPU.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from typing import Any, Sequence

import torch
from torch import nn

from mtl_search.errors import UserError

# What torchrun sets in each process it starts.
ENVIRONMENT = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
# Between candidates the other processes wait while rank 0 asks the sampler, records trials
# and prunes, which may take long (affinity seeding trains networks); a process that dies is
# torchrun's to notice, which then stops the others.
MESSAGE_TIMEOUT = datetime.timedelta(days=7)
# A collective of one training step that waits this long means another process is gone.
STEP_TIMEOUT = datetime.timedelta(minutes=30)


# Weightings that cannot train data-parallel, and why. Every process must draw the same random
# numbers for the weighting; torch's global generator is also drawn by dropout, on each
# process's own shard, so it differs between them.
REFUSED_WEIGHTINGS = {
    "graddrop": "draws its random masks from torch's global generator, which differs between the processes",
}


def check_weighting(name: str, where: str = "loss weighting") -> None:
    """A one-line UserError for a weighting that cannot train data-parallel."""
    if name in REFUSED_WEIGHTINGS:
        raise UserError(f"{where} {name}: {REFUSED_WEIGHTINGS[name]}, so it cannot train data-parallel")


class StoppedByRankZero(Exception):
    """Raised in a process other than rank 0 when rank 0 stopped the candidate (pruned, or its
    epoch hooks failed): the process waits for the next candidate."""


def world_size() -> int:
    """How many processes torchrun started (1 outside torchrun)."""
    try:
        return max(int(os.environ.get("WORLD_SIZE", "1")), 1)
    except ValueError:
        return 1


def process_rank() -> int:
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def rank_device(name: str | None) -> torch.device:
    """The device of this process: the CPU, or the GPU of its ``LOCAL_RANK`` (``--device`` cuda or auto)."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if name in (None, "auto"):
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise UserError("--device cuda: no CUDA device is available on this machine")
        if local_rank >= torch.cuda.device_count():
            raise UserError(
                f"--device cuda: torchrun started process {local_rank} on this machine, which has "
                f"{torch.cuda.device_count()} CUDA device(s); use --nproc-per-node {torch.cuda.device_count()}"
            )
        return torch.device("cuda", local_rank)
    raise UserError(
        f"--device {name}: under torchrun each process takes the CPU or the GPU of its LOCAL_RANK; "
        f"use --device cpu, cuda or auto"
    )


@dataclasses.dataclass
class DataParallel:
    """The process group training one candidate together; ``size`` processes, this one ``rank``."""

    rank: int
    size: int
    device: torch.device
    # the collectives of training steps (NCCL on CUDA) and the messages between them (gloo)
    group: Any
    messages: Any

    @classmethod
    def start(cls, device: torch.device) -> "DataParallel":
        """Join the processes torchrun started (their group formed from its environment)."""
        import torch.distributed as dist

        missing = [name for name in ENVIRONMENT if name not in os.environ]
        if missing:
            raise UserError(f"data-parallel training: {', '.join(missing)} not set; start the command with torchrun")
        if not dist.is_available():
            raise UserError("data-parallel training: this torch was built without torch.distributed")
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        options: dict[str, Any] = {"backend": backend, "timeout": STEP_TIMEOUT}
        if device.type == "cuda":
            options["device_id"] = device
        dist.init_process_group(**options)
        messages = dist.new_group(backend="gloo", timeout=MESSAGE_TIMEOUT)
        return cls(dist.get_rank(), dist.get_world_size(), device, dist.group.WORLD, messages)

    def close(self) -> None:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()

    @property
    def leads(self) -> bool:
        """Whether this is rank 0, the process that talks to the study."""
        return self.rank == 0

    # -- messages between steps -------------------------------------------------------
    def share(self, value: Any = None) -> Any:
        """Rank 0's ``value`` (any picklable object), on every process."""
        import torch.distributed as dist

        box = [value if self.leads else None]
        dist.broadcast_object_list(box, src=0, group=self.messages)
        return box[0]

    def gather(self, value: Any) -> list[Any]:
        """Every process's ``value``, in rank order, on every process."""
        import torch.distributed as dist

        values: list[Any] = [None] * self.size
        dist.all_gather_object(values, value, group=self.messages)
        return values

    def verdict(self, stop: bool) -> bool:
        """Rank 0's decision after an epoch (``stop`` on rank 0; ignored elsewhere), on every process."""
        return bool(self.share(stop))

    # -- collectives of a training step -----------------------------------------------
    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` summed over the processes (a new tensor; ``tensor`` is left as it was)."""
        import torch.distributed as dist

        total = tensor.detach().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM, group=self.group)
        return total

    def shard(self, start: int, stop: int) -> tuple[int, int]:
        """This process's rows of the batch ``[start, stop)``: contiguous, sizes differing by at most one."""
        rows = stop - start
        base, extra = divmod(rows, self.size)
        first = start + self.rank * base + min(self.rank, extra)
        return first, first + base + (1 if self.rank < extra else 0)

    def shard_shares(self, counted: dict[str, torch.Tensor], start: int, stop: int) -> dict[str, torch.Tensor]:
        """Per task, this process's share of the batch's rows that count for its loss.

        ``counted[task]``: a boolean per row of the whole shuffled split (its labelled rows); every
        process holds them all, so the shares need no message. A batch without such a row gives 0.
        """
        first, last = self.shard(start, stop)
        shares = {}
        for name, rows in counted.items():
            whole = rows[start:stop].sum()
            own = rows[first:last].sum()
            shares[name] = own.float() / whole.clamp_min(1).float()
        return shares

    def whole_batch_losses(
        self, losses: dict[str, torch.Tensor], shares: dict[str, torch.Tensor], extra: torch.Tensor | None
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        """The losses (and the architecture's term) to train this process on: valued as the whole
        batch's, with gradients of this process's part of them (see the module docstring)."""
        names = list(losses)
        parts = [shares[name].to(losses[name].dtype) * losses[name] for name in names]
        if extra is not None:
            parts.append(extra / self.size)
        own = torch.stack([part.float() for part in parts])
        whole = self.sum(own)
        trained = [part + (whole[i].to(part.dtype) - part).detach() for i, part in enumerate(parts)]
        return dict(zip(names, trained[: len(names)])), (trained[-1] if extra is not None else None)

    def sum_gradients(self, parameters: Sequence[nn.Parameter]) -> None:
        """Sum the parameters' gradients over the processes, in one message. A parameter no
        process's loss reached keeps no gradient (the optimiser skips it, as it would alone)."""
        if not parameters:
            return
        parts = [p.grad.reshape(-1) if p.grad is not None else p.new_zeros(p.numel()) for p in parameters]
        reached = torch.tensor([p.grad is not None for p in parameters], dtype=parts[0].dtype, device=self.device)
        total = self.sum(torch.cat([*parts, reached]))
        reached_anywhere = total[-len(parameters) :].tolist()
        offset = 0
        for parameter, anywhere in zip(parameters, reached_anywhere):
            count = parameter.numel()
            if anywhere:
                parameter.grad = total[offset : offset + count].view_as(parameter).clone()
            offset += count

    def average_buffers(self, model: nn.Module) -> None:
        """Average the floating-point buffers (batch normalisation's running statistics) over
        the processes: each saw its own shards. Buffers the processes agree on stay as they are."""
        buffers = [b for b in model.buffers() if b.is_floating_point()]
        if not buffers:
            return
        total = self.sum(torch.cat([b.reshape(-1) for b in buffers]))
        offset = 0
        with torch.no_grad():
            for buffer in buffers:
                count = buffer.numel()
                buffer.copy_((total[offset : offset + count] / self.size).view_as(buffer))
                offset += count


def data_fingerprint(data: Any) -> list[Any]:
    """Row counts and sums of every split's tensors: processes that loaded the same data agree."""
    fingerprint: list[Any] = []
    for split_name in ("train", "validation", "test"):
        split = getattr(data, split_name)
        fingerprint.append(len(split))
        for group in (split.inputs, split.targets):
            for key in sorted(group):
                values = group[key].detach()
                fingerprint.append((key, tuple(values.shape), float(torch.nan_to_num(values.double()).sum())))
    return fingerprint


def has_batch_norm(model: nn.Module) -> bool:
    return any(isinstance(module, nn.modules.batchnorm._BatchNorm) for module in model.modules())


__all__ = [
    "REFUSED_WEIGHTINGS",
    "DataParallel",
    "StoppedByRankZero",
    "check_weighting",
    "data_fingerprint",
    "has_batch_norm",
    "process_rank",
    "rank_device",
    "world_size",
]
