"""Torch-only model definitions shared by the test process and the reference worker (both import this file).

Nothing here imports robustlab: the reference environment has torch and pyautoattack only. A model travels
between the two processes as a spec ``{"arch": name, "state_dict": {...}}`` (see :func:`build`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


class MLP(nn.Module):
    """A small two-layer MLP on flattened images: the fast model of the side-by-side tests.

    Shape:
        - input: ``(N, C, H, W)`` in [0, 1]; output: ``(N, classes)`` logits
    """

    def __init__(self, d_in: int = 784, hidden: int = 64, classes: int = 10) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_in, hidden)
        self.fc2 = nn.Linear(hidden, classes)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.fc2(torch.relu(self.fc1(x.flatten(1))))
        return out


class LeNet5(nn.Module):
    """advertorch's ``test_utils.LeNet5`` (keys ``conv1``, ``conv2``, ``linear1``, ``linear2``), for the
    checkpoints in ``../shared/data/pretrained-advertorch-lenet5-mnist`` (see its SOURCE.md).

    Shape:
        - input: ``(N, 1, 28, 28)`` in [0, 1], no normalisation; output: ``(N, 10)`` logits
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.linear1 = nn.Linear(7 * 7 * 64, 200)
        self.linear2 = nn.Linear(200, 10)

    def forward(self, x: Tensor) -> Tensor:
        out = torch.max_pool2d(torch.relu(self.conv1(x)), 2)
        out = torch.max_pool2d(torch.relu(self.conv2(out)), 2)
        out = torch.relu(self.linear1(out.flatten(1)))
        result: Tensor = self.linear2(out)
        return result


ARCHS: dict[str, type[nn.Module]] = {"mlp": MLP, "lenet5": LeNet5}


def build(spec: dict[str, Any]) -> nn.Module:
    """The float32 model in eval mode described by ``spec = {"arch": "mlp" | "lenet5", "state_dict": {...},
    "kwargs": {...}}`` (``kwargs`` optional)."""
    model = ARCHS[spec["arch"]](**spec.get("kwargs", {}))
    model.load_state_dict(spec["state_dict"])
    return model.float().eval()


def train_mlp(x: Tensor, y: Tensor, *, seed: int = 0, epochs: int = 3, hidden: int = 64) -> dict[str, Any]:
    """Train :class:`MLP` with Adam on ``(x, y)`` from a fixed seed and return its spec (a few seconds on
    a few thousand MNIST images; deterministic on one thread).

    Shape:
        - x: ``(N, C, H, W)`` float32 in [0, 1]; y: ``(N,)`` int64
    """
    gen = torch.Generator().manual_seed(seed)
    classes = int(y.max()) + 1
    kwargs = {"d_in": x[0].numel(), "hidden": hidden, "classes": classes}
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = MLP(**kwargs)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(epochs):
        order = torch.randperm(x.shape[0], generator=gen)
        for rows in order.split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[rows]), y[rows]).backward()
            opt.step()
    return {
        "arch": "mlp",
        "kwargs": kwargs,
        "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
    }
