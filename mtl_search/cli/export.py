"""``mtl-search export``: one trial of a study as a model folder others can load."""

from __future__ import annotations

import argparse

from mtl_search.cli.common import add_storage_option, whole_number
from mtl_search.threads import MAX_THREADS, THREADS_HELP, with_threads


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a trial: spec, weights, model.pt2, ONNX, preprocessing, metrics, model card",
        description="Write one trial of a study to a folder: architecture spec (JSON), weights (safetensors), "
        "model.pt2 (a torch.export program PyTorch alone runs), ONNX with the onnx extra, the input preprocessing, "
        "the metrics with their splits and a README.md model card. Weights come from the trial's artifacts; --retrain (or a trial without "
        "stored weights) trains the architecture again. Picks look at the Pareto front with each objective min-max "
        "normalised over it: knee = closest to the point best in every objective; best:TASK = best value of TASK's "
        "primary metric; weights:TASK=W,... = largest weighted sum.",
    )
    parser.add_argument("study", metavar="STUDY", help="study name (see `mtl-search studies`)")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--trial", metavar="N", type=int, help="trial number")
    which.add_argument("--pick", metavar="RULE", help="knee | best:TASK | weights:TASK=W,...")
    parser.add_argument("--out", metavar="DIR", required=True, help="folder to write (must be empty unless --force)")
    add_storage_option(parser)
    parser.add_argument(
        "--artifacts",
        metavar="DIR",
        default=None,
        help="artifact folder of the search (default: $MTL_SEARCH_ARTIFACTS, else the folder the search wrote to, "
        "else artifacts/ beside a SQLite file, else studies/artifacts)",
    )
    parser.add_argument(
        "--retrain", action="store_true", help="train the chosen architecture again on train + validation"
    )
    parser.add_argument(
        "--force", action="store_true", help="write into a non-empty folder, replacing earlier exported files"
    )
    parser.add_argument(
        "--device", metavar="NAME", default=None, help="torch device for retraining (default: GPU when present)"
    )
    parser.add_argument("--threads", metavar="N", type=whole_number(1, MAX_THREADS), default=None, help=THREADS_HELP)
    parser.set_defaults(handler=main)


@with_threads
def main(args: argparse.Namespace) -> int:
    from mtl_search.search.study import load_existing

    # the study first: a missing one is refused before torch loads (seconds)
    study = load_existing(args.study, args.storage)
    from mtl_search.export import export_trial, find_trial, pick_trial

    from mtl_search.export.picks import explain_pick

    trial = find_trial(study, args.trial) if args.trial is not None else pick_trial(study, args.pick)
    if args.trial is None:
        print(explain_pick(study, trial, args.pick))
    result = export_trial(
        study,
        trial,
        args.out,
        artifact_dir=args.artifacts,
        retrain=args.retrain,
        force=args.force,
        device=args.device,
    )
    print(
        f"exported trial {result.trial} of {study.study_name} to {result.directory} (weights: {result.weights_source})"
    )
    for note in result.notes:
        print(f"note: {note}")
    return 0
