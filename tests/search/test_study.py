"""Samplers and study set-up (mtl_search/search/study.py)."""

import optuna
import pytest

from mtl_search.search.runner import SearchSettings, run_search
from mtl_search.search.space import parse_space
from mtl_search.search.storage import is_database_server, open_storage
from mtl_search.search.study import make_sampler, startup_trials
from mtl_search.search.workers import LocalBudget, TrialBudget


@pytest.mark.parametrize(
    ("n_trials", "expected"), [(1, 3), (7, 3), (12, 3), (13, 4), (20, 5), (40, 10), (500, 10), (None, 10)]
)
def test_random_start_up_is_a_quarter_of_a_small_budget(n_trials, expected):
    assert startup_trials(n_trials) == expected


def test_tpe_models_results_after_the_scaled_start_up_unless_told():
    # Optuna keeps the count private; it is the one thing this setting changes
    assert make_sampler("tpe", 0, n_trials=7)._n_startup_trials == 3
    assert make_sampler("tpe", 0, n_trials=7, n_startup_trials=6)._n_startup_trials == 6
    assert make_sampler("tpe", 0)._n_startup_trials == 10


def test_tpe_uses_the_constant_liar_only_when_others_may_run_trials_meanwhile():
    assert make_sampler("tpe", 0)._constant_liar is True
    assert make_sampler("tpe", 0, shared=False)._constant_liar is False


SMALL_SPACE = {
    "training": {"epochs": 1, "batch_size": 128, "learning_rate": {"low": 1.0e-3, "high": 1.0e-2, "log": True}},
    "families": {
        "tree": {"depth": {"low": 1, "high": 2}, "width": {"choices": [8, 16]}},
        "mmoe": {"experts": {"low": 2, "high": 3}, "expert_width": 8},
    },
    "loss_weighting": {"static": {}, "uncertainty": {}},
}


def run_small_search(data, storage, name, budget, n_trials):
    settings = SearchSettings(
        study_name=name,
        storage=storage,
        sampler="tpe",
        seed=0,
        n_trials=n_trials,
        epochs=1,
        startup_trials=3,
        save_artifacts=False,
    )
    return run_search(data, parse_space(SMALL_SPACE), settings, budget=budget)


def test_a_process_alone_samples_without_the_constant_liar_and_workers_with_it(tiny_synthetic, tmp_path):
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    alone = run_small_search(tiny_synthetic, storage, "alone", LocalBudget(8), 8)
    shared = run_small_search(tiny_synthetic, storage, "shared", TrialBudget(8), 8)  # the budget of --workers
    assert alone.sampler._constant_liar is False and shared.sampler._constant_liar is True
    # alone, the only running trial is the one being sampled, which the liar leaves out:
    # going without it saves storage reads and changes no candidate
    proposed = [[trial.params for trial in study.get_trials(deepcopy=False)] for study in (alone, shared)]
    assert len(proposed[0]) == 8 and proposed[0] == proposed[1]


def test_only_a_database_server_is_shared_by_other_machines(tmp_path):
    assert not is_database_server(open_storage(f"sqlite:///{tmp_path / 'one.db'}", heartbeat=False))
    assert not is_database_server(optuna.storages.InMemoryStorage())


def test_an_unknown_study_lists_the_first_ten_and_says_there_are_more(tmp_path):
    from mtl_search.errors import UserError
    from mtl_search.search.study import load_existing

    url = f"sqlite:///{tmp_path / 'many.db'}"
    for index in range(12):
        optuna.create_study(study_name=f"s{index:02d}", storage=url)
    with pytest.raises(UserError) as error:
        load_existing("nope", url)
    message = str(error.value)
    assert "s00, s01" in message and "s09" in message and "s10" not in message
    assert message.endswith("... (12 in all; mtl-search studies lists them))")


def create_empty_study(data, storage, name, space=None):
    """The study ``run_search`` stores for ``data``, without training a trial."""
    return run_search(
        data,
        space or parse_space(SMALL_SPACE),
        SearchSettings(study_name=name, storage=storage, n_trials=0, save_artifacts=False),
    )


def refusal(data, storage, name, space=None) -> str:
    from mtl_search.errors import UserError

    with pytest.raises(UserError) as error:
        create_empty_study(data, storage, name, space)
    return str(error.value)


def test_continuing_with_other_data_names_each_key_that_differs(storage_url):
    from mtl_search.data.synthetic import make_synthetic

    create_empty_study(make_synthetic(dim=8, rows=300, correlation=0.5), storage_url, "synthetic")
    message = refusal(make_synthetic(dim=8, rows=300, correlation=0.9, seed=2), storage_url, "synthetic")
    assert message == (
        "study 'synthetic' was made with other data (options.correlation: 0.5 in the study, 0.9 now; "
        "options.seed: 0 in the study, 2 now); use the same data or another --study-name"
    )


def write_table(folder, extra_column=False):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=120), "b": rng.normal(size=120)})
    frame["big"] = (frame.a > 0).astype(int)
    frame["small"] = ((frame.a > 0) & (frame.b > 0)).astype(int)
    if extra_column:
        frame["c"] = rng.normal(size=120)
    frame.to_csv(folder / "t.csv", index=False)


def test_continuing_a_table_study_names_the_task_key_or_the_input_schema_that_differs(storage_url, tmp_path):
    from mtl_search.data import load_data

    write_table(tmp_path)
    description = tmp_path / "d.yaml"
    declared = "file: t.csv\ntasks:\n  - {name: big, kind: binary, metrics: [auc, logloss]}\n  - {name: small, kind: binary, given: big}\noptions: {seed: 1}\n"
    description.write_text(declared)
    create_empty_study(load_data(None, {}, str(description)), storage_url, "table")
    # the same file, fixed in place: only the task's given differs (the options are the same)
    description.write_text(declared.replace(", given: big", ""))
    assert refusal(load_data(None, {}, str(description)), storage_url, "table") == (
        "study 'table' was made with other data (tasks.small.given: 'big' in the study, none now); use the same data or another --study-name"
    )
    description.write_text(declared.replace("kind: binary, metrics", "kind: binary, column: small, metrics"))
    assert "(tasks.big.column: 'big' in the study, 'small' now)" in refusal(
        load_data(None, {}, str(description)), storage_url, "table"
    )
    # the same description of a table that gained a column: what the network reads differs
    description.write_text(declared)
    write_table(tmp_path, extra_column=True)
    gained = refusal(load_data(None, {}, str(description)), storage_url, "table")
    assert (
        "t.csv: its content changed since the study was made" in gained
        and "; input_schema.numeric: 2 in the study, 3 now)" in gained
    )
    write_table(tmp_path)
    data = load_data(None, {}, str(description))
    create_empty_study(data, storage_url, "table")  # the same data continues
    # ... with the same objectives: each task's first metric, not every metric big declares
    assert refusal(data, storage_url, "table", parse_space(SMALL_SPACE | {"objectives": {"metrics": "all"}})) == (
        "study 'table' has objectives big/auc, small/auc and this run big/auc, big/logloss, small/auc (new big/logloss); "
        "use the same tasks and metrics (objectives.metrics), or use another --study-name"
    )


def test_continuing_with_other_objectives_names_them_and_the_flag(tiny_synthetic, storage_url):
    costly = parse_space(SMALL_SPACE | {"objectives": {"extra": ["params", "latency"]}})
    create_empty_study(tiny_synthetic, storage_url, "costly", costly)
    assert refusal(tiny_synthetic, storage_url, "costly") == (
        "study 'costly' has objectives task1/mse, task2/mse, params, latency_ms and this run task1/mse, task2/mse "
        "(missing params, latency_ms); pass --objective params --objective latency, or use another --study-name"
    )
    assert refusal(
        tiny_synthetic,
        storage_url,
        "costly",
        parse_space(SMALL_SPACE | {"objectives": {"extra": ["latency", "params"]}}),
    ).endswith("(in another order); pass --objective params --objective latency, or use another --study-name")
    create_empty_study(tiny_synthetic, storage_url, "plain")
    assert refusal(tiny_synthetic, storage_url, "plain", costly).endswith(
        "(new params, latency_ms); run without --objective, or use another --study-name"
    )


def test_a_study_made_before_regression_targets_were_standardised(storage_url, cli, tmp_path):
    """Its trials learned raw targets: new trials would not compare, so it is not continued; its
    front is still read, refined and exported, and its trials are retrained as they were trained."""
    import dataclasses
    import json

    from mtl_search.data.synthetic import make_synthetic
    from mtl_search.export.bundle import reload_data
    from mtl_search.records.attributes import STUDY_ATTR
    from mtl_search.records.study import StudyRecord

    data = make_synthetic(dim=8, rows=300, correlation=0.5)
    # mean 0, std 1 carried by the tasks: trained exactly as an earlier release trained raw targets ...
    raw = dataclasses.replace(data, tasks=[dataclasses.replace(t, target_mean=0.0, target_std=1.0) for t in data.tasks])
    settings = SearchSettings(study_name="old", storage=storage_url, sampler="random", n_trials=1, save_artifacts=False)
    study = run_search(raw, parse_space(SMALL_SPACE), settings)
    # ... and stored as then: record format 0 (unversioned), tasks without statistics
    meta = {k: v for k, v in study.user_attrs[STUDY_ATTR].items() if k != "schema_version"}
    study.set_user_attr(
        STUDY_ATTR,
        meta | {"tasks": [{k: v for k, v in t.items() if not k.startswith("target_")} for t in meta["tasks"]]},
    )
    assert refusal(data, storage_url, "old") == (
        "study 'old' was trained with regression targets in raw units (stored in record format 0 without target "
        "statistics; task(s) task1, task2), and new trials learn them standardised; use another --study-name"
    )
    create_empty_study(data, storage_url, "new")
    create_empty_study(
        make_synthetic(dim=8, rows=300, correlation=0.5), storage_url, "new"
    )  # a study made now continues

    assert [t.target_scale for t in reload_data(StudyRecord.read(study)).tasks] == [(0.0, 1.0)] * 2
    assert cli("pareto", "old", "--storage", storage_url).code == 0
    assert cli("refine", "old", "--seeds", "1", "--storage", storage_url).code == 0
    # no stored weights: retrained on its raw targets, it gives the trial's own metrics again
    result = cli("export", "old", "--trial", "0", "--storage", storage_url, "--out", str(tmp_path / "model"))
    assert result.code == 0 and "retrained (train)" in result.out, result
    validation = json.loads((tmp_path / "model" / "metrics.json").read_text())["metrics"][0]["values"]
    for task, values in study.trials[0].user_attrs["validation"].items():
        assert validation[task]["mse"] == pytest.approx(values["mse"], rel=1e-4)


def test_stop_reason_tells_a_trial_lost_with_its_worker_from_a_recorded_failure():
    from mtl_search.search.study import stop_reason

    states = optuna.trial.TrialState
    recorded = optuna.trial.create_trial(
        state=states.FAIL, user_attrs={"fail_reason": "loss is nan at epoch 3\n(details)"}
    )
    pruned = optuna.trial.create_trial(state=states.PRUNED, user_attrs={"prune_reason": "dominated at epoch 2"})
    lost = optuna.trial.create_trial(state=states.FAIL)
    lost.number = 4
    retry = optuna.trial.create_trial(state=states.COMPLETE, value=1.0, system_attrs={"failed_trial": 4})
    retry.number = 7
    assert stop_reason(recorded) == "loss is nan at epoch 3"
    assert stop_reason(pruned) == "dominated at epoch 2"
    assert (
        stop_reason(lost, [lost, retry])
        == "no heartbeat for the grace period: its worker died or was killed; retried as trial 7"
    )
    assert stop_reason(lost) == "no heartbeat for the grace period: its worker died or was killed"
    assert stop_reason(retry) is None


def test_a_validation_split_without_both_classes_is_refused_before_any_training(storage_url):
    import dataclasses

    import torch

    from mtl_search.data.base import Split
    from mtl_search.data.table import make_table_data, targets_from_declarations
    from mtl_search.errors import UserError
    from tests.helpers import spend_and_churn

    data = make_table_data(spend_and_churn(), targets_from_declarations(["churn:binary", "spend:regression"]))
    targets = dict(data.validation.targets) | {
        "churn": torch.where(
            torch.isnan(data.validation.targets["churn"]), data.validation.targets["churn"], torch.zeros(())
        )
    }
    one_class = dataclasses.replace(data, validation=Split(inputs=data.validation.inputs, targets=targets))
    with pytest.raises(
        UserError, match=r"^task 'churn': the validation split has \d+ labelled row\(s\), all 0, so its auc cannot"
    ):
        run_search(
            one_class, parse_space(SMALL_SPACE), SearchSettings(study_name="one-class", storage=storage_url, n_trials=1)
        )
    assert optuna.get_all_study_names(storage_url) == []
