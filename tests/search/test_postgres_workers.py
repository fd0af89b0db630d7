"""Several machines on one PostgreSQL study: here, independent processes started at the same moment."""

from __future__ import annotations

import optuna
import pytest

from mtl_search.records.attributes import STUDY_ATTR
from tests.helpers import assert_one_line_error
from tests.search.parallel_helpers import FINISHED, run_args, start_cli, write_space

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def test_three_processes_join_one_study_and_account_for_every_trial(postgres_url, tmp_path, cli):
    space = write_space(tmp_path)
    # Like three machines: separate processes, a fresh database (no tables yet), started at once,
    # each with its own sampler seed as docs/tutorials/many-machines.md advises.
    processes = [
        start_cli(run_args(space, postgres_url, "shared", 3, "--seed", str(seed)), tmp_path) for seed in range(3)
    ]
    for process in processes:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
        assert "Traceback" not in err

    summaries = optuna.study.get_all_study_summaries(postgres_url, include_best_trial=False)
    assert [s.study_name for s in summaries] == ["shared"]
    study = optuna.load_study(study_name="shared", storage=postgres_url)
    found = study.get_trials(deepcopy=False)
    assert len(found) == 9
    assert all(t.state in FINISHED for t in found), [t.state for t in found]
    assert study.user_attrs[STUDY_ATTR]["data"]["options"]["rows"] == 300

    # A machine started with other data is refused, in one line, before it runs anything.
    other = cli(
        "run",
        "--space",
        str(space),
        "--data-option",
        "rows=400",
        "--data-option",
        "dim=8",
        "--storage",
        postgres_url,
        "--study-name",
        "shared",
        "--quiet",
    )
    assert_one_line_error(other, "study 'shared'", "other data")
    assert len(study.get_trials(deepcopy=False)) == 9


def test_a_search_on_postgres_samples_with_the_constant_liar(postgres_url, tiny_synthetic):
    # other machines may run trials of the study meanwhile: the sampler counts them
    from mtl_search.search.storage import is_database_server, open_storage
    from mtl_search.search.workers import LocalBudget
    from tests.search.test_study import run_small_search

    assert is_database_server(open_storage(postgres_url, heartbeat=False))
    study = run_small_search(tiny_synthetic, postgres_url, "liar", LocalBudget(0), 0)
    assert study.sampler._constant_liar is True
