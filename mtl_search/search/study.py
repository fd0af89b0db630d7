"""Creating, continuing and reading mtl-search studies.

A study stores, besides Optuna's own records:

- on the study: its :class:`~mtl_search.records.study.StudyRecord` (the data description,
  the tasks, the input schema, the objectives, the space and the preprocessing), so that
  later commands know exactly what was searched;
- on each trial: its :class:`~mtl_search.records.trial.TrialRecord` (the candidate, a
  one-line summary, the per-epoch history, validation and test metrics, the parameter
  count, what the model learned about sharing and, for trials that did not complete, why).
"""

from __future__ import annotations

import json
import math
import os
import secrets
import time
import warnings
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import optuna

from mtl_search.errors import StudyWarning, UserError
from mtl_search.records.attributes import SPACES_ATTR
from mtl_search.records.objective import Objective
from mtl_search.records.study import StudyRecord
from mtl_search.records.trial import TrialRecord
from mtl_search.search.costs import cost_flags, cost_objective, other_limits
from mtl_search.search.storage import open_storage, safe_url
from mtl_search.tasks import Task
from mtl_search.version import __version__

if TYPE_CHECKING:  # the data layer imports torch; reading a finished study needs neither
    from mtl_search.data.base import MultiTaskData

SAMPLERS = ("tpe", "nsga2", "random")


def objectives_for(tasks: Sequence[Task], metrics: str = "primary", costs: Sequence[str] = ()) -> list[Objective]:
    """One objective per task metric (``primary``: each task's first metric), then the costs.

    ``costs`` names extra objectives (``params``, ``latency``), always minimised.
    """
    chosen = []
    for task in tasks:
        names = task.metrics if metrics == "all" else task.metrics[:1]
        chosen.extend(Objective(task.name, metric, task.direction(metric)) for metric in names)
    chosen.extend(cost_objective(name) for name in costs)
    return chosen


# TPE's random start-up trials: Optuna's default of 10, but at most a quarter of a small
# budget (at least 3), so that a 7-trial search is not a random search.
MAX_STARTUP_TRIALS = 10
MIN_STARTUP_TRIALS = 3


def startup_trials(n_trials: int | None) -> int:
    """Random trials before TPE models the results, for a run of ``n_trials`` (None: unbounded)."""
    if n_trials is None:
        return MAX_STARTUP_TRIALS
    return min(MAX_STARTUP_TRIALS, max(MIN_STARTUP_TRIALS, math.ceil(n_trials / 4)))


def make_sampler(
    name: str,
    seed: int | None,
    *,
    n_trials: int | None = None,
    n_startup_trials: int | None = None,
    shared: bool = True,
) -> optuna.samplers.BaseSampler:
    """The sampler by name, seeded, for a run of ``n_trials`` trials.

    ``tpe`` (default): multivariate TPE with grouped conditional parameters, which handles
    the family choice and each family's own parameters well from a few dozen trials on. Its
    random start-up trials are ``n_startup_trials``, by default :func:`startup_trials`.
    ``shared``: other processes may run trials of the study meanwhile. TPE then uses the
    constant liar, which counts their running trials as poor so that workers do not propose
    one candidate. It reads the study's trials from storage again for every parameter group
    (16 % of the wall time of a 60-trial, 4-epoch search on 2,000 rows; more in larger
    studies; benchmarks/trial_overhead.py). Alone, the only running trial is the one being
    sampled, which the liar leaves out, so a single process on its own study goes without
    (a trial a killed process left RUNNING is then ignored until it is failed and retried).
    ``nsga2``: NSGA-II with a small population (16) suited to budgets of tens of trials.
    ``random``: the baseline.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if name == "tpe":
            return optuna.samplers.TPESampler(
                seed=seed,
                multivariate=True,
                group=True,
                constant_liar=shared,
                n_startup_trials=startup_trials(n_trials) if n_startup_trials is None else n_startup_trials,
            )
        if name == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed, population_size=16)
        if name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
    raise UserError(f"--sampler {name!r}: expected one of {', '.join(SAMPLERS)}")


def study_record(
    data: MultiTaskData, objectives: Sequence[Objective], space: dict[str, Any] | None, seed: int | None = None
) -> StudyRecord:
    """The record a new study stores: what it searches, on which data, with which seed."""
    return StudyRecord(
        seed=seed,
        version=__version__,
        data=data.description,
        tasks=[task.to_dict() for task in data.tasks],
        input_schema=data.input_schema,
        objectives=list(objectives),
        space=space,
        preprocessing=data.preprocessing,
    )


def create_or_continue(
    name: str,
    storage_url: str | None,
    data: MultiTaskData,
    objectives: Sequence[Objective],
    space: dict[str, Any] | None,
    sampler: optuna.samplers.BaseSampler,
    *,
    storage: optuna.storages.BaseStorage | None = None,
    seed: int | None = None,
) -> optuna.Study:
    """Create the study, or continue it when it exists with the same data and objectives.

    A new study records ``seed``, or a random one when it is None (see :func:`study_seed`).

    Safe when several workers or machines start at once: creating a study is atomic in the
    database (its name is unique), so exactly one caller creates it and writes the metadata;
    the others load it, wait for that metadata and check it against their own search.
    """
    storage = storage or open_storage(storage_url)
    directions = [o.direction for o in objectives]
    seed_if_new = (
        new_study_seed() if seed is None else seed
    )  # a bad $MTL_SEARCH_SEED is refused before anything is stored
    try:
        study = optuna.create_study(study_name=name, storage=storage, sampler=sampler, directions=directions)
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
        _check_same_search(study, name, data, objectives, space)
        return study
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([o.name for o in objectives])
    study_record(data, objectives, space, seed_if_new).write(study)
    return study


# seeds are 32-bit unsigned for numpy and the samplers
SEED_LIMIT = 2**32
# the seed of new studies created without --seed (unset: a random one), for pipelines that must
# reproduce without passing --seed to every command
SEED_ENV = "MTL_SEARCH_SEED"


def new_study_seed() -> int:
    """The seed a study created without --seed records: ``$MTL_SEARCH_SEED``, else a random one."""
    text = os.environ.get(SEED_ENV, "").strip()
    if not text:
        return secrets.randbelow(SEED_LIMIT)
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value < SEED_LIMIT:
        raise UserError(f"${SEED_ENV} {text!r}: must be a whole number from 0 to {SEED_LIMIT - 1}")
    return value


# between the sampler seeds of two runs of one study: far apart, so that no worker of one run
# takes the seed of a worker of another
_RUN_STRIDE = 1_000_003


def study_seed(study: optuna.Study, given: int | None) -> int:
    """The seed this run trains with: ``given`` (--seed), else the study's recorded one (0 for
    a study stored before seeds were recorded: it was run with 0 unless told otherwise)."""
    if given is not None:
        return given
    recorded = StudyRecord.read(study).seed
    return 0 if recorded is None else recorded


def sampler_seed(seed: int, trials_before: int, worker_index: int = 0) -> int:
    """The sampler's seed for a run of a study with ``trials_before`` trials, in worker
    ``worker_index``: the study's ``seed`` in its first run (plus the worker index, so that
    workers propose different candidates), another one in each continuation, so that a continued
    study does not propose its first candidates again."""
    return (seed + worker_index + _RUN_STRIDE * trials_before) % SEED_LIMIT


# How long a worker that lost the race to create a study waits for the winner's metadata.
METADATA_WAIT = 15.0


def _check_same_search(
    study: optuna.Study,
    name: str,
    data: MultiTaskData,
    objectives: Sequence[Objective],
    space: dict[str, Any] | None = None,
) -> None:
    stored = StudyRecord.read(study)
    deadline = time.monotonic() + METADATA_WAIT
    # A study without metadata and without trials is most likely being created right now.
    while not stored.made_by_mtl_search and not study.get_trials(deepcopy=False) and time.monotonic() < deadline:
        time.sleep(0.1)
        stored = StudyRecord.read(study)
    if not stored.made_by_mtl_search:
        raise UserError(f"study {name!r} exists but was not made by mtl-search; choose another --study-name")
    if stored.raw_unit_tasks:
        # its trials and new ones would learn these targets on other scales: one front cannot compare them
        raise UserError(
            f"study {name!r} was trained with regression targets in raw units (stored in record format 0 "
            f"without target statistics; task(s) {', '.join(stored.raw_unit_tasks)}), and new trials learn "
            f"them standardised; use another --study-name"
        )
    differences = data_differences(stored, data)
    if differences:
        raise UserError(
            f"study {name!r} was made with other data ({differences}); use the same data or another --study-name"
        )
    # both in one message: a run that left out --objective params often left out --max-params too
    problems = [_other_objectives(stored.objectives, objectives)]
    if space is not None and stored.space is not None:
        # a trial's feasibility was judged once, under the limits of its run: one front, one set of limits
        problems.append(other_limits(stored.space_section("objectives"), space.get("objectives")))
    if any(problems):
        raise UserError(f"study {name!r} {'; it also '.join(p for p in problems if p)}, or use another --study-name")
    if space is not None and stored.space is not None:
        # a front mixing last-epoch and best-epoch values would compare unlike things
        before = stored.space_section("training").get("checkpoint", "last")
        now = (space.get("training") or {}).get("checkpoint", "last")
        if before != now:
            raise UserError(
                f"study {name!r} keeps each trial's {before} epoch and this space its {now} one; "
                f"set training.checkpoint: {before} in the space file, or use another --study-name"
            )
        # one front must not mix trials trained for different lengths either (unless the space searches the length)
        epochs_problem = _other_epochs(
            study, (space.get("training") or {}).get("epochs"), stored.space_section("training").get("epochs")
        )
        if epochs_problem:
            raise UserError(f"study {name!r} {epochs_problem}, or use another --study-name")
        # tree.split_{d} are positions along the chain: another chain would change what they mean
        chain_before = (stored.space_section("families").get("tree") or {}).get("chain")
        chain_now = ((space.get("families") or {}).get("tree") or {}).get("chain")
        if chain_before is not None and chain_now is not None and chain_before != chain_now:
            raise UserError(
                f"study {name!r} searched along another families.tree.chain; use the study's chain "
                f"or another --study-name"
            )


# user attribute: every space a study was searched with, [{"from_trial": N, "space": ...}, ...]


def record_other_space(
    study: optuna.Study, name: str, space: dict[str, Any], normalise: Callable[[dict[str, Any]], dict[str, Any]]
) -> None:
    """A run that continues ``study`` with another space (other families, ranges, pruning) may:
    each trial stores its own candidate, so the front stays true. The study then records
    ``space`` (as this run searches it) as its own, keeps the earlier ones (``SPACES_ATTR``)
    for the report, and the run says so: one front now holds trials drawn from several
    spaces. ``normalise`` reads a stored space as this version would search it (defaults
    filled in, the study's pruning rule kept), so that an older study is not taken for
    another space; one this version cannot read is left alone."""
    stored = StudyRecord.read(study)
    before = stored.space
    if before is None:
        return
    try:
        as_searched = normalise(before)
    except UserError:
        return
    if as_searched == space:
        return
    changed = sorted(key for key in set(as_searched) | set(space) if as_searched.get(key) != space.get(key))
    first = len(study.get_trials(deepcopy=False))
    history = list(stored.spaces or [{"from_trial": 0, "space": before}])
    history.append({"from_trial": first, "space": space})
    study.set_user_attr(SPACES_ATTR, history)
    stored.model_copy(update={"space": space}).write(study)
    warnings.warn(
        f"study {name!r} continues with another search space (it differs in {', '.join(changed)}): trials from "
        f"{first} on are drawn from it, and the front holds trials of both; the report lists each space",
        StudyWarning,
        stacklevel=2,
    )


def _other_epochs(study: optuna.Study, now: Any, stored: Any) -> str | None:
    """What is wrong with continuing ``study`` with training epochs ``now`` (a number, or a
    searched range or choice as stored), or None. The truth is what the trials trained (a
    study made before ``--epochs`` was stored holds the space file's value); a study with
    no trained trial yet is held to its stored number, so that two machines starting it
    together agree."""
    candidates = (TrialRecord.read(trial, only=("candidate",)).candidate for trial in study.get_trials(deepcopy=False))
    trained = sorted(
        {epochs for candidate in candidates if isinstance(epochs := candidate.training.get("epochs"), int)}
    )
    if not trained:
        trained = [stored] if isinstance(stored, int) else []
    if len(trained) != 1:
        return None  # nothing trained yet, or a study that searched the number of epochs
    if isinstance(now, int) and now != trained[0]:
        return f"trained its trials for {trained[0]} epochs and this run would train {now}; pass --epochs {trained[0]}"
    if (
        now is not None and not isinstance(now, int) and isinstance(stored, int)
    ):  # a constant study, continued with a searched length
        return f"trained its trials for {trained[0]} epochs and this space searches training.epochs; pass --epochs {trained[0]}"
    return None


# how many differences a "made with other data" message names
SHOWN_DIFFERENCES = 3


def data_differences(stored: StudyRecord, data: MultiTaskData) -> str | None:
    """How ``data`` differs from the data the study's record ``stored`` describes, key by
    key (``tasks.conversion.given: 'clik' in the study, 'click' now``), or None. The
    description comes first (source, file, options; a table's tasks with their columns);
    when it is the same, the tasks as read (classes) and the input schema, which a changed
    file alters."""
    now = json.loads(json.dumps(study_record(data, [], None).to_attrs()))  # as stored: tuples become lists
    before = stored.to_attrs()
    changed, found = _description_changes(before.get("data"), now["data"])
    for key in ("tasks", "input_schema"):
        found = found or list(_differences(before.get(key), now[key], key))
    return _joined(changed, found)


_ABSENT = object()
# keys of a data description that say where the file is, not what it holds
LOCATION_KEYS = ("file", "description_file")


def content_change(stored: Any, now: Any) -> str | None:
    """ "the table file's content changed (...)" when both descriptions carry a fingerprint
    of the file (``content``) and they differ; None otherwise."""
    before, after = (stored or {}).get("content"), (now or {}).get("content")
    if not before or not after or before == after:
        return None
    return (
        f"file {(now or {}).get('file')}: its content changed since the study was made, sha256 "
        f"{str(before.get('sha256'))[:12]}... in the study, {str(after.get('sha256'))[:12]}... now"
    )


def comparable_description(stored: Any, now: Any, *, ignore_content: bool = False) -> Any:
    """``now`` as it should compare with the ``stored`` data description: a study stored
    before file fingerprints (no ``content``) compares without one; with equal fingerprints the
    file may have moved (another machine, another folder), so its location is the stored one.
    ``ignore_content``: the change of content is reported already; compare the rest."""
    if not isinstance(stored, dict) or not isinstance(now, dict):
        return now
    now = dict(now)
    if "content" not in stored:
        now.pop("content", None)
    elif ignore_content:
        now["content"] = stored["content"]
    elif stored.get("content") == now.get("content"):
        now.update({key: stored[key] for key in LOCATION_KEYS if key in stored})
    return now


def description_differences(stored: Any, now: Any) -> str | None:
    """How the data description ``now`` differs from the ``stored`` one, or None (see
    :func:`comparable_description`)."""
    return _joined(*_description_changes(stored, now))


def _description_changes(stored: Any, now: Any) -> tuple[str | None, list[str]]:
    """A changed file content (its own line), and the other keys where the descriptions differ."""
    changed = content_change(stored, now)
    comparable = json.loads(json.dumps(comparable_description(stored, now, ignore_content=bool(changed))))
    return changed, list(_differences(stored, comparable, ""))


def _joined(changed: str | None, found: list[str]) -> str | None:
    """One message: the content change first, then at most SHOWN_DIFFERENCES keys."""
    more = len(found) - SHOWN_DIFFERENCES
    return (
        "; ".join(([changed] if changed else []) + found[:SHOWN_DIFFERENCES]) + (f"; {more} more" if more > 0 else "")
        or None
    )


def _differences(before: Any, after: Any, path: str) -> Iterator[str]:
    """One line per leaf where JSON values ``before`` (stored) and ``after`` (now) differ,
    named by its dotted path; lists of named entries (tasks) are walked by name."""
    if isinstance(before, dict) and isinstance(after, dict):
        for key in dict.fromkeys([*before, *after]):
            if key not in before and after[key] is None:
                continue  # a field added since, at its default: the study's data did not differ in it
            yield from _differences(
                before.get(key, _ABSENT), after.get(key, _ABSENT), f"{path}.{key}" if path else str(key)
            )
    elif (
        isinstance(before, list)
        and isinstance(after, list)
        and _entry_names(before)
        and _entry_names(before) == _entry_names(after)
    ):
        for old, new in zip(before, after):
            yield from _differences(old, new, f"{path}.{old['name']}")
    elif before != after:
        yield f"{path or 'data'}: {_shown(before)} in the study, {_shown(after)} now"


def _entry_names(values: list[Any]) -> list[str] | None:
    if all(isinstance(value, dict) and "name" in value for value in values):
        return [value["name"] for value in values]
    return None


def _shown(value: Any, width: int = 80) -> str:
    if value is _ABSENT:
        return "absent"
    if value is None:
        return "none"
    if isinstance(value, list) and value and _entry_names(value):
        return "[" + ", ".join(_entry_names(value) or []) + "]"
    text = repr(value) if isinstance(value, (str, int, float, bool)) else json.dumps(value, separators=(",", ":"))
    return text if len(text) <= width else text[: width - 3] + "..."


def _other_objectives(stored: Sequence[Objective], now: Sequence[Objective]) -> str | None:
    """What differs between the study's objectives and this run's, and the flag that fixes a
    cost objective, or None when they are the same, in the same order."""
    before, after = [o.name for o in stored], [o.name for o in now]
    if before == after:
        return None
    missing, added = [n for n in before if n not in after], [n for n in after if n not in before]
    what = "; ".join(
        [*(["missing " + ", ".join(missing)] if missing else []), *(["new " + ", ".join(added)] if added else [])]
    )
    text = (
        f"has objectives {', '.join(before) or 'none'} and this run {', '.join(after)} ({what or 'in another order'})"
    )
    if [o.name for o in stored if o.kind != "cost"] != [o.name for o in now if o.kind != "cost"]:
        return f"{text}; use the same tasks and metrics (objectives.metrics)"
    costs = [o.metric for o in stored if o.kind == "cost"]
    if not costs:
        return f"{text}; run without --objective"
    return f"{text}; pass {'only ' if added else ''}{cost_flags(costs)}"


def load_existing(name: str, storage_url: str | None) -> optuna.Study:
    """The study ``name`` in the storage at ``storage_url`` (``None``: the default storage).

    A study that is not there is a one-line :class:`~mtl_search.errors.UserError` listing
    the studies that are.
    """
    storage = open_storage(storage_url, heartbeat=False, create=False)
    names = [s.study_name for s in optuna.study.get_all_study_summaries(storage, include_best_trial=False)]
    if name not in names:
        shown = sorted(names)[:10]
        known = (
            ", ".join(shown)
            + (f", ... ({len(names)} in all; mtl-search studies lists them)" if len(names) > len(shown) else "")
        ) or "none"
        where = safe_url(storage.url) if hasattr(storage, "url") else "the storage"
        raise UserError(f"study {name!r} not found in {where} (studies there: {known})")
    return optuna.load_study(study_name=name, storage=storage)


def study_objectives(study: optuna.Study) -> list[Objective]:
    stored = StudyRecord.read(study)
    if stored.objectives:
        return list(stored.objectives)
    names = study.metric_names or [f"objective{i}" for i in range(len(study.directions))]
    return [
        Objective(n, "value", "maximize" if d == optuna.study.StudyDirection.MAXIMIZE else "minimize")
        for n, d in zip(names, study.directions)
    ]


def study_tasks(study: optuna.Study) -> list[Task]:
    return [Task.from_dict(t) for t in StudyRecord.read(study).tasks]


# A FAIL trial with no fail_reason: mtl-search records one for every failure it sees, so it was
# failed by Optuna's heartbeat check (search/storage.py) after its process stopped beating.
STALE_REASON = "no heartbeat for the grace period: its worker died or was killed"


def stop_reason(trial: optuna.trial.FrozenTrial, trials: Sequence[optuna.trial.FrozenTrial] = ()) -> str | None:
    """Why ``trial`` did not complete, on one line: its ``fail_reason`` or ``prune_reason``; for
    a trial failed by the heartbeat check, that, with the retry found among ``trials``."""
    reason = str(TrialRecord.read(trial, only=("fail_reason", "prune_reason")).reason or "").strip()
    if reason:
        return reason.splitlines()[0]
    if trial.state != optuna.trial.TrialState.FAIL:
        return None
    retries = [t.number for t in trials if t.system_attrs.get("failed_trial") == trial.number]
    return STALE_REASON + (f"; retried as trial {retries[0]}" if retries else "")


def pareto_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The non-dominated COMPLETE, feasible trials (Optuna's own front), by trial number.

    A repeat of an earlier trial's candidate (user attribute ``repeat_of``, see
    search/objective.py) has the same values as that trial; only the original is listed.
    """
    originals = (t for t in study.best_trials if TrialRecord.read(t, only=("repeat_of",)).repeat_of is None)
    return sorted(originals, key=lambda t: t.number)
