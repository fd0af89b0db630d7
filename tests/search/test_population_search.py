"""``run --population K``: K trials asked at once, trained in one call, each recorded as its own trial."""

from __future__ import annotations

import contextlib
import os
import signal

import optuna
import pytest

from mtl_search.errors import Terminated, UserError
from mtl_search.search.objective import candidate_key
from mtl_search.search.runner import SearchSettings, run_search
from mtl_search.search.space import parse_space
from mtl_search.search.study import pareto_trials
from mtl_search.training.population import fusion_key, pads_widths, spec_widths
from tests.helpers import assert_one_line_error

States = optuna.trial.TrialState

# the default families, with a few training settings to search: small and quick
SPACE = {
    "training": {
        "epochs": 2,
        "learning_rate": {"low": 1.0e-3, "high": 1.0e-2, "log": True},
        "weight_decay": {"low": 1.0e-6, "high": 1.0e-3, "log": True},
        "batch_size": {"choices": [64, 128]},
    },
    "families": {
        "tree": {"depth": {"low": 1, "high": 2}, "width": {"choices": [8, 16]}},
        "mmoe": {"experts": 2, "expert_width": {"choices": [8, 16]}},
    },
    "loss_weighting": {"static": {"weights": "simplex"}},
}


def search(data, storage_url, name, *, space=SPACE, epoch_hooks=(), callbacks=(), **settings):
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    settings = {"sampler": "random", "save_artifacts": False} | settings
    return run_search(
        data,
        parse_space(space),
        SearchSettings(name, storage=storage_url, **settings),
        epoch_hooks=epoch_hooks,
        callbacks=callbacks,
    )


def rounds(trials, size):
    """The trials of each population, by trial number (a round asks its members one after the other)."""
    return [trials[start : start + size] for start in range(0, len(trials), size)]


def test_a_population_run_spends_its_budget_on_distinct_candidates_recorded_like_single_trials(
    tiny_synthetic, storage_url
):
    single = search(tiny_synthetic, storage_url, "single", n_trials=2)
    populations = search(tiny_synthetic, storage_url, "population", n_trials=10, population=4)

    trials = populations.get_trials(deepcopy=False)
    assert len(trials) == 10  # rounds of 4, 4 and 2
    assert all(t.state == States.COMPLETE for t in trials), [t.state for t in trials]
    assert len({candidate_key(t.user_attrs["candidate"]) for t in trials}) == 10
    # each member holds what a trial of a one-at-a-time run holds, no more and no less
    keys = {frozenset(t.user_attrs) for t in single.get_trials(deepcopy=False)}
    assert keys == {frozenset(t.user_attrs) for t in trials}
    assert all(isinstance(t.user_attrs["population_size"], int) for t in trials)
    assert all(len(t.user_attrs["history"]) == 2 for t in trials)
    assert pareto_trials(populations)


def test_members_of_a_shared_structure_population_share_the_fusion_key_and_differ_in_training(
    tiny_synthetic, storage_url
):
    study = search(tiny_synthetic, storage_url, "shared", n_trials=8, population=4)
    leaders, widths_by_round = [], []
    for members in rounds(study.get_trials(deepcopy=False), 4):
        candidates = [t.user_attrs["candidate"] for t in members]
        keys = {fusion_key(c, tiny_synthetic) for c in candidates}
        assert len(keys) == 1  # one structure: the round can train as one fused group
        # the sampler chose each member's own learning rate, weight decay and loss weights
        assert len({c["training"]["learning_rate"] for c in candidates}) == 4
        assert len({c["training"]["weight_decay"] for c in candidates}) == 4
        assert len({tuple(c["loss_weighting"]["weights"].values()) for c in candidates}) == 4
        # and their widths: members of other widths fuse, zero-padded to the widest
        assert all(pads_widths(c["architecture"]) for c in candidates)
        widths_by_round.append({tuple(spec_widths(c["architecture"])) for c in candidates})
        assert [t.user_attrs["population_size"] for t in members] == [4] * 4
        leaders.append(candidates[0]["architecture"])
    assert leaders[0] != leaders[1]  # the next round's leader is a new proposal
    assert any(len(widths) > 1 for widths in widths_by_round)

    independent = search(
        tiny_synthetic, storage_url, "independent", n_trials=4, population=4, population_strategy="independent"
    )
    candidates = [t.user_attrs["candidate"] for t in independent.get_trials(deepcopy=False)]
    assert len({fusion_key(c, tiny_synthetic) for c in candidates}) > 1


def test_a_member_that_diverges_or_is_pruned_leaves_with_its_reason_and_the_others_complete(
    tiny_synthetic, storage_url
):
    # learning rate 1e6 blows the loss up in the first epoch; the members of a round differ in it
    space = {
        "training": {
            "epochs": 3,
            "learning_rate": {"choices": [1.0e-3, 1.0e6]},
            "weight_decay": {"low": 1.0e-6, "high": 1.0e-3, "log": True},
            "batch_size": 64,
        },
        "families": {"tree": {"depth": 1, "width": 8}},
        "loss_weighting": {"static": {}},
    }

    pruned_numbers = []

    def prune_one_in_the_second_round(trial, epoch, scores, record):  # an epoch hook, as the Pareto pruner is one
        if trial.number >= 4 and epoch == 1 and not pruned_numbers:
            pruned_numbers.append(trial.number)
            trial.set_user_attr("prune_reason", "stopped by the test")
            raise optuna.TrialPruned("stopped by the test")

    study = search(
        tiny_synthetic,
        storage_url,
        "faults",
        space=space,
        n_trials=8,
        population=4,
        epoch_hooks=[prune_one_in_the_second_round],
    )
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 8
    by_rate = {rate: [t for t in trials if t.params["training.learning_rate"] == rate] for rate in (1.0e-3, 1.0e6)}
    assert by_rate[1.0e6] and len(by_rate[1.0e-3]) > 1
    for trial in by_rate[1.0e6]:
        assert trial.state == States.FAIL
        assert "non-finite training loss" in trial.user_attrs["fail_reason"]
        assert set(trial.user_attrs) == {"schema_version", "candidate", "summary", "fail_reason"}
    (pruned,) = [trials[number] for number in pruned_numbers]
    assert pruned.state == States.PRUNED and pruned.user_attrs["prune_reason"] == "stopped by the test"
    # recorded up to where it stopped
    assert len(pruned.user_attrs["history"]) == 2 and pruned.user_attrs["kept_epoch"] == 2
    assert "last_values" in pruned.user_attrs
    others = [t for t in by_rate[1.0e-3] if t is not pruned]
    assert others and all(t.state == States.COMPLETE and len(t.user_attrs["history"]) == 3 for t in others)


@pytest.mark.parametrize("strategy", ["shared-structure", "independent"])
def test_a_round_asks_each_member_with_one_read_of_the_study_and_the_same_proposals(
    tiny_synthetic, tmp_path, monkeypatch, strategy
):
    from mtl_search.search import population

    reads_per_ask: list[int] = []
    reads = optuna.storages._CachedStorage._read_trials_from_remote_storage
    asking = population._Round._ask
    counted = [0]

    def counting_read(self, study_id):
        counted[0] += 1
        return reads(self, study_id)

    def counting_ask(self, fixed):
        before = counted[0]
        try:
            return asking(self, fixed)
        finally:
            reads_per_ask.append(counted[0] - before)

    monkeypatch.setattr(optuna.storages._CachedStorage, "_read_trials_from_remote_storage", counting_read)
    monkeypatch.setattr(population._Round, "_ask", counting_ask)
    # TPE past its start-up trials, under the constant liar that a population uses
    settings = dict(n_trials=12, population=4, sampler="tpe", startup_trials=4, seed=3, population_strategy=strategy)

    def params(study):
        return [(t.number, t.params, t.state) for t in study.get_trials(deepcopy=False)]

    once = params(search(tiny_synthetic, f"sqlite:///{tmp_path / 'once.db'}", "once", **settings))
    # one read of the waiting trials (enqueued ones go first) and one of every trial, whatever the round holds
    assert len(reads_per_ask) == 12 and max(reads_per_ask) <= 2
    reads_per_ask.clear()
    monkeypatch.setattr(population, "one_read_per_ask", lambda study: contextlib.nullcontext())
    every = params(search(tiny_synthetic, f"sqlite:///{tmp_path / 'every.db'}", "every", **settings))
    assert max(reads_per_ask) > 2
    assert once == every


def test_members_with_one_candidate_train_once_and_the_others_are_repeats(tiny_synthetic, storage_url):
    # two candidates only: four members must repeat one of them, and a second round repeats earlier trials
    space = {
        "training": {"epochs": 2, "learning_rate": {"choices": [1.0e-3, 2.0e-3]}, "batch_size": 64},
        "families": {"tree": {"depth": 1, "width": 8, "grouping": "shared"}},
        "loss_weighting": {"static": {}},
    }
    study = search(tiny_synthetic, storage_url, "twice", space=space, n_trials=8, population=4)
    trials = study.get_trials(deepcopy=False)
    assert all(t.state == States.COMPLETE for t in trials)
    trained = [t for t in trials if "repeat_of" not in t.user_attrs]
    assert len(trained) == len({candidate_key(t.user_attrs["candidate"]) for t in trials}) <= 2
    for trial in trials:
        if "repeat_of" in trial.user_attrs:
            original = trials[trial.user_attrs["repeat_of"]]
            assert original in trained and original.number < trial.number
            assert candidate_key(original.user_attrs["candidate"]) == candidate_key(trial.user_attrs["candidate"])
            assert trial.values == original.values and "history" not in trial.user_attrs


def test_a_member_over_a_hard_limit_is_pruned_before_training_and_the_round_goes_on(tiny_synthetic, storage_url):
    # a tree of width 8 has about 500 parameters, of width 64 many more
    space = {
        "training": {"epochs": 2, "learning_rate": {"low": 1.0e-3, "high": 1.0e-2, "log": True}, "batch_size": 64},
        "families": {"tree": {"depth": 1, "width": {"choices": [8, 64]}}},
        "loss_weighting": {"static": {}},
        "objectives": {"max_params": 1500},
    }
    study = search(
        tiny_synthetic, storage_url, "limits", space=space, n_trials=8, population=4, population_strategy="independent"
    )
    trials = study.get_trials(deepcopy=False)
    wide = [t for t in trials if t.user_attrs["candidate"]["architecture"]["widths"] == [64]]
    narrow = [t for t in trials if t.user_attrs["candidate"]["architecture"]["widths"] == [8]]
    assert wide and narrow
    for trial in wide:
        assert trial.state == States.PRUNED and "history" not in trial.user_attrs
        assert trial.user_attrs["prune_reason"].startswith("over limit")
    assert all(t.state == States.COMPLETE for t in narrow)


def test_the_summary_says_how_many_trials_trained_fused_and_how_many_alone(tiny_synthetic, storage_url):
    from mtl_search.cli.search_summary import population_line, search_summary_lines

    study = search(tiny_synthetic, storage_url, "summary", n_trials=6, population=3)
    sizes = [t.user_attrs["population_size"] for t in study.get_trials(deepcopy=False)]
    fused = sum(size > 1 for size in sizes)
    line = next(line for line in search_summary_lines(study) if line.startswith("trained to the end: "))
    assert f": {fused} fused with others" in line and line.endswith(f", {len(sizes) - fused} alone")

    def made(size):
        attrs = {} if size is None else {"population_size": size}
        return optuna.trial.create_trial(state=States.COMPLETE, values=[1.0], user_attrs=attrs)

    assert population_line([made(1), made(4), made(4), made(2), made(None)]) == (
        "trained to the end: 3 fused with others (groups of 2 to 4), 1 alone"
    )
    assert population_line([made(3), made(3)]) == "trained to the end: 2 fused with others (groups of 3), 0 alone"
    assert population_line([made(None)]) is None  # a study from before population training


@pytest.mark.parametrize(
    "signum, stop, word",
    [(signal.SIGINT, KeyboardInterrupt, "interrupted"), (signal.SIGTERM, Terminated, "terminated")],
)
def test_a_stop_while_a_population_trains_fails_its_members_with_the_reason(
    tiny_synthetic, storage_url, signum, stop, word
):
    def stop_in_trial_5(trial, epoch, scores, record):
        if trial.number == 5:
            os.kill(os.getpid(), signum)  # a Ctrl-C (or a scheduler's SIGTERM) while the second round trains

    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(stop):
        search(tiny_synthetic, storage_url, "stop", n_trials=20, population=4, epoch_hooks=[stop_in_trial_5])
    trials = optuna.load_study(study_name="stop", storage=storage_url).get_trials(deepcopy=False)
    # no round after the stop, nothing left RUNNING
    assert [t.state for t in trials] == [States.COMPLETE] * 4 + [States.FAIL] * 4
    assert all(t.user_attrs["fail_reason"] == word for t in trials[4:])
    assert signal.getsignal(signal.SIGTERM) is previous


def test_a_stop_keeps_the_members_that_had_finished_training(tiny_synthetic, storage_url):
    # rlw trains alone: the round's members train one after the other
    space = SPACE | {"loss_weighting": {"rlw": {}}}

    def stop_in_trial_6(trial, epoch, scores, record):
        if trial.number == 6:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        search(
            tiny_synthetic, storage_url, "kept", space=space, n_trials=12, population=4, epoch_hooks=[stop_in_trial_6]
        )
    trials = optuna.load_study(study_name="kept", storage=storage_url).get_trials(deepcopy=False)
    # trials 4 and 5 trained to the end before the stop: recorded as a one-at-a-time run would
    assert [t.state for t in trials] == [States.COMPLETE] * 6 + [States.FAIL] * 2
    assert all(t.user_attrs["fail_reason"] == "interrupted" for t in trials[6:])
    assert all(len(t.user_attrs["history"]) == 2 and "test" in t.user_attrs for t in trials[4:6])


def test_a_ctrl_c_while_a_round_is_told_stops_before_the_next_round(tiny_synthetic, storage_url):
    def interrupt_at_trial_1(study, trial):
        if trial.number == 1:
            os.kill(os.getpid(), signal.SIGINT)  # lands while the round records its results

    with pytest.raises(KeyboardInterrupt):
        search(tiny_synthetic, storage_url, "between", n_trials=20, population=3, callbacks=[interrupt_at_trial_1])
    trials = optuna.load_study(study_name="between", storage=storage_url).get_trials(deepcopy=False)
    assert [t.state for t in trials] == [States.COMPLETE] * 3


def test_heartbeats_are_kept_for_the_trials_a_round_holds(tmp_path):
    import time
    import warnings

    from mtl_search.search.population import Heartbeats
    from mtl_search.search.storage import open_storage
    from tests.search.parallel_helpers import wait_for

    storage = open_storage(f"sqlite:///{tmp_path / 'beats.db'}", grace_seconds=3)  # a beat every second
    study = optuna.create_study(storage=storage)
    with pytest.warns(UserWarning, match="Heartbeat"):
        held, let_go = study.ask(), study.ask()

    def state(trial):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)  # what every worker does before its next trial
        return study.trials[trial.number].state

    with Heartbeats(storage) as heartbeats:
        heartbeats.add(held._trial_id)
        heartbeats.add(let_go._trial_id)
        heartbeats.discard(let_go._trial_id)  # told: no more heartbeats
        wait_for(lambda: state(let_go) == States.FAIL, timeout=60)
        deadline = time.monotonic() + 4  # longer than the grace period: the held trial would be failed by now
        while time.monotonic() < deadline:
            assert state(held) == States.RUNNING
            time.sleep(0.5)


def test_refine_trains_the_seeds_of_a_population_run_s_front_in_the_same_format(tiny_synthetic, storage_url):
    from mtl_search.analysis.refine import refine_front, refine_trial

    study = search(tiny_synthetic, storage_url, "refine", n_trials=4, population=4)
    records = refine_front(study, tiny_synthetic, seeds=2)
    assert set(records) == {t.number for t in pareto_trials(study)}
    for number, record in records.items():
        assert set(record) == {"seeds", "validation", "test"}
        trial = study.trials[number]
        assert record["seeds"] == [0, 1, 2]
        assert record["validation"]["task1"]["mse"]["n"] == 3 and record["test"]["task2"]["mse"]["n"] == 3
        # the first run is the search's own
        again = refine_trial(trial, tiny_synthetic, [0])
        own = trial.user_attrs["validation"]["task1"]["mse"]
        assert again["validation"]["task1"]["mse"]["mean"] == pytest.approx(own, rel=1e-5)
    # a seed that diverges is a result: recorded with its reason, left out of the means
    trial = study.trials[0]
    candidate = trial.user_attrs["candidate"]
    candidate = candidate | {"training": candidate["training"] | {"learning_rate": 1.0e6}}
    diverging = optuna.trial.create_trial(
        state=States.COMPLETE, values=trial.values, user_attrs=trial.user_attrs | {"candidate": candidate}
    )
    record = refine_trial(diverging, tiny_synthetic, [1, 2])
    assert [failure["seed"] for failure in record["diverged"]] == [1, 2]
    assert all(failure["reason"] for failure in record["diverged"])
    assert record["seeds"] == [0] and record["validation"]["task1"]["mse"]["n"] == 1


def test_bad_population_settings_are_refused(cli, tiny_synthetic, storage_url):
    assert_one_line_error(cli("run", "--population", "0"), "--population", "'0'")
    assert_one_line_error(cli("run", "--population", "two"), "--population", "'two'")
    assert_one_line_error(
        cli("run", "--population-strategy", "independent", "--storage", storage_url),
        "--population-strategy independent",
        "--population",
    )
    for bad in ({"population": 0}, {"population": 2.5}, {"population_strategy": "clever"}):
        with pytest.raises(UserError, match="population"):
            search(tiny_synthetic, storage_url, "bad", n_trials=1, **bad)
    assert "bad" not in optuna.get_all_study_names(storage_url)  # refused before anything was stored


@pytest.mark.slow
def test_workers_run_populations_and_share_the_budget_exactly(tmp_path):
    from tests.search.parallel_helpers import RAN_TO_END, run_args, start_cli, trials, write_space

    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    args = run_args(write_space(tmp_path), storage, "workers", 5, "--workers", "3", "--population", "3")
    process = start_cli(args, tmp_path)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    # 5 trials in populations of 3 keep 2 workers busy at most
    assert "--workers 3 for --trials 5 in populations of 3: starting 2" in err and "Traceback" not in err
    found = trials(storage, "workers")
    assert len(found) == 5 and all(t.state in RAN_TO_END for t in found)
    assert len({candidate_key(t.user_attrs["candidate"]) for t in found}) == 5
    assert "trained to the end: " in out


def test_width_parameters_are_free_only_where_the_candidates_pad_their_widths():
    from mtl_search.search.param_names import RENAMED
    from mtl_search.search.population import is_free_param

    assert not is_free_param("tree.width", ["static"])
    assert is_free_param("tree.width", ["static"], "tree")
    assert is_free_param("tree.width_1", ["static"], "tree")
    assert is_free_param(f"mmoe.expert_width{RENAMED}1", ["static"], "mmoe")  # a renamed parameter too
    assert is_free_param("tower.width", ["static"], "ple") and not is_free_param("tower.width", ["static"])
    assert not is_free_param("tree.depth", ["static"], "tree")
    assert not is_free_param("mmoe.expert_width", ["static"], "tree")
    assert not is_free_param("mmoe.experts", ["static"], "mmoe")


def test_the_searched_width_parameters_cover_every_family_that_pads():
    from mtl_search.search.population import WIDTH_PARAMS
    from mtl_search.training.population import WIDTH_KEYS

    # one table per layer (spec keys for training, parameter names for the search): kept in step
    assert set(WIDTH_PARAMS) == set(WIDTH_KEYS)
