"""The synthetic benchmark of the MMoE paper (Ma et al., KDD 2018, section 3.2).

Task k's label is ``w_k.x + sum_i sin(alpha_i * w_k.x + beta_i) + noise`` with
``w_k = c * (p * u_0 + sqrt(1 - p^2) * u_k)`` for orthonormal ``u_0 .. u_T``: every pair of
weight vectors has cosine ``p^2`` and each has cosine ``p`` with the common direction
``u_0``. For two tasks this is exactly the paper's ``w1 = c u1``, ``w2 = c (p u1 + sqrt(1-p^2) u2)``
up to the choice of basis (task 1 is taken as the common direction, so the pair has cosine p).

``groups=G`` (G > 1) makes task relatedness unequal, the case fully-adaptive branching is
for: the tasks are split into G contiguous groups, group g has its own common direction
``u_g``, so tasks in one group have cosine ``p^2`` and tasks in different groups are
orthogonal.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from mtl_search.data.base import DataSource, MultiTaskData, Split, parse_options, split_indices
from mtl_search.errors import UserError
from mtl_search.tasks import Task

DEFAULTS = {
    "dim": 100,
    "rows": 12000,
    "tasks": 2,
    "correlation": 0.5,
    "groups": 1,
    "scale": 1.0,  # c
    "sines": 10,  # m
    "alpha": [],  # empty: drawn from N(0, 0.01), as in the paper
    "beta": [],
    "noise": 0.1,
    "seed": 0,
    "validation_fraction": 0.2,
    "test_fraction": 0.2,
}
# Sizes refused before anything is allocated: the basis is a dense dim x dim QR (minutes at
# 10000), and rows x dim inputs take about 16 bytes a value (float64 draw, float32 tensors).
MAX_DIM = 10_000
MAX_VALUES = 1_000_000_000
MAX_SEED = 2**32 - 1


def make_synthetic(
    *,
    dim: int = 100,
    rows: int = 12000,
    tasks: int = 2,
    correlation: float = 0.5,
    groups: int = 1,
    scale: float = 1.0,
    sines: int = 10,
    alpha: list[float] | None = None,
    beta: list[float] | None = None,
    noise: float = 0.1,
    seed: int = 0,
    validation_fraction: float = 0.2,
    test_fraction: float = 0.2,
) -> MultiTaskData:
    """Build the data set; everything is drawn from ``seed``, so equal arguments give equal data."""
    if not -1.0 <= correlation <= 1.0:
        raise UserError(f"--data-option correlation={correlation}: must lie in [-1, 1]")
    if tasks < 2:
        raise UserError(f"--data-option tasks={tasks}: need at least 2 tasks")
    if not 1 <= groups <= tasks:
        raise UserError(f"--data-option groups={groups}: must lie between 1 and the number of tasks ({tasks})")
    needed = 2 if tasks == 2 and groups == 1 else tasks + groups  # one direction per group and per task
    if dim < needed:
        raise UserError(f"--data-option dim={dim}: must be at least {needed} for tasks={tasks}, groups={groups}")
    if rows < 10:
        raise UserError(f"--data-option rows={rows}: need at least 10 rows")
    if not (0 < validation_fraction < 1 and 0 < test_fraction < 1 and validation_fraction + test_fraction < 1):
        raise UserError("--data-option validation_fraction/test_fraction: must be in (0, 1) and sum below 1")
    _check_values(dim=dim, rows=rows, sines=sines, scale=scale, noise=noise, seed=seed, alpha=alpha, beta=beta)
    try:
        return _generate(
            dim=dim,
            rows=rows,
            tasks=tasks,
            correlation=correlation,
            groups=groups,
            scale=scale,
            sines=sines,
            alpha=alpha,
            beta=beta,
            noise=noise,
            seed=seed,
            validation_fraction=validation_fraction,
            test_fraction=test_fraction,
        )
    except MemoryError:  # below the limits, yet more than this machine has
        raise UserError(
            f"--data-option rows={rows}, dim={dim}: not enough memory for {rows * dim} input values; "
            "use fewer rows or a smaller dim"
        ) from None


def _check_values(
    *,
    dim: int,
    rows: int,
    sines: int,
    scale: float,
    noise: float,
    seed: int,
    alpha: list[float] | None,
    beta: list[float] | None,
) -> None:
    """The options numpy would fail on with a traceback (or train NaN from), named one by one."""
    if dim > MAX_DIM:
        raise UserError(f"--data-option dim={dim}: must be at most {MAX_DIM}")
    if rows * dim > MAX_VALUES:
        raise UserError(f"--data-option rows={rows}: rows x dim ({rows} x {dim}) must be at most {MAX_VALUES} values")
    if not 0 <= sines <= MAX_VALUES // rows:
        raise UserError(f"--data-option sines={sines}: must lie between 0 and {MAX_VALUES // rows} for rows={rows}")
    if not math.isfinite(scale):
        raise UserError(f"--data-option scale={scale:g}: must be a finite number")
    if not (math.isfinite(noise) and noise >= 0):
        raise UserError(f"--data-option noise={noise:g}: must be a finite number, at least 0")
    if not 0 <= seed <= MAX_SEED:
        raise UserError(f"--data-option seed={seed}: must be between 0 and {MAX_SEED}")
    for key, values in (("alpha", alpha), ("beta", beta)):
        if not all(math.isfinite(value) for value in values or ()):
            raise UserError(
                f"--data-option {key}={','.join(str(value) for value in values or ())}: must be finite numbers"
            )


def _generate(
    *,
    dim: int,
    rows: int,
    tasks: int,
    correlation: float,
    groups: int,
    scale: float,
    sines: int,
    alpha: list[float] | None,
    beta: list[float] | None,
    noise: float,
    seed: int,
    validation_fraction: float,
    test_fraction: float,
) -> MultiTaskData:
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    if tasks == 2 and groups == 1:
        # The paper's construction: w1 = c u1, w2 = c (p u1 + sqrt(1-p^2) u2).
        weights = [
            scale * basis[:, 0],
            scale * (correlation * basis[:, 0] + math.sqrt(1 - correlation**2) * basis[:, 1]),
        ]
    else:
        # task k belongs to group g (contiguous blocks); directions 0..G-1 are the groups' common
        # directions, G.. the tasks' own, so tasks of different groups are orthogonal
        group_of = np.repeat(np.arange(groups), [len(block) for block in np.array_split(np.arange(tasks), groups)])
        weights = [
            scale * (correlation * basis[:, group_of[k]] + math.sqrt(1 - correlation**2) * basis[:, groups + k])
            for k in range(tasks)
        ]
    alpha_values = np.asarray(alpha if alpha else rng.normal(0.0, 0.1, sines), dtype=np.float64)
    beta_values = np.asarray(beta if beta else rng.normal(0.0, 0.1, sines), dtype=np.float64)
    if alpha_values.shape != beta_values.shape:
        raise UserError(
            f"--data-option alpha/beta: need equally many values, got {alpha_values.size} and {beta_values.size}"
        )
    x = rng.standard_normal((rows, dim))
    targets = {}
    for k, w in enumerate(weights):
        projection = x @ w
        y = projection + np.sin(np.outer(projection, alpha_values) + beta_values).sum(axis=1)
        y = y + rng.normal(0.0, noise, rows)
        targets[f"task{k + 1}"] = torch.tensor(y, dtype=torch.float32)
    inputs = {"x": torch.tensor(x, dtype=torch.float32)}
    train, validation, test = split_indices(
        rows, (1 - validation_fraction - test_fraction, validation_fraction, test_fraction), seed
    )
    full = Split(inputs=inputs, targets=targets)
    task_list = [Task(name=name, kind="regression") for name in targets]
    return MultiTaskData(
        name="synthetic",
        tasks=task_list,
        train=full.rows(train),
        validation=full.rows(validation),
        test=full.rows(test),
        input_schema={"kind": "vector", "size": dim},
        description={
            "source": "synthetic",
            "options": {
                "dim": dim,
                "rows": rows,
                "tasks": tasks,
                "correlation": correlation,
                "scale": scale,
                "sines": sines,
                "alpha": list(alpha or []),
                "beta": list(beta or []),
                "noise": noise,
                "seed": seed,
                "validation_fraction": validation_fraction,
                "test_fraction": test_fraction,
            }
            # recorded only when used, so studies made before the option existed still match
            | ({"groups": groups} if groups != 1 else {}),
        },
    )


class SyntheticSource(DataSource):
    """Regression tasks of controlled correlation, made on the fly (``--data synthetic``)."""

    name = "synthetic"

    def load(self, options: dict, data_file: str | None, task_declarations: list[str]) -> MultiTaskData:
        return load_synthetic(options, data_file, task_declarations)


def load_synthetic(options: dict, data_file: str | None, task_declarations: list[str]) -> MultiTaskData:
    if data_file:
        raise UserError("--data-file: the synthetic source makes its own data and reads no file")
    if task_declarations:
        raise UserError("--task: the synthetic source declares its own tasks (task1, task2, ...)")
    return make_synthetic(**parse_options("synthetic", options, DEFAULTS))
