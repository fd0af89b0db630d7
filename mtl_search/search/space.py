"""Search spaces: YAML files that say what the search may vary.

A space file has these sections (all optional but ``families``)::

    description: free text
    training:   {epochs, learning_rate, batch_size, weight_decay, optimizer, schedule, warmup_fraction}
    block:      {type, norm, activation, dropout}       # backbone blocks, every family
    tower:      {depth, width}                          # task towers
    stem:       {embedding_dim, numeric_encoding, numeric_bins, numeric_embedding_dim, periodic_frequencies,
                 periodic_sigma, ensemble_members, sequence_encoder, sequence_width}  # tables, sequences
    relationship: {weight, ridge}                       # task-relationship prior on the towers
    ensemble:   {members}                               # independently trained copies, predictions averaged
    families:   {tree: {...}, mmoe: {...}, ...}         # the family is a categorical choice
    loss_weighting: {static: {...}, uncertainty: {...}} # so is the weighting method
    objectives: {metrics, extra, max_params, max_latency_ms}  # cost objectives and limits
    pruning:    {enabled, rule, warmup_epochs, warmup_fraction, min_completed_trials, margin, min_dominators,
                 min_dominator_fraction, budget}

Each value is a constant, ``{low: .., high: .., log: true}`` or ``{choices: [..]}``.
Loading validates everything and names the key at fault; :meth:`SearchSpace.sample`
turns one Optuna trial into a candidate (architecture spec, training settings, weighting).
"""

from __future__ import annotations

import os
import warnings
from types import MappingProxyType
from typing import Annotated, Any, Literal, Mapping, Sequence

import yaml
from pydantic import BaseModel, Field, PrivateAttr, ValidationError, field_validator, model_validator

from mtl_search.architectures import check_input_kind, get_family, reads_input_kind
from mtl_search.architectures.blocks import ACTIVATIONS, NORMS, stem_settings
from mtl_search.architectures.numeric import NUMERIC_ENCODINGS
from mtl_search.errors import OneLineWarning, UserError, describe_validation_error
from mtl_search.search.bundled import resolve_space_path
from mtl_search.values import (
    Count,
    EnsembleSize,
    FloatRange,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    Probability,
    StrParam,
    StrictSection,
    one_of,
    suggest,
)
from mtl_search.training.schedules import SCHEDULES
from mtl_search.training.trainer import OPTIMIZERS
from mtl_search.weighting import get_method


class TrainingSpace(StrictSection):
    epochs: Count = 10
    learning_rate: PositiveFloat = FloatRange(low=1e-3, high=1e-2, log=True)
    batch_size: Count = 256
    weight_decay: NonNegativeFloat = 0.0
    optimizer: Annotated[StrParam, one_of(tuple(OPTIMIZERS), "an optimizer")] = "adam"
    # which weights a trial returns: the epoch with the lowest geometric mean of its tasks'
    # validation losses ("best"), or the last epoch's ("last"); a policy, not searched
    checkpoint: Literal["best", "last"] = "best"
    # the learning rate over a trial (training/schedules.py); None: not sampled, the constant rate
    schedule: Annotated[StrParam, one_of(SCHEDULES, "a schedule")] | None = None
    # warm-up share of a trial's steps; None: the schedule's own (cosine 5 %, one_cycle 30 %)
    warmup_fraction: Probability | None = None


class BlockSpace(StrictSection):
    # auto: MLP blocks on vectors, conv blocks on images
    type: Literal["auto", "mlp", "conv"] = "auto"
    # checked here, not only when a trial builds: a bad name would fail just the trials drawing it
    norm: Annotated[StrParam, one_of(NORMS, "a norm")] = "none"
    activation: Annotated[StrParam, one_of(tuple(ACTIVATIONS), "an activation")] = "relu"
    dropout: Probability = 0.0


class TowerSpace(StrictSection):
    depth: NonNegativeInt = 1  # 0: a linear head
    width: Count = 16


class StemSpace(StrictSection):
    # width of each categorical column's embedding; None: a rule of thumb per column
    embedding_dim: Count | None = None
    # tables: how numeric columns enter the network (architectures/numeric.py): none (as they are),
    # piecewise_linear (bins at training quantiles) or periodic (learned frequencies); None: none
    numeric_encoding: Annotated[StrParam, one_of(NUMERIC_ENCODINGS, "a numeric encoding")] | None = None
    # sampled only when the encoding reads them; None: the stem's defaults (16, 16, 16, 0.1)
    numeric_bins: Count | None = None
    numeric_embedding_dim: NonNegativeInt | None = None
    periodic_frequencies: Count | None = None
    periodic_sigma: PositiveFloat | None = None
    # tables: ensemble members sharing the network's weights, each with its own scale per stem
    # feature (TabM-mini); their outputs are averaged when predicting. None: one network
    ensemble_members: Count | None = None
    # sequence inputs (the "sequence" stem): gru, lstm or attention, and the encoder's width
    sequence_encoder: StrParam | None = None
    sequence_width: Count | None = None

    @field_validator("sequence_encoder")
    @classmethod
    def _encoder(cls, value: Any) -> Any:
        from mtl_search.architectures.sequence import ENCODERS

        for name in [value] if isinstance(value, str) else getattr(value, "choices", []):
            if name not in ENCODERS:
                raise ValueError(f"{name!r} is not an encoder (expected {', '.join(ENCODERS)})")
        return value


class RelationshipSpace(StrictSection):
    # weight of the matrix-normal prior's trace term on the towers (0: off); ridge keeps the
    # task covariance well conditioned (see mtl_search/architectures/relationship.py)
    weight: NonNegativeFloat
    ridge: PositiveFloat = 0.1


class EnsembleSpace(StrictSection):
    # copies of each candidate trained on their own seeds, predictions averaged
    # (mtl_search/architectures/ensemble.py); 1: a single network
    members: EnsembleSize = 1


class ObjectivesSpace(StrictSection):
    # per task: its first metric ("primary") or every metric it declares ("all")
    metrics: Literal["primary", "all"] = "primary"
    # costs that become objectives too (minimised); see mtl_search/search/costs.py
    extra: list[Literal["params", "latency"]] = Field(default_factory=list)
    # hard limits: a candidate over one is not trained and never enters the front
    max_params: int | None = Field(default=None, ge=1)
    max_latency_ms: float | None = Field(default=None, gt=0)


# what rule "projected" changes unless the section sets it: a loose same-budget test, since
# the projection is what keeps the late bloomers (docs/explanation/pruning.md, "The projected rule")
# and a warm-up of an eighth of the trial's epochs, which kept slow starters live (same place)
MIN_COMPLETE_SHARE = 1 / 3
PROJECTED_RULE_DEFAULTS: Mapping[str, float | int] = MappingProxyType(
    {"margin": 0.0, "min_dominators": 1, "min_dominator_fraction": 0.0, "warmup_fraction": 0.125}
)


class PruningSpace(StrictSection):
    """Pareto-aware pruning (mtl_search/search/pruning.py explains the rule)."""

    enabled: bool = True
    # "projected" (the default): behind a completed trial at the same budget, and still
    # behind one's final values after projecting its own learning curve; "median": behind
    # half of the completed trials at the same budget (it lost the front of 64-epoch
    # searches, docs/explanation/pruning.md "Which rule by default"; studies of record format 0 that
    # stored no rule were pruned by it)
    rule: Literal["median", "projected"] = "projected"
    # the defaults below are the median rule's; rule "projected" replaces those the section
    # does not set with PROJECTED_RULE_DEFAULTS (see _rule_defaults)
    warmup_epochs: int = Field(default=2, ge=0)
    # the warm-up is at least this share of the trial's planned epochs
    warmup_fraction: float = Field(default=0.0, ge=0.0, lt=1.0)
    min_completed_trials: int = Field(default=5, ge=1)
    margin: float = Field(default=0.05, ge=0.0)
    min_dominators: int = Field(default=2, ge=1)
    min_dominator_fraction: float = Field(default=0.5, ge=0.0, le=1.0)
    # pruning pauses while fewer than this share of the study's finished trials trained to the
    # end: the sampler learns from complete trials, and a pruner that stops every new trial
    # leaves it only the start-up ones (docs/explanation/pruning.md, "A search that keeps learning")
    min_complete_share: float = Field(default=MIN_COMPLETE_SHARE, ge=0.0, le=1.0)
    # how "the same amount of training" is counted: optimiser steps, or epochs (which
    # penalised large batches, docs/explanation/pruning.md; studies of record format 0 that stored no
    # budget were pruned by it)
    budget: Literal["epochs", "steps"] = "steps"

    @model_validator(mode="after")
    def _rule_defaults(self) -> "PruningSpace":
        # written past pydantic's bookkeeping, so that they stay "unset": switching the rule
        # again (--prune-rule median) then brings back the median rule's own defaults
        if self.rule == "projected":
            for name, value in PROJECTED_RULE_DEFAULTS.items():
                if name not in self.model_fields_set:
                    self.__dict__[name] = value
        return self


class SearchSpace(StrictSection):
    description: str = ""
    training: TrainingSpace = Field(default_factory=TrainingSpace)
    block: BlockSpace = Field(default_factory=BlockSpace)
    tower: TowerSpace = Field(default_factory=TowerSpace)
    stem: StemSpace = Field(default_factory=StemSpace)
    relationship: RelationshipSpace | None = None
    ensemble: EnsembleSpace | None = None
    families: dict[str, Any]
    # validate_default: the default too must become the method's section model, as sample() expects
    loss_weighting: dict[str, Any] = Field(default_factory=lambda: {"static": {}}, validate_default=True)
    objectives: ObjectivesSpace = Field(default_factory=ObjectivesSpace)
    pruning: PruningSpace = Field(default_factory=PruningSpace)
    # the file the space came from, for errors found only once the data is known
    _source: str = PrivateAttr(default="space")

    @field_validator("families")
    @classmethod
    def _families(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not value:
            raise ValueError("name at least one architecture family")
        parsed = {}
        for name, section in value.items():
            family = _registered(get_family, name, "families")
            parsed[name] = _nested(family.space_model(), section or {}, f"families.{name}")
        return parsed

    @field_validator("loss_weighting")
    @classmethod
    def _weighting(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not value:
            raise ValueError("name at least one loss-weighting method")
        parsed = {}
        for name, section in value.items():
            method = _registered(get_method, name, "loss_weighting")
            parsed[name] = _nested(method.space_model, section or {}, f"loss_weighting.{name}")
        return parsed

    def check_stem(self, input_schema: Mapping[str, Any], data_name: str) -> None:
        """Every stem key the space sets must be read by the stem this data gets, and its families
        must read this data's inputs (UserError if not).

        A key the stem ignores would still be sampled and stored on every trial, as if it
        mattered; like a tree chain without affinity grouping, it is refused instead. Families
        that cannot read the inputs are left out of the search, with a warning, when the space
        offers others; a space of such families alone is refused.
        """
        kind = input_schema.get("kind")
        settings = stem_settings()
        unread = [
            key
            for key in StemSpace.model_fields
            if kind in settings and getattr(self.stem, key) is not None and key not in settings[kind]
        ]
        if unread:
            readers = {key: [other for other, keys in settings.items() if key in keys] for key in unread}
            key = min(unread, key=lambda name: len(readers[name]))  # the narrowest need says best what data it is for
            raise UserError(
                f"space file {self._source}: key stem.{key} needs {' or '.join(readers[key])} data, but data "
                f"{data_name!r} has {kind} inputs; use such data or a space without stem.{key}"
            )
        unreadable = [name for name in self.families if not reads_input_kind(get_family(name), kind)]
        if unreadable and len(unreadable) < len(self.families):
            # a space offering several families (the bundled all_methods) searches those this data
            # can feed; a space of such families alone is refused below
            for name in unreadable:
                del self.families[name]
            warnings.warn(
                OneLineWarning(
                    f"space file {self._source}: famil{'ies' if len(unreadable) > 1 else 'y'} "
                    f"{', '.join(unreadable)} cannot read {kind} inputs; left out of this search"
                ),
                stacklevel=2,
            )
        for name in self.families:
            check_input_kind(get_family(name), kind, f"space file {self._source}: key families.{name}: ")

    # -- sampling ---------------------------------------------------------------------
    def sample(
        self, trial: Any, task_names: Sequence[str], *, seed: int = 0, epochs: int | None = None
    ) -> dict[str, Any]:
        """One candidate, suggested through ``trial``: {architecture, training, loss_weighting}."""
        family_name = _choose(trial, "family", list(self.families))
        family = get_family(family_name)
        architecture: dict[str, Any] = {"family": family_name}
        architecture.update(family.sample(trial, self.families[family_name], task_names))
        block = {
            "norm": suggest(trial, "block.norm", self.block.norm),
            "activation": suggest(trial, "block.activation", self.block.activation),
            "dropout": suggest(trial, "block.dropout", self.block.dropout),
        }
        if self.block.type != "auto":
            block["type"] = self.block.type
        architecture["block"] = block
        tower_depth = suggest(trial, "tower.depth", self.tower.depth)
        tower_width = suggest(trial, "tower.width", self.tower.width) if tower_depth else 0
        architecture["tower"] = {"widths": [tower_width] * tower_depth}
        stem = {}
        # a family with embedding tables of its own (stem) samples their width itself
        if self.stem.embedding_dim is not None and "embedding_dim" not in architecture:
            stem["embedding_dim"] = suggest(trial, "stem.embedding_dim", self.stem.embedding_dim)
        if self.stem.numeric_encoding is not None:
            stem.update(self._sample_numeric_encoding(trial))
        if self.stem.ensemble_members is not None:
            stem["ensemble_members"] = suggest(trial, "stem.ensemble_members", self.stem.ensemble_members)
        if self.stem.sequence_encoder is not None:
            stem["sequence_encoder"] = suggest(trial, "stem.sequence_encoder", self.stem.sequence_encoder)
        if self.stem.sequence_width is not None:
            stem["sequence_width"] = suggest(trial, "stem.sequence_width", self.stem.sequence_width)
        architecture["stem"] = stem
        if self.relationship is not None:
            architecture["relationship"] = {
                "weight": suggest(trial, "relationship.weight", self.relationship.weight),
                "ridge": suggest(trial, "relationship.ridge", self.relationship.ridge),
            }
        if self.ensemble is not None:
            members = suggest(trial, "ensemble.members", self.ensemble.members)
            if members > 1:
                architecture["ensemble"] = {"members": members}
        training = {
            "epochs": epochs if epochs is not None else suggest(trial, "training.epochs", self.training.epochs),
            "learning_rate": suggest(trial, "training.learning_rate", self.training.learning_rate),
            "batch_size": suggest(trial, "training.batch_size", self.training.batch_size),
            "weight_decay": suggest(trial, "training.weight_decay", self.training.weight_decay),
            "optimizer": suggest(trial, "training.optimizer", self.training.optimizer),
            "seed": seed,
            "checkpoint": self.training.checkpoint,
        }
        if self.training.schedule is not None:
            training["schedule"] = suggest(trial, "training.schedule", self.training.schedule)
            if self.training.warmup_fraction is not None:
                training["warmup_fraction"] = suggest(trial, "training.warmup_fraction", self.training.warmup_fraction)
        method_name = _choose(trial, "loss_weighting", list(self.loss_weighting))
        method = get_method(method_name)
        weighting = {"method": method_name}
        weighting.update(method.sample(trial, self.loss_weighting[method_name], task_names))
        return {"architecture": architecture, "training": training, "loss_weighting": weighting}

    def _sample_numeric_encoding(self, trial: Any) -> dict[str, Any]:
        """The numeric encoding and the settings it reads (an encoding's settings are sampled only with it)."""
        encoding = suggest(trial, "stem.numeric_encoding", self.stem.numeric_encoding)
        stem: dict[str, Any] = {"numeric_encoding": encoding}
        reads = {"none": (), "piecewise_linear": ("numeric_bins", "numeric_embedding_dim")}.get(
            encoding, ("periodic_frequencies", "periodic_sigma", "numeric_embedding_dim")
        )
        for key in reads:
            if getattr(self.stem, key) is not None:
                stem[key] = suggest(trial, f"stem.{key}", getattr(self.stem, key))
        return stem

    def to_data(self) -> dict[str, Any]:
        """The validated space as JSON data (stored on the study)."""
        data = self.model_dump(mode="json")
        data["families"] = {k: v.model_dump(mode="json") for k, v in self.families.items()}
        data["loss_weighting"] = {k: v.model_dump(mode="json") for k, v in self.loss_weighting.items()}
        return data


def _registered(lookup: Any, name: str, section: str) -> Any:
    try:
        return lookup(name)
    except UserError as error:
        raise _NestedError(f"key {section}.{name}: {error}") from None


def _choose(trial: Any, name: str, options: list[str]) -> str:
    return options[0] if len(options) == 1 else trial.suggest_categorical(name, options)


class _NestedError(ValueError):
    pass


def _nested(model: type[BaseModel], section: Any, where: str) -> BaseModel:
    try:
        return model.model_validate(section)
    except ValidationError as error:
        raise _NestedError(describe_validation_error(error, prefix=where)) from None


def load_space(path: str | os.PathLike[str] | None = None) -> SearchSpace:
    """Read and validate a space file; ``None`` is the bundled ``default`` space.

    A bare name (``experts``) is looked up among the bundled spaces (``mtl_search/spaces/``).
    """
    resolved = resolve_space_path(path)
    try:
        text = resolved.read_text(encoding="utf-8")
    except OSError as error:
        raise UserError(f"space file {resolved}: cannot read it ({error.strerror})") from None
    except UnicodeDecodeError:
        raise UserError(f"space file {resolved}: not UTF-8 text") from None
    try:
        raw = _load_unique_keys(text)
    except _DuplicateKey as error:
        raise UserError(
            f"space file {resolved}: key {error.key} appears twice (line {error.line}); YAML would keep only the last"
        ) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise UserError(f"space file {resolved}: not valid YAML{where}") from None
    return parse_space(raw, str(resolved))


class _DuplicateKey(Exception):
    def __init__(self, key: Any, line: int) -> None:
        super().__init__(key)
        self.key, self.line = key, line


def _load_unique_keys(text: str) -> Any:
    """yaml.safe_load with :class:`_UniqueKeyLoader` (a SafeLoader: no arbitrary objects)."""
    loader = _UniqueKeyLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load, but a key given twice in one mapping is an error: YAML keeps the last, so
    a second `training:` section would silently drop the first one's settings."""

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag != "tag:yaml.org,2002:str":
                    continue  # `<<` merges (and odd keys) are left to YAML and the validation
                key = self.construct_object(key_node)
                if key in seen:
                    raise _DuplicateKey(key, key_node.start_mark.line + 1)
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse_space(raw: Any, source: str = "space") -> SearchSpace:
    """Validate a space given as a mapping (a space file's contents, read in Python).

    ``source`` names it in errors: a bad section or value is a one-line
    :class:`~mtl_search.errors.UserError` naming the key.
    """
    if not isinstance(raw, dict):
        raise UserError(f"space file {source}: expected a mapping of sections at the top level")
    try:
        space = SearchSpace.model_validate(raw)
    except ValidationError as error:
        raise UserError(f"space file {source}: {describe_validation_error(error)}") from None
    except UserError as error:
        raise UserError(f"space file {source}: {error}") from None
    space._source = source
    return space
