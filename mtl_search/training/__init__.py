"""Training and evaluating one candidate."""

from mtl_search.training.population import train_candidate
from mtl_search.training.trainer import (
    DEFAULT_TRAINING,
    TrainResult,
    count_parameters,
    evaluate,
    predict,
    resolve_device,
    train_network,
)

__all__ = [
    "DEFAULT_TRAINING",
    "TrainResult",
    "count_parameters",
    "evaluate",
    "predict",
    "resolve_device",
    "train_candidate",
    "train_network",
]
