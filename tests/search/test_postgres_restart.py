"""A PostgreSQL server restarting under a running search: the workers ride it out and no trial is lost."""

from __future__ import annotations

import re

import pytest

from tests.search.parallel_helpers import RAN_TO_END, run_args, start_cli, states, trials, wait_for, write_space

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

TRIALS = 16
DOWN_SECONDS = 2


def test_two_workers_ride_out_a_server_restart_and_every_trial_completes(own_postgres_server, tmp_path):
    url = own_postgres_server.create_database()
    # long enough trials (tens of epochs) that the restart lands while the workers train and write
    space = write_space(tmp_path, epochs=25)
    args = run_args(space, url, "restarted", TRIALS, "--workers", "2")
    process = start_cli(args, tmp_path, env={"MTL_SEARCH_STORAGE_RETRY": "60"})
    try:
        # mid-run: some trials told, most still to come
        wait_for(lambda: sum(states(url, "restarted")[state.name] for state in RAN_TO_END) >= 2, timeout=240)
        own_postgres_server.restart(DOWN_SECONDS)
        out, err = process.communicate(timeout=600)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert process.returncode == 0, err
    assert "Traceback" not in err, err
    # the outage was met (the test is not vacuous), and told once per worker, in one line
    notices = [line for line in err.splitlines() if "storage unreachable" in line]
    assert notices, err
    assert all(re.match(r"mtl-search worker \d+: storage unreachable, retrying for up to 60 s: ", n) for n in notices)
    assert len(notices) == len({n.split(":")[0] for n in notices}), notices
    found = trials(url, "restarted")
    assert len(found) == TRIALS, [t.state.name for t in found]
    assert all(t.state in RAN_TO_END for t in found), [t.state.name for t in found]
