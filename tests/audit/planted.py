"""Tiny models with planted gradient masking, and honest ones, on a synthetic 10-class task of 8x8 grey images.

Each class is a fixed random template; an image is its class template plus Gaussian noise, clipped to [0, 1]. The
honest models are a linear template matcher (closed form, no training) and a small MLP trained for a second; the
planted ones wrap a clean model with one known defect:

- :class:`Quantise` in front (rounding to a few grey levels): zero input gradients everywhere; BPDA or Square
  recover the clean model's weakness;
- :class:`Threshold` in front (``x > 0.5``): autograd's graph is cut, gradients are unavailable everywhere;
- :class:`Scale` after (logits times 1e4): the cross-entropy gradient vanishes in float32, margin and DLR do not;
- :class:`RandomNoise` in front (Gaussian noise at evaluation): a randomised model, EoT is needed;
- :class:`Softmax` after: probabilities instead of logits.

One planted fixture is trained, not wrapped: :func:`fgsm_at_without_random_start`, robustlab's own ``fgsm-rs``
training without its random start on an MNIST subset, which settles in single-step adversarial training's
degenerate minimum (FGSM accuracy far above PGD's; about 30 CPU-seconds, needs ``ROBUSTLAB_DATA``).

The file is also loaded by path (``robustlab audit --model tests/audit/planted.py:make_...``): no relative imports.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

CLASSES = 10
SIDE = 8
NOISE = 0.15
#: The class templates: fixed, in [0.2, 0.8].
TEMPLATES = torch.rand(CLASSES, 1, SIDE, SIDE, generator=torch.Generator().manual_seed(123)) * 0.6 + 0.2


def data(n: int, seed: int) -> tuple[Tensor, Tensor]:
    """``n`` images (n, 1, 8, 8) in [0, 1] and their labels, drawn with ``seed``."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, CLASSES, (n,), generator=g)
    x = (TEMPLATES[y] + NOISE * torch.randn(n, 1, SIDE, SIDE, generator=g)).clamp(0, 1)
    return x, y


def write_npz(path: Path, n: int, seed: int) -> Path:
    """The images as a robustlab ``npz:`` dataset (uint8 NHWC, labels), for the command-line tests."""
    x, y = data(n, seed)
    pixels = (x.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()
    np.savez(path, x=pixels, y=y.numpy())
    return path


def template_matcher(temperature: float = 1.0) -> nn.Module:
    """The honest linear model: logits ``-||x - t_k||^2 / temperature`` up to a constant (closed form)."""
    flat = TEMPLATES.reshape(CLASSES, -1)
    linear = nn.Linear(flat.shape[1], CLASSES)
    with torch.no_grad():
        linear.weight.copy_(2 * flat / temperature)
        linear.bias.copy_(-(flat**2).sum(1) / temperature)
    return nn.Sequential(nn.Flatten(), linear).eval()


def two_class_linear() -> nn.Module:
    """An honest two-class linear model (classes 0 and 1 of the task; closed form): every attack's optimum agrees."""
    flat = TEMPLATES[:2].reshape(2, -1)
    linear = nn.Linear(flat.shape[1], 2)
    with torch.no_grad():
        linear.weight.copy_(2 * flat)
        linear.bias.copy_(-(flat**2).sum(1))
    return nn.Sequential(nn.Flatten(), linear).eval()


def trained_mlp(seed: int = 0, hidden: int = 64, steps: int = 300) -> nn.Module:
    """The honest non-linear model: an MLP trained with Adam on 2,000 images (about a second)."""
    x, y = data(2000, seed=1000 + seed)
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(SIDE * SIDE, hidden), nn.ReLU(), nn.Linear(hidden, CLASSES))
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    return net.eval()


def fgsm_at_without_random_start(seed: int = 0, n: int = 5000, epochs: int = 4, width: float = 1.0) -> nn.Module:
    """``fast_mnist`` trained by robustlab on the first ``n`` MNIST training images: one clean epoch (``standard``),
    then ``epochs`` of FGSM adversarial training without random start (``fgsm-rs`` with ``random_start=False``,
    eps = alpha = 0.3), Adam at a constant 1e-3, batch 100.

    Planted masking by training: the model learns to defeat the one FGSM step it is trained on (Tramèr et al.
    2018), so FGSM leaves far more robust accuracy than PGD (notes: 83 % vs 0.2 % on full MNIST). The clean epoch
    first, because on this subset the adversarial training alone from initialisation settled on a constant
    prediction for some seeds (clean 11 %, zero gradients: another defect). About 30 CPU-seconds; trained afresh
    in a temporary directory (nothing cached); the data come from ``ROBUSTLAB_DATA``.
    """
    from robustlab.data import load_dataset
    from robustlab.models.adapter import ModelAdapter
    from robustlab.models.archs.fast_mnist import FastMNIST
    from robustlab.train import CatastrophicOverfittingWarning, TrainConfig, train_model

    train = load_dataset("mnist", "train")
    x, y = train.x[:n], train.y[:n]
    torch.manual_seed(seed)
    model = ModelAdapter(FastMNIST(width=width), num_classes=10, input_shape=(1, 28, 28), name="fgsm-at-no-rs")
    common = {"batch_size": 100, "lr": 1e-3, "optimizer": "adam", "schedule": "constant", "warmup": 0.0}
    common |= {"weight_decay": 0.0, "augment": "none", "seed": seed, "monitor_n": 0}
    clean = TrainConfig(epochs=1, method="standard", label_smoothing=0.0, **common)
    params = {"eps": 0.3, "alpha": 0.3, "random_start": False}
    fgsm = TrainConfig(epochs=epochs, method="fgsm-rs", method_params=params, **common)
    for cfg in (clean, fgsm):
        with tempfile.TemporaryDirectory() as run_dir, warnings.catch_warnings():
            warnings.simplefilter("ignore", CatastrophicOverfittingWarning)  # the collapse is what is planted
            train_model(model, x, y, cfg, run_dir)
    return model.eval()


class Quantise(nn.Module):
    """Round the input to ``levels + 1`` grey levels: the derivative is zero almost everywhere."""

    def __init__(self, levels: int = 4) -> None:
        super().__init__()
        self.levels = levels

    def forward(self, x: Tensor) -> Tensor:
        return torch.round(x * self.levels) / self.levels


class Threshold(nn.Module):
    """Binarise the input at 0.5: the comparison cuts autograd's graph."""

    def forward(self, x: Tensor) -> Tensor:
        return (x > 0.5).to(x.dtype)


class Scale(nn.Module):
    """Multiply the logits by ``factor``: the cross-entropy saturates in float32."""

    def __init__(self, factor: float = 1e4) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: Tensor) -> Tensor:
        return x * self.factor


class RandomNoise(nn.Module):
    """Add Gaussian noise of standard deviation ``sigma`` to the input, in eval mode too (a randomised defence)."""

    def __init__(self, sigma: float = 0.3) -> None:
        super().__init__()
        self.sigma = sigma

    def forward(self, x: Tensor) -> Tensor:
        return x + self.sigma * torch.randn_like(x)


def make_template() -> nn.Module:
    return template_matcher()


def make_mlp() -> nn.Module:
    return trained_mlp()


def make_quantised() -> nn.Module:
    return nn.Sequential(Quantise(), trained_mlp()).eval()


def make_quantised_template() -> nn.Module:
    """Rounding in front of the template matcher: planted zero gradients with no training (cheap to load often)."""
    return nn.Sequential(Quantise(), template_matcher()).eval()


def make_threshold() -> nn.Module:
    return nn.Sequential(Threshold(), trained_mlp()).eval()


def make_scaled() -> nn.Module:
    return nn.Sequential(trained_mlp(), Scale()).eval()


def make_noisy() -> nn.Module:
    return nn.Sequential(RandomNoise(), trained_mlp()).eval()


def make_softmax() -> nn.Module:
    return nn.Sequential(trained_mlp(), nn.Softmax(dim=1)).eval()


def make_other_classes() -> nn.Module:
    """A surrogate with the wrong number of classes (5)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(SIDE * SIDE, 5)).eval()


def make_other_shape() -> nn.Module:
    """A surrogate for 3x8x8 inputs (it cannot take the 1x8x8 images)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * SIDE * SIDE, CLASSES)).eval()
