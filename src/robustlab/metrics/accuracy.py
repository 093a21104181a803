"""Clean accuracy."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch

from robustlab.data import to_float_images
from robustlab.models.adapter import ModelAdapter, predict_logits
from robustlab.models.classes import check_dataset_fits

if TYPE_CHECKING:
    from robustlab.data import Dataset


def predict_classes(model: ModelAdapter, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Predicted classes in eval mode (the caller's mode restored), for uint8 or [0, 1] float images.

    Each batch is converted on its own (:func:`~robustlab.data.to_float_images`), so uint8 images are never
    held as float all at once.

    Shape:
        x: (N, C, H, W) → (N,) int64 on the CPU.
    """
    return predict_logits(model, x, batch_size, prepare=to_float_images).argmax(1).cpu()


@dataclass(frozen=True)
class AccuracyResult:
    """Clean accuracy of one model on one dataset (subset).

    Attributes:
        model: Model name.
        dataset: Dataset name and split, e.g. ``"cifar10/test"``.
        n: Number of evaluated images.
        correct: Number classified correctly.
        accuracy: ``correct / n``.
        seconds: Wall time of the evaluation.
    """

    model: str
    dataset: str
    n: int
    correct: int
    accuracy: float
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate(model: ModelAdapter, dataset: Dataset, batch_size: int = 256) -> AccuracyResult:
    """Top-1 accuracy of ``model`` on ``dataset`` in eval mode.

    Raises:
        ConfigError: if the dataset's labels or class names do not fit the model's classes.
    """
    check_dataset_fits(model, dataset.y, dataset.classes, dataset=f"{dataset.name}/{dataset.split}")
    t0 = time.perf_counter()
    pred = predict_classes(model, dataset.x, batch_size)
    correct = int((pred == dataset.y).sum())
    n = len(dataset)
    return AccuracyResult(
        model.name,
        f"{dataset.name}/{dataset.split}",
        n,
        correct,
        correct / n if n else 0.0,
        time.perf_counter() - t0,
    )
