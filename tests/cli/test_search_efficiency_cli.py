"""The command line of costs, pruning, affinity seeding and refinement."""

from __future__ import annotations

import json
import re

import pytest

from tests.helpers import assert_one_line_error

TINY = ["--data-option", "rows=300", "--data-option", "dim=10", "--epochs", "1", "--quiet"]


@pytest.mark.slow
def test_run_with_cost_objective_limit_and_seeding_then_pareto_and_affinity(cli, storage_url, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # rich wraps table headers to the terminal width
    result = cli(
        "run",
        *TINY,
        "--trials",
        "3",
        "--storage",
        storage_url,
        "--study-name",
        "costly",
        "--objective",
        "params",
        "--max-params",
        "14000",
        "--no-prune",
        "--seed-strategy",
        "affinity",
    )
    assert result.code == 0, result
    assert "params ↓" in result.out and "hypervolume:" in result.out and "over a hard limit" in result.out
    header = next(line for line in result.out.splitlines() if "trial" in line and "params ↓" in line)
    assert header.count("params") == 1  # the objective's column; no second column of the same count
    assert "task affinity" in result.out

    from mtl_search.search.study import load_existing

    study = load_existing("costly", storage_url)
    stored = study.user_attrs["mtl_search"]
    assert stored["space"]["pruning"]["enabled"] is False
    assert stored["space"]["objectives"]["max_params"] == 14000
    assert study.metric_names[-1] == "params"

    shown = cli("affinity", "costly", "--storage", storage_url)
    assert shown.code == 0 and "task1" in shown.out and "grouping order" in shown.out
    studies = cli("studies", "--storage", storage_url)
    assert "infeasible" in studies.out
    # seeding again is a no-op (the seeds went in when the study was new), and so is asking for it
    # on a study that was never seeded: the second says so
    again = cli(
        "run",
        *TINY,
        "--trials",
        "1",
        "--storage",
        storage_url,
        "--study-name",
        "costly",
        "--objective",
        "params",
        "--max-params",
        "14000",
        "--no-prune",
        "--seed-strategy",
        "affinity",
    )
    assert again.code == 0 and "affinity seeding only starts a new study" not in again.err, again
    assert cli("run", *TINY, "--trials", "1", "--storage", storage_url, "--study-name", "plain").code == 0
    late = cli(
        "run", *TINY, "--trials", "1", "--storage", storage_url, "--study-name", "plain", "--seed-strategy", "affinity"
    )
    assert (
        late.code == 0
        and "warning: study 'plain' has trials already, and affinity seeding only starts a new study" in late.err
    )


def test_bad_cost_and_pruning_flags_are_one_line_errors(cli, storage_url):
    assert_one_line_error(cli("run", "--objective", "flops", "--storage", storage_url), "--objective")
    assert_one_line_error(cli("run", "--max-params", "0", "--storage", storage_url), "--max-params")
    assert_one_line_error(cli("run", "--prune-warmup", "-1", "--storage", storage_url), "--prune-warmup")
    assert_one_line_error(cli("run", "--seed-strategy", "magic", "--storage", storage_url), "--seed-strategy")
    assert_one_line_error(cli("run", "--prune-budget", "seconds", "--storage", storage_url), "--prune-budget")
    assert_one_line_error(cli("run", "--prune-rule", "mean", "--storage", storage_url), "--prune-rule")
    assert_one_line_error(
        cli("run", "--prune-warmup-fraction", "1", "--storage", storage_url), "--prune-warmup-fraction", "less than 1"
    )
    assert_one_line_error(
        cli("run", "--seed-trees", "grown", "--storage", storage_url), "--seed-trees grown", "--seed-strategy affinity"
    )
    assert_one_line_error(
        cli("run", "--seed-strategy", "affinity", "--seed-trees", "bushy", "--storage", storage_url), "--seed-trees"
    )
    assert_one_line_error(
        cli("run", "--affinity-measure", "lookahead", "--storage", storage_url),
        "--affinity-measure lookahead",
        "--seed-strategy affinity",
        "families.tree.grouping affinity",
    )
    assert_one_line_error(
        cli("run", "--seed-strategy", "affinity", "--affinity-measure", "psychic", "--storage", storage_url),
        "--affinity-measure",
    )


def test_grown_seed_trees_from_the_command_line(cli, storage_url):
    result = cli(
        "run",
        *TINY,
        "--trials",
        "1",
        "--storage",
        storage_url,
        "--study-name",
        "grown",
        "--no-prune",
        "--seed-strategy",
        "affinity",
        "--seed-trees",
        "grown",
    )
    assert result.code == 0, result
    from mtl_search.search.study import load_existing

    record = load_existing("grown", storage_url).user_attrs["affinity"]
    # the default space's trees go 3 deep: 1 + 3 x (2 tasks - 1) = 4 grown trees (uniform would seed 2)
    assert record["settings"]["tree_shape"] == "grown" and record["seeded"] == 4
    # how each seeded tree did: the one --trials 1 ran, the three still queued
    lines = cli("affinity", "grown", "--storage", storage_url).out.splitlines()
    start = lines.index("seeded trees: the study's first 4 trials, fully shared first")
    assert re.match(r"  #0 complete, on the front: tree 0-\d:{task1,task2} ", lines[start + 1])
    assert lines[start + 2 : start + 5] == [f"  #{n} waiting: not started" for n in (1, 2, 3)]


def test_lookahead_affinity_from_the_command_line(cli, storage_url, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    result = cli(
        "run",
        *TINY,
        "--trials",
        "1",
        "--storage",
        storage_url,
        "--study-name",
        "tag",
        "--no-prune",
        "--seed-strategy",
        "affinity",
        "--affinity-measure",
        "lookahead",
    )
    assert result.code == 0, result
    from mtl_search.search.study import load_existing

    record = load_existing("tag", storage_url).user_attrs["affinity"]
    assert record["measure"] == "lookahead" and record["settings"]["measure"] == "lookahead"
    assert len(record["directed"]) == 2 and record["seeded"] == 2
    shown = cli("affinity", "tag", "--storage", storage_url)
    assert shown.code == 0 and "tag lookahead" in shown.out and "e-0" in shown.out


def test_a_space_that_searches_along_the_affinity_chain(cli, storage_url, tmp_path, monkeypatch):
    from mtl_search.search.bundled import SPACES_DIR

    monkeypatch.setenv("COLUMNS", "250")
    import yaml

    branching = yaml.safe_load((SPACES_DIR / "branching.yaml").read_text())
    branching["families"] = {"tree": branching["families"]["tree"] | {"grouping": "affinity"}}  # the tree alone
    space = tmp_path / "chain.yaml"
    space.write_text(yaml.safe_dump(branching))
    result = cli(
        "run",
        *TINY,
        "--data-option",
        "tasks=3",
        "--trials",
        "3",
        "--storage",
        storage_url,
        "--study-name",
        "chain",
        "--space",
        str(space),
        "--no-prune",
        "--affinity-measure",
        "lookahead",
    )
    assert result.code == 0, result
    from mtl_search.search.study import load_existing

    study = load_existing("chain", storage_url)
    record = study.user_attrs["affinity"]
    assert record["measure"] == "lookahead" and "seeded" not in record
    assert {p for t in study.trials for p in t.params if p.startswith("tree.")} >= {"tree.depth", "tree.split_0"}
    for trial in study.trials:
        assert all(
            partition in record["chain"] for partition in trial.user_attrs["candidate"]["architecture"]["groups"]
        )
    shown = cli("affinity", "chain", "--storage", storage_url)
    assert shown.code == 0 and "grouping order" in shown.out


def test_affinity_and_refine_name_what_is_missing(cli, storage_url):
    result = cli("run", *TINY, "--trials", "1", "--storage", storage_url, "--study-name", "plain")
    assert result.code == 0, result
    assert_one_line_error(cli("affinity", "plain", "--storage", storage_url), "'plain'", "--seed-strategy affinity")
    assert_one_line_error(cli("refine", "nowhere", "--storage", storage_url), "'nowhere'")
    assert_one_line_error(cli("refine", "plain", "--seeds", "0", "--storage", storage_url), "--seeds")


def test_pruning_replays_settings_on_an_unpruned_study(cli, storage_url, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # rich wraps table headers to the terminal width
    result = cli(
        "run",
        *TINY,
        "--epochs",
        "3",
        "--trials",
        "7",
        "--no-prune",
        "--storage",
        storage_url,
        "--study-name",
        "unpruned",
    )
    assert result.code == 0, result
    table = cli("pruning", "unpruned", "--storage", storage_url)
    assert table.code == 0, table
    assert "study's" in table.out and "front trials stopped" in table.out and "note:" not in table.out
    import json

    data = json.loads(cli("pruning", "unpruned", "--storage", storage_url, "--format", "json").out)
    # 8 median and 2 projected settings, each counting training in epochs and in optimiser steps (recorded by the trainer)
    assert data["trials_replayed"] == 7 and len(data["results"]) == 20
    assert [r["settings"]["budget"] for r in data["results"]].count("steps") == 10
    assert [r["settings"]["rule"] for r in data["results"]].count("projected") == 4
    # the study ran with --no-prune, but its stored default rule (projected, with its own defaults) is what the first row replays
    first = data["results"][0]["settings"]
    assert (first["rule"], first["min_dominator_fraction"], first["warmup_fraction"]) == ("projected", 0.0, 0.125)
    assert all(0 < r["epoch_share"] <= 1 for r in data["results"])
    # the wall time left, from the study's recorded epoch times: stopping epochs never adds time
    assert all(0 < r["time_share"] <= 1 for r in data["results"])
    assert all((r["time_share"] < 1) == (r["epoch_share"] < 1) for r in data["results"])
    # the foresight floors, for each distinct warm-up of the grid: keeping the exact front, and losing at most 5 %
    floors = data["foresight"]
    assert sorted({(f["warmup_epochs"], f["warmup_fraction"]) for f in floors}) == [(1, 0.0), (2, 0.0), (2, 0.125)]
    assert all(f["front_stopped"] == 0 and f["epsilon"] == 0 for f in floors if f["tolerance"] == 0)
    assert all(f["epsilon"] <= 0.05 + 1e-9 for f in floors)
    assert "foresight" in table.out and "time" in table.out


def test_prune_budget_from_the_command_line_is_stored_with_the_space(cli, storage_url):
    result = cli(
        "run", *TINY, "--trials", "2", "--prune-budget", "epochs", "--storage", storage_url, "--study-name", "steps"
    )
    assert result.code == 0, result
    from mtl_search.search.study import load_existing

    study = load_existing("steps", storage_url)
    assert study.user_attrs["mtl_search"]["space"]["pruning"]["budget"] == "epochs"  # not the default, steps
    assert all(entry["steps"] > 0 for trial in study.trials for entry in trial.user_attrs["history"])


def test_prune_rule_from_the_command_line_brings_its_defaults_and_is_stored(cli, storage_url):
    # (a space file's own values staying is tested in tests/search/test_space.py)
    from mtl_search.search.study import load_existing

    result = cli("run", *TINY, "--trials", "2", "--storage", storage_url, "--study-name", "default-rule")
    assert result.code == 0, result
    stored = load_existing("default-rule", storage_url).user_attrs["mtl_search"]["space"]["pruning"]
    assert (
        stored["rule"],
        stored["margin"],
        stored["min_dominators"],
        stored["min_dominator_fraction"],
        stored["warmup_fraction"],
    ) == ("projected", 0.0, 1, 0.0, 0.125)
    # the rule before 2026-12-02, with its own defaults
    result = cli(
        "run", *TINY, "--trials", "2", "--prune-rule", "median", "--storage", storage_url, "--study-name", "median"
    )
    assert result.code == 0, result
    stored = load_existing("median", storage_url).user_attrs["mtl_search"]["space"]["pruning"]
    assert (
        stored["rule"],
        stored["margin"],
        stored["min_dominators"],
        stored["min_dominator_fraction"],
        stored["warmup_fraction"],
    ) == ("median", 0.05, 2, 0.5, 0.0)
    # a fixed warm-up for the projected rule, from the command line
    result = cli(
        "run",
        *TINY,
        "--trials",
        "2",
        "--prune-rule",
        "projected",
        "--prune-warmup-fraction",
        "0",
        "--storage",
        storage_url,
        "--study-name",
        "projected-fixed",
    )
    assert result.code == 0, result
    assert (
        load_existing("projected-fixed", storage_url).user_attrs["mtl_search"]["space"]["pruning"]["warmup_fraction"]
        == 0.0
    )


def test_pruning_needs_enough_complete_trials(cli, storage_url):
    assert cli("run", *TINY, "--trials", "2", "--storage", storage_url, "--study-name", "short").code == 0
    assert_one_line_error(cli("pruning", "short", "--storage", storage_url), "'short'", "min_completed_trials")


def test_continuing_without_the_cost_flags_is_refused_naming_them(cli, storage_url):
    # a limit no candidate reaches: a continuation samples other candidates than the first run
    costly = ["--trials", "1", "--storage", storage_url, "--study-name", "cost", "--no-prune"]
    assert cli("run", *TINY, *costly, "--objective", "params", "--max-params", "10000000").code == 0
    assert_one_line_error(
        cli("run", *TINY, *costly),
        "study 'cost' has objectives task1/mse, task2/mse, params and this run task1/mse, "
        "task2/mse (missing params); pass --objective params; it also judged its trials under --max-params 10000000 and "
        "this run would judge them under no --max-params; pass --max-params 10000000, or use another --study-name",
    )
    result = cli("run", *TINY, *costly, "--objective", "params", "--max-params", "10000000")
    assert result.code == 0 and "warning" not in result.err
    from mtl_search.search.study import load_existing

    assert len(load_existing("cost", storage_url).trials) == 2
    # a study whose trials a run from before this check trained without its latency limit says so
    study = load_existing("cost", storage_url)
    meta = study.user_attrs["mtl_search"]
    meta["space"]["objectives"]["max_latency_ms"] = 1.5
    study.set_user_attr("mtl_search", meta)
    note = "were trained by a run that left out the study's --max-params 10000000 --max-latency-ms 1.5"
    listed = cli("studies", "--storage", storage_url)
    assert listed.code == 0 and "mtl-search studies: warning: study 'cost': trials 0, 1 " + note in listed.err
    front = cli("pareto", "cost", "--storage", storage_url, "--format", "json")
    assert front.code == 0 and "mtl-search pareto: warning: study 'cost': trials 0, 1 " + note in front.err
    json.loads(front.out)  # the warning stays off stdout
    continued = cli(
        "run", *TINY, *costly, "--objective", "params", "--max-params", "10000000", "--max-latency-ms", "1.5"
    )
    assert continued.code == 0 and "mtl-search run: warning: study 'cost': trials 0, 1 " + note in continued.err
