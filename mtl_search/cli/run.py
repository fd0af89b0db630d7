"""``mtl-search run``: search a space on a data set and print the Pareto front."""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
from typing import Any

import optuna

from mtl_search.cli.common import (
    add_storage_option,
    parse_key_values,
    positive_float,
    share,
    share_below_one,
    warn_of_trials_without_limits,
    whole_number,
)
from mtl_search.cli.common import add_precision_option, non_negative_float
from mtl_search.errors import UserError
from mtl_search.search.bundled import bundled_space_names
from mtl_search.threads import MAX_THREADS, THREADS_HELP, with_threads

# study.SAMPLERS and pruning.RULES, spelt here so that --help does not import torch (about 2 s)
SAMPLER_CHOICES = ("tpe", "nsga2", "random")
PRUNE_RULE_CHOICES = ("median", "projected")
POPULATION_STRATEGY_CHOICES = ("shared-structure", "independent")  # search/population.py's STRATEGIES
# seconds a data-parallel process other than rank 0 waits before exiting on an error rank 0 reports
SILENT_EXIT_PAUSE = 3.0
EXECUTOR_CHOICES = ("local", "ray")
RAY_FLAGS = ("ray_address", "ray_cpus_per_worker", "ray_gpus_per_worker")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run (or continue) a search and print its Pareto front",
        description="Train candidate multi-task networks sampled from a search space and record the "
        "Pareto front across tasks. With no arguments: the synthetic MMoE benchmark, the default space, "
        "the default SQLite storage.",
    )
    data = parser.add_argument_group("data")
    data.add_argument(
        "--data",
        metavar="NAME",
        default=None,
        help="data source: synthetic (default), census, multidigits, sequences, table (your own "
        "CSV/Parquet; see docs/reference/data-sources.md), or one an installed plugin adds (docs/extending.md)",
    )
    data.add_argument(
        "--data-option",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="option of the data source, repeatable (e.g. correlation=0.5)",
    )
    data.add_argument(
        "--data-file",
        metavar="PATH",
        default=None,
        help="input file of the data source (CSV/Parquet for your own table, or its YAML description; see docs/reference/data-sources.md)",
    )
    data.add_argument(
        "--task",
        metavar="NAME:KIND",
        action="append",
        default=[],
        help="declare a task of your own table, repeatable (e.g. income:binary, segment:multiclass)",
    )
    search = parser.add_argument_group("search")
    search.add_argument(
        "--space",
        metavar="PATH",
        default=None,
        help=f"search-space YAML file, or a bundled space by name: {', '.join(bundled_space_names())} "
        "(default: default; see docs/reference/architecture-spec.md and docs/explanation/classic-structures.md)",
    )
    search.add_argument(
        "--trials", metavar="N", type=whole_number(1), default=20, help="number of trials to add (default: 20)"
    )
    search.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=positive_float,
        default=None,
        help="stop starting trials after this many seconds",
    )
    search.add_argument(
        "--epochs",
        metavar="N",
        type=whole_number(1),
        default=None,
        help="training epochs of every trial (overrides the space)",
    )
    search.add_argument(
        "--study-name", metavar="NAME", default=None, help="study to create or continue (default: <data>-<space>)"
    )
    add_storage_option(search)
    search.add_argument(
        "--artifacts",
        metavar="DIR",
        default=None,
        help="where each trial's spec and weights go (default: $MTL_SEARCH_ARTIFACTS, else artifacts/ beside a SQLite file, else studies/artifacts)",
    )
    search.add_argument("--sampler", choices=SAMPLER_CHOICES, default="tpe", help="Optuna sampler (default: tpe)")
    search.add_argument(
        "--startup-trials",
        metavar="N",
        type=whole_number(1),
        default=None,
        help="random trials before TPE models the results (default: a quarter of --trials, 3 to 10)",
    )
    # numpy's and the samplers' seeds are 32-bit unsigned
    search.add_argument(
        "--seed",
        metavar="N",
        type=whole_number(0, 2**32 - 1),
        default=None,
        help="seed of training and of the sampler (default: the study's own: a new study draws one at random "
        "and records it, and each continuation samples from a new seed derived from it)",
    )
    search.add_argument(
        "--device",
        metavar="NAME",
        default=None,
        help="torch device: auto (default: GPU when present), cpu, cuda, cuda:1",
    )
    add_precision_option(
        search,
        "fp32",
        "fp32 (default), or bf16/fp16 autocast in the training steps, stored with "
        "each trial so that export and refine train it alike (see docs/how-to/gpu.md)",
    )
    search.add_argument("--quiet", action="store_true", help="no progress bar")
    search.add_argument(
        "--baselines",
        action="store_true",
        help="after the search, train the reference models as `mtl-search baselines` does (single-task networks, "
        "and LightGBM when installed), so that the front shows Delta-m against them",
    )
    efficiency = parser.add_argument_group("costs, pruning and seeding (see docs/explanation/pruning.md)")
    efficiency.add_argument(
        "--objective",
        metavar="COST",
        action="append",
        choices=("params", "latency"),
        default=[],
        help="add a cost objective (minimised), repeatable: params, latency (ms per batch on --device)",
    )
    efficiency.add_argument(
        "--max-params",
        metavar="N",
        type=whole_number(1),
        default=None,
        help="hard limit on trainable parameters: bigger candidates are not trained and never enter the front",
    )
    efficiency.add_argument(
        "--max-latency-ms",
        metavar="X",
        type=positive_float,
        default=None,
        help="hard limit on the forward time of one batch in milliseconds (on --device)",
    )
    efficiency.add_argument(
        "--no-prune", action="store_true", help="train every trial to the end (no Pareto-aware pruning)"
    )
    efficiency.add_argument(
        "--prune-warmup",
        metavar="EPOCHS",
        type=whole_number(0),
        default=None,
        help="epochs before a trial may be pruned, at least (default: the space's pruning.warmup_epochs, else 2)",
    )
    efficiency.add_argument(
        "--prune-warmup-fraction",
        metavar="SHARE",
        type=share_below_one,
        default=None,
        help="and at least this share of each trial's planned epochs (default: the space's pruning.warmup_fraction, "
        "else 0.125 for rule projected, 0 for median)",
    )
    efficiency.add_argument(
        "--prune-min-complete-share",
        metavar="SHARE",
        type=share,
        default=None,
        help="pruning pauses while fewer than this share of the study's finished trials trained to the end, so "
        "that the sampler keeps learning (default: the space's pruning.min_complete_share, else 1/3; 0: never pauses)",
    )
    efficiency.add_argument(
        "--prune-min-trials",
        metavar="N",
        type=whole_number(1),
        default=None,
        help="completed trials needed before pruning starts (default: the space's, else 5)",
    )
    efficiency.add_argument(
        "--prune-budget",
        choices=("epochs", "steps"),
        default=None,
        help="compare trials after equal optimiser steps or equal epochs (default: the space's pruning.budget, else steps; "
        "a study stored before the option keeps epochs)",
    )
    efficiency.add_argument(
        "--prune-rule",
        choices=PRUNE_RULE_CHOICES,
        default=None,
        help="median: stop a trial behind half of the completed trials after as much training; projected: behind "
        "one of them, and its own learning curve, projected to its last epoch, still behind a completed "
        "trial's final values, never in the first eighth of its epochs (default: the space's pruning.rule, "
        "else projected)",
    )
    efficiency.add_argument(
        "--seed-strategy",
        choices=("none", "affinity"),
        default="none",
        help="affinity: measure task affinity on a short shared network and try grouping trees from it first (default: none)",
    )
    efficiency.add_argument(
        "--seed-trees",
        choices=("uniform", "grown"),
        default=None,
        help="with --seed-strategy affinity: uniform = 3 trees, one grouping at every depth, size left to the sampler (default); "
        "grown = the paper's top-down grown trees (up to 8) at the largest depth and middle width",
    )
    efficiency.add_argument(
        "--affinity-measure",
        choices=("easy-hard", "lookahead"),
        default=None,
        help="with --seed-strategy affinity or families.tree.grouping affinity: easy-hard = the paper's agreement on which rows are hard (default); "
        "lookahead = TAG's, how much a gradient step on one task lowers another's loss",
    )
    parallel = parser.add_argument_group("parallel and fault tolerance (see docs/tutorials/many-machines.md)")
    parallel.add_argument(
        "--workers",
        metavar="N",
        type=whole_number(1),
        default=1,
        help="worker processes on this machine sharing the study and the --trials budget (default: 1)",
    )
    parallel.add_argument(
        "--executor",
        choices=EXECUTOR_CHOICES,
        default="local",
        help="local: the --workers are processes on this machine; ray: they are Ray tasks on a Ray cluster, "
        "sharing the study's storage (pip install 'mtl-search[ray]'; see docs/how-to/ray.md) (default: local)",
    )
    parallel.add_argument(
        "--ray-address",
        metavar="ADDR",
        default=None,
        help="with --executor ray: the cluster to join, as `ray start` prints it (e.g. 10.0.0.1:6379) "
        "(default: start a Ray instance on this machine for the run)",
    )
    parallel.add_argument(
        "--ray-cpus-per-worker",
        metavar="N",
        type=positive_float,
        default=None,
        help="with --executor ray: CPUs Ray reserves for each worker (default: 1)",
    )
    parallel.add_argument(
        "--ray-gpus-per-worker",
        metavar="N",
        type=non_negative_float,
        default=None,
        help="with --executor ray: GPUs Ray reserves for each worker, fractions allowed (0.5: two workers "
        "share a GPU) (default: 0)",
    )
    parallel.add_argument(
        "--grace-period",
        metavar="SECONDS",
        type=whole_number(2),
        default=None,
        help="a running trial without heartbeat this long (its worker died) is failed and retried "
        "(default: $MTL_SEARCH_GRACE_PERIOD, else 60)",
    )
    parallel.add_argument(
        "--storage-retry",
        metavar="SECONDS",
        type=float,
        default=None,
        help="on a database server, retry a storage call that lost its connection (a restart, a failover) "
        "this long before the worker gives up (default: $MTL_SEARCH_STORAGE_RETRY, else 60)",
    )
    parallel.add_argument(
        "--population",
        metavar="K",
        type=whole_number(1),
        default=1,
        help="ask the sampler for K trials at once and train them in one call, fusing those of one "
        "structure; --timeout is checked between populations (default: 1, one trial at a time)",
    )
    parallel.add_argument(
        "--population-strategy",
        choices=POPULATION_STRATEGY_CHOICES,
        default=None,
        help="shared-structure: a population's members take its first member's architecture, "
        "batch size, epochs, optimizer and weighting method and differ in learning rate, weight "
        "decay and loss weights, so they train fused but each population explores one structure; "
        "independent: K separate proposals, more structures, rarely fused (default: shared-structure)",
    )
    parallel.add_argument("--threads", metavar="N", type=whole_number(1, MAX_THREADS), default=None, help=THREADS_HELP)
    parser.set_defaults(handler=main)


@with_threads
def main(args: argparse.Namespace) -> int:
    if data_parallel_size() > 1:
        return _main_data_parallel(args)
    return _lead(args, *_prepare(args))


def data_parallel_size() -> int:
    """The number of processes torchrun started for this command (1 without torchrun)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def _main_data_parallel(args: argparse.Namespace) -> int:
    """Under torchrun: rank 0 runs the search, every process trains each candidate with it
    (docs/how-to/data-parallel.md). An error every process meets alike is said once, by rank 0."""
    rank = int(os.environ.get("RANK", "0"))
    refusal = _data_parallel_refusal(args)
    if refusal is not None:
        return _refuse(rank, refusal)
    from mtl_search.training.data_parallel import DataParallel, data_fingerprint, rank_device

    try:
        device = rank_device(args.device)
    except UserError as error:
        return _refuse(rank, str(error))
    ranks = DataParallel.start(device)
    try:
        args.device = str(device)
        # rank 0 first: it may create the study and fill the data cache the others then read
        prepared, failure = _attempt(lambda: _prepare(args)) if ranks.leads else (None, None)
        _agree(ranks, failure)
        loaded, failure = (None, None) if ranks.leads else _attempt(lambda: _load_data(args))
        _agree(ranks, failure)
        data = prepared[0] if ranks.leads else loaded
        fingerprints = ranks.gather(data_fingerprint(data))
        different = [str(r) for r, value in enumerate(fingerprints) if value != fingerprints[0]]
        if different:
            _refuse(
                ranks.rank,
                f"process(es) {', '.join(different)} loaded other data than process 0 (rows or values differ); "
                f"every process must read the same data",
            )
        if not ranks.leads:
            from mtl_search.search.runner import follow_search

            optuna.logging.set_verbosity(optuna.logging.ERROR)
            follow_search(data, ranks)
            return 0
        return _lead(args, *prepared, data_parallel=ranks)
    finally:
        ranks.close()


def _data_parallel_refusal(args: argparse.Namespace) -> str | None:
    """Why these flags cannot run under torchrun, or None."""
    size = data_parallel_size()
    if args.workers > 1:
        return (
            f"--workers {args.workers}: under torchrun the {size} processes train each candidate together; "
            f"to run candidates side by side, start several runs on the study instead"
        )
    if args.population > 1:
        return (
            f"--population {args.population}: a population trains several candidates as one network; "
            f"under torchrun the {size} processes train one candidate at a time"
        )
    if args.executor != "local":
        return (
            f"--executor {args.executor}: under torchrun the {size} processes are the worker; "
            f"run torchrun on each machine against a shared study instead"
        )
    return None


def _refuse(rank: int, message: str) -> int:
    """Rank 0 says ``message`` (a UserError); the other processes exit 2 without a word, after a
    pause: torchrun stops every process once one exits, and rank 0 must have said why by then."""
    if rank == 0:
        raise UserError(message)
    time.sleep(SILENT_EXIT_PAUSE)
    raise SystemExit(2)


def _attempt(action: Any) -> tuple[Any, str | None]:
    """``action()``'s result and None, or None and the message of the UserError it raised."""
    try:
        return action(), None
    except UserError as error:
        return None, str(error)


def _agree(ranks: Any, failure: str | None) -> None:
    """Every process learns whether one failed; rank 0 says the first failure, all exit 2."""
    failures = ranks.gather(failure)
    for rank, message in enumerate(failures):
        if message is not None:
            _refuse(ranks.rank, message if rank == 0 else f"process {rank}: {message}")


def _lead(
    args: argparse.Namespace,
    data: Any,
    space: Any,
    settings: Any,
    storage: optuna.storages.BaseStorage,
    data_parallel: Any = None,
) -> int:
    """The search as one process, or as rank 0 of data-parallel ones; the front; the exit status."""
    from mtl_search.cli.pareto import print_front

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    progress = None if args.quiet else _Progress(args.trials)
    status = 0
    trials_before = _trial_count(storage, settings.study_name) or 0
    try:
        if progress:
            progress.start(
                f"study {settings.study_name}{_continued(storage, settings.study_name)} on {settings.device}"
                + (f", {args.workers} workers" if args.workers > 1 else "")
                + (" on Ray" if args.executor == "ray" else "")
                + (f", populations of {args.population}" if args.population > 1 else "")
                + (f", {data_parallel.size} processes data-parallel" if data_parallel is not None else "")
            )
        if args.workers > 1 or args.executor == "ray":
            study, status = _run_workers(args, data, space, settings, storage, progress)
        else:
            study = _search(
                args,
                data,
                space,
                settings,
                storage,
                callbacks=[progress.on_trial] if progress else [],
                data_parallel=data_parallel,
            )
    finally:
        if progress:
            progress.stop()
    if args.baselines and status == 0:
        _train_baselines(args, study, data, settings)
    print_front(study)
    warn_of_trials_without_limits(study, "run")
    nothing = _nothing_usable(study.get_trials(deepcopy=False)[trials_before:])
    if nothing and status == 0:
        # a script must not take a run that trained nothing for a success
        print(f"mtl-search run: error: {nothing} (reasons above)", file=sys.stderr)
        status = 1
    return status


def _train_baselines(args: argparse.Namespace, study: optuna.Study, data: Any, settings: Any) -> None:
    """``--baselines``: the references of the study as it now stands; a study with no front
    yet gets a note instead (its trials all failed or were pruned)."""
    from mtl_search.cli.baselines import train_and_report
    from mtl_search.search.study import pareto_trials

    if not pareto_trials(study):
        print("mtl-search run: note: no front yet, so no baselines were trained", file=sys.stderr)
        return
    train_and_report(study, data, device=settings.device, gbdt=True, quiet=args.quiet, command="run")


def _nothing_usable(trials: list[optuna.trial.FrozenTrial]) -> str | None:
    """What went wrong when none of this run's ``trials`` could enter the front: every one
    failed or was over a hard limit. (Trials pruned as dominated lost to complete ones.)"""
    from mtl_search.analysis.outcomes import trial_outcomes

    outcomes = trial_outcomes(trials)
    if not trials or outcomes.failed + outcomes.over_limit != len(trials):
        return None
    if not outcomes.over_limit:
        return f"all {len(trials)} trial(s) of this run failed"
    return (
        f"none of the {len(trials)} trial(s) of this run could enter the front: {outcomes.failed} failed, "
        f"{outcomes.over_limit} over a hard limit"
    )


def _prepare(args: argparse.Namespace) -> tuple[Any, Any, Any, optuna.storages.BaseStorage]:
    """Data, space, settings and storage from the flags, every one checked (UserError if bad)."""
    from mtl_search.search.bundled import resolve_space_path
    from mtl_search.search.storage import is_in_memory, open_storage

    if args.seed_trees is not None and args.seed_strategy != "affinity":
        raise UserError(f"--seed-trees {args.seed_trees}: only --seed-strategy affinity seeds trees")
    if args.population_strategy is not None and args.population == 1:
        raise UserError(
            f"--population-strategy {args.population_strategy}: only --population K above 1 asks for "
            f"several trials at once"
        )
    if args.startup_trials is not None and args.sampler != "tpe":
        raise UserError(
            f"--startup-trials: only --sampler tpe has random start-up trials, not --sampler {args.sampler}"
        )
    _check_executor(args)
    # fail fast on a bad URL, before any data is read
    storage = open_storage(args.storage, grace_seconds=args.grace_period, retry_seconds=args.storage_retry)
    if (args.workers > 1 or args.executor == "ray") and is_in_memory(storage):
        flag = f"--workers {args.workers}" if args.executor == "local" else "--executor ray"
        raise UserError(
            f"{flag}: the workers cannot share an in-memory --storage {args.storage!r}; "
            f"use a SQLite file or a database server"
        )
    space_path = resolve_space_path(args.space)
    # Imported only now, so that the refusals above answer without loading torch (seconds)
    from mtl_search.search.affinity import measures_chain
    from mtl_search.search.costs import with_cost_options
    from mtl_search.search.pruning import with_pruning_options
    from mtl_search.search.runner import SearchSettings, check_precision_for
    from mtl_search.search.space import load_space
    from mtl_search.training import resolve_device

    space = load_space(space_path)
    space = with_cost_options(
        space, objectives=args.objective, max_params=args.max_params, max_latency_ms=args.max_latency_ms
    )
    space = with_pruning_options(
        space,
        enabled=not args.no_prune,
        warmup_epochs=args.prune_warmup,
        min_completed_trials=args.prune_min_trials,
        budget=args.prune_budget,
        rule=args.prune_rule,
        warmup_fraction=args.prune_warmup_fraction,
        min_complete_share=args.prune_min_complete_share,
    )
    if args.affinity_measure is not None and args.seed_strategy != "affinity" and not measures_chain(space):
        raise UserError(
            f"--affinity-measure {args.affinity_measure}: only --seed-strategy affinity, or a space with "
            f"families.tree.grouping affinity and no chain of its own, measures affinity"
        )
    data = _load_data(args)
    space.check_stem(data.input_schema, data.name)  # run_search checks too; here it fails before the progress bar
    device = resolve_device(args.device)
    check_precision_for(args.precision, device, space, "--precision")  # run_search checks too; here before the bar
    study_name = args.study_name if args.study_name is not None else f"{data.name}-{space_path.stem}"
    _check_study_name(study_name)
    settings = SearchSettings(
        study_name=study_name,
        storage=args.storage,
        sampler=args.sampler,
        seed=args.seed,
        n_trials=args.trials,
        timeout=args.timeout,
        epochs=args.epochs,
        device=str(device),
        precision=args.precision,
        artifacts=args.artifacts,
        grace_period=args.grace_period,
        seed_strategy=args.seed_strategy,
        seed_trees=args.seed_trees or "uniform",
        affinity_measure=(args.affinity_measure or "easy-hard").replace("-", "_"),
        startup_trials=args.startup_trials,
        population=args.population,
        population_strategy=args.population_strategy or "shared-structure",
        threads=args.threads,
    )
    return data, space, settings, storage


def _load_data(args: argparse.Namespace) -> Any:
    from mtl_search.data import load_data

    return load_data(args.data, parse_key_values(args.data_option, "--data-option"), args.data_file, args.task)


def _check_executor(args: argparse.Namespace) -> None:
    """Ray's flags only with ``--executor ray``, and Ray installed for it (before any data is read)."""
    if args.executor != "ray":
        given = [name for name in RAY_FLAGS if getattr(args, name) is not None]
        if given:
            raise UserError(f"--{given[0].replace('_', '-')}: only --executor ray runs workers on Ray")
        return
    from mtl_search.search.ray_workers import import_ray

    import_ray()


def _search(
    args: argparse.Namespace,
    data: Any,
    space: Any,
    settings: Any,
    storage: optuna.storages.BaseStorage,
    *,
    callbacks: list,
    budget: Any = None,
    data_parallel: Any = None,
) -> optuna.Study:
    """``run_search`` with everything the flags ask for; each worker process runs this too."""
    from mtl_search.search.runner import run_search

    return run_search(
        data, space, settings, callbacks=callbacks, storage=storage, budget=budget, data_parallel=data_parallel
    )


def search_in_worker(args: argparse.Namespace, *, worker_index: int, budget: Any, callbacks: list) -> None:
    """Entry point of a ``--workers`` process: load everything itself, then run its share."""
    import dataclasses

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    data, space, settings, storage = _prepare(args)
    # The parent has created and, if asked, affinity-seeded the study: workers only search it.
    settings = dataclasses.replace(settings, worker_index=worker_index, seed_strategy="none")
    _search(args, data, space, settings, storage, callbacks=callbacks, budget=budget)


def _run_workers(
    args: argparse.Namespace,
    data: Any,
    space: Any,
    settings: Any,
    storage: optuna.storages.BaseStorage,
    progress: "_Progress | None",
) -> tuple[optuna.Study, int]:
    """Create or check (and seed) the study here, one clear error and no race; then let the workers search it."""
    from mtl_search.errors import Terminated
    from mtl_search.search.workers import EXIT_INTERRUPTED, EXIT_TERMINATED, LocalBudget, WorkerPool

    study = _search(args, data, space, settings, storage, callbacks=[], budget=LocalBudget(0))
    # a worker without a trial to run would only load the data; each claims a whole population at once
    workers = min(args.workers, math.ceil(args.trials / args.population))
    if workers < args.workers:
        populations = f" in populations of {args.population}" if args.population > 1 else ""
        print(
            f"mtl-search run: note: --workers {args.workers} for --trials {args.trials}{populations}: "
            f"starting {workers}",
            file=sys.stderr,
        )
    cores = os.cpu_count() or 1
    if workers > cores and args.executor == "local":
        print(
            f"mtl-search run: warning: {workers} workers on {cores} CPU cores: they slow each other down "
            f"(see docs/tutorials/many-machines.md)",
            file=sys.stderr,
        )
    if args.executor == "ray":
        pool = _ray_pool(args, workers, storage)
    else:
        pool = WorkerPool(workers, args.trials, search_in_worker, (args,), threads=args.threads)
    codes = pool.run((lambda trial: progress.on_trial(study, trial)) if progress else None)
    if EXIT_TERMINATED in codes:
        raise Terminated
    if EXIT_INTERRUPTED in codes:
        raise KeyboardInterrupt
    if any(code != 0 for code in codes):
        failed = ", ".join(pool.describe(index, code) for index, code in enumerate(codes) if code != 0)
        print(
            f"mtl-search run: warning: worker(s) ended early: {failed}; a trial they left running is "
            f"failed and retried after the grace period (see docs/tutorials/many-machines.md)",
            file=sys.stderr,
        )
        return study, 2 if 2 in codes else 1
    return study, 0


def _ray_pool(args: argparse.Namespace, workers: int, storage: optuna.storages.BaseStorage) -> Any:
    """The Ray workers the flags ask for, connected (a SQLite study on several nodes warned about)."""
    from mtl_search.search.ray_workers import RayWorkerPool
    from mtl_search.search.storage import grace_period, is_database_server

    pool = RayWorkerPool(
        workers,
        args.trials,
        search_in_worker,
        (args,),
        threads=args.threads,
        address=args.ray_address,
        cpus=1.0 if args.ray_cpus_per_worker is None else args.ray_cpus_per_worker,
        gpus=0.0 if args.ray_gpus_per_worker is None else args.ray_gpus_per_worker,
        replacement_delay=grace_period(args.grace_period),
    )
    nodes = pool.nodes()
    if nodes > 1 and not is_database_server(storage):
        print(
            f"mtl-search run: warning: the Ray cluster has {nodes} nodes, and a SQLite file is one machine's: "
            f"workers on other nodes would each open a file of their own; use a database server "
            f"(--storage postgresql://..., see docs/how-to/ray.md)",
            file=sys.stderr,
        )
    return pool


def _trial_count(storage: optuna.storages.BaseStorage, name: str) -> int | None:
    """The study's trials so far, or None when it does not exist yet."""
    try:
        return storage.get_n_trials(storage.get_study_id_from_name(name))
    except KeyError:
        return None


def _continued(storage: optuna.storages.BaseStorage, name: str) -> str:
    """ " (continued, N trials so far)" when the study exists: a rerun after a stop says it resumed."""
    count = _trial_count(storage, name)
    return "" if count is None else f" (continued, {count} trials so far)"


def _check_study_name(name: str) -> None:
    if not name or len(name) > 200 or any(ord(c) < 32 for c in name):
        raise UserError(f"--study-name {name!r}: use 1 to 200 printable characters")


class _Progress:
    """A rich progress bar advanced by a study callback, with the last trial's outcome."""

    def __init__(self, total: int | None) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[last]}"),
            transient=False,
        )
        self.total = total
        self.task_id = None

    def start(self, description: str) -> None:
        self.progress.start()
        self.task_id = self.progress.add_task(description, total=self.total, last="")

    def on_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        from mtl_search.search.study import stop_reason

        if trial.state == optuna.trial.TrialState.COMPLETE:
            values = ", ".join(f"{v:.4g}" for v in trial.values)
            last = f"trial {trial.number}: {values}"
        else:
            reason = stop_reason(trial) or ""
            last = f"trial {trial.number}: {trial.state.name.lower()} {reason}"[:100]
        self.progress.update(self.task_id, advance=1, last=last)

    def stop(self) -> None:
        if self.task_id is not None and not self.progress.tasks[0].completed:
            # nothing finished (a refusal, an interrupt before the first trial): leave no empty bar above the message
            self.progress.live.transient = True
            self.progress.console.quiet = not self.progress.console.is_terminal  # a log would get an empty line
        self.progress.stop()


logging.getLogger("optuna").setLevel(logging.ERROR)
