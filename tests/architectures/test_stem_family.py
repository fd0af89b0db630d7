"""The stem family: shared and task-specific embeddings, all forward, task-specific backward."""

import math

import optuna
import pytest
import torch

from mtl_search.architectures import build_model, get_family, summarize, validate_spec
from mtl_search.errors import UserError
from mtl_search.search.space import load_space, parse_space
from mtl_search.tasks import Task
from tests.architectures.family_checks import (
    assert_gradients_reach_every_parameter,
    assert_shared_parameters_are_those_several_tasks_reach,
    assert_training_lowers_loss,
    regression_tasks,
    with_common,
)
from tests.training.test_population import tabular_data

TABLE = {"kind": "tabular", "numeric": 2, "categorical": [3, 5]}
SPEC = with_common({"family": "stem", "experts": 2, "expert_widths": [6], "embedding_dim": 3})


def table_inputs(rows: int = 16, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    codes = torch.stack([torch.randint(0, c, (rows,), generator=generator) for c in TABLE["categorical"]], dim=1)
    return {"numeric": torch.randn(rows, TABLE["numeric"], generator=generator), "categorical": codes}


def build(spec=SPEC, n_tasks: int = 3, schema=TABLE):
    torch.manual_seed(0)
    return build_model(spec, schema, regression_tasks(n_tasks))


def test_builds_one_embedding_set_per_task_plus_a_shared_one():
    model = build()
    assert list(model.stem.tasks) == ["task1", "task2", "task3"]
    # each set: 2 numeric columns and 2 categorical columns of width 3
    assert model.stem.set_width == 2 + 2 * 3
    assert model.stem.out_shape == (4 * 8,)
    assert set(model.body.experts) == {"shared", "task1", "task2", "task3"}
    assert summarize(SPEC, ["task1", "task2", "task3"]) == (
        "stem 2x6 experts per set, shared + 3 task embedding sets, emb 3 tower=4"
    )


def test_a_task_loss_gives_no_gradient_to_another_task_embeddings_or_experts_yet_reads_them():
    model = build()
    inputs = table_inputs()
    outputs = model(inputs)
    outputs["task1"].pow(2).mean().backward()
    stem, body = model.stem, model.body
    assert stem.tasks["task1"].embedding_weights.grad.abs().sum() > 0
    assert stem.shared.embedding_weights.grad.abs().sum() > 0
    for other in ("task2", "task3"):
        for parameter in [stem.tasks[other].embedding_weights, *body.experts[other].parameters()]:
            assert parameter.grad is None or not parameter.grad.any()
    # all forward: changing task2's tables changes task1's prediction
    model.eval()
    before = model(inputs)["task1"].detach()
    with torch.no_grad():
        stem.tasks["task2"].embedding_weights.add_(1.0)
    assert not torch.allclose(model(inputs)["task1"], before)


def test_shared_parameters_are_the_shared_set_and_its_experts():
    model = build()
    inputs = table_inputs()
    assert_gradients_reach_every_parameter(model, inputs)
    assert_shared_parameters_are_those_several_tasks_reach(model, inputs)
    shared = {id(p) for p in model.shared_parameters()}
    assert id(model.stem.shared.embedding_weights) in shared
    assert not {id(p) for p in model.stem.tasks.parameters()} & shared


def _set(linear: torch.nn.Linear, weight: list[list[float]], bias: list[float]) -> None:
    with torch.no_grad():
        linear.weight.copy_(torch.tensor(weight))
        linear.bias.copy_(torch.tensor(bias))


def test_forward_matches_a_hand_computed_mixture_over_every_set():
    # one categorical column of 2 values, width 1 per table, no numeric column; one expert per set
    schema = {"kind": "tabular", "numeric": 0, "categorical": [2]}
    spec = {"family": "stem", "experts": 1, "expert_widths": [1], "embedding_dim": 1}
    spec |= {"block": {"activation": "tanh"}, "tower": {"widths": []}}
    model = build_model(spec, schema, [Task("a", "regression"), Task("b", "regression")])
    tables = {"shared": [0.5, -1.0], "a": [2.0, 0.25], "b": [-0.75, 1.5]}
    experts = {"shared": (1.5, 0.1), "a": (-0.5, 0.0), "b": (0.8, -0.2)}
    # gate weights: one row per expert (shared, a, b), one column per input (shared, own)
    gates = {
        "a": ([[1.0, 0.0], [0.0, 1.0], [0.5, -0.5]], [0.0, 0.1, -0.1]),
        "b": ([[0.3, 0.2], [-1.0, 0.4], [0.0, 1.0]], [0.2, 0.0, 0.0]),
    }
    heads = {"a": (2.0, 0.5), "b": (-1.0, 0.25)}
    with torch.no_grad():
        model.stem.shared.embedding_weights.copy_(torch.tensor(tables["shared"]))
        for task in ("a", "b"):
            model.stem.tasks[task].embedding_weights.copy_(torch.tensor(tables[task]))
    for name, (w, b) in experts.items():
        _set(model.body.experts[name][0][0][0], [[w]], [b])
    for task, (w, b) in gates.items():
        _set(model.body.gates[task].linear, w, b)
    for task, (w, b) in heads.items():
        _set(model.towers[task][0], [[w]], [b])

    for code in (0, 1):
        embedded = {name: table[code] for name, table in tables.items()}
        expert_out = {name: math.tanh(experts[name][0] * embedded[name] + experts[name][1]) for name in experts}
        for task in ("a", "b"):
            # the gate reads [shared, own]; it mixes the experts in set order: shared, a, b
            gate_in = [embedded["shared"], embedded[task]]
            w, b = gates[task]
            logits = [sum(w[e][j] * gate_in[j] for j in range(2)) + b[e] for e in range(3)]
            weights = [math.exp(v) / sum(math.exp(u) for u in logits) for v in logits]
            mixed = sum(weight * expert_out[name] for weight, name in zip(weights, ("shared", "a", "b")))
            expected = heads[task][0] * mixed + heads[task][1]
            got = model({"numeric": torch.zeros(1, 0), "categorical": torch.tensor([[code]])})[task]
            assert got.item() == pytest.approx(expected, rel=1e-5), (code, task)


def test_other_inputs_are_refused_in_one_line_when_the_space_is_checked_and_when_built():
    space = parse_space({"families": {"stem": {}}}, "mine.yaml")
    with pytest.raises(UserError, match=r"^space file mine.yaml: key families.stem: family stem reads tabular"):
        space.check_stem({"kind": "vector", "size": 4}, "synthetic")
    space = parse_space({"families": {"stem": {}, "mmoe": {}}}, "mine.yaml")
    with pytest.warns(UserWarning, match=r"^space file mine.yaml: family stem cannot read vector inputs; left out"):
        space.check_stem({"kind": "vector", "size": 4}, "synthetic")
    assert list(space.families) == ["mmoe"]
    space.check_stem(TABLE, "table")  # tables are fine
    with pytest.raises(UserError, match="family stem reads tabular inputs only, but the data has image inputs"):
        build(schema={"kind": "image", "shape": [1, 8, 8]})
    # a table without categorical columns: every set is its numeric features
    model = build(schema={"kind": "tabular", "numeric": 3, "categorical": []})
    assert model.stem.out_shape == (4 * 3,)
    assert model({"numeric": torch.randn(5, 3), "categorical": torch.zeros(5, 0, dtype=torch.long)})["task1"].shape == (
        5,
        1,
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"experts": 0}, "experts must be a whole number >= 1"),
        ({"expert_widths": []}, "expert_widths must be a non-empty list"),
        ({"embedding_dim": 0}, "embedding_dim must be a whole number >= 1"),
        ({"stem": {"embedding_dim": 4}}, "embedding_dim is set twice"),
    ],
)
def test_bad_specs_are_refused_naming_the_key(change, message):
    with pytest.raises(UserError, match=message):
        validate_spec(SPEC | change, ["task1", "task2"])


def test_the_stem_section_width_and_numeric_encoding_apply_to_every_set():
    spec = {k: v for k, v in SPEC.items() if k != "embedding_dim"}
    schema = TABLE | {"numeric_quantiles": [[-2.0, -1.0, 0.0, 1.0, 2.0]] * 2}
    stem = {"embedding_dim": 2, "numeric_encoding": "piecewise_linear", "numeric_bins": 4, "numeric_embedding_dim": 3}
    model = build(spec | {"stem": stem}, 2, schema)
    # numeric: 2 columns x 3 features; categorical: 2 columns x width 2
    assert model.stem.set_width == 6 + 4
    assert model(table_inputs(rows=5))["task1"].shape == (5, 1)


def test_an_ensemble_stacks_the_members_rows():
    model = build(SPEC | {"stem": {"ensemble_members": 3}}, 2)
    model.train()
    assert model(table_inputs(rows=4))["task1"].shape == (12, 1)
    model.eval()
    assert model(table_inputs(rows=4))["task1"].shape == (4, 1)


def test_an_empty_section_searches_the_documented_default_ranges():
    space = parse_space({"families": {"stem": {}}})
    assert space.families["stem"] == get_family("stem").space_model()()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trials = [study.ask() for _ in range(12)]
    specs = [space.sample(trial, ["task1", "task2"])["architecture"] for trial in trials]
    assert {s["experts"] for s in specs} == {1, 2}
    assert {s["embedding_dim"] for s in specs} <= {4, 8, 16} and len({s["embedding_dim"] for s in specs}) > 1
    # the family's parameters never take the stem section's names
    assert all(not name.startswith("stem.") for trial in trials for name in trial.params)


def test_training_lowers_every_task_loss():
    data = tabular_data()
    spec = with_common({"family": "stem", "experts": 2, "expert_widths": [16], "embedding_dim": 4}, tower=[8])
    sharing = assert_training_lowers_loss(data, spec, epochs=8)
    assert list(sharing["gates"]) == data.task_names


def test_the_bundled_tabular_space_offers_the_family_and_refuses_vectors(tiny_synthetic3):
    space = load_space("tabular")
    assert "stem" in space.families
    data = tabular_data()
    space.check_stem(data.input_schema, data.name)
    with pytest.raises(UserError, match="key stem.numeric_encoding needs tabular data"):
        space.check_stem(tiny_synthetic3.input_schema, tiny_synthetic3.name)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    families = set()
    for _ in range(8):
        spec = space.sample(study.ask(), data.task_names)["architecture"]
        families.add(spec["family"])
        model = build_model(spec, data.input_schema, data.tasks)
        assert set(model(data.test.inputs)) == set(data.task_names)
    assert families == {"tree", "stem"}
