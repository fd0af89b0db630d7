"""Learning-rate schedules: the learning rate of every optimiser step of a training run.

``training.schedule`` names one, ``training.learning_rate`` is its peak, and
``training.warmup_fraction`` the share of the run's steps spent warming up (None: the
schedule's own, :data:`WARMUP_DEFAULTS`). With ``T`` steps in all and ``W`` of warm-up, step
``s`` (counted from 0) gets:

- warm-up (``s < W``): ``start + (peak - start) * (s + 1) / W``, rising in a straight line;
- after it: ``end + (peak - end) * (1 + cos(pi * (s - W) / (T - W))) / 2`` for ``cosine``
  and ``one_cycle``, ``peak`` for ``constant``.

================  ==================  ==================  ===============
schedule          start               end                 warm-up
================  ==================  ==================  ===============
``constant``      0                   (stays at peak)     0
``cosine``        0                   0                   5 % of steps
``one_cycle``     peak / 25           peak / 10,000       30 % of steps
================  ==================  ==================  ===============

The rates are computed once per run, and the trainer sets each step's rate on the
optimiser's parameter groups (a float per group, no tensor work).
"""

from __future__ import annotations

import math

from mtl_search.errors import UserError, is_number

SCHEDULES = ("constant", "cosine", "one_cycle")
WARMUP_DEFAULTS = {"constant": 0.0, "cosine": 0.05, "one_cycle": 0.3}
# start and end of each schedule, as fractions of the peak learning rate
START_FRACTION = {"constant": 0.0, "cosine": 0.0, "one_cycle": 1 / 25}
END_FRACTION = {"constant": 1.0, "cosine": 0.0, "one_cycle": 1e-4}


def check_schedule(schedule: object, warmup_fraction: object) -> None:
    """UserError naming the training key when the schedule or its warm-up is not usable."""
    if schedule not in SCHEDULES:
        raise UserError(f"training.schedule {schedule!r}: expected one of {', '.join(SCHEDULES)}")
    if warmup_fraction is not None and (
        not is_number(warmup_fraction) or not 0 <= warmup_fraction < 1  # type: ignore[operator]
    ):
        raise UserError(
            f"training.warmup_fraction: expected a number from 0 up to (not including) 1, got {warmup_fraction!r}"
        )


def learning_rates(schedule: str, peak: float, total_steps: int, warmup_fraction: float | None = None) -> list[float]:
    """The learning rate of each of ``total_steps`` steps (see the module docstring)."""
    check_schedule(schedule, warmup_fraction)
    fraction = WARMUP_DEFAULTS[schedule] if warmup_fraction is None else float(warmup_fraction)
    warmup = min(round(fraction * total_steps), max(total_steps - 1, 0))
    start, end = START_FRACTION[schedule] * peak, END_FRACTION[schedule] * peak
    rates = [start + (peak - start) * (step + 1) / warmup for step in range(warmup)]
    decay = total_steps - warmup
    for step in range(decay):
        if schedule == "constant":
            rates.append(peak)
        else:
            rates.append(end + (peak - end) * (1 + math.cos(math.pi * step / decay)) / 2)
    return rates


def steps_per_epoch(rows: int, batch_size: int) -> int:
    """Optimiser steps in one epoch of ``rows`` rows, as the trainer takes them: a lone last row is skipped."""
    batches = math.ceil(rows / batch_size)
    if batches > 1 and rows % batch_size == 1:
        batches -= 1
    return batches
