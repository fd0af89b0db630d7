"""Architecture families and the architecture spec.

The spec is plain JSON data::

    {"family": "tree", "widths": [64, 64], "groups": [[["a", "b"]], [["a"], ["b"]]],
     "block": {"type": "mlp", "norm": "none", "activation": "relu", "dropout": 0.0},
     "tower": {"widths": [16]}, "stem": {}}

``family`` picks the builder; ``block``, ``tower``, ``stem``, ``relationship`` and ``ensemble``
are common to every family; the other keys are the family's own. :func:`build_model` turns a
spec, an input schema and the task list into a :class:`MultiTaskModel` (an
:class:`EnsembleModel` of several when ``ensemble.members`` is above 1).
"""

from __future__ import annotations

import copy
import json
from typing import Any, Sequence

from torch import nn

from mtl_search.architectures.base import Body, Family, MultiTaskModel, make_towers
from mtl_search.architectures.blocks import (
    BlockFactory,
    CustomStem,
    build_stem,
    check_keys,
    validate_block,
    validate_stem,
    validate_tower,
)
from mtl_search.architectures.ensemble import EnsembleModel, ensemble_members, validate_ensemble, without_ensemble
from mtl_search.architectures.registry import family_names, get_family, register_family
from mtl_search.architectures.stems import Stem, register_stem
from mtl_search.architectures.relationship import prior_from_spec, validate_relationship
from mtl_search.errors import UserError
from mtl_search.tasks import Task, validate_conditions
from mtl_search.learned import summarize_learned

# Keys every family's spec may have; a family declares its own as ``required_keys`` and
# ``optional_keys`` (docs/reference/architecture-spec.md, "Spec keys").
COMMON_KEYS = ("family", "block", "tower", "stem", "relationship", "ensemble")


def validate_spec(spec: dict[str, Any], task_names: Sequence[str]) -> None:
    """Raise UserError naming the key at fault if ``spec`` cannot be built for these tasks."""
    if not isinstance(spec, dict) or "family" not in spec:
        raise UserError("architecture spec: expected an object with a 'family' key")
    family = get_family(spec["family"])
    where = f"{family.name} spec"
    check_keys(spec, (*family.required_keys, *family.optional_keys, *COMMON_KEYS), where)
    missing = [key for key in family.required_keys if key not in spec]
    if missing:
        raise UserError(f"{where}: {missing[0]} is missing (required: {', '.join(family.required_keys)})")
    family.validate(spec, task_names)
    validate_block(spec.get("block", {}), where)
    validate_tower(spec.get("tower", {}), where)
    validate_stem(spec.get("stem"), where)
    if spec.get("relationship") is not None:
        validate_relationship(spec["relationship"])
    if "ensemble" in spec:
        validate_ensemble(spec["ensemble"], where)


def reads_input_kind(family: Family, kind: Any) -> bool:
    """Whether ``family`` can read inputs of ``kind`` ("custom": a user's own stem)."""
    return family.input_kinds is None or kind in family.input_kinds


def check_input_kind(family: Family, kind: Any, where: str = "") -> None:
    """UserError if ``family`` cannot read inputs of ``kind`` ("custom": a user's own stem)."""
    if reads_input_kind(family, kind):
        return
    shown = "a custom stem's output" if kind == "custom" else f"{kind} inputs"
    raise UserError(
        f"{where}family {family.name} reads {' or '.join(family.input_kinds)} inputs only, but the data has {shown}"
    )


def build_model(
    spec: dict[str, Any],
    input_schema: dict[str, Any],
    tasks: Sequence[Task],
    stem: nn.Module | None = None,
) -> MultiTaskModel:
    """Build the network a spec describes.

    ``stem`` replaces the stem built from ``input_schema`` (bring your own encoder: wrap
    it in :class:`CustomStem` so that its output shape is known). With ``ensemble.members``
    K above 1 the result is an :class:`EnsembleModel` of K networks, built one after the other
    from the random state (each member gets its own copy of ``stem``).
    """
    task_names = [task.name for task in tasks]
    validate_spec(spec, task_names)
    members = ensemble_members(spec)
    if members > 1:
        member_spec = without_ensemble(spec)
        networks = [
            build_model(member_spec, input_schema, tasks, stem=copy.deepcopy(stem) if stem is not None else None)
            for _ in range(members)
        ]
        return EnsembleModel(networks, tasks, spec)  # type: ignore[return-value]
    validate_conditions(tasks)
    family = get_family(spec["family"])
    check_input_kind(family, input_schema.get("kind") if stem is None else "custom")
    if stem is None:
        stem = family.build_stem(spec, input_schema, task_names)
    stem_module = stem if stem is not None else build_stem(input_schema, spec.get("stem"))
    in_shape = tuple(stem_module.out_shape)
    source = f"{input_schema.get('kind')} input" if stem is None else "custom stem's output"
    blocks = BlockFactory.from_spec(spec.get("block", {}), in_shape, f"{family.name} spec", source)
    body = family.build(spec, in_shape, task_names, blocks)
    tower = spec.get("tower", {})
    towers = make_towers(body, tasks, tower.get("widths", []), spec.get("block", {}).get("activation", "relu"))
    body.attach_heads(towers, tasks)
    relationship = prior_from_spec(spec.get("relationship"), towers, task_names)
    scales = {task.name: task.target_scale for task in tasks if task.kind == "regression"}
    return MultiTaskModel(stem_module, body, towers, spec, relationship=relationship, output_scales=scales)


def summarize(spec: dict[str, Any], task_names: Sequence[str]) -> str:
    """The architecture in one line: family, structure, tower."""
    family = get_family(spec["family"])
    tower = spec.get("tower", {}).get("widths", [])
    text = f"{spec['family']} {family.summary(spec, task_names)}"
    if tower:
        text += " tower=" + "x".join(str(w) for w in tower)
    if (spec.get("relationship") or {}).get("weight"):
        text += f" rel={spec['relationship']['weight']:.2g}"
    # the searched input encoder: networks that differ only there must not read alike
    stem = spec.get("stem") or {}
    if stem.get("sequence_encoder"):
        text += f" seq={stem['sequence_encoder']}" + (
            f"/{stem['sequence_width']}" if stem.get("sequence_width") else ""
        )
    if stem.get("embedding_dim"):
        text += f" emb={stem['embedding_dim']}"
    encoding = stem.get("numeric_encoding", "none")
    if encoding != "none":
        detail = (
            stem.get("numeric_bins", 16) if encoding == "piecewise_linear" else stem.get("periodic_frequencies", 16)
        )
        text += (
            f" num={'pl' if encoding == 'piecewise_linear' else 'per'}{detail}x{stem.get('numeric_embedding_dim', 16)}"
        )
    if (stem.get("ensemble_members") or 1) > 1:
        text += f" ens={stem['ensemble_members']}"
    if ensemble_members(spec) > 1:
        text += f" ensemble={ensemble_members(spec)}"
    return text


def spec_to_json(spec: dict[str, Any]) -> str:
    return json.dumps(spec, sort_keys=True)


def spec_from_json(text: str) -> dict[str, Any]:
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(f"architecture spec: not valid JSON ({error.msg} at line {error.lineno})") from None
    if not isinstance(spec, dict):
        raise UserError("architecture spec: expected a JSON object")
    return spec


__all__ = [
    "Body",
    "BlockFactory",
    "CustomStem",
    "EnsembleModel",
    "Family",
    "MultiTaskModel",
    "Stem",
    "build_model",
    "build_stem",
    "check_input_kind",
    "ensemble_members",
    "reads_input_kind",
    "family_names",
    "get_family",
    "register_family",
    "register_stem",
    "spec_from_json",
    "spec_to_json",
    "summarize",
    "summarize_learned",
    "validate_spec",
]
