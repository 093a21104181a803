"""Clean accuracy."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch

from robustlab.models.adapter import ModelAdapter, eval_mode, model_device

if TYPE_CHECKING:
    from robustlab.data import Dataset


@torch.no_grad()
def predict_classes(model: ModelAdapter, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Predicted classes in eval mode (the caller's mode restored), for uint8 or [0, 1] float images.

    Shape:
        x: (N, C, H, W) → (N,) int64 on the CPU.
    """
    device = model_device(model)
    preds = []
    with eval_mode(model):
        for i in range(0, len(x), batch_size):
            xb = x[i : i + batch_size]
            xb = xb.float().div_(255) if xb.dtype == torch.uint8 else xb.float()
            preds.append(model(xb.to(device)).argmax(1).cpu())
    return torch.cat(preds) if preds else torch.empty(0, dtype=torch.int64)


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
    """Top-1 accuracy of ``model`` on ``dataset`` in eval mode."""
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
