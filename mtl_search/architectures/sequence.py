"""The "sequence" stem: behaviour sequences encoded into one vector (DUPN style).

Input schema ``{"kind": "sequence", "vocabulary": V, "max_length": L, "numeric": F}``; the
inputs are ``events`` (rows x L, event ids 1..V, 0 = padding after the last event),
``lengths`` (rows) and, when F > 0, ``numeric`` (rows x F).

Events are embedded, encoded by a searched encoder (GRU, LSTM or one self-attention
layer), and pooled by attention over the real events; the pooled vector and the numeric
features are the stem's output, which every family reads like any vector input.
Padding never reaches the output: padding comes after the last event, so a
left-to-right recurrent encoder's outputs at the real events never read it, and
self-attention and pooling mask the padded positions.

Stem spec keys: ``sequence_encoder`` (gru, lstm, attention; default gru),
``sequence_width`` (encoder width, default 32), ``embedding_dim`` (event embedding, default 16).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mtl_search.architectures.stems import Stem
from mtl_search.errors import UserError

ENCODERS = ("gru", "lstm", "attention")


class RecurrentEncoder(nn.Module):
    """A GRU or LSTM over each row's events, left to right.

    It runs over the padded rows as they are: padding follows the last event, so the
    outputs at real events are those of the events alone, and pooling masks the rest.
    Packing the rows (``pack_padded_sequence``) gives the same outputs, but costs 1.0 to
    1.2 times the CPU time per trial (GRU), 1.5 to 1.9 times (LSTM)
    (``benchmarks/recurrent_packing.py``), and exports to ONNX only with shape-inference
    warnings.
    """

    def __init__(self, kind: str, in_features: int, width: int) -> None:
        super().__init__()
        rnn = nn.GRU if kind == "gru" else nn.LSTM
        self.rnn = rnn(in_features, width, batch_first=True)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return out


class SelfAttentionEncoder(nn.Module):
    """One transformer-style layer: learned positions, masked self-attention, feed-forward."""

    def __init__(self, in_features: int, width: int, max_length: int, heads: int = 2) -> None:
        super().__init__()
        self.project = nn.Linear(in_features, width)
        self.positions = nn.Embedding(max_length, width)
        self.attention = nn.MultiheadAttention(width, heads if width % heads == 0 else 1, batch_first=True)
        self.norm1 = nn.LayerNorm(width)
        self.feed_forward = nn.Sequential(nn.Linear(width, 2 * width), nn.ReLU(), nn.Linear(2 * width, width))
        self.norm2 = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(x.shape[1], device=x.device)
        h = self.project(x) + self.positions(positions)[None]
        attended, _ = self.attention(h, h, h, key_padding_mask=~mask, need_weights=False)
        h = self.norm1(h + attended)
        return self.norm2(h + self.feed_forward(h))


class AttentionPooling(nn.Module):
    """Weighted mean of the real positions, weights = softmax of a learned score."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.score = nn.Sequential(nn.Linear(width, width), nn.Tanh(), nn.Linear(width, 1, bias=False))

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = self.score(h).squeeze(-1).masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=1)
        return (weights.unsqueeze(-1) * h).sum(dim=1)


class SequenceStem(nn.Module):
    """Event embedding -> encoder -> attention pooling, next to the numeric features."""

    def __init__(
        self,
        vocabulary: int,
        max_length: int,
        numeric: int = 0,
        encoder: str = "gru",
        width: int = 32,
        embedding_dim: int = 16,
    ) -> None:
        super().__init__()
        if encoder not in ENCODERS:
            raise UserError(f"stem sequence_encoder {encoder!r}: expected one of {', '.join(ENCODERS)}")
        self.numeric = numeric
        self.embedding = nn.Embedding(vocabulary + 1, embedding_dim, padding_idx=0)
        if encoder == "attention":
            self.encoder: nn.Module = SelfAttentionEncoder(embedding_dim, width, max_length)
        else:
            self.encoder = RecurrentEncoder(encoder, embedding_dim, width)
        self.pool = AttentionPooling(width)
        self.out_shape = (width + numeric,)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        events = inputs["events"]
        # an empty history reads as one padding event, so that every row has something to pool
        lengths = inputs["lengths"].clamp(min=1, max=events.shape[1])
        mask = torch.arange(events.shape[1], device=events.device)[None] < lengths[:, None]
        pooled = self.pool(self.encoder(self.embedding(events), lengths, mask), mask)
        if self.numeric:
            return torch.cat([pooled, inputs["numeric"]], dim=1)
        return pooled


class SequenceStemBuilder(Stem):
    """The stem of ``sequence`` inputs (registered by an entry point in ``mtl_search.stems``)."""

    kind = "sequence"
    settings = ("embedding_dim", "sequence_encoder", "sequence_width")

    def build(self, schema: dict[str, Any], spec: dict[str, Any]) -> SequenceStem:
        width = spec.get("sequence_width", 32)
        embedding_dim = spec.get("embedding_dim") or 16
        for key, value in (("sequence_width", width), ("embedding_dim", embedding_dim)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"stem {key}: must be a positive whole number, got {value!r}")
        return SequenceStem(
            vocabulary=int(schema["vocabulary"]),
            max_length=int(schema["max_length"]),
            numeric=int(schema.get("numeric", 0)),
            encoder=spec.get("sequence_encoder", "gru"),
            width=width,
            embedding_dim=embedding_dim,
        )
