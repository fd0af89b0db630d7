"""The data interface every source produces.

A source turns files and options into a :class:`MultiTaskData`: three in-memory splits of
named input tensors and per-task target tensors, the task list, an input schema the model's
stem is built from, and a JSON description of where it came from. Targets are float
tensors with NaN marking a missing label (class indices stored as floats for
classification), so partial labels need no separate mask.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch

from mtl_search.errors import UserError

from mtl_search.tasks import Task, validate_conditions


@dataclasses.dataclass
class Split:
    """One split: ``inputs`` name -> tensor (first dim = rows), ``targets`` task -> (rows,) float."""

    inputs: dict[str, torch.Tensor]
    targets: dict[str, torch.Tensor]

    def __len__(self) -> int:
        return next(iter(self.inputs.values())).shape[0]

    def to(self, device: torch.device | str) -> "Split":
        return Split(
            inputs={k: v.to(device) for k, v in self.inputs.items()},
            targets={k: v.to(device) for k, v in self.targets.items()},
        )

    def rows(self, index: torch.Tensor) -> "Split":
        return Split(
            inputs={k: v[index] for k, v in self.inputs.items()},
            targets={k: v[index] for k, v in self.targets.items()},
        )


@dataclasses.dataclass
class MultiTaskData:
    """A data set ready for training.

    ``input_schema`` is JSON data describing the inputs, for example
    ``{"kind": "vector", "size": 100}``,
    ``{"kind": "tabular", "numeric": 7, "categorical": [9, 52, ...]}`` or
    ``{"kind": "image", "shape": [1, 36, 36]}``; :func:`mtl_search.architectures.build_stem`
    turns it into the input stem. ``description`` records the source and its options, and
    ``preprocessing`` the state fitted on the train split (JSON), both stored with the study
    so that later commands and exported models know what was searched.
    """

    name: str
    tasks: list[Task]
    train: Split
    validation: Split
    test: Split
    input_schema: dict[str, Any]
    description: dict[str, Any] = dataclasses.field(default_factory=dict)
    preprocessing: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        # Tasks that only make sense together (given=) are checked when the data is made,
        # so that a bad declaration fails before a study is stored, not in its first trial.
        validate_conditions(self.tasks)
        self._warn_of_contradicting_conditions()
        self._check_category_codes()
        self._check_magnitudes()
        # Regression targets are learned standardised with their train statistics, measured
        # here so that every source gets them; a task that carries them (a study's stored
        # task, retrained) keeps its own.
        self.tasks = [
            task.with_target_statistics(self.train.targets[task.name])
            if task.kind == "regression" and task.target_mean is None
            else task
            for task in self.tasks
        ]

    def _check_category_codes(self) -> None:
        """Each categorical column's codes lie in 0 .. its cardinality - 1: the tabular stem reads
        all the columns' embeddings from one flat table, where a code too large would silently
        read the next column's rows instead of failing."""
        if self.input_schema.get("kind") != "tabular" or not self.input_schema.get("categorical"):
            return
        sizes = torch.tensor([int(c) for c in self.input_schema["categorical"]])
        for split_name, split in (("train", self.train), ("validation", self.validation), ("test", self.test)):
            codes = split.inputs.get("categorical")
            if codes is None or codes.numel() == 0:
                continue
            bad = ((codes < 0) | (codes >= sizes.to(codes.device))).any(dim=0)
            if bool(bad.any()):
                column = int(bad.nonzero()[0])
                values = codes[:, column]
                wrong = values[(values < 0) | (values >= int(sizes[column]))][0]
                size = int(sizes[column])
                raise UserError(
                    f"{self.name}: categorical column {column} of the {split_name} split has code "
                    f"{int(wrong)}, outside 0..{size - 1} (its cardinality in input_schema is {size})"
                )

    def _check_magnitudes(self) -> None:
        """Float inputs and regression targets hold no inf (a float32 overflow, such as 1e308 read
        into a float32 tensor): it would make every trial's loss NaN; refused naming the tensor and row."""
        for split_name, split in (("train", self.train), ("validation", self.validation), ("test", self.test)):
            named = [(f"input {name!r}", tensor) for name, tensor in split.inputs.items()]
            named += [
                (f"task {task.name!r}'s target", split.targets[task.name])
                for task in self.tasks
                if task.kind == "regression" and task.name in split.targets
            ]
            for what, tensor in named:
                if not tensor.is_floating_point() or not bool(torch.isinf(tensor).any()):
                    continue
                row = int(torch.isinf(tensor.reshape(len(tensor), -1)).any(dim=1).nonzero()[0])
                raise UserError(
                    f"{self.name}: {what} holds inf in row {row} of the {split_name} split (a value beyond float32's "
                    "range, ±3.4e+38, becomes inf); give finite values of a smaller magnitude, or NaN for a "
                    "missing target"
                )

    def _warn_of_contradicting_conditions(self) -> None:
        """A row where a task's condition is 0 but its own label is 1 trains as joint label 0
        (architectures/conditional.py): say so, as such rows usually mean a mislabelled column."""
        from mtl_search.data.preprocessing import warn_data

        for task in self.tasks:
            if task.given is None:
                continue
            count = sum(
                int(((split.targets[task.given] == 0) & (split.targets[task.name] == 1)).sum())
                for split in (self.train, self.validation, self.test)
            )
            if count:
                warn_data(
                    f"{self.name}: task {task.name!r} is given {task.given!r}, but {count} row(s) have "
                    f"{task.given} = 0 and {task.name} = 1; they are read as {task.name} = 0 (the joint label "
                    f"P({task.given} and {task.name})); check the two columns"
                )

    @property
    def task_names(self) -> list[str]:
        return [task.name for task in self.tasks]

    def task(self, name: str) -> Task:
        for task in self.tasks:
            if task.name == name:
                return task
        raise KeyError(name)


class DataSource(ABC):
    """A named way to make a :class:`MultiTaskData`, chosen with ``--data NAME``.

    To write one, subclass ``DataSource``, set ``name`` and implement :meth:`load`. It gets
    the command line's ``--data-option key=value`` pairs as strings, or the values its data's
    ``description`` stored when a later command loads it again (:func:`parse_options` reads
    both against typed defaults and names an unknown key), the ``--data-file`` path
    (or None) and the ``--task`` declarations (``"clicked:binary"``); a source that declares
    its own tasks refuses them. Every problem with these is a one-line ``UserError``. The
    data's ``input_schema["kind"]`` picks the stem (vector, image, tabular, sequence, or a
    plugin's :class:`~mtl_search.architectures.stems.Stem`), and ``description`` must hold
    ``{"source": name, "options": options}`` so that later commands load the same data again.

    A packaged source is registered by an entry point in the group ``mtl_search.data_sources``
    pointing at the class (instantiated once, without arguments)::

        [project.entry-points."mtl_search.data_sources"]
        clicks = "my_package.clicks:ClickSource"

    Code that is not packaged uses ``register_source`` instead.
    """

    name: ClassVar[str]

    @abstractmethod
    def load(self, options: dict[str, Any], data_file: str | None, task_declarations: list[str]) -> MultiTaskData:
        """The data, split into train, validation and test."""


# how an option's expected value is named in errors ("a int" read badly)
EXPECTED_VALUE = {
    int: "a whole number",
    float: "a number",
    list: "numbers separated by commas",
    tuple: "numbers separated by commas",
}


def parse_options(source: str, options: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """Typed ``--data-option`` values: each default's type decides how its string is read.

    Unknown keys and unreadable values raise :class:`UserError` naming the key.
    """
    parsed = dict(defaults)
    for key, raw in options.items():
        if key not in defaults:
            raise UserError(
                f"--data-option {key}: unknown option for data source {source!r} (known: {', '.join(sorted(defaults))})"
            )
        default = defaults[key]
        if not isinstance(raw, str):
            parsed[key] = raw
            continue
        try:
            if isinstance(default, bool):
                if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                parsed[key] = raw.lower() in ("true", "1", "yes")
            elif isinstance(default, int):
                parsed[key] = int(raw)
            elif isinstance(default, float):
                parsed[key] = float(raw)
            elif isinstance(default, (list, tuple)):
                # brackets allowed: a stored description shows an unset list as [] (the default)
                parsed[key] = [
                    float(v) for v in raw.strip().removeprefix("[").removesuffix("]").split(",") if v.strip()
                ]
            else:
                parsed[key] = raw
        except ValueError:
            raise UserError(
                f"--data-option {key}={raw}: expected {EXPECTED_VALUE.get(type(default), type(default).__name__)}"
            ) from None
    return parsed


def split_indices(
    n_rows: int, fractions: tuple[float, float, float], seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A fixed, seeded train/validation/test split of ``n_rows`` row indices."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(n_rows, generator=generator)
    n_train = int(round(fractions[0] * n_rows))
    n_val = int(round(fractions[1] * n_rows))
    return order[:n_train], order[n_train : n_train + n_val], order[n_train + n_val :]
