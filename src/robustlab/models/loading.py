"""Building models from names, weight files and users' own code: all three end in a :class:`ModelAdapter`."""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import os
import re
import sys
from pathlib import Path

import torch
from torch import nn

from robustlab._io import download, verify_file
from robustlab._registry import Registry
from robustlab.errors import ChecksumError, ConfigError, ModelError
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
    return assemble(spec, state, spec.weights.absent_buffers, str(path), spec.weights.drop_keys).to(device).eval()


def assemble(
    spec: ModelSpec,
    state: dict[str, torch.Tensor] | None = None,
    absent_buffers: tuple[str, ...] = (),
    source: str = "checkpoint",
    drop_keys: tuple[str, ...] = (),
) -> ModelAdapter:
    """Build ``spec``'s architecture, load ``state`` strictly when given, and wrap it in its adapter (which
    follows the spec's inference route)."""
    net = build_architecture(
        spec.arch, num_classes=spec.num_classes, in_channels=spec.input_shape[0], **spec.arch_kwargs
    )
    if state is not None:
        load_state_dict_strict(net, state, absent_buffers, source=source, drop_keys=drop_keys)
    return ModelAdapter(
        net,
        num_classes=spec.num_classes,
        input_shape=spec.input_shape,
        mean=spec.mean,
        std=spec.std,
        name=spec.name,
        spec=spec,
        route=spec.route,
    )


def check_device(device: str | torch.device) -> None:
    """Refuse a device this PyTorch build or machine cannot use, with a message that says what to do instead.

    Raises:
        ConfigError: an unknown device string, CUDA without CUDA, or a GPU index that does not exist.
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"unknown device {str(device)!r}: use cpu, cuda or cuda:N ({exc})") from exc
    if dev.type == "cuda":
        if not torch.backends.cuda.is_built():  # type: ignore[no-untyped-call]
            raise ConfigError("CUDA is not available in this PyTorch build; use --device cpu")
        if not torch.cuda.is_available():
            raise ConfigError("CUDA is not available on this machine (no usable GPU or driver); use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(
                f"device {dev} does not exist: this machine has {torch.cuda.device_count()} GPU(s) (cuda:0 ...)"
            )
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("MPS is not available on this machine; use --device cpu")


def load_safetensors_model(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> ModelAdapter:
    """Load a robustlab weights file (safetensors + JSON sidecar), checking the sha256 the sidecar records.

    Raises:
        ModelError: no or malformed sidecar, a file whose sha256 differs from the sidecar's, or weights that do not
            fit the architecture.
    """
    spec = read_sidecar(path)
    if spec.weights is None or not spec.weights.sha256:
        log.warning("%s: its sidecar records no sha256, so the file is loaded unverified", path)
    else:
        try:
            verify_file(path, spec.weights.sha256)
        except ChecksumError as exc:
            raise ModelError(
                f"{path} is not the file its sidecar {Path(path).with_suffix('.json').name} describes "
                f"(sha256 {exc.actual[:16]}..., recorded {exc.expected[:16]}...): the weights were changed or "
                "replaced after saving; save them again with robustlab.models.save_weights."
            ) from exc
    drop = spec.weights.drop_keys if spec.weights is not None else ()
    return assemble(spec, read_safetensors(path), source=str(path), drop_keys=drop).to(device).eval()


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
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # the user's code: any error becomes one named line (traceback under -v)
            sys.modules.pop(mod_name, None)
            raise ModelError(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise ModelError(f"cannot import module {target!r}: {exc}") from exc
    if not hasattr(module, attr):
        raise ModelError(f"{target} has no attribute {attr!r}")
    return getattr(module, attr)


def load_user_model(
    ref: str,
    device: str | torch.device = "cpu",
    input_shape: tuple[int, ...] | None = None,
) -> ModelAdapter:
    """Call a user factory ``path/to/file.py:factory`` or ``package.module:factory``.

    The factory returns a :class:`ModelAdapter` (preferred: it declares normalisation and classes) or a
    plain ``nn.Module``. A plain module is probed: it is assumed to take [0, 1] inputs of ``input_shape`` (the
    dataset's image shape) without normalisation, and its number of classes is read from one forward pass on a
    zero image. That assumption is logged once as a warning.

    Args:
        ref: ``path/to/file.py:factory`` or ``package.module:factory``.
        device: Where to put the model.
        input_shape: (C, H, W) of the images the model will see; needed for a plain ``nn.Module``.

    Raises:
        ModelError: the file or attribute is missing, importing it or calling the factory raised (the message
            names the factory and the exception), it returned something else than a module, or the probe failed.
    """
    factory = _import_factory(ref)
    if not callable(factory):
        raise ModelError(f"{ref} is not callable")
    try:
        model = factory()
    except Exception as exc:  # the user's code: any error becomes one named line (traceback under -v)
        raise ModelError(f"the factory {ref} raised {type(exc).__name__}: {exc}") from exc
    if isinstance(model, ModelAdapter):
        return model.to(device).eval()
    if not isinstance(model, nn.Module):
        raise ModelError(f"{ref} returned {type(model).__name__}, expected a torch.nn.Module or ModelAdapter")
    return _probe_plain_module(model, ref, device, input_shape)


def _probe_plain_module(
    net: nn.Module, ref: str, device: str | torch.device, input_shape: tuple[int, ...] | None
) -> ModelAdapter:
    """Wrap a plain module: classes from one probe forward pass on a zero image of ``input_shape``."""
    if input_shape is None or len(input_shape) != 3:
        raise ModelError(
            f"{ref} returned a plain nn.Module and no image shape is known to probe it: wrap it in "
            "robustlab.ModelAdapter(net, num_classes=..., input_shape=..., mean=..., std=...)."
        )
    net = net.to(device).eval()
    try:
        with torch.no_grad():
            out = net(torch.zeros(1, *input_shape, device=device))
    except Exception as exc:  # the user's network: its error, named
        raise ModelError(
            f"probing {ref} on one zero image of shape {tuple(input_shape)} failed: {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[1] < 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelError(f"{ref}: a probe forward pass returned {shape}, expected logits of shape (1, classes)")
    log.warning(
        "%s is a plain nn.Module: assuming it takes [0, 1] images of shape %s without normalisation, "
        "with %d classes (from a probe forward pass); wrap it in robustlab.ModelAdapter to declare otherwise",
        ref,
        tuple(input_shape),
        out.shape[1],
    )
    return ModelAdapter(
        net,
        num_classes=int(out.shape[1]),
        input_shape=input_shape,
        name=ref,
    ).eval()


_ROUTE_SUFFIX = re.compile(r"@([A-Za-z0-9_-]+)$")


def split_route(ref: str) -> tuple[str, str | None]:
    """A model reference and the route it names: ``"model.safetensors@adv"`` → ``("model.safetensors", "adv")``;
    a reference without an ``@route`` suffix → ``(ref, None)``."""
    m = _ROUTE_SUFFIX.search(ref)
    return (ref[: m.start()], m.group(1)) if m else (ref, None)


def load_model(
    ref: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    device: str | torch.device = "cpu",
    input_shape: tuple[int, ...] | None = None,
    route: str | None = None,
) -> ModelAdapter:
    """Load a model from a registry name, a ``.safetensors`` file, or a user factory.

    Args:
        ref: ``"resnet20-akamaster"`` (see ``robustlab zoo list``), ``"weights.safetensors"``,
            ``"path/to/file.py:factory"`` or ``"package.module:factory"``; any of them may end in ``@route`` to run
            a multi-branch model through that route (as ``route=`` does; studies name routes this way).
        data_dir: Data directory holding foreign checkpoints.
        download: Allow downloading missing published weights.
        device: Target device.
        input_shape: (C, H, W) of the images the model will see: lets a user factory return a plain
            ``nn.Module`` (see :func:`load_user_model`).
        route: A multi-branch model's route to run through instead of the inference route its spec records
            (:meth:`ModelAdapter.with_route`).

    Raises:
        UnknownNameError: unknown registry name (close matches suggested).
        ModelError: the model cannot be built or its weights do not fit, or it has no route ``route``.
        ConfigError: a device this build or machine cannot use.
    """
    check_device(device)
    ref, named = split_route(ref)
    if named is not None and route is not None and named != route:
        raise ModelError(f"the model reference names route {named!r} and route= asks for {route!r}: give one")
    route = route or named
    if ref.endswith(".safetensors"):
        model = load_safetensors_model(ref, device)
    elif ":" in ref:
        model = load_user_model(ref, device, input_shape)
    else:
        model = build_model(MODELS.get(ref), data_dir=data_dir, download=download, device=device)
    return model if route is None else model.with_route(route)
