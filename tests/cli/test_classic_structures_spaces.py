"""The bundled spaces of the classic structures run end to end from the command line."""

import json

import optuna
import pytest

from mtl_search.search.bundled import SPACES_DIR
from tests.helpers import assert_one_line_error

SYNTHETIC = ("--data-option", "rows=300", "--data-option", "dim=8")
SEQUENCES = ("--data", "sequences", "--data-option", "rows=300", "--data-option", "max_length=8")


@pytest.mark.slow
@pytest.mark.parametrize(
    "space, data",
    [
        ("relationship", SYNTHETIC),
        ("hierarchy", SYNTHETIC),
        ("sequences", SEQUENCES),
    ],
)
def test_space_runs_three_trials(cli, storage_url, space, data):
    result = cli(
        "run",
        "--space",
        str(SPACES_DIR / f"{space}.yaml"),
        "--trials",
        "3",
        "--epochs",
        "1",
        "--storage",
        storage_url,
        "--study-name",
        space,
        "--quiet",
        *data,
    )
    assert result.code == 0, result
    study = optuna.load_study(study_name=space, storage=storage_url)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 3, [t.user_attrs.get("fail_reason") for t in study.trials]
    for trial in complete:
        architecture = trial.user_attrs["candidate"]["architecture"]
        if space == "relationship":
            assert trial.user_attrs["sharing"]["relationship"]["tasks"] == ["task1", "task2"]
        if architecture["family"] == "hierarchy":
            assert set(architecture["head_depths"]) == {t["name"] for t in study.user_attrs["mtl_search"]["tasks"]}
        if space == "sequences":
            assert architecture["stem"]["sequence_encoder"] in ("gru", "lstm", "attention")
    if space == "relationship":
        # the front shows the learned task correlation beside the architecture
        assert "| corr" in result.out
        front = json.loads(cli("pareto", space, "--storage", storage_url, "--format", "json").out)
        assert all(row["learned"].startswith("corr task1~task2") for row in front)


def test_bad_sequence_option_is_a_one_line_error(cli, storage_url):
    result = cli("run", "--data", "sequences", "--data-option", "max_length=1", "--storage", storage_url, "--quiet")
    assert_one_line_error(result, "max_length=1")


def test_bad_encoder_in_a_space_is_a_one_line_error(cli, storage_url, tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("families: {tree: {}}\nstem: {sequence_encoder: rnn}\n")
    assert_one_line_error(
        cli("run", "--space", str(space), "--storage", storage_url, "--quiet"), "stem.sequence_encoder"
    )
