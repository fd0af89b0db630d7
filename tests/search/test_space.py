"""Search-space files: bundled spaces load, bad ones are rejected naming the key."""

from pathlib import Path

import optuna
import pytest

from mtl_search.errors import UserError
from mtl_search.search.bundled import SPACES_DIR
from mtl_search.search.space import load_space

SPACE_FILES = sorted(SPACES_DIR.glob("*.yaml"))


@pytest.mark.parametrize("path", SPACE_FILES, ids=lambda p: p.name)
def test_every_bundled_space_loads_and_samples_a_buildable_candidate(path, tiny_synthetic3):
    from mtl_search.architectures import build_model
    from mtl_search.data.sequences import make_sequences
    from mtl_search.data.table import make_table_data, targets_from_declarations
    from tests.helpers import spend_and_churn

    space = load_space(path)
    # each space on data it is meant for (three tasks either way)
    data = {
        "sequences": lambda: make_sequences(rows=200, max_length=6),
        "tabular": lambda: make_table_data(
            spend_and_churn(rows=200), targets_from_declarations(["churn:binary", "spend:regression", "d:regression"])
        ),
    }.get(path.stem, lambda: tiny_synthetic3)()
    space.check_stem(data.input_schema, data.name)
    study = optuna.create_study(directions=["minimize"] * 3, sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(5):
        trial = study.ask()
        candidate = space.sample(trial, data.task_names)
        build_model(candidate["architecture"], data.input_schema, data.tasks)
        study.tell(trial, [0.0, 0.0, 0.0])


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text,message",
    [
        ("families: {tree: {}}\ntraining: {epochs: 3, colour: red}\n", "key training.colour: unknown key"),
        ("families: {tree: {depth: three}}\n", "key families.tree.depth: Input should be a valid integer"),
        ("families: {tree: {depth: {low: 4, high: 2}}}\n", "key families.tree.depth: empty range"),
        ("families: {tree: {width: {choices: []}}}\n", "key families.tree.width: empty choices"),
        ("families: {}\n", "key families"),
        ("families: {treee: {}}\n", "key families.treee"),
        ("families: [tree\n", "not valid YAML at line"),
        ("- just\n- a list\n", "mapping of sections"),
        ("families: {tree: {}}\npruning: {rule: mean}\n", "key pruning.rule: Input should be 'median' or 'projected'"),
        # numbers out of bounds, caught before any trial trains (a batch of -5 or a learning rate of 0 "trained" untrained networks)
        ("families: {tree: {}}\ntraining: {batch_size: -5}\n", "key training.batch_size: must be at least 1, got -5"),
        (
            "families: {tree: {}}\ntraining: {learning_rate: {low: 0.0, high: 0.01}}\n",
            "key training.learning_rate: must be more than 0, got 0",
        ),
        ("families: {tree: {}}\ntraining: {epochs: 0}\n", "key training.epochs: must be at least 1, got 0"),
        (
            "families: {tree: {}}\nblock: {dropout: {choices: [0.1, 1.5]}}\n",
            "key block.dropout: must be less than 1, got 1.5",
        ),
        ("families: {tree: {}}\ntower: {width: 0}\n", "key tower.width: must be at least 1, got 0"),
        ("families: {mmoe: {experts: 0}}\n", "key families.mmoe.experts: must be at least 1, got 0"),
        (
            "families: {ple: {expert_width: {low: 0, high: 8}}}\n",
            "key families.ple.expert_width: must be at least 1, got 0",
        ),
        (
            "families: {tree: {}}\nloss_weighting: {dwa: {temperature: 0}}\n",
            "key loss_weighting.dwa.temperature: must be more than 0, got 0",
        ),
        (
            "families: {mmoe: {expert_depth: {choices: [0, 1]}}}\n",
            "key families.mmoe.expert_depth: must be at least 1, got 0",
        ),
        (
            "families: {cross_stitch: {alpha_self: 1.2}}\n",
            "key families.cross_stitch.alpha_self: must be at most 1, got 1.2",
        ),
        (
            "families: {ple: {shared_experts: {low: 0, high: 2}, task_experts: 0}}\n",
            "key families.ple: shared_experts and task_experts can both be 0",
        ),
        # nan and inf pass every bound check (comparisons are false), then failed each trial
        (
            "families: {tree: {}}\ntraining: {learning_rate: .nan}\n",
            "key training.learning_rate: Input should be a finite number (got nan)",
        ),
        (
            "families: {tree: {}}\ntraining: {learning_rate: {low: 0.001, high: .inf}}\n",
            "key training.learning_rate.high: Input should be a finite number",
        ),
        (
            "families: {tree: {}}\nblock: {dropout: {choices: [0.1, .nan]}}\n",
            "key block.dropout.choices.1: Input should be a finite number",
        ),
        ("families: {tree: {}}\npruning: {margin: .inf}\n", "key pruning.margin: Input should be a finite number"),
        # names checked at load time, every choice included (they used to fail only the trials drawing them)
        (
            "families: {tree: {}}\nblock: {activation: sigmoidz}\n",
            "key block.activation: 'sigmoidz' is not an activation (expected one of relu, gelu",
        ),
        (
            "families: {tree: {}}\nblock: {activation: {choices: [relu, nope]}}\n",
            "key block.activation: 'nope' is not an activation",
        ),
        (
            "families: {tree: {}}\nblock: {norm: {choices: [none, group]}}\n",
            "key block.norm: 'group' is not a norm (expected one of none, batch, layer)",
        ),
        (
            "families: {tree: {}}\ntraining: {optimizer: {choices: [adam, rmsprop]}}\n",
            "key training.optimizer: 'rmsprop' is not an optimizer (expected one of adam, adamw, sgd)",
        ),
        # a step Optuna would only warn about, shrinking the range (here to the constant 0.001)
        (
            "families: {tree: {}}\ntraining: {learning_rate: {low: 0.001, high: 0.01, step: 2}}\n",
            "key training.learning_rate: step 2 is larger than the range 0.001 to 0.01 (high - low must be a multiple of step)",
        ),
        (
            "families: {tree: {}}\ntraining: {learning_rate: {low: 0.001, high: 0.01, step: 0.004}}\n",
            "key training.learning_rate: step 0.004 does not divide the range",
        ),
        (
            "families: {tree: {width: {low: 8, high: 64, step: 10}}}\n",
            "key families.tree.width: step 10 does not divide the range 8 to 64",
        ),
        (
            "families: {tree: {width: {low: 8, high: 64, step: 0}}}\n",
            "key families.tree.width: step must be at least 1, got 0",
        ),
        (
            "families: {tree: {}}\ntraining: {learning_rate: {low: 0.001, high: 0.01, step: 0.001, log: true}}\n",
            "a log range cannot have a step",
        ),
        # strict types: YAML's true is not 1, nor 'yes' a boolean
        (
            "families: {tree: {}}\ntraining: {epochs: true}\n",
            "key training.epochs: Input should be a valid integer (got True)",
        ),
        (
            "families: {tree: {}}\ntraining: {learning_rate: {low: 0.001, high: 0.01, log: 'yes'}}\n",
            "key training.learning_rate.log: Input should be a valid boolean (got 'yes')",
        ),
        ("families: {tree: {}}\npruning: {enabled: 'yes'}\n", "key pruning.enabled: Input should be a valid boolean"),
        # a missing section is named, not quoted with the whole space
        ("training: {epochs: 3}\n", "key families: required, but missing"),
        # YAML keeps the last of two equal keys: the first training section would be dropped
        (
            "families: {tree: {}}\ntraining: {epochs: 3}\ntraining: {batch_size: 4}\n",
            "key training appears twice (line 3)",
        ),
        ("families: {tree: {}}\ntraining: {epochs: 3, epochs: 4}\n", "key epochs appears twice (line 2)"),
        ("families: {tree: {}}\nensemble: {members: 0}\n", "key ensemble.members: must be at least 1"),
        ("families: {tree: {}}\nensemble: {members: {choices: [1, 100]}}\n", "ensemble.members: must be at most 64"),
        ("families: {tree: {}}\nensemble: {size: 4}\n", "key ensemble.size"),
    ],
)
def test_bad_space_files_name_the_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(UserError) as error:
        load_space(path)
    assert str(error.value).startswith(f"space file {path}: ")
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_a_space_step_that_divides_the_range_is_kept(tmp_path):
    space = load_space(
        write(
            tmp_path,
            "families: {tree: {width: {low: 8, high: 64, step: 8}}}\n"
            "training: {learning_rate: {low: 0.001, high: 0.01, step: 0.001}, epochs: 2, weight_decay: 0}\n",
        )
    )
    assert (space.families["tree"].width.step, space.training.learning_rate.step) == (8, 0.001)
    assert space.training.weight_decay == 0.0  # an int where a float is expected is still fine


@pytest.mark.parametrize(
    "content", [bytes(range(256)) * 4, b"description: caf\xe9\nfamilies: {tree: {}}\n"], ids=["binary", "latin-1"]
)
def test_a_space_file_that_is_not_utf8_is_named(tmp_path, content):
    path = tmp_path / "space.yaml"
    path.write_bytes(content)
    with pytest.raises(UserError) as error:
        load_space(path)
    assert str(error.value) == f"space file {path}: not UTF-8 text"


def test_yaml_merge_keys_are_not_duplicates(tmp_path):
    space = load_space(write(tmp_path, "families: {tree: {}}\ntraining:\n  <<: {epochs: 3}\n  batch_size: 4\n"))
    assert (space.training.epochs, space.training.batch_size) == (3, 4)


def test_stem_keys_the_data_s_stem_would_ignore_are_refused(tiny_synthetic3, tmp_path):
    sequences = load_space("sequences")
    with pytest.raises(UserError) as error:
        sequences.check_stem(tiny_synthetic3.input_schema, tiny_synthetic3.name)
    assert str(error.value) == (
        f"space file {SPACES_DIR / 'sequences.yaml'}: key stem.sequence_encoder needs sequence data, "
        "but data 'synthetic' has vector inputs; use such data or a space without stem.sequence_encoder"
    )
    tabular = {"kind": "tabular", "numeric": 2, "categorical": [3]}
    with pytest.raises(
        UserError, match="key stem.sequence_encoder needs sequence data, but data 'customers' has tabular inputs"
    ):
        sequences.check_stem(tabular, "customers")
    sequences.check_stem({"kind": "sequence", "vocabulary": 9, "max_length": 4, "numeric": 0}, "sequences")
    # the embedding width is read by the tabular and the sequence stems, not by plain vectors
    embedding = load_space(write(tmp_path, "families: {tree: {}}\nstem: {embedding_dim: 4}\n"))
    embedding.check_stem(tabular, "customers")
    with pytest.raises(
        UserError, match="key stem.embedding_dim needs tabular or sequence data, but data 'synthetic' has vector"
    ):
        embedding.check_stem(tiny_synthetic3.input_schema, tiny_synthetic3.name)
    load_space("default").check_stem(tiny_synthetic3.input_schema, tiny_synthetic3.name)  # no stem keys: any data


def test_run_search_refuses_a_space_that_does_not_fit_the_data_before_storing_a_study(tiny_synthetic, tmp_path):
    from mtl_search.search.runner import SearchSettings, run_search

    url = f"sqlite:///{tmp_path / 'studies.db'}"
    with pytest.raises(UserError, match="key stem.sequence_encoder needs sequence data"):
        run_search(tiny_synthetic, load_space("sequences"), SearchSettings(study_name="s", storage=url, n_trials=1))
    assert optuna.study.get_all_study_names(url) == []


def test_a_missing_space_file_is_named(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        load_space(tmp_path / "nope.yaml")


def test_an_unknown_space_name_lists_the_bundled_ones():
    with pytest.raises(UserError) as error:
        load_space("nosuch")
    bundled = ", ".join(path.stem for path in SPACE_FILES)
    assert str(error.value) == f"space file nosuch: no such file (bundled spaces, by name: {bundled})"


def test_bundled_space_by_short_name():
    assert load_space("default").families.keys() == load_space(SPACES_DIR / "default.yaml").families.keys()


def test_each_pruning_rule_brings_its_defaults_unless_the_file_sets_them(tmp_path):
    from mtl_search.search.pruning import settings_from_section, with_pruning_options

    # the default rule since 2026-12-02 is projected, with its own defaults
    default = load_space(write(tmp_path, "families: {tree: {}}\n")).pruning
    assert (
        default.rule,
        default.margin,
        default.min_dominators,
        default.min_dominator_fraction,
        default.warmup_fraction,
    ) == ("projected", 0.0, 1, 0.0, 0.125)
    median = load_space(write(tmp_path, "families: {tree: {}}\npruning: {rule: median}\n")).pruning
    assert (
        median.rule,
        median.margin,
        median.min_dominators,
        median.min_dominator_fraction,
        median.warmup_fraction,
    ) == ("median", 0.05, 2, 0.5, 0.0)
    projected = load_space(write(tmp_path, "families: {tree: {}}\npruning: {rule: projected, min_dominators: 2}\n"))
    assert (
        projected.pruning.margin,
        projected.pruning.min_dominators,
        projected.pruning.min_dominator_fraction,
        projected.pruning.warmup_fraction,
    ) == (0.0, 2, 0.0, 0.125)
    assert settings_from_section(projected.pruning).rule == "projected"
    # the command line's --prune-rule does the same to a space file: what the file sets stays
    with_margin = load_space(write(tmp_path, "families: {tree: {}}\npruning: {margin: 0.1}\n"))
    assert (with_margin.pruning.rule, with_margin.pruning.margin, with_margin.pruning.min_dominators) == (
        "projected",
        0.1,
        1,
    )
    switched = with_pruning_options(with_margin, rule="median")
    assert (
        switched.pruning.rule,
        switched.pruning.margin,
        switched.pruning.min_dominators,
        switched.pruning.min_dominator_fraction,
    ) == ("median", 0.1, 2, 0.5)
    assert with_pruning_options(switched, rule="projected").pruning == with_margin.pruning
    # and switching a projected space back to median brings back the median rule's defaults
    back = with_pruning_options(projected, rule="median").pruning
    assert (back.rule, back.margin, back.min_dominators, back.min_dominator_fraction, back.warmup_fraction) == (
        "median",
        0.05,
        2,
        0.5,
        0.0,
    )


def test_an_ensemble_section_samples_the_members_into_the_architecture(tmp_path):
    space = load_space(write(tmp_path, "families: {tree: {}}\nensemble: {members: {choices: [1, 4]}}\n"))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(12):
        trial = study.ask()
        architecture = space.sample(trial, ["a", "b"])["architecture"]
        members = trial.params["ensemble.members"]
        seen.add(members)
        assert architecture.get("ensemble") == ({"members": 4} if members == 4 else None)
    assert seen == {1, 4}
    plain = load_space(write(tmp_path, "families: {tree: {}}\n")).sample(optuna.create_study().ask(), ["a", "b"])
    assert "ensemble" not in plain["architecture"]
