"""Model factories for the AutoAttack kind and command tests (``path/to/this/file.py:make_...``).

Each wraps a class-mean template of :mod:`tests.bench.tiny_models` (CIFAR-10, 10 classes, instant to attack):
a deterministic one, a randomised one (dropout that stays in train mode whatever the caller asks), and one whose
logits are NaN for some images.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

from robustlab import ModelAdapter


def _tiny() -> ModuleType:
    # Loaded by path: the study loads this file by path too, outside any package.
    spec = importlib.util.spec_from_file_location("_aa_tiny_models", Path(__file__).with_name("tiny_models.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _adapter(net: nn.Module, name: str) -> ModelAdapter:
    return ModelAdapter(net, num_classes=10, input_shape=(3, 32, 32), name=name)


class AlwaysTrainDropout(nn.Module):
    """Dropout on the input that a wrapper keeps in train mode: ``eval()`` does not switch it off (a common bug
    in defences that are randomised on purpose or by accident)."""

    def __init__(self, inner: nn.Module, p: float = 0.3) -> None:
        super().__init__()
        self.inner = inner
        self.drop = nn.Dropout(p)

    def train(self, mode: bool = True) -> AlwaysTrainDropout:
        super().train(mode)
        self.drop.train(True)  # forced: the randomness survives model.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(self.drop(x))


class NanForBright(nn.Module):
    """Logits NaN for every image whose mean intensity is above ``threshold`` (a numerically broken model)."""

    def __init__(self, inner: nn.Module, threshold: float = 0.5) -> None:
        super().__init__()
        self.inner = inner
        self.threshold = threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.inner(x)
        bright = x.flatten(1).mean(1) > self.threshold
        return torch.where(bright[:, None], torch.full_like(logits, float("nan")), logits)


def make_template() -> ModelAdapter:
    """The deterministic template (pooling 4)."""
    return _adapter(_tiny().Template(4), "template4")


def make_dropout() -> ModelAdapter:
    """The template behind dropout that stays in train mode: two forward passes differ."""
    return _adapter(AlwaysTrainDropout(_tiny().Template(4)), "template4-dropout")


def make_nan() -> ModelAdapter:
    """The template with NaN logits for bright images."""
    return _adapter(NanForBright(_tiny().Template(4)), "template4-nan")
