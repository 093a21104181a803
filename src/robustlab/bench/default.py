"""The built-in default study (``robustlab run`` with no spec; ``make demo``).

Seven models, one per family (the cheapest of each zoo family in time; MobileNet-V1 rather than V2, whose
depthwise layers are slow on a CPU) plus the published ResNet-20 when its weights are present, on 200 CIFAR-10
test images every model classifies correctly: enough that each model's rates carry intervals about ±0.07 wide
and that a class has twenty images on average (the screening keeps fewer of the hard classes: the class-wise
section flags those under twenty). Attacks as in the seed study: FGSM with the per-image minimal L∞ search,
C&W-L2 (its minimal distortion is the Pareto frontier's main measure; 4 search steps from c = 0.01), I-FGSM L∞
4/255 untargeted and random-target with transfer, and CLEVER-L2 on a few images. Sized for ``make demo`` to
finish in about ten minutes on two CPU cores shared with other work (about five when they are idle).

What it leaves out, for time: the wider zoo members (alexnet-w50, vgg11-w50, inception-b4-w25,
densenet-bc16-k12/k16, resnet20), mobilenetv2-w50 (a third of an eight-model study's attack time on its own)
and the deeper published ResNets (32/44/56). The former 17-model study on 24 images is
``examples/seventeen_models.yaml``.
"""

from __future__ import annotations

import os
from typing import Any

from robustlab.bench.spec import StudySpec, parse_spec
from robustlab.errors import DataError, ModelError

#: The default study's models: the cheapest of each zoo family, then a published checkpoint (if on disk).
DEFAULT_MODELS = (
    "alexnet-w25",
    "vgg8-w25",
    "inception-b2-w25",
    "resnet8",
    "densenet-bc10-k16",
    "mobilenetv1-w50",
    "resnet20-akamaster",
)


def available_models(data_dir: str | os.PathLike[str] | None = None, names: tuple[str, ...] | None = None) -> list[str]:
    """Models of ``names`` (default: the zoo, then every published checkpoint) that can load without a download:
    zoo models always, published checkpoints when their weights are on disk."""
    from robustlab.models import MODELS, list_models
    from robustlab.models.loading import weights_path

    specs = [MODELS.get(n) for n in names] if names is not None else [*list_models("zoo"), *list_models("published")]
    out = []
    for spec in specs:
        if spec.source != "published":
            out.append(spec.name)
            continue
        try:
            if weights_path(spec, data_dir).is_file():
                out.append(spec.name)
        except (ModelError, DataError):
            continue
    return out


def default_spec(data_dir: str | os.PathLike[str] | None = None, n: int = 200) -> StudySpec:
    """The default study over :data:`DEFAULT_MODELS` (those available)."""
    spec: dict[str, Any] = {
        "name": "default study: CIFAR-10 zoo",
        "output": "runs/default",
        "models": available_models(data_dir, DEFAULT_MODELS),
        "dataset": {"name": "cifar10", "split": "test", "n": n, "seed": 0, "subset": "common-correct", "pool": 8 * n},
        "attacks": [
            {"name": "fgsm", "norm": "linf", "minimal": True},
            # c from 0.01 up to 10: with 3 steps from the default 0.001, C&W stopped at c = 0.1 with up to half
            # of an AlexNet's 200 images unconverged (a quarter without any adversarial example)
            {"name": "cw", "norm": "l2", "steps": 20, "params": {"search_steps": 4, "initial_const": 0.01}},
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
