"""Synthetic behaviour sequences: the "sequences" source (DUPN-style user modelling).

Each row is a user with a history of 1..max_length events (ids 1..vocabulary, padded with
0 after the last one) and a few numeric features. Event ids fall into three categories
(consecutive thirds of the vocabulary); each user draws events from a personal mix of
categories. Three tasks read the history in different ways:

- ``click`` (binary): more likely with a large share of category-0 events *and* when the
  most recent event is of category 1, so order matters and padding must be ignored;
- ``purchase`` (binary, ``given=click`` by default): only possible after a click; more
  likely with many "premium" events (a fixed tenth of the ids). Its target is NaN where
  click = 0 (the entire-space convention, see docs/explanation/classic-structures.md);
  ``--data-option conditional=false`` declares it an ordinary task (same labels);
- ``dwell`` (regression): the mean "appeal" of the events (a fixed value per id) plus a
  numeric feature and noise.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from mtl_search.data.base import DataSource, MultiTaskData, Split, parse_options, split_indices
from mtl_search.errors import UserError
from mtl_search.tasks import Task

DEFAULTS = {
    "rows": 6000,
    "vocabulary": 60,
    "max_length": 20,
    "numeric": 4,
    "conditional": True,
    "seed": 0,
    "validation_fraction": 0.2,
    "test_fraction": 0.2,
}


def make_sequences(
    *,
    rows: int = 6000,
    vocabulary: int = 60,
    max_length: int = 20,
    numeric: int = 4,
    conditional: bool = True,
    seed: int = 0,
    validation_fraction: float = 0.2,
    test_fraction: float = 0.2,
) -> MultiTaskData:
    """Build the data set; everything is drawn from ``seed``."""
    if rows < 10:
        raise UserError(f"--data-option rows={rows}: need at least 10 rows")
    if vocabulary < 3:
        raise UserError(f"--data-option vocabulary={vocabulary}: need at least 3 event ids")
    if max_length < 2:
        raise UserError(f"--data-option max_length={max_length}: need at least 2")
    if numeric < 2:
        raise UserError(f"--data-option numeric={numeric}: need at least 2 numeric features")
    if not (0 < validation_fraction < 1 and 0 < test_fraction < 1 and validation_fraction + test_fraction < 1):
        raise UserError("--data-option validation_fraction/test_fraction: must be in (0, 1) and sum below 1")
    rng = np.random.default_rng(seed)
    ids = np.arange(1, vocabulary + 1)
    category = (ids - 1) * 3 // vocabulary  # 0, 1, 2 by thirds of the vocabulary
    premium = rng.permutation(vocabulary)[: max(1, vocabulary // 10)] + 1
    appeal = rng.normal(0.0, 1.0, vocabulary + 1)

    lengths = rng.integers(1, max_length + 1, rows)
    taste = rng.dirichlet(np.full(3, 0.7), rows)
    events = np.zeros((rows, max_length), dtype=np.int64)
    for row in range(rows):
        categories = rng.choice(3, size=lengths[row], p=taste[row])
        # an id uniformly within the drawn category's third
        low = categories * vocabulary // 3
        high = (categories + 1) * vocabulary // 3
        events[row, : lengths[row]] = rng.integers(low, high) + 1
    x = rng.standard_normal((rows, numeric))

    valid = events > 0
    share_0 = ((category[np.maximum(events - 1, 0)] == 0) & valid).sum(1) / lengths
    last = events[np.arange(rows), lengths - 1]
    last_is_1 = category[last - 1] == 1
    click_logit = 4.0 * (share_0 - 1 / 3) + 1.5 * last_is_1 + 0.5 * x[:, 0] - 0.5
    click = rng.random(rows) < _sigmoid(click_logit)
    n_premium = np.isin(events, premium).sum(1)
    purchase_logit = 1.2 * n_premium - 3.0 + 0.8 * x[:, 1]
    purchase = click & (rng.random(rows) < _sigmoid(purchase_logit))
    dwell = (appeal[events] * valid).sum(1) / lengths + 0.5 * x[:, 0] + rng.normal(0.0, 0.2, rows)

    purchase_target = np.where(click, purchase.astype(np.float64), math.nan)
    targets = {
        "click": torch.tensor(click, dtype=torch.float32),
        "purchase": torch.tensor(purchase_target, dtype=torch.float32),
        "dwell": torch.tensor(dwell, dtype=torch.float32),
    }
    inputs = {
        "events": torch.tensor(events),
        "lengths": torch.tensor(lengths, dtype=torch.int64),
        "numeric": torch.tensor(x, dtype=torch.float32),
    }
    tasks = [
        Task("click", "binary"),
        Task("purchase", "binary", given="click" if conditional else None),
        Task("dwell", "regression"),
    ]
    train, validation, test = split_indices(
        rows, (1 - validation_fraction - test_fraction, validation_fraction, test_fraction), seed
    )
    full = Split(inputs=inputs, targets=targets)
    options = {
        "rows": rows,
        "vocabulary": vocabulary,
        "max_length": max_length,
        "numeric": numeric,
        "conditional": conditional,
        "seed": seed,
        "validation_fraction": validation_fraction,
        "test_fraction": test_fraction,
    }
    return MultiTaskData(
        name="sequences",
        tasks=tasks,
        train=full.rows(train),
        validation=full.rows(validation),
        test=full.rows(test),
        input_schema={"kind": "sequence", "vocabulary": vocabulary, "max_length": max_length, "numeric": numeric},
        description={"source": "sequences", "options": options},
    )


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


class SequencesSource(DataSource):
    """Synthetic behaviour sequences of users, three tasks (``--data sequences``)."""

    name = "sequences"

    def load(self, options: dict, data_file: str | None, task_declarations: list[str]) -> MultiTaskData:
        return load_sequences(options, data_file, task_declarations)


def load_sequences(options: dict, data_file: str | None, task_declarations: list[str]) -> MultiTaskData:
    if data_file:
        raise UserError("--data-file: the sequences source makes its own data and reads no file")
    if task_declarations:
        raise UserError("--task: the sequences source declares its own tasks (click, purchase, dwell)")
    return make_sequences(**parse_options("sequences", options, DEFAULTS))
