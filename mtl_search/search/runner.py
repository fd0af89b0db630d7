"""Running a search: the pieces put together, as the CLI and the Python API use them."""

from __future__ import annotations

import dataclasses
import functools
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import optuna
import torch

from mtl_search.data.base import MultiTaskData
from mtl_search.errors import OneLineWarning, StudyWarning, UserError, is_whole
from mtl_search.values import extremes
from mtl_search.records.study import StudyRecord
from mtl_search.search import affinity, costs, hypervolume, pruning
from mtl_search.search.objective import DONE, CandidateObjective, EpochHook, ResultHook, TrialFailed
from mtl_search.search.population import STRATEGIES as POPULATION_STRATEGIES, optimize_populations
from mtl_search.search.space import SearchSpace, parse_space
from mtl_search.search.storage import is_database_server, open_storage
from mtl_search.search.study import (
    SAMPLERS,
    SEED_LIMIT,
    create_or_continue,
    make_sampler,
    objectives_for,
    record_other_space,
    sampler_seed,
    study_seed,
)
from mtl_search.search.workers import Budget, LocalBudget, optimize_study
from mtl_search.training import resolve_device, train_candidate
from mtl_search.training.data_parallel import REFUSED_WEIGHTINGS, DataParallel, StoppedByRankZero, check_weighting
from mtl_search.threads import threads_while
from mtl_search.training.precision import FP16_REFUSED_WEIGHTINGS, check_precision, check_supported


@dataclasses.dataclass
class SearchSettings:
    """How :func:`run_search` runs a study (the space file says what is searched).

    ``study_name`` names the study: running again with the same name and storage continues
    it (the data, objectives and hard limits must match). ``storage`` is an Optuna storage
    URL (``None``: ``$MTL_SEARCH_STORAGE`` or ``studies/mtl-search.db``). ``sampler`` is
    ``tpe``, ``nsga2`` or ``random``, seeded from ``seed`` (search/study.py ``sampler_seed``). The run stops after ``n_trials``
    more trials (``None``: no count) or ``timeout`` seconds, whichever comes first.
    ``epochs`` overrides the space's ``training.epochs``; ``device`` is ``cpu``, ``cuda``,
    ``mps`` or ``auto``; ``precision`` (fp32, bf16, fp16) is every candidate's
    ``training.precision`` (mtl_search/training/precision.py). The other fields match the
    ``run`` command's flags of the same names.
    """

    study_name: str
    storage: str | None = None
    sampler: str = "tpe"
    # None: the study's recorded seed, or for a new study a random one it records
    seed: int | None = None
    n_trials: int | None = 20
    timeout: float | None = None
    epochs: int | None = None
    device: str | None = None
    precision: str = "fp32"
    # Trained weights and spec of every trial go to this artifact folder (None: beside the
    # SQLite file, see search/artifacts.py); save_artifacts=False keeps none.
    artifacts: str | None = None
    save_artifacts: bool = True
    # Heartbeat grace period in seconds before a silent trial is failed and retried
    # (None: $MTL_SEARCH_GRACE_PERIOD, else 60; see search/storage.py).
    grace_period: int | None = None
    # Index of this worker process among those of one run; it offsets the sampler's seed so
    # that parallel workers do not propose the same candidates (training keeps ``seed``).
    worker_index: int = 0
    # Pareto-aware pruning as the space's `pruning:` section says; False turns it off (--no-prune).
    prune: bool = True
    # "affinity": measure task affinity and enqueue grouping trees first (search/affinity.py).
    # (A space whose tree family has ``grouping: affinity`` measures it whatever this says.)
    seed_strategy: str = "none"
    # the shape of the seeded trees: "uniform" or "grown" (search/affinity.py)
    seed_trees: str = "uniform"
    # how the affinity is measured: "easy_hard" (Lu et al.) or "lookahead" (TAG)
    affinity_measure: str = "easy_hard"
    # TPE's random start-up trials (None: scaled to n_trials, see search/study.py).
    startup_trials: int | None = None
    # Trials asked for and trained together (search/population.py); 1: one at a time.
    population: int = 1
    # how a population's members are proposed: "shared-structure" or "independent"
    population_strategy: str = "shared-structure"
    # torch CPU threads while the search trains (None: 1, or $OMP_NUM_THREADS; see
    # mtl_search/threads.py); the caller's own count is set back afterwards.
    threads: int | None = None


def _with_search_threads(search: Callable[..., optuna.Study]) -> Callable[..., optuna.Study]:
    """``search`` run with ``settings.threads`` torch threads (a bad count refused first)."""

    @functools.wraps(search)
    def run(data: MultiTaskData, space: SearchSpace, settings: SearchSettings, **options: Any) -> optuna.Study:
        with threads_while(settings.threads):
            return search(data, space, settings, **options)

    return run


@_with_search_threads
def run_search(
    data: MultiTaskData,
    space: SearchSpace,
    settings: SearchSettings,
    *,
    epoch_hooks: Sequence[EpochHook] = (),
    result_hooks: Sequence[ResultHook] = (),
    callbacks: Sequence[Callable[[optuna.Study, optuna.trial.FrozenTrial], None]] = (),
    stem: torch.nn.Module | None = None,
    enqueue: Sequence[dict[str, Any]] = (),
    storage: optuna.storages.BaseStorage | None = None,
    budget: Budget | None = None,
    data_parallel: DataParallel | None = None,
) -> optuna.Study:
    """Create or continue the study and run ``n_trials`` more trials (or until ``timeout``).

    ``enqueue`` holds parameter dictionaries to try first (e.g. from affinity seeding).
    ``budget`` replaces ``n_trials`` when worker processes share one (see search/workers.py).
    ``settings.population`` above 1 asks for and trains that many trials at once
    (search/population.py); TPE then uses the constant liar so that they differ.
    TPE counts other processes' running trials (the constant liar) when the budget is shared
    or the storage is a database server; processes that call this on one SQLite file with
    their own budgets do not see each other's running trials.
    ``data_parallel`` (on rank 0 of processes started by torchrun): each candidate is trained by
    all of them together, the others running :func:`follow_search`; they are told when the
    search ends, or stops on an error.
    """
    if data_parallel is None or data_parallel.size == 1:
        return _run_search(data, space, settings, epoch_hooks, result_hooks, callbacks, stem, enqueue, storage, budget)
    if settings.population > 1:
        raise UserError(
            f"population {settings.population}: a population trains several candidates as one network; "
            f"data-parallel processes train one candidate at a time"
        )
    try:
        refused = [method for method in space.loss_weighting if method in REFUSED_WEIGHTINGS]
        if refused and len(refused) < len(space.loss_weighting):
            # a space offering several weightings (all_methods) searches those that can train data-parallel
            for method in refused:
                del space.loss_weighting[method]
            warnings.warn(
                OneLineWarning(
                    f"loss weighting {', '.join(refused)} cannot train data-parallel "
                    f"({REFUSED_WEIGHTINGS[refused[0]]}); left out of this search"
                ),
                stacklevel=2,
            )
        for method in space.loss_weighting:  # refused before any trial, rather than at the first that draws it
            check_weighting(method, "the space offers loss weighting")
        if space.ensemble is not None and max(extremes(space.ensemble.members)) > 1:
            raise UserError(
                f"space file {space._source}: key ensemble.members: a deep ensemble trains its members one after "
                f"another or as a population, not data-parallel; set members to 1 or run without torchrun"
            )
        return _run_search(
            data, space, settings, epoch_hooks, result_hooks, callbacks, stem, enqueue, storage, budget, data_parallel
        )
    finally:
        data_parallel.share((DONE, None))


def _run_search(
    data: MultiTaskData,
    space: SearchSpace,
    settings: SearchSettings,
    epoch_hooks: Sequence[EpochHook],
    result_hooks: Sequence[ResultHook],
    callbacks: Sequence[Callable[[optuna.Study, optuna.trial.FrozenTrial], None]],
    stem: torch.nn.Module | None,
    enqueue: Sequence[dict[str, Any]],
    storage: optuna.storages.BaseStorage | None,
    budget: Budget | None,
    data_parallel: DataParallel | None = None,
) -> optuna.Study:
    settings = _check_settings(settings)
    check_precision_for(settings.precision, resolve_device(settings.device), space)
    if settings.epochs is not None:  # what the trials train is what the study stores (and the report shows)
        space = space.model_copy(update={"training": space.training.model_copy(update={"epochs": settings.epochs})})
    objectives = objectives_for(data.tasks, space.objectives.metrics, space.objectives.extra)
    _check_scorable(data, objectives)
    affinity.check_given_chain(space, data.task_names)  # before a study with a bad chain is stored
    if stem is None:  # a custom stem is the caller's own; the space's stem keys describe the built one
        space.check_stem(data.input_schema, data.name)
    storage = storage or open_storage(settings.storage, grace_seconds=settings.grace_period)
    artifacts = artifact_store(settings, storage)  # a bad folder fails here, before a study is stored
    budget = budget or LocalBudget(settings.n_trials)
    # other processes run trials meanwhile: this run's workers, or other machines on a server
    shared = getattr(budget, "shared", True) or is_database_server(storage)
    # a population's members run together too: the constant liar keeps them apart
    shared = shared or settings.population > 1
    study = create_or_continue(
        settings.study_name,
        settings.storage,
        data,
        objectives,
        space.to_data(),
        optuna.samplers.RandomSampler(),  # replaced below, once the study's seed and trials are known
        storage=storage,
        seed=settings.seed,
    )
    seed = study_seed(study, settings.seed)
    study.sampler = make_sampler(
        settings.sampler,
        sampler_seed(seed, len(study.get_trials(deepcopy=False)), settings.worker_index),
        n_trials=settings.n_trials,
        n_startup_trials=settings.startup_trials,
        shared=shared,
    )
    if artifacts is not None:
        from mtl_search.search.artifacts import record_artifact_dir

        record_artifact_dir(study, artifacts[0])
    space = pruning.with_study_pruning(space, study)
    record_other_space(
        study,
        settings.study_name,
        space.to_data(),
        lambda stored: pruning.with_study_pruning(parse_space(stored), study).to_data(),
    )
    affinity_settings = affinity.AffinitySettings(
        seed=seed, tree_shape=settings.seed_trees, measure=settings.affinity_measure
    )
    # grouping "affinity" samples trees from a chain: the space's own, or the study's measured one (measured here, once)
    given_chain = affinity.has_given_chain(space)
    space = affinity.with_affinity_chain(study, data, space, affinity_settings, device=settings.device)
    if settings.seed_strategy == "affinity":
        seeded_before = "seeded" in (StudyRecord.read(study).affinity or {})
        if (
            not affinity.seed_with_affinity(
                study, data, space, affinity_settings, device=settings.device, measure=not given_chain
            )
            and not seeded_before
        ):
            warnings.warn(
                f"study {settings.study_name!r} has trials already, and affinity seeding only starts a new study: "
                f"nothing was seeded (use another --study-name to seed one)",
                StudyWarning,
                stacklevel=2,
            )
    for params in enqueue:
        study.enqueue_trial(params, skip_if_exists=True)
    objective = CandidateObjective(
        data,
        space,
        objectives,
        seed=seed,
        device=settings.device,
        epoch_hooks=[*pruning.pruning_hooks(space, objectives, settings.prune), *epoch_hooks],
        cost_meter=costs.CostMeter.from_space(space.objectives),
        result_hooks=[*result_hooks, *record_hooks(artifacts)],
        stem=stem,
        precision=settings.precision,
        data_parallel=data_parallel,
    )
    if settings.population == 1:
        optimize_study(
            study,
            objective,
            budget,
            timeout=settings.timeout,
            catch=(TrialFailed,),
            callbacks=callbacks,
        )
    else:
        optimize_populations(
            study,
            objective,
            budget,
            size=settings.population,
            strategy=settings.population_strategy,
            storage=storage,
            timeout=settings.timeout,
            callbacks=callbacks,
        )
    hypervolume.store_hypervolume(study)  # for `pareto` and reports (search/hypervolume.py)
    return study


def follow_search(data: MultiTaskData, data_parallel: DataParallel, stem: torch.nn.Module | None = None) -> int:
    """On a data-parallel process other than rank 0: train each candidate rank 0 sends, with it,
    until it says the search is done; the number of candidates trained.

    A candidate that fails here fails on rank 0 too (the same checks on the same numbers), which
    records it; one rank 0 stops after an epoch (pruned) stops here as well.
    """
    trained = 0
    while True:
        message, candidate = data_parallel.share()
        if message == DONE:
            return trained
        try:
            train_candidate(data, candidate, device=data_parallel.device, stem=stem, data_parallel=data_parallel)
        except StoppedByRankZero:
            pass
        except Exception:  # noqa: BLE001 (rank 0 meets the same failure and records it)
            pass
        trained += 1


SEED_STRATEGIES = ("none", "affinity")


def check_precision_for(
    precision: Any, device: torch.device, space: SearchSpace | None = None, name: str = "precision"
) -> None:
    """A one-line :class:`UserError` (naming ``name``) for a precision that is not one, that
    ``device`` cannot train in, or, with ``space``, that refuses one of the space's weightings
    (fp16 and gradnorm, training/precision.py): refused before any trial, rather than stopping
    the run at the first trial that draws it."""
    check_precision(precision, name)
    check_supported(precision, device, name)
    refused = [m for m in space.loss_weighting if m in FP16_REFUSED_WEIGHTINGS] if space and precision == "fp16" else []
    if refused:
        raise UserError(
            f"{name} fp16: the space offers loss weighting {refused[0]}, which "
            f"{FP16_REFUSED_WEIGHTINGS[refused[0]]}; use bf16, or a space without {refused[0]}"
        )


def _check_settings(settings: SearchSettings) -> SearchSettings:
    """What the CLI's flags refuse, refused from Python too (before anything is stored); the
    settings back with the affinity measure spelt as the code does (the CLI's "easy-hard")."""
    if settings.epochs is not None and settings.epochs < 1:
        raise UserError(f"epochs {settings.epochs}: must be at least 1")
    if settings.n_trials is not None and settings.n_trials < 0:
        raise UserError(f"n_trials {settings.n_trials}: must be at least 0")
    if settings.timeout is not None and settings.timeout <= 0:
        raise UserError(f"timeout {settings.timeout}: must be more than 0 seconds")
    if settings.sampler not in SAMPLERS:
        raise UserError(f"sampler {settings.sampler!r}: expected one of {', '.join(SAMPLERS)}")
    if settings.startup_trials is not None and settings.startup_trials < 1:
        raise UserError(f"startup_trials {settings.startup_trials}: must be at least 1")
    if settings.seed is not None and (not is_whole(settings.seed) or not 0 <= settings.seed < SEED_LIMIT):
        raise UserError(f"seed {settings.seed!r}: must be a whole number from 0 to {SEED_LIMIT - 1}")
    if settings.worker_index < 0:
        raise UserError(f"worker_index {settings.worker_index}: must be at least 0")
    if not is_whole(settings.population) or settings.population < 1:
        raise UserError(f"population {settings.population!r}: must be a whole number of at least 1")
    if settings.population_strategy not in POPULATION_STRATEGIES:
        raise UserError(
            f"population_strategy {settings.population_strategy!r}: expected one of {', '.join(POPULATION_STRATEGIES)}"
        )
    if settings.seed_strategy not in SEED_STRATEGIES:
        raise UserError(f"seed_strategy {settings.seed_strategy!r}: expected one of {', '.join(SEED_STRATEGIES)}")
    settings = dataclasses.replace(settings, affinity_measure=settings.affinity_measure.replace("-", "_"))
    affinity.AffinitySettings(tree_shape=settings.seed_trees, measure=settings.affinity_measure)  # refuses bad names
    device = resolve_device(settings.device)  # a device that cannot train would fail every trial
    check_precision_for(settings.precision, device)
    return settings


# metrics that need both classes among the scored rows
TWO_CLASS_METRICS = ("auc",)


def _check_scorable(data: MultiTaskData, objectives: Sequence[Any]) -> None:
    """Refuse a search whose validation split cannot score an objective (a binary task whose
    labelled validation rows are all one class has no AUC): every trial would train and fail."""
    for objective in objectives:
        task = data.task(objective.task) if objective.kind == "task" else None
        if task is None or task.given is not None or objective.metric not in TWO_CLASS_METRICS:
            continue  # a conditional task is scored on the rows where its condition holds: checked by its trials
        labels = data.validation.targets[task.name]
        labels = labels[~torch.isnan(labels)]
        if labels.numel() == 0 or bool((labels == labels[0]).all()):
            only = f"all {float(labels[0]):g}" if labels.numel() else "none"
            raise UserError(
                f"task {task.name!r}: the validation split has {labels.numel()} labelled row(s), {only}, so its "
                f"{objective.metric} cannot be computed and every trial would fail; use more rows "
                f"(--data-option rows=...)"
            )


def artifact_store(settings: SearchSettings, storage: optuna.storages.BaseStorage) -> tuple[Path, Any] | None:
    """The artifact folder and store the trials write to, or None (see search/artifacts.py)."""
    from mtl_search.search.artifacts import artifact_dir, open_artifact_store

    # A storage without a URL (in memory) gets artifacts only when a folder is named.
    url = getattr(storage, "url", None)
    if not settings.save_artifacts or (url is None and not settings.artifacts):
        return None
    directory = artifact_dir(url, settings.artifacts)
    return (directory, open_artifact_store(directory)) if directory is not None else None


def record_hooks(artifacts: tuple[Path, Any] | None) -> list[ResultHook]:
    """Hooks that keep what a trained trial leaves behind: its artifacts and a dashboard note."""
    from mtl_search.search.artifacts import ArtifactUploader
    from mtl_search.search.notes import note_architecture

    hooks: list[ResultHook] = [note_architecture]
    if artifacts is not None:
        hooks.append(ArtifactUploader(artifacts[1]))
    return hooks
