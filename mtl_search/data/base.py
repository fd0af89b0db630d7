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
from typing import Any, ClassVar, Iterator

import torch

from mtl_search.errors import UserError

from mtl_search.tasks import Task, validate_conditions


class MappedInputs:
    """Input arrays memory-mapped from files (see :mod:`mtl_search.data.streamed`), all splits' rows
    one after the other, so that a split is a range of rows and train + validation is one range too.

    The pages a process has read stay counted in its resident memory until it lets go of them:
    :meth:`touched` counts the bytes read and hands the pages back to the page cache
    (``MADV_DONTNEED``) every :attr:`release_bytes`, which keeps resident memory bounded by that
    amount however large the table is. The data stays in the files and the kernel's page cache.
    """

    def __init__(self, arrays: dict[str, torch.Tensor], maps: list[Any], release_bytes: int = 256 << 20):
        self.arrays = arrays
        self.maps = maps
        self.release_bytes = release_bytes
        self._since_release = 0

    def rows(self, start: int, stop: int) -> dict[str, torch.Tensor]:
        return {name: array[start:stop] for name, array in self.arrays.items()}

    def touched(self, nbytes: int) -> None:
        self._since_release += nbytes
        if self._since_release >= self.release_bytes:
            self.release()

    def release(self) -> None:
        import mmap

        self._since_release = 0
        for mapping in self.maps:
            try:
                mapping.madvise(mmap.MADV_DONTNEED)
            except (AttributeError, OSError, ValueError):  # a platform without madvise: the kernel reclaims instead
                return


@dataclasses.dataclass
class Split:
    """One split: ``inputs`` name -> tensor (first dim = rows), ``targets`` task -> (rows,) float.

    ``mapped``: set when the inputs are views of :class:`MappedInputs` (rows ``offset`` onwards),
    read from disk a batch at a time; such inputs stay on the CPU whatever device the targets go to.
    """

    inputs: dict[str, torch.Tensor]
    targets: dict[str, torch.Tensor]
    mapped: MappedInputs | None = None
    offset: int = 0

    def __len__(self) -> int:
        return next(iter(self.inputs.values())).shape[0]

    def to(self, device: torch.device | str) -> "Split":
        targets = {k: v.to(device) for k, v in self.targets.items()}
        if self.mapped is not None:
            return Split(inputs=self.inputs, targets=targets, mapped=self.mapped, offset=self.offset)
        return Split(inputs={k: v.to(device) for k, v in self.inputs.items()}, targets=targets)

    def rows(self, index: torch.Tensor) -> "Split":
        """The rows at ``index``, in memory (inputs on the device they were on, or the CPU for mapped inputs)."""
        if self.mapped is not None:
            inputs = self.gather_inputs(index, "cpu")
            return Split(inputs=inputs, targets={k: v[index.to(v.device)] for k, v in self.targets.items()})
        return Split(
            inputs={k: v[index] for k, v in self.inputs.items()},
            targets={k: v[index] for k, v in self.targets.items()},
        )

    def gather_inputs(self, index: torch.Tensor, device: torch.device | str) -> dict[str, torch.Tensor]:
        """The inputs of the rows at ``index`` (a batch), on ``device``."""
        if self.mapped is None:
            return {k: v[index] for k, v in self.inputs.items()}
        # read in increasing row order (pages in file order), then put back in the batch's order
        index = index.cpu()
        ascending, where = index.sort()
        gathered = {}
        for name, values in self.inputs.items():
            rows = torch.empty((len(index), *values.shape[1:]), dtype=values.dtype)
            rows[where] = values[ascending]
            gathered[name] = rows.to(device)
            self.mapped.touched(rows.numel() * rows.element_size())
        return gathered

    def slice_inputs(self, start: int, stop: int, device: torch.device | str) -> dict[str, torch.Tensor]:
        """The inputs of rows ``start:stop`` (an evaluation chunk), on ``device``."""
        if self.mapped is None:
            return {k: v[start:stop] for k, v in self.inputs.items()}
        sliced = {k: v[start:stop].to(device) for k, v in self.inputs.items()}
        self.mapped.touched(sum(v[start:stop].numel() * v.element_size() for v in self.inputs.values()))
        return sliced

    def release(self) -> None:
        """Hand mapped pages read so far back to the page cache (nothing for inputs in memory)."""
        if self.mapped is not None:
            self.mapped.release()

    def concat(self, other: "Split") -> "Split":
        """This split's rows followed by ``other``'s; adjacent mapped splits stay on disk."""
        targets = {k: torch.cat([self.targets[k], other.targets[k]]) for k in self.targets}
        if self.mapped is not None and other.mapped is self.mapped and self.offset + len(self) == other.offset:
            stop = other.offset + len(other)
            return Split(
                inputs=self.mapped.rows(self.offset, stop), targets=targets, mapped=self.mapped, offset=self.offset
            )
        return Split(inputs={k: torch.cat([self.inputs[k], other.inputs[k]]) for k in self.inputs}, targets=targets)


def row_chunks(split: Split, rows: int = 1 << 16) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` ranges of ``split``'s rows, for checks that must not hold a whole split at once."""
    n_rows = len(split)
    for start in range(0, n_rows, rows):
        yield start, min(start + rows, n_rows)


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
            all_codes = split.inputs.get("categorical")
            if all_codes is None or all_codes.numel() == 0:
                continue
            for start, stop in row_chunks(split):
                codes = split.slice_inputs(start, stop, all_codes.device)["categorical"]
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
            split.release()

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
                if not tensor.is_floating_point():
                    continue
                row = _first_inf_row(split, tensor)
                if row is None:
                    continue
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


def _first_inf_row(split: Split, tensor: torch.Tensor) -> int | None:
    """The first row of ``tensor`` (an input or target of ``split``) holding inf, read in chunks."""
    mapped = split.mapped is not None and any(tensor is v for v in split.inputs.values())
    for start, stop in row_chunks(split):
        part = tensor[start:stop]
        rows = torch.isinf(part.reshape(len(part), -1)).any(dim=1)
        if mapped:
            split.mapped.touched(part.numel() * part.element_size())
        if bool(rows.any()):
            return start + int(rows.nonzero()[0])
    if mapped:
        split.release()
    return None


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
