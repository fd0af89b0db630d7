"""Best-epoch or last-epoch weights (``training.checkpoint``): the same candidates, scored on test.

A live comparison of two searches mixes the checkpoint policy with sampler noise (TPE walks
elsewhere once the values differ). This script holds the candidates fixed: for every complete
trial of unpruned studies it takes the trial's own result (trained with its study's policy)
and retrains the same candidate, same seed, with the other policy. For each policy, the front
is chosen on validation, as the search chooses it, and then scored on **test**, which neither
policy saw:

- test HV of each validation-chosen front, both fronts normalised together (min-max of their
  test vectors, reference 1.1 per objective, maximised metrics as 1 - value);
- the epsilon indicator each way between the two fronts' test vectors;
- the mean test value of all trials per policy, relative to ``last``;
- how much the trials overfit: the share of trials whose last epoch's validation vector is
  more than 5 % above the best epoch's (mean over objectives), and the mean excess;
- the validation optimism of each front: mean (validation - test) of its minimised vectors.
  Choosing the epoch on validation makes the kept epoch's validation value a minimum over
  epochs, so it is expected to be more optimistic with ``best``; test is what to trust.

Usage::

    python benchmarks/checkpoint_policy.py --storage sqlite:///studies/a.db ...   # unpruned studies
    python benchmarks/checkpoint_policy.py --generate --epochs 32 --trials 60      # make them first
    python benchmarks/checkpoint_policy.py --quick
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import write_result  # noqa: E402
from pruning_replay import load_studies, parse_args  # noqa: E402

from mtl_search.export.bundle import reload_data  # noqa: E402
from mtl_search.search.hypervolume import epsilon_indicator, hypervolume, non_dominated  # noqa: E402
from mtl_search.search.pruning import minimised_vector  # noqa: E402
from mtl_search.search.study import study_objectives  # noqa: E402
from mtl_search.training import train_candidate  # noqa: E402

POLICIES = ("last", "best")


def trial_results(study: optuna.Study, device: str = "cpu") -> dict[str, list[dict[str, Any]]]:
    """Per policy, one record per complete trial: minimised validation and test vectors, kept epoch."""
    objectives = study_objectives(study)
    data = reload_data(study.user_attrs["mtl_search"])
    results: dict[str, list[dict[str, Any]]] = {policy: [] for policy in POLICIES}
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        if trial.user_attrs.get("repeat_of") is not None or "candidate" not in trial.user_attrs:
            continue
        candidate, costs = trial.user_attrs["candidate"], trial.user_attrs.get("costs", {})
        own = candidate.get("training", {}).get("checkpoint", "last")
        other = "best" if own == "last" else "last"
        # on the trials' own device (the CPU for studies made here): the retrain then repeats their training exactly
        retrained = train_candidate(
            data, candidate | {"training": candidate.get("training", {}) | {"checkpoint": other}}, device=device
        )
        for policy, validation, test, kept in (
            (
                own,
                trial.user_attrs["validation"],
                trial.user_attrs["test"],
                trial.user_attrs.get("kept_epoch", len(trial.user_attrs.get("history", []))),
            ),
            (other, retrained.validation, retrained.test, retrained.kept_epoch),
        ):
            results[policy].append(
                {
                    "trial": trial.number,
                    "validation": minimised_vector(objectives, validation, costs),
                    "test": minimised_vector(objectives, test, costs),
                    "kept_epoch": kept,
                }
            )
    return results


def compare(results: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    fronts = {}
    for policy in POLICIES:
        validation = np.array([r["validation"] for r in results[policy]])
        chosen = {tuple(p) for p in non_dominated(validation)}
        fronts[policy] = [r for r in results[policy] if tuple(r["validation"]) in chosen]
    tests = {policy: np.array([r["test"] for r in fronts[policy]]) for policy in POLICIES}
    both = np.vstack(list(tests.values()))
    low, high = both.min(axis=0), both.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    reference = [1.1] * both.shape[1]
    all_tests = {policy: np.array([r["test"] for r in results[policy]]) for policy in POLICIES}
    # the same trials in the same order under both policies: how far each last epoch sits above its best
    excess = np.mean(
        np.array([r["validation"] for r in results["last"]]) / np.array([r["validation"] for r in results["best"]]) - 1,
        axis=1,
    )
    return {
        "share_last_epoch_5pct_above_best": float(np.mean(excess > 0.05)),
        "mean_last_epoch_excess": float(np.mean(excess)),
        "front_size": {p: len(fronts[p]) for p in POLICIES},
        "mean_kept_epoch": {p: statistics.fmean(r["kept_epoch"] for r in results[p]) for p in POLICIES},
        "test_hv": {p: hypervolume(non_dominated((tests[p] - low) / span), reference) for p in POLICIES},
        # how far the other policy's front is from covering this one's (0: covered)
        "epsilon_best_misses_last": epsilon_indicator(tests["last"], tests["best"]),
        "epsilon_last_misses_best": epsilon_indicator(tests["best"], tests["last"]),
        "all_trials_test_vs_last": float(np.mean(all_tests["best"] / all_tests["last"]) - 1),
        "front_validation_optimism": {
            p: float(np.mean(np.array([r["validation"] for r in fronts[p]]) - tests[p])) for p in POLICIES
        },
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv, name="checkpoint_policy", description=__doc__, replay=False)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.folder or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for name, study in load_studies(args, folder):
            row = {"study": name} | compare(trial_results(study))
            rows.append(row)
            print(
                f"{name}: test HV last {row['test_hv']['last']:.3f}, best {row['test_hv']['best']:.3f}; "
                f"epsilon best misses last {100 * row['epsilon_best_misses_last']:.1f} %, last misses best {100 * row['epsilon_last_misses_best']:.1f} %; "
                f"all trials' test {100 * row['all_trials_test_vs_last']:+.1f} % with best; mean kept epoch {row['mean_kept_epoch']['best']:.1f}; "
                f"last epoch > 5 % above best in {100 * row['share_last_epoch_5pct_above_best']:.0f} % of trials; "
                f"front validation - test: last {row['front_validation_optimism']['last']:+.5f}, best {row['front_validation_optimism']['best']:+.5f}",
                flush=True,
            )
    if not rows:
        raise SystemExit("no studies to compare")
    higher = sum(r["test_hv"]["best"] > r["test_hv"]["last"] for r in rows)
    print(
        f"\nbest-epoch weights: higher test HV on {higher} of {len(rows)} studies; "
        f"mean test HV last {statistics.fmean(r['test_hv']['last'] for r in rows):.3f}, best {statistics.fmean(r['test_hv']['best'] for r in rows):.3f}"
    )
    write_result(
        args.name,
        {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        {"rows": rows, "best_higher_test_hv": higher},
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
