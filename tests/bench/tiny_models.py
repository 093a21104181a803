"""Small deterministic CIFAR-10 models for study tests: class-mean templates at four resolutions.

Each model average-pools the image by a factor, then scores classes by the dot product with the (centred)
class means of the first 2,000 training images — about 25–40 % accurate, and instant to build and attack.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from robustlab import ModelAdapter, load_dataset


class Template(nn.Module):
    def __init__(self, pool: int) -> None:
        super().__init__()
        self.pool = pool
        ds = load_dataset("cifar10", "train", Path(os.environ["ROBUSTLAB_DATA"]))
        x = F.avg_pool2d(ds.images()[:2000], pool).flatten(1)  # (2000, D)
        y = ds.y[:2000]
        mu = x.mean(0)
        means = torch.stack([x[y == k].mean(0) - mu for k in range(10)])  # (10, D)
        self.register_buffer("w", means * 20)
        self.register_buffer("b", -(means * 20) @ mu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, self.pool).flatten(1) @ self.w.T + self.b


def _make(pool: int) -> ModelAdapter:
    return ModelAdapter(Template(pool), num_classes=10, input_shape=(3, 32, 32), name=f"template{pool}")


def make_a() -> ModelAdapter:
    return _make(1)


def make_b() -> ModelAdapter:
    return _make(2)


def make_c() -> ModelAdapter:
    return _make(4)


def make_d() -> ModelAdapter:
    return _make(8)


def make_plain() -> nn.Module:
    """A plain ``nn.Module`` (no adapter): robustlab probes its classes and assumes [0, 1] inputs."""
    return Template(4)


def make_five_classes() -> ModelAdapter:
    """A 5-class model: it does not fit CIFAR-10's ten labels."""
    return ModelAdapter(nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 5)), num_classes=5, input_shape=(3, 32, 32))
