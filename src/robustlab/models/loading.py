"""Building models from names, weight files and users' own code: all three end in a :class:`ModelAdapter`."""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import os
import sys
from pathlib import Path

import torch
from torch import nn

from robustlab._io import download, verify_file
from robustlab._registry import Registry
from robustlab.errors import ChecksumError, ModelError
from robustlab.models.adapter import ModelAdapter
from robustlab.models.archs import build_architecture
from robustlab.models.published import PUBLISHED
from robustlab.models.spec import ModelSpec
from robustlab.models.weights import (
    extract_state_dict,
    load_state_dict_strict,
    read_safetensors,
    read_sidecar,
    read_torch_checkpoint,
)

log = logging.getLogger(__name__)

#: Where the zoo's weights and manifest ship inside the package.
ZOO_DIR = Path(__file__).parent / "zoo"
ZOO_MANIFEST = ZOO_DIR / "manifest.json"

MODELS: Registry[ModelSpec] = Registry("model")


def _register_builtin() -> None:
    for spec in PUBLISHED:
        MODELS.register(spec.name, spec)
    if ZOO_MANIFEST.is_file():
        manifest = json.loads(ZOO_MANIFEST.read_text(encoding="utf-8"))
        for entry in manifest["models"]:
            MODELS.register(entry["spec"]["name"], ModelSpec.from_dict(entry["spec"]))


_register_builtin()


def list_models(source: str | None = None) -> list[ModelSpec]:
    """Registered model specs, optionally only those of one ``source`` ("zoo", "published")."""
    specs = [MODELS.get(n) for n in MODELS.names()]
    return [s for s in specs if source is None or s.source == source]


def weights_path(spec: ModelSpec, data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where the weights of ``spec`` are expected on disk."""
    if spec.weights is None:
        raise ModelError(f"model {spec.name!r} declares no weights")
    if spec.weights.location == "package":
        return ZOO_DIR / spec.weights.filename
    from robustlab.data import resolve_data_dir

    return resolve_data_dir(data_dir) / spec.weights.location / spec.weights.filename


def _fetch_weights(spec: ModelSpec, data_dir: str | os.PathLike[str] | None, download_ok: bool) -> Path:
    path = weights_path(spec, data_dir)
    if spec.weights is None:
        raise ModelError(f"model {spec.name!r} declares no weights")
    if not path.is_file():
        url = spec.weights.url
        if download_ok and url:
            try:
                log.info("downloading %s weights from %s", spec.name, url)
                download(url, path, spec.weights.sha256)
            except (OSError, ChecksumError) as exc:
                raise ModelError(
                    f"weights of {spec.name!r} are missing and the download from {url} failed ({exc}). "
                    f"Put {spec.weights.filename} (sha256 {spec.weights.sha256}) into {path.parent}."
                ) from exc
        else:
            raise ModelError(
                f"weights of {spec.name!r} not found: put {spec.weights.filename} into {path.parent}"
                + (f" (download: {url})" if url else "")
            )
    verify_file(path, spec.weights.sha256)
    return path


def build_model(
    spec: ModelSpec,
    *,
    pretrained: bool = True,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    device: str | torch.device = "cpu",
) -> ModelAdapter:
    """Build the architecture of ``spec``, load its weights (checksum-verified, strict) and wrap it.

    Args:
        spec: The model's metadata.
        pretrained: Load the declared weights; ``False`` gives a freshly initialised network.
        data_dir: Data directory for weights stored outside the package.
        download: Allow downloading missing weights from their upstream URL.
        device: Where to put the model.
    """
    if not (pretrained and spec.weights is not None):
        return assemble(spec).to(device).eval()
    path = _fetch_weights(spec, data_dir, download)
    if spec.weights.format == "safetensors":
        state = read_safetensors(path)
    else:
        state = extract_state_dict(read_torch_checkpoint(path), spec.weights, path)
    return assemble(spec, state, spec.weights.absent_buffers, str(path)).to(device).eval()


def assemble(
    spec: ModelSpec,
    state: dict[str, torch.Tensor] | None = None,
    absent_buffers: tuple[str, ...] = (),
    source: str = "checkpoint",
) -> ModelAdapter:
    """Build ``spec``'s architecture, load ``state`` strictly when given, and wrap it in its adapter."""
    net = build_architecture(
        spec.arch, num_classes=spec.num_classes, in_channels=spec.input_shape[0], **spec.arch_kwargs
    )
    if state is not None:
        load_state_dict_strict(net, state, absent_buffers, source=source)
    return ModelAdapter(
        net,
        num_classes=spec.num_classes,
        input_shape=spec.input_shape,
        mean=spec.mean,
        std=spec.std,
        name=spec.name,
        spec=spec,
    )


def load_safetensors_model(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> ModelAdapter:
    """Load a robustlab weights file (safetensors + JSON sidecar)."""
    return assemble(read_sidecar(path), read_safetensors(path), source=str(path)).to(device).eval()


def _import_factory(ref: str) -> object:
    target, _, attr = ref.rpartition(":")
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise ModelError(f"model file {path} does not exist")
        mod_name = f"robustlab_user_{abs(hash(str(path.resolve())))}"
        spec = importlib.util.spec_from_file_location(mod_name, path)
        if spec is None or spec.loader is None:
            raise ModelError(f"cannot import {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise ModelError(f"cannot import module {target!r}: {exc}") from exc
    if not hasattr(module, attr):
        raise ModelError(f"{target} has no attribute {attr!r}")
    return getattr(module, attr)


def load_user_model(ref: str, device: str | torch.device = "cpu") -> ModelAdapter:
    """Call a user factory ``path/to/file.py:factory`` or ``package.module:factory``.

    The factory returns a :class:`ModelAdapter` (preferred: it declares normalisation and classes) or a
    plain ``nn.Module`` taking [0, 1] inputs, whose number of classes is then read from one probe call.
    """
    factory = _import_factory(ref)
    if not callable(factory):
        raise ModelError(f"{ref} is not callable")
    model = factory()
    if isinstance(model, ModelAdapter):
        return model.to(device).eval()
    if not isinstance(model, nn.Module):
        raise ModelError(f"{ref} returned {type(model).__name__}, expected a torch.nn.Module or ModelAdapter")
    raise ModelError(
        f"{ref} returned a plain nn.Module: wrap it in robustlab.ModelAdapter(net, num_classes=..., "
        "input_shape=..., mean=..., std=...) so that robustlab knows its classes and normalisation."
    )


def load_model(
    ref: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    device: str | torch.device = "cpu",
) -> ModelAdapter:
    """Load a model from a registry name, a ``.safetensors`` file, or a user factory.

    Args:
        ref: ``"resnet20-akamaster"`` (see ``robustlab zoo list``), ``"weights.safetensors"``,
            ``"path/to/file.py:factory"`` or ``"package.module:factory"``.
        data_dir: Data directory holding foreign checkpoints.
        download: Allow downloading missing published weights.
        device: Target device.

    Raises:
        UnknownNameError: unknown registry name (close matches suggested).
        ModelError: the model cannot be built or its weights do not fit.
    """
    if ref.endswith(".safetensors"):
        return load_safetensors_model(ref, device)
    if ":" in ref:
        return load_user_model(ref, device)
    return build_model(MODELS.get(ref), data_dir=data_dir, download=download, device=device)
