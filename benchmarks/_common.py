"""Pieces the benchmark scripts share: the CPU's name and ART's wrapper of a CIFAR-10 model."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

from torch import nn


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo, else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def art_classifier(model: nn.Module) -> Any:
    """ART's ``PyTorchClassifier`` around a CIFAR-10 model taking [0, 1] images (ART is not a dependency)."""
    from art.estimators.classification import PyTorchClassifier

    return PyTorchClassifier(
        model=model,
        loss=nn.CrossEntropyLoss(),
        input_shape=(3, 32, 32),
        nb_classes=10,
        clip_values=(0.0, 1.0),
        device_type="cpu",
    )
