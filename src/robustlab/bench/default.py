"""The built-in default study (``robustlab run`` with no spec; ``make demo``).

The zoo plus the akamaster ResNets when their weights are present, on CIFAR-10 test images every model
classifies correctly, with the seed study's attacks (FGSM, I-FGSM, C&W-L2), minimal distortions, targeted
and untargeted transfer, and CLEVER. Sized to finish in about ten minutes on two CPU cores.
"""

from __future__ import annotations

import os
from typing import Any

from robustlab.bench.spec import StudySpec, parse_spec
from robustlab.errors import DataError, ModelError


def available_models(data_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """Zoo models, then published checkpoints whose weights are on disk (no download attempted)."""
    from robustlab.models import list_models
    from robustlab.models.loading import weights_path

    names = [s.name for s in list_models("zoo")]
    for spec in list_models("published"):
        try:
            if weights_path(spec, data_dir).is_file():
                names.append(spec.name)
        except (ModelError, DataError):
            continue
    return names


def default_spec(data_dir: str | os.PathLike[str] | None = None, n: int = 24) -> StudySpec:
    """The default study over every available model."""
    spec: dict[str, Any] = {
        "name": "default study: CIFAR-10 zoo",
        "output": "runs/default",
        "models": available_models(data_dir),
        "dataset": {"name": "cifar10", "split": "test", "n": n, "seed": 0, "subset": "common-correct", "pool": 8 * n},
        "attacks": [
            {"name": "fgsm", "norm": "linf", "minimal": True},
            {"name": "cw", "norm": "l2", "steps": 20, "params": {"search_steps": 3}},
            {
                "name": "ifgsm",
                "norm": "linf",
                "eps": "4/255",
                "steps": 10,
                "targets": ["untargeted", "random"],
                "transfer": True,
            },
        ],
        "clever": {"norm": "l2", "n": 4, "batches": 8, "samples": 32, "radius": 2.0},
        "seed": 0,
    }
    return parse_spec(spec, "default study")
