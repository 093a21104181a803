"""Model metadata as data: what a model is, how to normalise its input, and where its weights live.

No loader has a name-specific branch: everything that differs between models is a field here
(timm's pretrained config, RobustBench's model info).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclass(frozen=True)
class WeightsSpec:
    """Where a checkpoint is and how its state dict maps onto the architecture.

    Attributes:
        filename: File name of the checkpoint.
        sha256: Expected sha256 of the file (verified before loading).
        format: ``"safetensors"`` or ``"torch"`` (a foreign ``torch.save`` file, loaded with ``weights_only=True``).
        location: ``"package"`` (shipped with robustlab) or a folder name inside the data directory.
        url: Upstream download address, recorded for online users.
        state_dict_key: Key of the state dict inside a torch checkpoint dict (``None``: the file is the state dict).
        strip_prefix: Prefix removed from every key (e.g. ``"module."`` from DataParallel).
        absent_buffers: Suffixes of buffers the checkpoint legitimately lacks (e.g. ``"num_batches_tracked"``);
            they keep the architecture's initial value. Every other missing or unexpected key is an error.
        license: License of the weights.
        drop_keys: ``fnmatch`` patterns of checkpoint keys this model does not have and that are dropped on purpose,
            e.g. ``("*.aux.*", "selector.*")`` to load a multi-branch checkpoint's main route into the plain
            architecture. Any other key the architecture lacks is still an error (no ``strict=False``).
    """

    filename: str
    sha256: str
    format: Literal["safetensors", "torch"] = "safetensors"
    location: str = "package"
    url: str | None = None
    state_dict_key: str | None = None
    strip_prefix: str = ""
    absent_buffers: tuple[str, ...] = ()
    license: str | None = None
    drop_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to build, normalise and load a model.

    Attributes:
        name: Registry name (e.g. ``"resnet20-akamaster"``).
        family: Architecture family for grouping in analyses ("resnet", "vgg", ...).
        arch: Architecture registry name; ``arch_kwargs`` are passed to its factory.
        num_classes: Logit width.
        input_shape: (C, H, W).
        mean, std: Per-channel normalisation applied inside the model.
        dataset: Dataset the model was trained for.
        weights: Checkpoint description, or ``None`` for an untrained architecture.
        source: Where the model comes from ("zoo", "published", "user").
        metrics: Measured numbers (e.g. ``{"test_accuracy": 0.9173}``), for information.
        recipe: Training recipe, for zoo models.
        citation: Reference for published checkpoints.
        route: The inference route of a multi-branch model (``main``, an auxiliary route, ``select`` for the
            selector's soft routing): evaluation, attacks and studies use it and record it. ``None``: ``main`` for a
            multi-branch model; ignored for a plain one.
        classes: Class names in logit order; ``None``: those of ``dataset`` when it is a named dataset
            (see :meth:`class_names`).
    """

    name: str
    family: str
    arch: str
    num_classes: int
    input_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    dataset: str
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    weights: WeightsSpec | None = None
    source: str = "zoo"
    metrics: dict[str, Any] = field(default_factory=dict)
    recipe: dict[str, Any] = field(default_factory=dict)
    citation: str | None = None
    classes: tuple[str, ...] | None = None
    route: str | None = None

    def class_names(self) -> tuple[str, ...] | None:
        """The model's class names in logit order: ``classes``, else its named dataset's, else ``None``."""
        if self.classes is not None:
            return self.classes
        from robustlab.data import DATASETS

        if self.dataset in DATASETS:
            names = DATASETS.get(self.dataset).classes
            return names if len(names) == self.num_classes else None
        return None

    def describe(self) -> dict[str, Any]:
        """A flat JSON-ready summary for listings: name, family, source, architecture, dataset, the measured
        metrics and the weights' file, sha256 and URL."""
        w = self.weights
        return {
            "name": self.name,
            "family": self.family,
            "source": self.source,
            "arch": self.arch,
            "arch_kwargs": self.arch_kwargs,
            "dataset": self.dataset,
            **({"route": self.route} if self.route is not None else {}),
            **self.metrics,
            "weights": None if w is None else {"filename": w.filename, "sha256": w.sha256, "url": w.url},
        }

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the sidecar format)."""
        result: dict[str, Any] = json.loads(json.dumps(asdict(self)))
        return result

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        w = d.get("weights")
        if w is not None:
            w = dict(w)
            w["absent_buffers"] = tuple(w.get("absent_buffers", ()))
            w["drop_keys"] = tuple(w.get("drop_keys", ()))
            d["weights"] = WeightsSpec(**w)
        for key in ("input_shape", "mean", "std"):
            d[key] = tuple(d[key])
        if d.get("classes") is not None:
            d["classes"] = tuple(d["classes"])
        return cls(**d)
