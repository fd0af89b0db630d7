"""Population search: ask the sampler for K trials at once and train them in one call.

``run --population K`` replaces ``study.optimize`` (one trial at a time) with Optuna's
ask-and-tell: each round claims up to K trials from the budget, asks the sampler for them,
samples each candidate as the objective does, trains the new ones with one
:func:`~mtl_search.training.population.train_population` call (which fuses the members that
share a structure) and tells every trial its own outcome. Each member is recorded exactly as a
trial of ``--population 1`` (:class:`CandidateObjective` does both): its user attributes,
result hooks, epoch hooks (pruning, progress), a pruned member's history, a diverged member's
``fail_reason``. A member that is pruned or fails leaves the others training.

Strategies (``--population-strategy``):

- ``shared-structure`` (default): the first member of a round (the leader) is asked as usual;
  the others (followers) are asked with the leader's structural parameters fixed (Optuna's
  ``PartialFixedSampler``), so the sampler still chooses their learning rate, weight decay,
  loss-weighting settings and, where the leader's network pads its widths (``pads_widths``),
  its layer and tower widths, and the round trains as one fused group (or, where the widths
  drawn are more than ``MAX_PADDING`` apart, a few). Fewer structures are
  explored per trial. A leader that cannot fuse (``fusion_key`` None), that is over a hard
  limit, or that has nothing but structure to vary, gets independent followers; so does any
  round while the study has enqueued trials (seeded trees, retries), which go first.
- ``independent``: K separate proposals; TPE's constant liar keeps them apart, and they
  fuse only where they happen to share a structure.

Two members of one round with the same candidate are trained once: the second is recorded
as a repeat of the first (``repeat_of``), as a candidate the study already trained is.

Bookkeeping ``study.optimize`` did for one trial, done here for the round:

- heartbeats: every asked trial gets one at once and then every heartbeat interval from a
  background thread until it is told (:class:`Heartbeats`), and stale trials of dead workers
  are failed (and retried) before each round;
- Ctrl-C and SIGTERM (see search/workers.py): while the round trains, the stop is raised and
  every member not told yet is stored as FAIL with ``fail_reason`` "interrupted" (or
  "terminated"); during asking and telling the round finishes that step and the loop stops
  before the next round;
- the budget: a round claims its members at once (:func:`claim_up_to`), so workers sharing a
  budget each run whole rounds and the total stays exact; ``--timeout`` is checked before each
  round, so a run may overrun it by one round's training.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import threading
import time
import warnings
from typing import Any, Iterator, Sequence

import optuna

from mtl_search.errors import Terminated
from mtl_search.records.trial import TrialRecord
from mtl_search.search.objective import (
    CandidateObjective,
    TrialFailed,
    candidate_key,
    find_same_candidate,
    record_run_stop,
)
from mtl_search.search.param_names import RENAMED
from mtl_search.search.study import stop_reason
from mtl_search.search.workers import INTERRUPTED, TERMINATED, Budget, Callback, RepeatRefunds, _Interrupts
from mtl_search.training import TrainResult

STRATEGIES = ("shared-structure", "independent")
States = optuna.trial.TrialState
# What members of one fused group may differ in: ``fusion_key`` leaves these out. A loss
# weighting's own settings (``static.w_<task>``, ``dwa.temperature``) are free too: they are
# named after their method.
FREE_TRAINING_PARAMS = ("training.learning_rate", "training.weight_decay")
# The parameters that set a family's layer widths (``tree.width_<depth>`` too) and the towers':
# free as well where the candidates pad their widths (``pads_widths``, training/population.py).
WIDTH_PARAMS = {
    "tree": ("tree.width",),
    "mmoe": ("mmoe.expert_width", "mmoe.bottom_width"),
    "ple": ("ple.expert_width",),
    "cross_stitch": ("cross_stitch.width",),
    "sluice": ("sluice.width",),
    "hierarchy": ("hierarchy.width",),
}
TOWER_WIDTH = "tower.width"


def is_free_param(name: str, weighting_methods: Sequence[str], padded_family: str | None = None) -> bool:
    """Whether the parameter ``name`` (as stored, perhaps renamed) may differ within a fused group;
    ``padded_family``: the family of candidates that pad their widths, whose width parameters may too."""
    base = name.split(RENAMED, 1)[0]
    if base in FREE_TRAINING_PARAMS or any(base.startswith(f"{method}.") for method in weighting_methods):
        return True
    if padded_family is None:
        return False
    widths = WIDTH_PARAMS.get(padded_family, ())
    per_depth = padded_family == "tree" and base.startswith("tree.width_") and base[len("tree.width_") :].isdigit()
    return base == TOWER_WIDTH or base in widths or per_depth


def structural_params(
    params: dict[str, Any], weighting_methods: Sequence[str], padded_family: str | None = None
) -> dict[str, Any]:
    """The parameters of ``params`` that decide a candidate's structure (its ``fusion_key``)."""
    return {name: value for name, value in params.items() if not is_free_param(name, weighting_methods, padded_family)}


def claim_up_to(budget: Budget, count: int) -> int:
    """Take up to ``count`` trials from ``budget`` at once; how many were taken."""
    claim_many = getattr(budget, "claim_many", None)
    if claim_many is not None:
        return claim_many(count)
    taken = 0
    while taken < count and budget.claim():
        taken += 1
    return taken


class Heartbeats:
    """The heartbeats of the trials a round holds, while they wait and train.

    ``study.optimize`` keeps one trial's heartbeat; a round holds several, asked one after the
    other. A trial gets its first heartbeat when added, then one every interval from a
    background thread until it is discarded. Nothing happens on a storage without heartbeats.
    """

    def __init__(self, storage: optuna.storages.BaseStorage) -> None:
        interval = getattr(storage, "get_heartbeat_interval", lambda: None)()
        self.storage = storage
        self.interval: int | None = interval
        self._trial_ids: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "Heartbeats":
        if self.interval is not None:
            self._thread = threading.Thread(target=self._beat, name="mtl-search-heartbeats", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def add(self, trial_id: int) -> None:
        if self.interval is None:
            return
        self.storage.record_heartbeat(trial_id)  # type: ignore[attr-defined]
        with self._lock:
            self._trial_ids.add(trial_id)

    def discard(self, trial_id: int) -> None:
        with self._lock:
            self._trial_ids.discard(trial_id)

    def _beat(self) -> None:
        assert self.interval is not None
        while not self._stop.wait(self.interval):
            with self._lock:
                held = sorted(self._trial_ids)
            for trial_id in held:
                self.storage.record_heartbeat(trial_id)  # type: ignore[attr-defined]


def optimize_populations(
    study: optuna.Study,
    objective: CandidateObjective,
    budget: Budget,
    *,
    size: int,
    strategy: str = "shared-structure",
    storage: optuna.storages.BaseStorage,
    timeout: float | None = None,
    callbacks: Sequence[Callback] = (),
) -> None:
    """Run rounds of up to ``size`` trials while the budget lasts and ``timeout`` seconds have
    not passed (checked before each round). Raises ``KeyboardInterrupt`` after a Ctrl-C (and
    what stops the run, as ``study.optimize`` does), once every trial of the round is told."""
    if strategy not in STRATEGIES:
        raise ValueError(f"population strategy {strategy!r}: expected one of {', '.join(STRATEGIES)}")
    started = time.monotonic()
    callbacks = [*callbacks, RepeatRefunds(budget).callback]
    with _Interrupts() as interrupts, Heartbeats(storage) as heartbeats:
        while True:
            if interrupts.requested:
                raise interrupts.requested
            if timeout is not None and time.monotonic() - started >= timeout:
                return
            count = claim_up_to(budget, size)
            if count == 0:
                return
            if heartbeats.interval is not None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    optuna.storages.fail_stale_trials(study)  # a dead worker's trials, failed and retried first
            _Round(study, objective, count, strategy, heartbeats, interrupts, callbacks).run()


@dataclasses.dataclass
class _Member:
    trial: optuna.trial.Trial
    candidate: dict[str, Any] | None = None
    earlier: optuna.trial.FrozenTrial | None = None  # a complete trial of the study with the same candidate
    same_as: int | None = None  # index of an earlier member of the round with the same candidate
    prepared: bool = False  # candidate recorded and costs measured (CandidateObjective.before_training)
    costs: dict[str, float] = dataclasses.field(default_factory=dict)
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    outcome: TrainResult | BaseException | None = None
    told: optuna.trial.FrozenTrial | None = None

    @property
    def trains(self) -> bool:
        return self.earlier is None and self.same_as is None


@contextlib.contextmanager
def one_read_per_ask(study: optuna.Study) -> Iterator[None]:
    """While one trial is asked and its candidate sampled, every read of the study's trials
    (the sampler's, the parameter names', the repeat check's) is served by one read of storage.

    Optuna keeps such a read for the trial being asked (dropped by every ``ask`` and
    ``tell``), and its samplers use it, except TPE under the constant liar, which reads storage
    again for every parameter group so as to see other processes' running trials as they are
    now. A round asks its members one after the other and every read returns again each member
    asked before (running, so read from storage, not from Optuna's cache of finished trials):
    the several reads of one ask cost more than its sampling. What changes during one ask is
    the asked trial's own parameters, which the liar leaves out, and other processes' trials:
    in a single process the proposals are the same; with other workers, the liar sees their
    running trials as they were when the ask began. (``Study._get_trials`` is Optuna's private
    method: the population tests check both the single read and the same proposals.)
    """
    read = getattr(study, "_get_trials", None)
    if read is None or "use_cache" not in inspect.signature(read).parameters:  # another Optuna: read as it reads
        yield
        return
    own = vars(study).get("_get_trials")

    def cached(deepcopy: bool = True, states: Any = None, use_cache: bool = False) -> list[optuna.trial.FrozenTrial]:
        return read(deepcopy, states, use_cache=True)

    study._get_trials = cached  # type: ignore[method-assign]
    try:
        yield
    finally:
        if own is None:
            del study._get_trials  # the class's method again
        else:
            study._get_trials = own  # type: ignore[method-assign]


class _Round:
    """One population: ask, prepare, train, tell (see the module docstring)."""

    def __init__(
        self,
        study: optuna.Study,
        objective: CandidateObjective,
        count: int,
        strategy: str,
        heartbeats: Heartbeats,
        interrupts: _Interrupts,
        callbacks: Sequence[Callback],
    ) -> None:
        self.study = study
        self.objective = objective
        self.count = count
        self.strategy = strategy
        self.heartbeats = heartbeats
        self.interrupts = interrupts
        self.callbacks = list(callbacks)
        self.members: list[_Member] = []
        self.stop: BaseException | None = None  # what ends the run once the round is told

    def run(self) -> None:
        try:
            self._ask_all()
            if self.interrupts.requested:
                raise self.interrupts.requested
            self.interrupts.armed = True
            try:
                self._prepare_and_train()
            except KeyboardInterrupt:
                # members whose training had ended keep their outcome: only the others are interrupted
                self.interrupts.armed = False
                self._tell_finished()
                raise
            finally:
                self.interrupts.armed = False
            for index in range(len(self.members)):
                self._tell(index)
        except BaseException as stop:
            self._abandon(stop)
            raise
        if self.stop is not None:
            raise self.stop

    # -- asking --------------------------------------------------------------------------
    def _ask_all(self) -> None:
        fixed: dict[str, Any] | None = None
        for index in range(self.count):
            member = self._ask(fixed)
            if index == 0 and self.strategy == "shared-structure":
                fixed = self._shared_structure(member)

    def _ask(self, fixed: dict[str, Any] | None) -> _Member:
        """Ask one trial (with ``fixed`` parameters) and sample its candidate."""
        base = self.study.sampler
        with one_read_per_ask(self.study):
            return self._ask_reading_once(base, fixed)

    def _ask_reading_once(self, base: optuna.samplers.BaseSampler, fixed: dict[str, Any] | None) -> _Member:
        try:
            with warnings.catch_warnings():
                # ask-and-tell keeps its own heartbeats (Heartbeats), which Optuna does not know of
                warnings.filterwarnings("ignore", message="Heartbeat of storage")
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                if fixed:
                    self.study.sampler = optuna.samplers.PartialFixedSampler(fixed, base)
                trial = self.study.ask()
            member = _Member(trial)
            self.members.append(member)
            self.heartbeats.add(trial._trial_id)
            member.candidate = self.objective.sample(trial)  # the sampler draws as the parameters are suggested
        finally:
            self.study.sampler = base
        key = candidate_key(member.candidate)
        same = next(
            (other for other in self.members[:-1] if other.same_as is None and candidate_key(other.candidate) == key),
            None,
        )
        if same is None:
            member.earlier = find_same_candidate(self.study, member.candidate)
        elif same.earlier is not None:  # both repeat a trial of the study
            member.earlier = same.earlier
        else:
            member.same_as = self.members.index(same)
        return member

    def _shared_structure(self, leader: _Member) -> dict[str, Any] | None:
        """The leader's structural parameters for its followers, or None for independent ones."""
        from mtl_search.training.population import fusion_key, pads_widths

        methods = list(self.objective.space.loss_weighting)
        if not leader.trains or fusion_key(leader.candidate, self.objective.data) is None:
            return None
        architecture = leader.candidate["architecture"]
        padded = architecture["family"] if pads_widths(architecture) else None
        if not any(is_free_param(name, methods, padded) for name in leader.trial.params):
            return None  # nothing left to vary: every follower would be the leader again
        if self.study.get_trials(deepcopy=False, states=(States.WAITING,)):
            return None  # enqueued trials (seeded trees, retries) go first, each with its own parameters
        if self.objective.cost_meter.active:
            # over a hard limit, every follower would be too: find out before asking them
            try:
                leader.costs = self.objective.before_training(leader.trial, leader.candidate)
            except Exception as error:
                leader.outcome = error
                return None
            finally:
                leader.prepared = True
        return structural_params(leader.trial.params, methods, padded)

    # -- training ------------------------------------------------------------------------
    def _prepare_and_train(self) -> None:
        from mtl_search.training.population import train_population

        objective = self.objective
        to_train = []
        for member in self.members:
            if not member.trains:
                continue
            if not member.prepared:
                member.prepared = True
                try:
                    member.costs = objective.before_training(member.trial, member.candidate)
                except Exception as error:  # over a hard limit (pruned), or a model that cannot be built
                    member.outcome = error
            if member.outcome is None:
                to_train.append(member)
        if not to_train:
            return
        for hook in objective.epoch_hooks:  # the pruner reads finished trials once for the round, not per member
            run_together = getattr(hook, "run_together", None)
            if callable(run_together):
                run_together([member.trial.number for member in to_train])

        def settle(index: int, outcome: TrainResult | BaseException) -> None:
            to_train[index].outcome = outcome

        train_population(
            objective.data,
            [m.candidate for m in to_train],
            device=objective.device,
            on_epoch=[objective.epoch_callback(m.trial, m.history) for m in to_train],
            stem=objective.stem,
            on_outcome=settle,
        )

    # -- telling -------------------------------------------------------------------------
    def _tell(self, index: int) -> None:
        member = self.members[index]
        trial, objective = member.trial, self.objective
        values: list[float] | None = None
        try:
            if member.earlier is not None:
                values = objective.repeat(trial, member.candidate, member.earlier)
            elif member.same_as is not None:
                values = self._settle_duplicate(member, self.members[member.same_as].told)
            else:
                assert member.outcome is not None
                values = objective.after_training(trial, member.candidate, member.costs, member.history, member.outcome)
            state = States.COMPLETE
        except optuna.TrialPruned:
            state = States.PRUNED
        except TrialFailed:
            state = States.FAIL
        except KeyboardInterrupt as stop:  # a member's epoch callback saw the Ctrl-C
            TrialRecord(fail_reason=TERMINATED if isinstance(stop, Terminated) else INTERRUPTED).write(trial)
            state, self.stop = States.FAIL, self.stop or stop
        except Exception as error:  # what stops the run; the rest of the round is told first
            record_run_stop(trial, error)
            state, self.stop = States.FAIL, self.stop or error
        self.heartbeats.discard(trial._trial_id)
        # skip_if_finished: a trial already failed by another worker's heartbeat check stays as it is
        member.told = self.study.tell(trial, values, state=state, skip_if_finished=True)
        for callback in self.callbacks:
            callback(self.study, member.told)

    def _tell_finished(self) -> None:
        """Tell, in order, every member whose outcome is known (trained, or a repeat whose
        original is told); the round was stopped while the others trained."""
        for index, member in enumerate(self.members):
            if member.told is not None:
                continue
            if member.same_as is not None:
                ready = self.members[member.same_as].told is not None
            else:
                ready = member.earlier is not None or (member.prepared and member.outcome is not None)
            if ready:
                self._tell(index)

    def _settle_duplicate(self, member: _Member, original: optuna.trial.FrozenTrial | None) -> list[float]:
        """A member whose candidate an earlier member of the round trained: its outcome again."""
        assert original is not None  # members are told in order
        if original.state == States.COMPLETE:
            return self.objective.repeat(member.trial, member.candidate, original)
        self.objective.before_training(member.trial, member.candidate)  # over a hard limit: pruned here
        why = stop_reason(original) or original.state.name.lower()
        reason = f"{why} (the same candidate as trial {original.number}, not trained twice)"
        if original.state == States.PRUNED:
            TrialRecord(prune_reason=reason).write(member.trial)
            raise optuna.TrialPruned(reason)
        TrialRecord(fail_reason=reason).write(member.trial)
        raise TrialFailed(reason)

    def _abandon(self, stop: BaseException) -> None:
        """Store every member not told yet as FAIL, with why the round stopped."""
        for member in self.members:
            if member.told is not None:
                continue
            if isinstance(stop, KeyboardInterrupt):
                TrialRecord(fail_reason=TERMINATED if isinstance(stop, Terminated) else INTERRUPTED).write(member.trial)
            else:
                record_run_stop(member.trial, stop)
            self.heartbeats.discard(member.trial._trial_id)
            member.told = self.study.tell(member.trial, state=States.FAIL, skip_if_finished=True)
