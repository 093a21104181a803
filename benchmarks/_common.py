"""Pieces the benchmark scripts share: the CPU's name and the machine's description, ART's wrapper of a CIFAR-10
model, the one rule that judges any library's adversarial examples, and writing one section of docs/benchmarks.md."""

from __future__ import annotations

import importlib
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo, else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(*libraries: str) -> dict[str, Any]:
    """What a benchmark result depends on: CPU, cores, torch threads, load average, Python, robustlab's commit,
    and the versions of robustlab, torch, numpy and each of ``libraries`` (``None`` when not installed)."""
    versions: dict[str, str | None] = {}
    for name in ("robustlab", "torch", "numpy", *libraries):
        try:
            versions[name] = str(importlib.import_module(name).__version__)
        except ImportError:
            versions[name] = None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "python": platform.python_version(),
        "commit": commit or "unknown",
        "versions": versions,
    }


def describe_machine(m: dict[str, Any]) -> str:
    """One sentence for docs/benchmarks.md from :func:`machine`'s dict."""
    libs = ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v is not None)
    load = " ".join(f"{v:.1f}" for v in m["load_average"])
    return (
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['torch_threads']} torch threads, load average {load}; "
        f"Python {m['python']}, {libs}; commit {m['commit']}."
    )


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


def judge(
    model: nn.Module, x: Tensor, y: Tensor, adv: Tensor, target: Tensor | None = None
) -> tuple[Tensor, dict[str, Any]]:
    """Any library's output judged by one rule: clip to [0, 1], fresh forward pass; success is prediction !=
    label (untargeted) or prediction == target. Returns the per-image success and the statistics; median
    distortions are taken over the successes on images that were classified correctly before the attack
    (robustlab leaves an image that is already misclassified as it is; the peers attack it anyway)."""
    adv = adv.detach().float().clamp(0, 1)
    with torch.no_grad():
        pred = model(adv).argmax(1)
        clean_ok = model(x).argmax(1) == y
    won = pred != y if target is None else pred == target
    flat = (adv - x).reshape(x.shape[0], -1)
    l1, l2, linf = flat.abs().sum(1), flat.norm(dim=1), flat.abs().amax(1)
    counted = won & clean_ok
    return won, {
        "success_rate": float(won.double().mean()),
        "robust_accuracy": float((pred == y).double().mean()),
        "median_l1": float(l1[counted].median()) if bool(counted.any()) else None,
        "median_l2": float(l2[counted].median()) if bool(counted.any()) else None,
        "max_linf": float(linf.max()),
        "max_l2": float(l2.max()),
    }
