"""``mtl-search dashboard``: optuna-dashboard on the study storage, with the trials' artifacts."""

from __future__ import annotations

import argparse

import optuna

from mtl_search.cli.common import add_storage_option


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "dashboard",
        help="browse the studies in optuna-dashboard",
        description="Start optuna-dashboard on the study storage with the trial artifact store attached (each "
        "trial's architecture spec and weights). Studies made by mtl-search get the report's figures attached first. "
        "Listens on 127.0.0.1 unless --host says otherwise.",
    )
    add_storage_option(parser)
    parser.add_argument(
        "--host",
        metavar="ADDRESS",
        default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1, this machine only)",
    )
    parser.add_argument("--port", metavar="N", type=_port, default=8080, help="port to listen on (default: 8080)")
    parser.add_argument(
        "--artifacts",
        metavar="DIR",
        default=None,
        help="artifact folder (default: $MTL_SEARCH_ARTIFACTS, else artifacts/ beside a SQLite file, else studies/artifacts)",
    )
    parser.add_argument("--no-figures", action="store_true", help="do not attach the report's figures to the studies")
    parser.set_defaults(handler=main)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not between 1 and 65535")
    return value


def main(args: argparse.Namespace) -> int:
    from mtl_search.dashboard.figures import attach_figures, is_mtl_search_study
    from mtl_search.dashboard.server import check_port_free, serve
    from mtl_search.search.artifacts import artifact_dir
    from mtl_search.search.storage import open_storage

    storage = open_storage(args.storage, heartbeat=False, create=False)
    check_port_free(args.host, args.port)  # before the slower figure step
    if not args.no_figures:
        for summary in optuna.study.get_all_study_summaries(storage, include_best_trial=False):
            study = optuna.load_study(study_name=summary.study_name, storage=storage)
            if is_mtl_search_study(study):
                attach_figures(study)
    directory = artifact_dir(storage.url, args.artifacts)
    print(f"optuna-dashboard on http://{args.host}:{args.port}/ (artifacts: {directory}); Ctrl-C stops it", flush=True)
    serve(storage, args.host, args.port, directory)
    return 0
