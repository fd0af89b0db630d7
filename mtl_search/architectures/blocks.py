"""Backbone blocks, input stems and task towers.

Families are written against :class:`BlockFactory` only: they ask for "a block from this
input shape to this width" and never look inside it, so a family runs on vectors (MLP
blocks) and on images (conv blocks) alike.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import torch
from torch import nn

from mtl_search.architectures.numeric import NUMERIC_ENCODINGS, PeriodicEncoding, PiecewiseLinearEncoding

# register_stem: importable from here too, beside the built-in stems
from mtl_search.architectures.stems import STEMS, register_stem, registered_stem_settings  # noqa: F401

from mtl_search.errors import UserError, is_number, is_whole

Shape = tuple[int, ...]

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU, "elu": nn.ELU}
NORMS = ("none", "batch", "layer")
BLOCK_TYPES = ("mlp", "conv")

# The keys of the spec sections every family shares (docs/reference/architecture-spec.md lists them).
BLOCK_KEYS = ("type", "norm", "activation", "dropout")
TOWER_KEYS = ("widths",)


# -- checks of hand-written specs: messages "<where>: <key> must be ..., got <value>" -------


def check_widths(value: Any, where: str, key: str, allow_empty: bool = True) -> None:
    """``value`` must be a list of positive whole numbers (non-empty unless ``allow_empty``)."""
    if not isinstance(value, list) or (not value and not allow_empty) or not all(is_whole(w) and w >= 1 for w in value):
        raise UserError(
            f"{where}: {key} must be a {'' if allow_empty else 'non-empty '}list of positive whole numbers, got {value!r}"
        )


def check_keys(section: Any, known: Sequence[str] | None, where: str, name: str = "") -> None:
    """``section`` must be an object whose keys are all in ``known`` (None: any key);
    ``name`` is the section's key in the spec ("" for the spec itself)."""
    if not isinstance(section, dict):
        listed = f" with keys {', '.join(known)}" if known else ""
        raise UserError(f"{where}: {name} must be an object{listed}, got {section!r}")
    unknown = [key for key in section if known is not None and key not in known]
    if unknown:
        prefix = f"{name}." if name else ""
        raise UserError(f"{where}: {prefix}{unknown[0]} is not a known key (known: {', '.join(known or ())})")


def validate_block(block: Any, where: str = "architecture spec") -> None:
    """A spec's ``block`` section: known keys, each value one the blocks accept."""
    check_keys(block, BLOCK_KEYS, where, "block")
    for key, allowed in (("type", BLOCK_TYPES), ("norm", NORMS), ("activation", tuple(ACTIVATIONS))):
        if key in block and (not isinstance(block[key], str) or block[key] not in allowed):
            raise UserError(f"{where}: block.{key} must be one of {', '.join(allowed)}, got {block[key]!r}")
    dropout = block.get("dropout", 0.0)
    if not is_number(dropout) or not 0.0 <= dropout < 1.0:
        raise UserError(f"{where}: block.dropout must be a number in [0, 1), got {dropout!r}")


def validate_tower(tower: Any, where: str = "architecture spec") -> None:
    """A spec's ``tower`` section: ``widths``, the hidden layers of every task's tower."""
    check_keys(tower, TOWER_KEYS, where, "tower")
    check_widths(tower.get("widths", []), where, "tower.widths")


def validate_stem(stem: Any, where: str = "architecture spec") -> None:
    """A spec's ``stem`` section (absent or None: defaults): keys some stem reads.

    Every key any registered stem reads is allowed, whichever the data's kind: a search
    stored before spaces were checked against the data (SearchSpace.check_stem) may hold
    one its stem ignores. A stem registered without its settings may read any key.
    """
    if stem is None:
        return
    any_key = None in registered_stem_settings().values()
    known = None if any_key else sorted({key for keys in stem_settings().values() for key in keys})
    check_keys(stem, known, where, "stem")


class BlockFactory:
    """Makes backbone blocks of one kind with fixed settings.

    ``kind``: "mlp" (linear, norm, activation, dropout) on (features,) shapes, or "conv"
    (3x3 convolution, norm, activation, dropout, then 2x2 max-pooling while the map is at
    least ``pool_min`` pixels wide) on (channels, height, width) shapes.
    """

    def __init__(
        self,
        kind: str = "mlp",
        norm: str = "none",
        activation: str = "relu",
        dropout: float = 0.0,
        pool_min: int = 8,
    ) -> None:
        validate_block({"type": kind, "norm": norm, "activation": activation, "dropout": dropout}, "BlockFactory")
        self.kind, self.norm, self.activation, self.dropout, self.pool_min = (
            kind,
            norm,
            activation,
            float(dropout),
            pool_min,
        )

    @classmethod
    def from_spec(
        cls, spec: dict[str, Any], input_shape: Shape, where: str = "architecture spec", source: str = "input"
    ) -> "BlockFactory":
        """Blocks for a spec's ``block`` section and the stem's output shape; errors begin with
        ``where`` and call the stem's output ``source`` (e.g. "vector input"); the section
        itself is checked by ``validate_spec`` (and its values again by ``__init__``)."""
        kind = spec.get("type", "conv" if len(input_shape) == 3 else "mlp")
        if kind == "mlp" and len(input_shape) != 1:
            kind = "conv"  # an MLP block cannot read an image; conv blocks stand in
        if kind == "conv" and len(input_shape) != 3:
            raise UserError(
                f"{where}: block.type 'conv' needs image input (channels, height, width), "
                f"but the {source} has shape {tuple(input_shape)}"
            )
        return cls(
            kind=kind,
            norm=spec.get("norm", "none"),
            activation=spec.get("activation", "relu"),
            dropout=spec.get("dropout", 0.0),
        )

    def block(self, in_shape: Shape, width: int) -> tuple[nn.Module, Shape]:
        if self.kind == "mlp":
            (features,) = in_shape
            layers: list[nn.Module] = [nn.Linear(features, width)]
            if self.norm == "batch":
                layers.append(nn.BatchNorm1d(width))
            elif self.norm == "layer":
                layers.append(nn.LayerNorm(width))
            layers.append(ACTIVATIONS[self.activation]())
            if self.dropout > 0:
                layers.append(nn.Dropout(self.dropout))
            return nn.Sequential(*layers), (width,)
        channels, height, width_px = in_shape
        layers = [nn.Conv2d(channels, width, kernel_size=3, padding=1)]
        if self.norm == "batch":
            layers.append(nn.BatchNorm2d(width))
        elif self.norm == "layer":
            layers.append(nn.GroupNorm(1, width))
        layers.append(ACTIVATIONS[self.activation]())
        if self.dropout > 0:
            layers.append(nn.Dropout2d(self.dropout))
        if min(height, width_px) >= self.pool_min:
            layers.append(nn.MaxPool2d(2))
            height, width_px = height // 2, width_px // 2
        return nn.Sequential(*layers), (width, height, width_px)

    def stack(self, in_shape: Shape, widths: Sequence[int]) -> tuple[nn.Module, Shape]:
        """Several blocks one after another."""
        blocks = []
        shape = in_shape
        for width in widths:
            block, shape = self.block(shape, width)
            blocks.append(block)
        return nn.Sequential(*blocks), shape


def flat_size(shape: Shape) -> int:
    return shape[0] if len(shape) == 3 else math.prod(shape)


class Flatten(nn.Module):
    """(N, C, H, W) -> (N, C) by global average pooling; (N, F) unchanged."""

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h.mean(dim=(2, 3)) if h.dim() == 4 else h


class Tower(nn.Sequential):
    """A task's head: flatten (feature maps only), a small MLP, then the output layer.

    A Sequential itself rather than a module wrapping one: the towers run on every batch, and
    each needless module call is measurable in the training overhead (benchmarks/).
    """

    def __init__(self, in_shape: Shape, widths: Sequence[int], output_size: int, activation: str = "relu") -> None:
        layers: list[nn.Module] = [Flatten()] if len(in_shape) > 1 else []
        features = flat_size(in_shape)
        for width in widths:
            layers += [nn.Linear(features, width), ACTIVATIONS[activation]()]
            features = width
        layers.append(nn.Linear(features, output_size))
        super().__init__(*layers)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        # Weights saved before towers became Sequentials name the layers "net.<i>", Flatten always at 0.
        shift = 0 if isinstance(self[0], Flatten) else 1
        for key in [k for k in state_dict if k.startswith(prefix + "net.")]:
            index, rest = key[len(prefix) + len("net.") :].split(".", 1)
            state_dict[f"{prefix}{int(index) - shift}.{rest}"] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


# -- input stems -------------------------------------------------------------------------


class VectorStem(nn.Module):
    """Dense features, passed through as they are."""

    def __init__(self, key: str, shape: Shape) -> None:
        super().__init__()
        self.key = key
        self.out_shape = tuple(shape)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return inputs[self.key]


class TabularStem(nn.Module):
    """Numeric columns next to one learned embedding per categorical column.

    Embedding width: ``embedding_dim`` when given, else min(16, ceil(1.6 * cardinality**0.56)),
    the rule of thumb fast.ai uses, so that small categories get small embeddings.

    All the columns' tables lie end to end in one flat parameter, and a batch reads every
    embedding value it needs with one gather: a lookup per column cost a batch dozens of
    small operations on census (``benchmarks/tabular_stem.py``). Each column's table starts as
    its own ``nn.Embedding`` would (drawn in column order), so a seeded network is the one a
    table per column gave, value for value.
    """

    def __init__(
        self,
        numeric: int,
        categorical: Sequence[int],
        embedding_dim: int | None = None,
        *,
        numeric_encoding: str = "none",
        numeric_bins: int = 16,
        numeric_embedding_dim: int = 16,
        periodic_frequencies: int = 16,
        periodic_sigma: float = 0.1,
        numeric_quantiles: Sequence[Sequence[float]] | None = None,
        ensemble_members: int = 1,
    ) -> None:
        super().__init__()
        if not is_whole(ensemble_members) or ensemble_members < 1:
            raise UserError(f"stem.ensemble_members: expected a whole number >= 1, got {ensemble_members!r}")
        self.numeric = numeric
        self.numeric_encoder = _numeric_encoder(
            numeric,
            numeric_encoding,
            numeric_bins,
            numeric_embedding_dim,
            periodic_frequencies,
            periodic_sigma,
            numeric_quantiles,
        )
        self.cardinalities = [int(c) for c in categorical]
        self.dims = [embedding_dim or min(16, math.ceil(1.6 * c**0.56)) for c in self.cardinalities]
        sizes = [c * d for c, d in zip(self.cardinalities, self.dims)]
        self.embedding_weights = nn.Parameter(torch.empty(sum(sizes)))
        starts = _running_sums(sizes)
        with torch.no_grad():
            for start, size in zip(starts, sizes):
                nn.init.normal_(self.embedding_weights[start : start + size])
        # output feature f reads column[f]'s code, at base[f] + code * stride[f] of the flat weights
        column, stride, base = [], [], []
        for index, (start, dim) in enumerate(zip(starts, self.dims)):
            column += [index] * dim
            stride += [dim] * dim
            base += range(start, start + dim)
        for name, values in (("feature_column", column), ("feature_stride", stride), ("feature_base", base)):
            self.register_buffer(name, torch.tensor(values, dtype=torch.long), persistent=False)
        numeric_width = self.numeric_encoder.out_features if self.numeric_encoder is not None else numeric
        self.out_shape = (numeric_width + sum(self.dims),)
        # An ensemble sharing every weight but one scale per member and feature (TabM-mini, Gorishniy
        # et al. 2025): the members' rows run through the network stacked member after member, and
        # MultiTaskModel averages their outputs when predicting. Random signs make the members differ.
        self.members = int(ensemble_members)
        if self.members > 1:
            signs = torch.randint(0, 2, (self.members, self.out_shape[0])).float() * 2 - 1
            self.member_scales = nn.Parameter(signs)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        parts = []
        if self.numeric:
            numeric = inputs["numeric"]
            parts.append(numeric if self.numeric_encoder is None else self.numeric_encoder(numeric))
        if self.cardinalities:
            codes = inputs["categorical"].index_select(1, self.feature_column)
            positions = codes * self.feature_stride + self.feature_base
            parts.append(self.embedding_weights.index_select(0, positions.flatten()).view(positions.shape))
        features = torch.cat(parts, dim=1)
        if self.members > 1:  # (members * batch, features), member-major
            features = (features.unsqueeze(0) * self.member_scales.unsqueeze(1)).flatten(0, 1)
        return features

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        # Weights saved with an nn.Embedding per column ("embeddings.<i>.weight") are its flat tables in order.
        keys = [f"{prefix}embeddings.{i}.weight" for i in range(len(self.cardinalities))]
        if keys and all(key in state_dict for key in keys):
            state_dict[f"{prefix}embedding_weights"] = torch.cat([state_dict.pop(key).flatten() for key in keys])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def _numeric_encoder(
    numeric: int,
    encoding: str,
    bins: int,
    embedding_dim: int,
    frequencies: int,
    sigma: float,
    quantiles: Sequence[Sequence[float]] | None,
) -> nn.Module | None:
    """The stem's encoder of the numeric columns (architectures/numeric.py), None for the values as they are."""
    if encoding not in NUMERIC_ENCODINGS:
        raise UserError(f"stem.numeric_encoding {encoding!r}: expected one of {', '.join(NUMERIC_ENCODINGS)}")
    for key, value, minimum in (
        ("numeric_bins", bins, 1),
        ("numeric_embedding_dim", embedding_dim, 0),
        ("periodic_frequencies", frequencies, 1),
    ):
        if not is_whole(value) or value < minimum:
            raise UserError(f"stem.{key}: expected a whole number >= {minimum}, got {value!r}")
    if not is_number(sigma) or not math.isfinite(sigma) or sigma <= 0:
        raise UserError(f"stem.periodic_sigma: expected a finite number above 0, got {sigma!r}")
    if encoding == "none" or not numeric:
        return None
    if encoding == "periodic":
        return PeriodicEncoding(numeric, int(frequencies), float(sigma), int(embedding_dim))
    if quantiles is None or len(quantiles) != numeric:
        raise UserError(
            "stem.numeric_encoding piecewise_linear: the data's input schema has no training quantiles of its "
            "numeric columns (numeric_quantiles); load the data again with this version to get them"
        )
    return PiecewiseLinearEncoding(quantiles, int(bins), int(embedding_dim))


def _running_sums(values: Iterable[int]) -> list[int]:
    """0, v0, v0 + v1, ...: where each of ``values`` starts when they are laid end to end."""
    starts, total = [], 0
    for value in values:
        starts.append(total)
        total += value
    return starts


class CustomStem(nn.Module):
    """A user's own encoder (for example a pre-trained network) as the stem.

    ``module`` maps the input tensor named ``key`` to features of shape ``out_shape``
    (without the batch dimension). ``freeze`` keeps its weights fixed during the search.
    """

    def __init__(self, module: nn.Module, out_shape: Shape, key: str = "x", freeze: bool = False) -> None:
        super().__init__()
        self.module = module
        self.key = key
        self.out_shape = tuple(out_shape)
        self.frozen = freeze
        if freeze:
            for parameter in module.parameters():
                parameter.requires_grad_(False)

    def train(self, mode: bool = True) -> "CustomStem":
        super().train(mode)
        if self.frozen:
            self.module.eval()  # a frozen encoder keeps its batch-norm statistics too
        return self

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.module(inputs[self.key])


def build_stem(schema: dict[str, Any], spec: dict[str, Any] | None = None) -> nn.Module:
    """The input stem for a data set's ``input_schema``; ``spec`` holds searched stem settings."""
    spec = spec or {}
    kind = schema.get("kind")
    if kind == "vector":
        return VectorStem(schema.get("key", "x"), (int(schema["size"]),))
    if kind == "image":
        return VectorStem(schema.get("key", "image"), tuple(int(s) for s in schema["shape"]))
    if kind == "tabular":
        numeric_options = {key: spec[key] for key in TABULAR_NUMERIC_SETTINGS if spec.get(key) is not None}
        return TabularStem(
            int(schema["numeric"]),
            [int(c) for c in schema["categorical"]],
            spec.get("embedding_dim"),
            numeric_quantiles=schema.get("numeric_quantiles"),
            **numeric_options,
        )
    if kind in STEMS:  # other kinds (sequences, a plugin's): mtl_search/architectures/stems.py
        return STEMS.get(kind).build(schema, spec)
    known = ", ".join(sorted({*_STEM_SETTINGS, *STEMS.names()}))
    raise UserError(f"input schema kind {kind!r} is not known (known: {known})")


# The stem spec keys each kind's stem reads: a space that searches a key the data's stem
# ignores would record parameters without effect (SearchSpace.check_stem refuses it).
TABULAR_NUMERIC_SETTINGS = (
    "numeric_encoding",
    "numeric_bins",
    "numeric_embedding_dim",
    "periodic_frequencies",
    "periodic_sigma",
    "ensemble_members",
)
_STEM_SETTINGS: dict[str, tuple[str, ...]] = {
    "vector": (),
    "image": (),
    "tabular": ("embedding_dim", *TABULAR_NUMERIC_SETTINGS),
}


def stem_settings() -> dict[str, tuple[str, ...]]:
    """Input kind -> the stem spec keys its stem reads (kinds registered without them are absent)."""
    registered = {kind: keys for kind, keys in registered_stem_settings().items() if keys is not None}
    return {**_STEM_SETTINGS, **{kind: keys for kind, keys in registered.items() if kind not in _STEM_SETTINGS}}
