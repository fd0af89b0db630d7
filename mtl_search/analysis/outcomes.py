"""How a study spent its trials: complete, pruned (and why), failed (and why), running.

One count for the CLI (`run`, `pareto`) and the report alike, so that the numbers add up to
the study's trials: a trial over a hard limit is one of the pruned ones, not a fourth state.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import optuna

from mtl_search.records.trial import TrialRecord
from mtl_search.search.costs import is_feasible
from mtl_search.search.study import STALE_REASON, stop_reason

States = optuna.trial.TrialState
# pruned and failed trials listed one by one with their reason, at most
LISTED = 8


@dataclasses.dataclass
class Outcomes:
    complete: int
    repeats: int  # complete trials that repeated an earlier candidate (not trained again)
    dominated: int  # pruned by the Pareto-aware pruner
    over_limit: int  # pruned before training: over --max-params / --max-latency-ms
    other_pruned: int
    failed: int
    lost: int  # failed by the heartbeat check: their worker died
    running: int
    stopped: list[
        tuple[int, str, str]
    ]  # (trial, state, reason) of failed trials, then pruned ones other than dominated

    @property
    def pruned(self) -> int:
        return self.dominated + self.over_limit + self.other_pruned


def trial_outcomes(trials: Sequence[optuna.trial.FrozenTrial]) -> Outcomes:
    pruned = [t for t in trials if t.state == States.PRUNED]
    over_limit = [t for t in pruned if not is_feasible(t)]
    dominated = [
        t
        for t in pruned
        if is_feasible(t) and (TrialRecord.read(t, only=("prune_reason",)).prune_reason or "").startswith("dominated")
    ]
    failed = [t for t in trials if t.state == States.FAIL]
    reasons = {t.number: stop_reason(t, trials) or "no reason recorded" for t in failed + pruned}
    listed = failed + [t for t in pruned if t not in dominated]
    return Outcomes(
        complete=sum(t.state == States.COMPLETE for t in trials),
        repeats=sum(
            t.state == States.COMPLETE and TrialRecord.read(t, only=("repeat_of",)).repeat_of is not None
            for t in trials
        ),
        dominated=len(dominated),
        over_limit=len(over_limit),
        other_pruned=len(pruned) - len(dominated) - len(over_limit),
        failed=len(failed),
        lost=sum(reasons[t.number].startswith(STALE_REASON) for t in failed),
        running=sum(t.state == States.RUNNING for t in trials),
        stopped=[(t.number, "failed" if t.state == States.FAIL else "pruned", reasons[t.number]) for t in listed],
    )


def outcome_line(outcomes: Outcomes) -> str:
    """One line: "12 complete, 6 pruned (4 dominated early, 2 over a hard limit), 1 failed"."""
    pruned_parts = [f"{outcomes.dominated} dominated early", f"{outcomes.over_limit} over a hard limit"] + (
        [f"{outcomes.other_pruned} other"] if outcomes.other_pruned else []
    )
    repeats = outcomes.repeats
    return (
        f"{outcomes.complete} complete"
        + (
            f" ({repeats} repeated an earlier candidate and {'was' if repeats == 1 else 'were'} not trained again)"
            if repeats
            else ""
        )
        + f", {outcomes.pruned} pruned ({', '.join(pruned_parts)}), {outcomes.failed} failed"
        + (f" ({outcomes.lost} lost with their worker: no heartbeat)" if outcomes.lost else "")
        # running elsewhere now, or left by a killed worker until the next run's heartbeat check
        + (
            f", {outcomes.running} running (not in the front yet; see docs/tutorials/many-machines.md)"
            if outcomes.running
            else ""
        )
    )


def stopped_lines(outcomes: Outcomes, limit: int = LISTED) -> list[str]:
    """ "trial 3 failed: non-finite training loss in epoch 5", failed trials first, at most ``limit``."""
    lines = [f"trial {number} {state}: {reason}" for number, state, reason in outcomes.stopped[:limit]]
    more = len(outcomes.stopped) - limit
    return lines + ([f"... and {more} more (the report lists them all)"] if more > 0 else [])
