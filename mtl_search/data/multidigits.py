"""Two overlapping digits per image: the MultiMNIST protocol (Sener & Koltun, NeurIPS 2018).

Each image is a square canvas holding two digits of different classes, one placed near the
top-left corner and one near the bottom-right corner, each moved by a random shift of up to
``shift`` pixels toward the centre; where they overlap the brighter pixel wins. Tasks:
``left`` (the top-left digit) and ``right`` (the bottom-right digit), 10 classes each.

``mtl-search run --data multidigits`` builds it from scikit-learn's bundled 8x8 digits
(1,797 images, no download) on a 12x12 canvas. :func:`make_multidigits` takes any
``(N, H, W)`` array of digit images with their labels, so MNIST users pass MNIST (28x28 on
a 36x36 canvas with shift 4 is the original protocol). The base digits are split into
train/validation/test pools *before* pairing, so no test image reuses a train digit.
"""

from __future__ import annotations

import numpy as np
import torch

from mtl_search.data.base import DataSource, MultiTaskData, Split, parse_options, split_indices
from mtl_search.errors import UserError
from mtl_search.tasks import Task

DEFAULTS = {
    "rows": 6000,  # composed images, over all three splits
    "canvas": 12,  # side of the square canvas in pixels
    "shift": 2,  # largest random shift of each digit, in pixels
    "seed": 0,
    "validation_fraction": 0.2,
    "test_fraction": 0.2,
}


def compose_pairs(
    images: np.ndarray,
    labels: np.ndarray,
    n_images: int,
    *,
    canvas: int,
    shift: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n_images`` canvases of two digits of different classes; returns (canvases, left, right).

    The left digit's corner is at (dy, dx) and the right one's at (canvas - H - dy', canvas - W - dx'),
    with every d drawn from 0..shift.
    """
    n_digits, height, width = images.shape
    if canvas < max(height, width) + shift:
        raise UserError(
            f"--data-option canvas={canvas}: must be at least the digit size plus the shift ({max(height, width) + shift})"
        )
    if np.unique(labels).size < 2:
        raise UserError("multidigits: need digits of at least two classes")
    left = rng.integers(0, n_digits, n_images)
    right = rng.integers(0, n_digits, n_images)
    clash = labels[left] == labels[right]
    while clash.any():  # redraw until every pair has two different classes
        right[clash] = rng.integers(0, n_digits, int(clash.sum()))
        clash = labels[left] == labels[right]
    offsets = rng.integers(0, shift + 1, (n_images, 4))
    out = np.zeros((n_images, canvas, canvas), dtype=np.float32)
    for i in range(n_images):
        top, side = offsets[i, 0], offsets[i, 1]
        out[i, top : top + height, side : side + width] = images[left[i]]
        bottom, far = canvas - height - offsets[i, 2], canvas - width - offsets[i, 3]
        region = out[i, bottom : bottom + height, far : far + width]
        np.maximum(region, images[right[i]], out=region)
    return out, labels[left], labels[right]


def make_multidigits(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    rows: int = 6000,
    canvas: int | None = None,
    shift: int = 2,
    seed: int = 0,
    validation_fraction: float = 0.2,
    test_fraction: float = 0.2,
    name: str = "multidigits",
    source: str = "custom",
) -> MultiTaskData:
    """The two-digit data set from ``images`` ``(N, H, W)`` (any value range) and ``labels`` (N,).

    Pixel values are divided by the largest value of ``images``; ``canvas`` defaults to
    the digit size plus half of it (12 for 8x8, 42 for 28x28).
    """
    images = np.asarray(images, dtype=np.float32)
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    if images.ndim != 3 or images.shape[0] != labels.shape[0]:
        raise UserError(f"multidigits: expected images (N, H, W) and N labels, got {images.shape} and {labels.shape}")
    if labels.min() < 0 or labels.max() > 9:
        raise UserError(f"multidigits: labels must be digits 0-9, got {labels.min()}..{labels.max()}")
    if rows < 10:
        raise UserError(f"--data-option rows={rows}: need at least 10 rows")
    if not (0 < validation_fraction < 1 and 0 < test_fraction < 1 and validation_fraction + test_fraction < 1):
        raise UserError("--data-option validation_fraction/test_fraction: must be in (0, 1) and sum below 1")
    if shift < 0:
        raise UserError(f"--data-option shift={shift}: must be 0 or more")
    side = max(images.shape[1:])
    canvas = canvas if canvas is not None else side + side // 2
    scale = float(images.max()) or 1.0
    rng = np.random.default_rng(seed)
    fractions = (1 - validation_fraction - test_fraction, validation_fraction, test_fraction)
    pools = split_indices(len(images), fractions, seed)  # base digits: one pool per split
    splits = []
    for pool, fraction in zip(pools, fractions):
        pool = pool.numpy()
        composed, left, right = compose_pairs(
            images[pool] / scale,
            labels[pool],
            max(1, int(round(fraction * rows))),
            canvas=canvas,
            shift=shift,
            rng=rng,
        )
        splits.append(
            Split(
                inputs={"image": torch.from_numpy(composed).unsqueeze(1)},
                targets={
                    "left": torch.from_numpy(left.astype(np.float32)),
                    "right": torch.from_numpy(right.astype(np.float32)),
                },
            )
        )
    return MultiTaskData(
        name=name,
        tasks=[Task("left", "multiclass", n_classes=10), Task("right", "multiclass", n_classes=10)],
        train=splits[0],
        validation=splits[1],
        test=splits[2],
        input_schema={"kind": "image", "shape": [1, canvas, canvas], "key": "image"},
        description={
            "source": name,
            "digits": source,
            "options": {
                "rows": rows,
                "canvas": canvas,
                "shift": shift,
                "seed": seed,
                "validation_fraction": validation_fraction,
                "test_fraction": test_fraction,
            },
        },
        # what a deployed model must do to a raw canvas: divide by this
        preprocessing={"kind": "image", "scale": scale, "shape": [1, canvas, canvas]},
    )


class MultiDigitsSource(DataSource):
    """Two overlapping digits per image, one task per digit (``--data multidigits``)."""

    name = "multidigits"

    def load(self, options: dict, data_file: str | None, task_declarations: list[str]) -> MultiTaskData:
        return load_multidigits(options, data_file, task_declarations)


def load_multidigits(options: dict, data_file: str | None, task_declarations: list[str]) -> MultiTaskData:
    if data_file:
        raise UserError(
            "--data-file: the multidigits source builds its images from scikit-learn's digits and reads no file"
        )
    if task_declarations:
        raise UserError("--task: the multidigits source declares its own tasks (left, right)")
    settings = parse_options("multidigits", options, DEFAULTS)
    from sklearn.datasets import load_digits

    digits = load_digits()
    return make_multidigits(digits.images, digits.target, source="sklearn-digits-8x8", **settings)
