"""Pieces the benchmark scripts share: the CPU's name, ART's wrapper of a CIFAR-10 model, and writing one
section of docs/benchmarks.md."""

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


def write_section(path: Path, heading: str, text: str) -> None:
    """Replace the section of ``path`` whose heading line starts with ``heading`` (up to the next ``## ``
    heading) by ``text``, or append ``text`` if there is none; other sections stay as they are."""
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    lines = old.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(heading)), None)
    if start is None:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        end = next((j for j in range(start + 1, len(lines)) if lines[j].startswith("## ")), len(lines))
        new = "\n".join(lines[:start] + text.rstrip("\n").splitlines() + [""] + lines[end:])
    path.write_text(new.rstrip("\n") + "\n")
