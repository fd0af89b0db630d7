"""``mtl-search run``: search a space on a data set and print the Pareto front."""

from __future__ import annotations

import argparse
import logging

import optuna

from mtl_search.cli.common import add_storage_option, parse_key_values
from mtl_search.errors import UserError
from mtl_search.search.study import SAMPLERS


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run", help="run (or continue) a search and print its Pareto front",
        description="Train candidate multi-task networks sampled from a search space and record the "
        "Pareto front across tasks. With no arguments: the synthetic MMoE benchmark, the default space, "
        "the default SQLite storage.",
    )
    data = parser.add_argument_group("data")
    data.add_argument("--data", metavar="NAME", default=None, help="data source: synthetic (default), census, multidigits, table, ...")
    data.add_argument("--data-option", metavar="KEY=VALUE", action="append", default=[], help="option of the data source, repeatable (e.g. correlation=0.5)")
    data.add_argument("--data-file", metavar="PATH", default=None, help="input file of the data source (CSV/Parquet for your own table)")
    data.add_argument("--task", metavar="NAME:KIND", action="append", default=[], help="declare a task of your own table, repeatable (e.g. income:binary, segment:multiclass)")
    search = parser.add_argument_group("search")
    search.add_argument("--space", metavar="PATH", default=None, help="search-space YAML file or bundled name (default: search_spaces/default.yaml)")
    search.add_argument("--trials", metavar="N", type=_positive_int, default=20, help="number of trials to add (default: 20)")
    search.add_argument("--timeout", metavar="SECONDS", type=_positive_float, default=None, help="stop starting trials after this many seconds")
    search.add_argument("--epochs", metavar="N", type=_positive_int, default=None, help="training epochs of every trial (overrides the space)")
    search.add_argument("--study-name", metavar="NAME", default=None, help="study to create or continue (default: <data>-<space>)")
    add_storage_option(search)
    search.add_argument("--sampler", choices=SAMPLERS, default="tpe", help="Optuna sampler (default: tpe)")
    search.add_argument("--seed", metavar="N", type=int, default=0, help="seed of the sampler and of training (default: 0)")
    search.add_argument("--device", metavar="NAME", default=None, help="torch device: auto (default: GPU when present), cpu, cuda, cuda:1")
    search.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=main)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return value


def main(args: argparse.Namespace) -> int:
    from mtl_search.cli.pareto import print_front
    from mtl_search.data import load_data
    from mtl_search.search.runner import SearchSettings, run_search
    from mtl_search.search.space import load_space, resolve_space_path
    from mtl_search.search.storage import open_storage
    from mtl_search.training import resolve_device

    storage = open_storage(args.storage)  # fail fast on a bad URL, before any data is read
    space_path = resolve_space_path(args.space)
    space = load_space(space_path)
    options = parse_key_values(args.data_option, "--data-option")
    data = load_data(args.data, options, args.data_file, args.task)
    device = resolve_device(args.device)
    study_name = args.study_name or f"{data.name}-{space_path.stem}"
    _check_study_name(study_name)
    settings = SearchSettings(
        study_name=study_name, storage=args.storage, sampler=args.sampler, seed=args.seed,
        n_trials=args.trials, timeout=args.timeout, epochs=args.epochs, device=str(device),
    )
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    callbacks = []
    progress = None
    if not args.quiet:
        progress = _Progress(args.trials)
        callbacks.append(progress.on_trial)
    try:
        if progress:
            progress.start(f"study {study_name} on {device}")
        study = run_search(data, space, settings, callbacks=callbacks, storage=storage)
    finally:
        if progress:
            progress.stop()
    print_front(study)
    return 0


def _check_study_name(name: str) -> None:
    if not name or len(name) > 200 or any(ord(c) < 32 for c in name):
        raise UserError(f"--study-name {name!r}: use 1 to 200 printable characters")


class _Progress:
    """A rich progress bar advanced by a study callback, with the last trial's outcome."""

    def __init__(self, total: int | None) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.fields[last]}"), transient=False,
        )
        self.total = total
        self.task_id = None

    def start(self, description: str) -> None:
        self.progress.start()
        self.task_id = self.progress.add_task(description, total=self.total, last="")

    def on_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.state == optuna.trial.TrialState.COMPLETE:
            values = ", ".join(f"{v:.4g}" for v in trial.values)
            last = f"trial {trial.number}: {values}"
        else:
            reason = trial.user_attrs.get("fail_reason") or trial.user_attrs.get("prune_reason") or ""
            last = f"trial {trial.number}: {trial.state.name.lower()} {reason}"[:100]
        self.progress.update(self.task_id, advance=1, last=last)

    def stop(self) -> None:
        self.progress.stop()


logging.getLogger("optuna").setLevel(logging.ERROR)
