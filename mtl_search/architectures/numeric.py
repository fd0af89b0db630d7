"""Embeddings of numeric table columns: piecewise-linear and periodic encodings.

After Gorishniy, Rubachev and Babenko, "On Embeddings for Numerical Features in Tabular Deep
Learning" (NeurIPS 2022). A plain MLP reads a numeric value as one number, and a network of
ReLUs bends slowly in it; an encoding into many values per column lets the first layer pick
out ranges of it, which is much of what gradient-boosted trees do with their splits.

- **Piecewise-linear** (``piecewise_linear``): the column's range is cut into bins at its
  training quantiles (``b_0 < b_1 < ... < b_T``); bin ``t`` reads 0 left of it, 1 right of it
  and ``(x - b_{t-1}) / (b_t - b_{t-1})`` inside. The first bin is not clipped below and the
  last not above, so values outside the training range still order.
- **Periodic** (``periodic``): ``sin(2 pi c x)`` and ``cos(2 pi c x)`` for ``k`` learned
  frequencies ``c`` per column, drawn from N(0, ``sigma``) at the start.

Either may be followed by a linear layer per column and a ReLU (``embedding_dim`` > 0, the
paper's "-LR" variants), giving ``embedding_dim`` features per column; with 0 the network
reads the encoding itself. All columns
are encoded at once: every operation works on a (batch, column, value) tensor, and columns
with fewer bins than others (a column with few distinct values has fewer distinct quantiles)
are padded with bins that always read 0.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import nn

NUMERIC_ENCODINGS = ("none", "piecewise_linear", "periodic")


def bin_edges(quantiles: Sequence[float], bins: int) -> np.ndarray:
    """At most ``bins`` bins' edges from a column's quantiles at evenly spaced levels (0..1):
    the quantiles at levels 0, 1/bins, ..., 1 read off by interpolation, equal edges merged.
    A column with one value gets one bin of width 1 starting at it."""
    quantiles = np.asarray(quantiles, dtype=np.float64)
    levels = np.linspace(0.0, 1.0, len(quantiles))
    edges = np.unique(np.interp(np.linspace(0.0, 1.0, bins + 1), levels, quantiles))
    if len(edges) < 2:
        edges = np.array([edges[0], edges[0] + 1.0])
    return edges


class ColumnLinear(nn.Module):
    """A separate linear layer per column: (batch, columns, inputs) -> (batch, columns, outputs),
    each column's weights drawn as ``nn.Linear``'s are."""

    def __init__(self, columns: int, inputs: int, outputs: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(inputs)
        self.weight = nn.Parameter(torch.empty(columns, inputs, outputs).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(columns, outputs).uniform_(-bound, bound))

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bci,cio->bco", values, self.weight) + self.bias


class PiecewiseLinearEncoding(nn.Module):
    """Piecewise-linear encoding of every numeric column, with bins at its quantiles.

    ``quantiles``: per column, its training values at evenly spaced levels (the input schema's
    ``numeric_quantiles``); ``bins``: the most bins per column; ``embedding_dim``: 0 gives the
    encoding itself (``bins`` values per column), more a linear layer per column and a ReLU.
    """

    def __init__(self, quantiles: Sequence[Sequence[float]], bins: int = 16, embedding_dim: int = 16) -> None:
        super().__init__()
        edges = [bin_edges(column, bins) for column in quantiles]
        width = max(len(e) - 1 for e in edges)
        columns = len(edges)
        left = np.zeros((columns, width))
        span = np.ones((columns, width))
        low = np.zeros((columns, width))
        high = np.ones((columns, width))
        used = np.zeros((columns, width))
        for index, column in enumerate(edges):
            count = len(column) - 1
            left[index, :count] = column[:-1]
            span[index, :count] = np.diff(column)
            used[index, :count] = 1.0
            low[index, 0] = -math.inf  # below the first edge the first bin goes negative
            high[index, count - 1] = math.inf  # above the last edge the last bin exceeds 1
        for name, values in (("left", left), ("span", span), ("low", low), ("high", high), ("used", used)):
            self.register_buffer(name, torch.tensor(values, dtype=torch.float32))
        self.bins = width
        self.embedding = ColumnLinear(columns, width, embedding_dim) if embedding_dim else None
        self.out_features = columns * (embedding_dim or width)

    def encode(self, numeric: torch.Tensor) -> torch.Tensor:
        """(batch, columns) -> (batch, columns, bins): the encoding before any linear layer."""
        ratio = (numeric.unsqueeze(-1) - self.left) / self.span
        return torch.clamp(ratio, self.low, self.high) * self.used

    def forward(self, numeric: torch.Tensor) -> torch.Tensor:
        encoded = self.encode(numeric)
        if self.embedding is not None:
            encoded = torch.relu(self.embedding(encoded))
        return encoded.flatten(1)


class PeriodicEncoding(nn.Module):
    """Periodic encoding of every numeric column.

    ``frequencies``: learned frequencies per column (``k``: 2k values per column);
    ``sigma``: the standard deviation of their initial values; ``embedding_dim``: 0 gives the
    encoding itself, more a linear layer per column and a ReLU.
    """

    def __init__(self, columns: int, frequencies: int = 16, sigma: float = 0.1, embedding_dim: int = 16) -> None:
        super().__init__()
        self.frequencies = nn.Parameter(torch.randn(columns, frequencies) * sigma)
        self.embedding = ColumnLinear(columns, 2 * frequencies, embedding_dim) if embedding_dim else None
        self.out_features = columns * (embedding_dim or 2 * frequencies)

    def encode(self, numeric: torch.Tensor) -> torch.Tensor:
        """(batch, columns) -> (batch, columns, 2k): sines, then cosines."""
        angles = 2 * math.pi * self.frequencies * numeric.unsqueeze(-1)
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)

    def forward(self, numeric: torch.Tensor) -> torch.Tensor:
        encoded = self.encode(numeric)
        if self.embedding is not None:
            encoded = torch.relu(self.embedding(encoded))
        return encoded.flatten(1)
