"""Task affinity and affinity-seeded task-grouping trees (fully-adaptive branching).

After Lu et al., "Fully-adaptive Feature Sharing in Multi-Task Networks", CVPR 2017: a
short, fully shared network is trained; two tasks are affine when the same samples are easy
(or hard) for both. Here a sample is *hard* for a task when its loss is above that task's
median loss, and

    affinity(i, j) = P(sample is easy for both or hard for both)

over the training rows labelled for both tasks (1 on the diagonal, about 0.5 for unrelated
tasks). ``measure="lookahead"`` uses TAG's gradient lookahead instead (``lookahead_affinity``).
From the matrix, tasks are split top-down, one split at a time, into a chain of
ever finer partitions (all tasks together ... every task alone): each step splits the group
whose tasks agree least, into the two halves that agree most. The chain is the range of
budgets, from fully shared to fully separate, and the seeded trees come from it in one of
two shapes (``AffinitySettings.tree_shape``):

- ``"uniform"`` (default): one partition of the chain at every depth (fully shared, the
  affinity's first split, fully separate, then the chain's other steps up to
  ``max_seeds``, default 3). Only the family and the grouping are fixed; depth and widths are left
  to the sampler, so the seeds do not all sit at one network size.
- ``"grown"``: trees grown the way the paper widens a network from the top, at the
  space's largest depth and middle width: the newest split first appears at the last
  depth and moves one depth lower per tree, one structural step apart (at most 8 by
  default). ``run --seed-trees grown`` asks for them.

They are enqueued as the study's first trials, so the sampler starts from sensible sharing
structures. The default is the cheaper, measured one: on grouped synthetic tasks, eight
grown trees took 40 % of a 20-trial budget to one family at one size and lowered HV-all on
4 of 5 seeds; three uniform trees are level with the unseeded sampler (docs/explanation/pruning.md).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from typing import Any, Sequence

import numpy as np
import optuna
import torch
import torch.nn.functional as F

from mtl_search.data.base import MultiTaskData, Split
from mtl_search.errors import UserError
from mtl_search.records.attributes import AFFINITY_ATTR
from mtl_search.records.study import StudyRecord
from mtl_search.records.trial import TrialRecord
from mtl_search.tasks import Task
from mtl_search.values import FloatChoice, FloatRange, IntChoice, IntRange

Partition = list[list[str]]
# tree shape -> trees seeded unless max_seeds says otherwise
TREE_SHAPES = {"uniform": 3, "grown": 8}
# how affinity is measured: the paper's easy/hard agreement, or TAG's gradient lookahead
AFFINITY_MEASURES = ("easy_hard", "lookahead")
METHOD_NAMES = {
    "easy_hard": "lu2017 easy/hard agreement (hard = loss above the task's median)",
    "lookahead": "tag lookahead (1 - loss after a step on the other task's gradient / loss before)",
}
# Groups up to this size are split by trying every two-way split; larger ones greedily.
EXHAUSTIVE_SPLIT_LIMIT = 12

# one line on how to read each measure's numbers (docs/explanation/pruning.md, Affinity seeding)
AFFINITY_SCALES = {
    "easy_hard": "scale: share of rows easy for both tasks or hard for both; 1 = same rows hard, about 0.5 = unrelated, "
    "below 0.5 = opposite; the grouping order joins the highest first",
    "lookahead": "scale: share of one task's loss that a gradient step on the other removes (averaged both ways); "
    "> 0 helps, < 0 hurts; values near 0 relative to the others mean the tasks barely interact",
}


def affinity_cells(record: dict[str, Any]) -> list[list[str]]:
    """The stored matrix as text, a row per task: easy/hard shares with 3 decimals; lookahead
    values, small shares of a loss of either sign, in scientific notation to keep them apart."""
    style = ".3f" if record.get("measure", "easy_hard") == "easy_hard" else ".2e"
    return [[format(value, style) for value in row] for row in record["matrix"]]


def grouping_order(record: dict[str, Any], arrow: str) -> str:
    """The stored chain of groupings as text: ``{a,b} -> {a}{b}``."""
    return f" {arrow} ".join(
        "".join("{" + ",".join(group) + "}" for group in partition) for partition in record.get("chain") or []
    )


@dataclasses.dataclass(frozen=True)
class AffinitySettings:
    """The short shared network that measures affinity, and how many trees to seed.

    ``max_rows`` caps the training rows the easy/hard statistics are taken on;
    ``max_seeds`` caps the trees enqueued (fully shared and fully separate always stay);
    ``tree_shape`` is "uniform" or "grown" (module docstring); ``measure`` is "easy_hard"
    (Lu et al.) or "lookahead" (TAG, Fifty et al.; the step is ``learning_rate``).
    """

    depth: int = 2
    width: int = 64
    epochs: int = 3
    learning_rate: float = 3e-3
    batch_size: int = 256
    seed: int = 0
    max_rows: int = 4096
    max_seeds: int | None = None  # None: the shape's own (TREE_SHAPES)
    tree_shape: str = "uniform"
    measure: str = "easy_hard"

    def __post_init__(self) -> None:
        if self.measure not in AFFINITY_MEASURES:
            raise UserError(f"affinity measure {self.measure!r}: expected one of {', '.join(AFFINITY_MEASURES)}")
        if self.tree_shape not in TREE_SHAPES:
            raise UserError(f"affinity tree_shape {self.tree_shape!r}: expected one of {', '.join(TREE_SHAPES)}")
        if self.max_seeds is not None and self.max_seeds < 2:
            raise UserError(f"affinity max_seeds {self.max_seeds}: at least 2 (fully shared and fully separate)")

    @property
    def seeds_cap(self) -> int:
        return self.max_seeds if self.max_seeds is not None else TREE_SHAPES[self.tree_shape]


def per_sample_losses(task: Task, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The task's loss per row (NaN where the row has no label for the task)."""
    losses = torch.full(target.shape, math.nan, dtype=torch.float32, device=target.device)
    mask = ~torch.isnan(target)
    if not bool(mask.any()):
        return losses
    out, y = output[mask], target[mask]
    if task.kind == "binary":
        values = F.binary_cross_entropy_with_logits(out.reshape(-1), y, reduction="none")
    elif task.kind == "multiclass":
        values = F.cross_entropy(out, y.long(), reduction="none")
    else:
        values = (out.reshape(-1) - y) ** 2 / task.target_scale[1] ** 2  # as Task.loss: the standardised scale
    losses[mask] = values.float()
    return losses


def easy_hard_affinity(losses: np.ndarray) -> np.ndarray:
    """Affinity matrix from per-sample losses of shape (rows, tasks); NaN = unlabelled.

    Hard = loss above the task's median; entry (i, j) is the share of rows labelled for
    both on which the two tasks agree (both easy or both hard).
    """
    losses = np.asarray(losses, dtype=float)
    n_tasks = losses.shape[1]
    labelled = ~np.isnan(losses)
    hard = np.zeros_like(losses, dtype=bool)
    for t in range(n_tasks):
        if labelled[:, t].any():
            hard[:, t] = losses[:, t] > np.median(losses[labelled[:, t], t])
    matrix = np.eye(n_tasks)
    for i, j in itertools.combinations(range(n_tasks), 2):
        both = labelled[:, i] & labelled[:, j]
        value = float(np.mean(hard[both, i] == hard[both, j])) if both.any() else 0.5
        matrix[i, j] = matrix[j, i] = value
    return matrix


def lookahead_affinity(model: Any, tasks: Sequence[Task], rows: Split, *, step: float, batch_size: int) -> np.ndarray:
    """TAG's inter-task affinity (Fifty et al., NeurIPS 2021), directed: entry (i, j) is
    ``1 - L_j(shared - step * grad_shared L_i) / L_j(shared)``, the share of task j's loss
    that one plain gradient step on task i alone removes (negative: the step hurts j),
    averaged over the batches of ``rows``.

    TAG accumulates it at every training step; here it is taken on the short network once
    trained, which keeps the training loop untouched. Only the shared parameters
    (``model.shared_parameters()``) move; dropout is off (eval mode) so that before and
    after see the same network.
    """
    from mtl_search.training.trainer import training_losses

    shared = model.shared_parameters()
    name_of = {id(p): name for name, p in model.named_parameters()}
    shared_names = [name_of[id(p)] for p in shared]
    n_tasks = len(tasks)
    sums, counts = np.zeros((n_tasks, n_tasks)), np.zeros((n_tasks, n_tasks))
    was_training = model.training
    model.eval()

    def double(outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        # one step changes a loss by as little as 1e-5 of itself, near float32's resolution of a
        # mean: the losses are taken in float64 so that the change is not lost to rounding
        return {name: output.double() for name, output in outputs.items()}

    for start in range(0, len(rows), batch_size):
        inputs = {k: v[start : start + batch_size] for k, v in rows.inputs.items()}
        targets = {k: v[start : start + batch_size].double() for k, v in rows.targets.items()}
        losses = training_losses(tasks, double(model(inputs)), targets)
        before = torch.stack([losses[task.name] for task in tasks]).detach()
        for i, task in enumerate(tasks):
            if not float(before[i]) > 0:  # no labelled row of task i in this batch
                continue
            grads = torch.autograd.grad(losses[task.name], shared, retain_graph=True, allow_unused=True)
            moved = {name: p - step * g for name, p, g in zip(shared_names, shared, grads) if g is not None}
            with torch.no_grad():
                after = training_losses(tasks, double(torch.func.functional_call(model, moved, (inputs,))), targets)
            after_values = torch.stack([after[t.name] for t in tasks])
            valid = (before > 0) & torch.isfinite(after_values)
            ratio = torch.where(valid, 1 - after_values / before.clamp_min(1e-30), torch.zeros_like(before))
            sums[i] += ratio.cpu().numpy()
            counts[i] += valid.cpu().numpy()
    model.train(was_training)
    return np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)


def symmetric(directed: np.ndarray) -> np.ndarray:
    """(Z + Z^T) / 2 off the diagonal, as TAG groups tasks; the diagonal keeps each task's self-affinity."""
    matrix = (directed + directed.T) / 2
    np.fill_diagonal(matrix, np.diag(directed))
    return matrix


@dataclasses.dataclass
class TaskAffinity:
    tasks: list[str]
    matrix: np.ndarray
    measure: str = "easy_hard"
    directed: np.ndarray | None = None  # lookahead: entry (i, j) is task i's step's effect on task j

    def pair(self, a: str, b: str) -> float:
        return float(self.matrix[self.tasks.index(a), self.tasks.index(b)])

    def to_data(self, settings: AffinitySettings | None = None) -> dict[str, Any]:
        # lookahead values can be tiny (a step removes a small share of a loss): keep significant digits
        def stored(v: float) -> float:
            return round(float(v), 4) if self.measure == "easy_hard" else float(f"{v:.4g}")

        record = {
            "method": METHOD_NAMES[self.measure],
            "measure": self.measure,
            "tasks": self.tasks,
            "matrix": [[stored(v) for v in row] for row in self.matrix],
            "settings": dataclasses.asdict(settings) if settings else None,
        }
        if self.directed is not None:
            record["directed"] = [[stored(v) for v in row] for row in self.directed]
        return record


def measure_affinity(
    data: MultiTaskData, settings: AffinitySettings = AffinitySettings(), *, device: torch.device | str | None = None
) -> TaskAffinity:
    """Train a short fully shared network and measure pairwise task affinity on training rows
    (``settings.measure``: easy/hard agreement or TAG's lookahead)."""
    from mtl_search.training import predict, resolve_device, train_candidate

    device = resolve_device(device) if not isinstance(device, torch.device) else device
    tasks = data.task_names
    candidate = {
        "architecture": {
            "family": "tree",
            "widths": [settings.width] * settings.depth,
            "groups": [[list(tasks)]] * settings.depth,
            "block": {},
            "tower": {"widths": []},
            "stem": {},
        },
        "training": {
            "epochs": settings.epochs,
            "learning_rate": settings.learning_rate,
            "batch_size": settings.batch_size,
            "seed": settings.seed,
        },
        "loss_weighting": {"method": "static"},
    }
    result = train_candidate(data, candidate, device=device)
    rows = data.train.rows(torch.arange(min(len(data.train), settings.max_rows))).to(device)
    if settings.measure == "lookahead":
        directed = lookahead_affinity(
            result.model, data.tasks, rows, step=settings.learning_rate, batch_size=settings.batch_size
        )
        return TaskAffinity(tasks, symmetric(directed), "lookahead", directed)
    outputs = predict(result.model, rows)
    losses = torch.stack(
        [per_sample_losses(task, outputs[task.name], rows.targets[task.name]) for task in data.tasks], dim=1
    )
    return TaskAffinity(tasks, easy_hard_affinity(losses.cpu().numpy()))


# -- from affinities to trees ------------------------------------------------------------
def _within(group: Sequence[int], matrix: np.ndarray) -> tuple[float, int]:
    """(sum of pairwise affinities, number of pairs) inside a group."""
    pairs = list(itertools.combinations(group, 2))
    return sum(matrix[i, j] for i, j in pairs), len(pairs)


def _mean_within(group: Sequence[int], matrix: np.ndarray) -> float:
    total, count = _within(group, matrix)
    return total / count if count else 1.0


def best_split(group: Sequence[int], matrix: np.ndarray) -> tuple[list[int], list[int]]:
    """The two-way split of ``group`` whose within-half pairs agree most on average."""
    group = list(group)
    if len(group) <= EXHAUSTIVE_SPLIT_LIMIT:
        best, best_score = None, -math.inf
        first, rest = group[0], group[1:]
        # the first task stays in half A, so each split is tried once
        for size in range(0, len(rest)):
            for others in itertools.combinations(rest, size):
                a = [first, *others]
                b = [t for t in rest if t not in others]
                sa, ca = _within(a, matrix)
                sb, cb = _within(b, matrix)
                score = (sa + sb) / (ca + cb) if ca + cb else 0.0
                if score > best_score + 1e-12:
                    best, best_score = (a, b), score
        return best  # type: ignore[return-value]
    # greedy for large groups: the least affine pair seeds the halves, the rest join the closer one
    i, j = min(itertools.combinations(group, 2), key=lambda p: matrix[p[0], p[1]])
    a, b = [i], [j]
    for t in group:
        if t not in (i, j):
            (a if np.mean(matrix[t, a]) >= np.mean(matrix[t, b]) else b).append(t)
    return sorted(a), sorted(b)


def partition_chain(affinity: TaskAffinity) -> list[Partition]:
    """Ever finer partitions, from all tasks together to every task alone, one split a step."""
    tasks, matrix = affinity.tasks, affinity.matrix
    groups = [list(range(len(tasks)))]
    chain = [groups]
    while any(len(g) > 1 for g in groups):
        splittable = [g for g in groups if len(g) > 1]
        worst = min(splittable, key=lambda g: _mean_within(g, matrix))
        a, b = best_split(worst, matrix)
        groups = [h for g in groups for h in ((a, b) if g is worst else (g,))]
        groups = sorted((sorted(g) for g in groups), key=lambda g: g[0])
        chain.append(groups)
    return [[[tasks[i] for i in g] for g in partition] for partition in chain]


def seed_trees(chain: Sequence[Partition], depth: int, max_trees: int | None = None) -> list[list[Partition]]:
    """Trees of ``depth`` levels from the chain: each new split enters at the last depth and
    moves one depth lower per tree. First: fully shared; last: the chain's finest partition
    at every depth. ``max_trees`` keeps that many, evenly spread, ends included."""
    trees = [[list(chain[0])] * depth]
    for k in range(1, len(chain)):
        for split_depth in range(depth - 1, -1, -1):
            trees.append([chain[k - 1] if d < split_depth else chain[k] for d in range(depth)])
    if max_trees is not None and len(trees) > max_trees:
        keep = (
            sorted({round(i * (len(trees) - 1) / (max_trees - 1)) for i in range(max_trees)}) if max_trees > 1 else [0]
        )
        trees = [trees[i] for i in keep]
    return [[[list(g) for g in level] for level in tree] for tree in trees]


def uniform_trees(chain: Sequence[Partition], depth: int, max_trees: int | None = None) -> list[list[Partition]]:
    """One partition of the chain at every depth: fully shared, fully separate, then the
    chain's splits in order (the first split, the affinity's strongest statement, first)."""
    order = [0, len(chain) - 1] + list(range(1, len(chain) - 1))
    picked = sorted(dict.fromkeys(order[: max_trees or len(order)]))
    return [[[list(g) for g in chain[k]] for _ in range(depth)] for k in picked]


def tree_params(groups: Sequence[Partition], task_names: Sequence[str]) -> dict[str, int]:
    """The ``tree.group_{d}_{task}`` labels that make ``sample_groups`` build ``groups``.

    A task's label is the index of the first task of its group: it lies in 0..i as the
    encoding requires, and differs between the groups that split one parent group.
    """
    index = {t: i for i, t in enumerate(task_names)}
    params = {}
    for d, partition in enumerate(groups):
        for group in partition:
            label = min(index[t] for t in group)
            for task in group:
                if index[task] > 0:
                    params[f"tree.group_{d}_{task}"] = label
    return params


def _middle(param: Any) -> Any:
    """A representative value of a searched parameter (the median choice, the range's middle)."""
    if isinstance(param, (IntChoice, FloatChoice)):
        values = sorted(param.choices)
        return values[(len(values) - 1) // 2]
    if isinstance(param, IntRange):
        middle = math.sqrt(param.low * param.high) if param.log else (param.low + param.high) / 2
        return param.low + param.step * int(round((middle - param.low) / param.step))
    if isinstance(param, FloatRange):
        return math.sqrt(param.low * param.high) if param.log else (param.low + param.high) / 2
    return param


def _largest(param: Any) -> int:
    if isinstance(param, IntChoice):
        return max(param.choices)
    if isinstance(param, IntRange):
        return param.low + param.step * ((param.high - param.low) // param.step)
    return int(param)


def chain_params(tree: Sequence[Partition], chain: Sequence[Partition]) -> dict[str, int]:
    """The ``tree.split_{d}`` positions that make grouping "affinity" build ``tree`` from ``chain``."""
    return {f"tree.split_{d}": chain.index(partition) for d, partition in enumerate(tree)}


def seed_params(
    space: Any,
    task_names: Sequence[str],
    chain: Sequence[Partition],
    max_trees: int | None = None,
    shape: str = "uniform",
) -> list[dict[str, Any]]:
    """Parameter dictionaries (for ``study.enqueue_trial``) of the seeded trees in ``space``.

    ``shape`` "uniform": the grouping labels for every depth up to the family's largest, so
    any depth the sampler picks builds the same partition throughout; depth and widths are
    the sampler's. "grown": trees at the largest depth and the middle width, both fixed.
    Every other parameter is left to the sampler. With ``grouping: affinity`` the trees are
    cut from the space's own chain (``families.tree.chain``), as that grouping samples them.
    """
    if "tree" not in space.families:
        raise UserError("--seed-strategy affinity: the space has no tree family (families.tree) to seed")
    section = space.families["tree"]
    if section.grouping not in ("partitions", "affinity"):
        raise UserError(
            f"--seed-strategy affinity: needs families.tree.grouping partitions or affinity, the space has {section.grouping!r}"
        )
    if section.grouping == "affinity":
        if section.chain is None:
            raise UserError(
                "--seed-strategy affinity: families.tree.grouping affinity has no chain yet (with_affinity_chain gives it one)"
            )
        chain = section.chain
        encode = functools.partial(chain_params, chain=chain)
    else:
        encode = functools.partial(tree_params, task_names=task_names)
    depth = _largest(section.depth)
    fixed: dict[str, Any] = {}
    if len(space.families) > 1:
        fixed["family"] = "tree"
    if shape == "uniform":
        return [fixed | encode(tree) for tree in uniform_trees(chain, depth, max_trees)]
    width = _middle(section.width)
    if isinstance(section.depth, (IntRange, IntChoice)) and not (
        isinstance(section.depth, IntChoice) and len(section.depth.choices) == 1
    ):
        fixed["tree.depth"] = depth
    if section.per_depth_width:
        if isinstance(section.width, (IntRange, IntChoice)):
            fixed.update({f"tree.width_{d}": width for d in range(depth)})
    elif isinstance(section.width, (IntRange, IntChoice)):
        fixed["tree.width"] = width
    return [fixed | encode(tree) for tree in seed_trees(chain, depth, max_trees)]


def study_affinity(
    study: optuna.Study,
    data: MultiTaskData,
    settings: AffinitySettings = AffinitySettings(),
    *,
    device: torch.device | str | None = None,
) -> dict[str, Any]:
    """The study's affinity record (user attribute ``affinity``: matrix, chain, ...), measured
    and stored on first use; a continued study keeps the one it was measured with."""
    record = StudyRecord.read(study).affinity
    if record is None:
        affinity = measure_affinity(data, settings, device=device)
        study.set_user_attr(AFFINITY_ATTR, affinity.to_data(settings) | {"chain": partition_chain(affinity)})
        # read back: of machines that created one study at once, the last writer's record is
        # the one every later reader (and a restart) gets
        record = StudyRecord.read(study).affinity or {}
    return record


def with_affinity_chain(
    study: optuna.Study,
    data: MultiTaskData,
    space: Any,
    settings: AffinitySettings = AffinitySettings(),
    *,
    device: torch.device | str | None = None,
) -> Any:
    """``space`` ready to sample: a tree family with ``grouping: affinity`` and no chain of its
    own gets the study's measured one (``study_affinity``). A chain the space gives is
    checked by ``check_given_chain`` before the study is created."""
    from mtl_search.architectures.tree import validate_chain

    if not measures_chain(space):
        return space
    section = space.families["tree"]
    chain = study_affinity(study, data, settings, device=device)["chain"]
    validate_chain(chain, data.task_names)
    tree = section.model_copy(update={"chain": chain})
    return space.model_copy(update={"families": {**space.families, "tree": tree}})


def measures_chain(space: Any) -> bool:
    """Whether the space's tree family searches along a chain measured from task affinity."""
    section = space.families.get("tree")
    return section is not None and section.grouping == "affinity" and section.chain is None


def has_given_chain(space: Any) -> bool:
    """Whether the space's tree family searches along a chain written in the space itself."""
    section = space.families.get("tree")
    return section is not None and section.grouping == "affinity" and section.chain is not None


def check_given_chain(space: Any, task_names: Sequence[str]) -> None:
    """A chain written in the space must fit these tasks (a one-line UserError if not)."""
    from mtl_search.architectures.tree import validate_chain

    if has_given_chain(space):
        try:
            validate_chain(space.families["tree"].chain, task_names)
        except UserError as error:  # name the file, as every other space error does
            raise UserError(f"space file {space._source}: key {error}") from None


def seed_with_affinity(
    study: optuna.Study,
    data: MultiTaskData,
    space: Any,
    settings: AffinitySettings = AffinitySettings(),
    *,
    device: torch.device | str | None = None,
    measure: bool = True,
) -> list[dict[str, Any]]:
    """Measure affinity (``study_affinity``) and enqueue the seeded trees.

    Returns the enqueued parameter dictionaries. Done once per study: a study that already
    has trials, or whose affinity record counts its seeds, is left alone (its seeds were
    enqueued when it was new). A space with ``grouping: affinity`` must have its chain
    (``with_affinity_chain``) first. ``measure`` False (the space wrote its own chain):
    the seeds are positions on that chain and nothing is measured.
    """
    if study.get_trials(deepcopy=False) or "seeded" in (StudyRecord.read(study).affinity or {}):
        return []
    if not measure:
        return _enqueue(
            study,
            seed_params(space, data.task_names, space.families["tree"].chain, settings.seeds_cap, settings.tree_shape),
        )
    record = study_affinity(study, data, settings, device=device)
    seeds = seed_params(space, data.task_names, record["chain"], settings.seeds_cap, settings.tree_shape)
    study.set_user_attr(AFFINITY_ATTR, record | {"seeded": len(seeds)})
    return _enqueue(study, seeds)


def seeded_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The trials that ran (or wait to run) the seeded trees: the study's first enqueued trials."""
    count = (StudyRecord.read(study).affinity or {}).get("seeded", 0)
    enqueued = [t for t in study.get_trials(deepcopy=False) if "fixed_params" in t.system_attrs]
    return sorted(enqueued, key=lambda t: t.number)[:count]


def seeded_rows(study: optuna.Study) -> list[tuple[int, str, str]]:
    """(trial, how it ended, architecture) for each seeded tree, fully shared first; "complete,
    on the front" for those on the front. For `affinity`, `pareto` and the report alike."""
    from mtl_search.search.study import pareto_trials

    seeded = seeded_trials(study)
    complete = optuna.trial.TrialState.COMPLETE
    front = {t.number for t in pareto_trials(study)} if any(t.state == complete for t in seeded) else set()
    return [
        (t.number, t.state.name.lower() + (", on the front" if t.number in front else ""), _summary(t)) for t in seeded
    ]


def _summary(trial: optuna.trial.FrozenTrial) -> str:
    record = TrialRecord.read(trial, only=("summary",))
    return record.summary if record.recorded("summary") else "not started"


def _enqueue(study: optuna.Study, seeds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for params in seeds:
        study.enqueue_trial(params, skip_if_exists=True)
    return seeds
