"""The model zoo: recipes (as data) and the builder that trains, exports and records them.

``robustlab zoo build`` trains every recipe on the CIFAR-10 training images available (offline: rows
0–9999), exports safetensors weights with a JSON sidecar into the package's zoo folder, measures test
accuracy on the 10,000 test images, parameters and FLOPs, and rewrites ``manifest.json`` from the sidecars.
Each recipe trains in its own resumable run directory, so an interrupted build continues where it stopped.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robustlab._io import atomic_write_text, file_digest
from robustlab._registry import Registry
from robustlab.data import load_dataset
from robustlab.models.loading import ZOO_DIR
from robustlab.models.spec import CIFAR10_MEAN, CIFAR10_STD, ModelSpec
from robustlab.train.loop import ProgressFn, TrainConfig
from robustlab.train.standalone import fit_and_export

log = logging.getLogger(__name__)

ZOO_EPOCHS = 15


@dataclass(frozen=True)
class ZooRecipe:
    """How one zoo model is built: architecture, size and training config."""

    name: str
    family: str
    arch: str
    arch_kwargs: dict[str, Any]
    config: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=ZOO_EPOCHS))

    def spec(self) -> ModelSpec:
        """The model spec (without weights) that the trained model is saved under."""
        return ModelSpec(
            name=self.name,
            family=self.family,
            arch=self.arch,
            arch_kwargs=dict(self.arch_kwargs),
            num_classes=10,
            input_shape=(3, 32, 32),
            mean=CIFAR10_MEAN,
            std=CIFAR10_STD,
            dataset="cifar10",
            source="zoo",
        )


RECIPES: Registry[ZooRecipe] = Registry("zoo recipe")
for _r in [
    ZooRecipe("alexnet-w50", "alexnet", "alexnet_cifar", {"width": 0.5}),
    ZooRecipe("alexnet-w25", "alexnet", "alexnet_cifar", {"width": 0.25}),
    ZooRecipe("vgg11-w50", "vgg", "vgg", {"depth": 11, "width": 0.5}),
    ZooRecipe("vgg8-w25", "vgg", "vgg", {"depth": 8, "width": 0.25}),
    ZooRecipe("resnet20", "resnet", "resnet_cifar", {"depth": 20}),
    ZooRecipe("resnet8", "resnet", "resnet_cifar", {"depth": 8}),
    ZooRecipe("inception-b4-w25", "inception", "inception_cifar", {"width": 0.25, "blocks": 4}),
    ZooRecipe("inception-b2-w25", "inception", "inception_cifar", {"width": 0.25, "blocks": 2}),
    ZooRecipe("densenet-bc16-k12", "densenet", "densenet_bc", {"depth": 16, "growth": 12}),
    ZooRecipe("densenet-bc10-k16", "densenet", "densenet_bc", {"depth": 10, "growth": 16}),
    # DenseNet-BC-16 with k = 12 reached 68.66 % in 15 epochs: a wider, longer-trained member of the family.
    ZooRecipe("densenet-bc16-k16", "densenet", "densenet_bc", {"depth": 16, "growth": 16}, TrainConfig(epochs=25)),
    ZooRecipe("mobilenetv2-w50", "mobilenet", "mobilenetv2_cifar", {"width": 0.5, "stem_stride": 2}),
    ZooRecipe("mobilenetv1-w50", "mobilenet", "mobilenetv1_cifar", {"width": 0.5}, TrainConfig(epochs=20)),
]:
    RECIPES.register(_r.name, _r)


def build_one(
    recipe: ZooRecipe,
    runs_dir: str | os.PathLike[str],
    *,
    data_dir: str | os.PathLike[str] | None = None,
    out_dir: str | os.PathLike[str] = ZOO_DIR,
    progress: ProgressFn | None = None,
) -> ModelSpec:
    """Train one recipe (resuming if interrupted), export its weights and sidecar, return its spec."""
    train = load_dataset("cifar10", "train", data_dir)
    test = load_dataset("cifar10", "test", data_dir)
    spec = fit_and_export(
        recipe.spec(),
        train,
        test,
        recipe.config,
        Path(runs_dir) / recipe.name,
        Path(out_dir) / f"{recipe.name}.safetensors",
        progress,
    )
    log.info("%s: test accuracy %.4f", recipe.name, spec.metrics["test_accuracy"])
    return spec


ZooProgressFn = Callable[[str, int, int, int, int, float], None]
"""Called after every training step with (recipe name, epochs, epoch, step, steps_per_epoch, loss)."""


@dataclass(frozen=True)
class ZooBuild:
    """The outcome of :func:`build_zoo`: the specs built (in order) and the rewritten manifest."""

    built: list[ModelSpec]
    manifest: dict[str, Any]


def build_zoo(
    only: Sequence[str] | None,
    runs_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] = ZOO_DIR,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    progress: ZooProgressFn | None = None,
    on_built: Callable[[ModelSpec], None] | None = None,
) -> ZooBuild:
    """Train the zoo's recipes (all, or ``only`` these), export them into ``out_dir`` and rewrite its manifest.

    Every recipe resumes from its own run directory under ``runs_dir``, so an interrupted build continues.

    Args:
        only: Recipe names (close matches suggested for unknown ones); ``None``: every recipe.
        runs_dir: Resumable training state, one folder per recipe.
        out_dir: Where weights, sidecars and ``manifest.json`` go.
        data_dir: Data directory of CIFAR-10.
        progress: Per-step callback, told which recipe is training.
        on_built: Called with each recipe's spec once its weights are written.

    Raises:
        UnknownNameError: an unknown recipe name (before anything is trained).
    """
    recipes = [RECIPES.get(n) for n in (only or RECIPES.names())]
    built = []
    for r in recipes:
        step = None if progress is None else _told(progress, r)
        spec = build_one(r, runs_dir, data_dir=data_dir, out_dir=out_dir, progress=step)
        built.append(spec)
        if on_built is not None:
            on_built(spec)
    return ZooBuild(built, write_manifest(out_dir))


def _told(progress: ZooProgressFn, recipe: ZooRecipe) -> ProgressFn:
    """The training loop's per-step callback for one recipe, forwarding to ``progress`` with its name."""

    def step(epoch: int, i: int, steps: int, loss: float) -> None:
        progress(recipe.name, recipe.config.epochs, epoch, i, steps, loss)

    return step


def write_manifest(out_dir: str | os.PathLike[str] = ZOO_DIR) -> dict[str, Any]:
    """Rebuild ``manifest.json`` from the sidecars in ``out_dir`` (checksums re-read from the files)."""
    out = Path(out_dir)
    entries = []
    for side in sorted(out.glob("*.json")):
        if side.name == "manifest.json":
            continue
        spec = ModelSpec.from_dict(json.loads(side.read_text(encoding="utf-8")))
        if spec.weights is None:
            continue
        weights = out / spec.weights.filename
        if not weights.is_file() or file_digest(weights) != spec.weights.sha256:
            log.warning("skipping %s: weights missing or checksum differs from its sidecar", spec.name)
            continue
        entries.append(
            {
                "name": spec.name,
                "family": spec.family,
                "sha256": spec.weights.sha256,
                **{k: spec.metrics.get(k) for k in ("parameters", "flops", "test_accuracy")},
                "seed": spec.recipe.get("seed"),
                "spec": spec.to_dict(),
            }
        )
    manifest = {"schema_version": 1, "dataset": "cifar10", "models": entries}
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    return manifest
