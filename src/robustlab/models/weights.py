"""Reading and writing weights safely.

robustlab's own weights are safetensors files with a JSON sidecar (the :class:`ModelSpec`). Foreign
``torch.save`` checkpoints are read only with ``torch.load(weights_only=True)``: a pickle that tries to
run code is refused, and there is no unsafe fallback.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import logging
import os
import pickle
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from robustlab._io import atomic_path, atomic_write_text, file_digest
from robustlab.errors import ModelError
from robustlab.models.spec import ModelSpec, WeightsSpec

log = logging.getLogger(__name__)


def read_safetensors(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Load a safetensors file; a truncated or corrupt file raises :class:`ModelError`."""
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(
            f"cannot read safetensors file {path}: {exc}. The file is truncated or corrupt: download or rebuild it."
        ) from exc


def read_torch_checkpoint(path: str | os.PathLike[str]) -> Any:
    """Load a foreign ``torch.save`` file with ``weights_only=True`` (tensors and containers only).

    Raises:
        ModelError: if the pickle references anything but tensors and plain containers (it may try to
            run code); nothing from the file is executed.
    """
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ModelError(
            f"refused to load {path}: its pickle references objects other than tensors and containers, "
            "so loading it could run arbitrary code. robustlab only loads with weights_only=True; convert the "
            "checkpoint to safetensors in a trusted environment."
        ) from exc
    except (RuntimeError, EOFError, OSError) as exc:
        raise ModelError(f"cannot read checkpoint {path}: {exc}") from exc


def extract_state_dict(raw: Any, weights: WeightsSpec, path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Apply the spec's ``state_dict_key`` and ``strip_prefix`` to a loaded checkpoint."""
    sd = raw
    if weights.state_dict_key is not None:
        if not isinstance(raw, dict) or weights.state_dict_key not in raw:
            keys = list(raw)[:10] if isinstance(raw, dict) else type(raw).__name__
            raise ModelError(f"{path}: expected a dict with key {weights.state_dict_key!r}, found {keys}")
        sd = raw[weights.state_dict_key]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ModelError(f"{path}: the state dict is not a mapping of names to tensors")
    p = weights.strip_prefix
    return {(k[len(p) :] if p and k.startswith(p) else k): v for k, v in sd.items()}


def load_state_dict_strict(
    net: nn.Module,
    state: dict[str, torch.Tensor],
    absent_buffers: tuple[str, ...] = (),
    source: str = "checkpoint",
    drop_keys: tuple[str, ...] = (),
) -> None:
    """Load ``state`` into ``net`` with ``strict=True``.

    Buffers whose names end with one of ``absent_buffers`` may be missing from ``state``; they keep the
    network's own values (filled in explicitly, so the load itself stays strict). Keys matching one of the
    ``drop_keys`` patterns (``fnmatch``) are declared as not the model's and dropped. Any other missing or
    unexpected key, or a shape mismatch, raises :class:`ModelError` listing them.
    """
    if drop_keys:
        state = {k: v for k, v in state.items() if not any(fnmatch.fnmatchcase(k, p) for p in drop_keys)}
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    allowed = [k for k in missing if absent_buffers and k.endswith(absent_buffers)]
    really_missing = sorted(set(missing) - set(allowed))
    unexpected = sorted(k for k in state if k not in own)
    shapes = sorted(
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and tuple(v.shape) != tuple(own[k].shape)
    )
    if really_missing or unexpected or shapes:
        parts = []
        if really_missing:
            parts.append(f"missing keys {really_missing[:8]}{' ...' if len(really_missing) > 8 else ''}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''}")
        if shapes:
            parts.append(f"shape mismatches {shapes[:5]}")
        hint = ""
        branches = sorted({k.split(".aux.")[1].split(".")[0] for k in unexpected if ".aux." in k})
        if branches or any(k.startswith("selector.") for k in unexpected):
            hint = (
                f". The checkpoint holds a multi-branch model (auxiliary batch-norm routes {', '.join(branches)}"
                f"{' and a selector' if any(k.startswith('selector.') for k in unexpected) else ''}): build it "
                f"with arch_kwargs norm_layer='multibn', routes={branches}, or load only its main route by "
                "declaring the dropped branches in the weights spec, drop_keys=('*.aux.*', 'selector.*')"
            )
        raise ModelError(f"{source} does not fit the architecture: {'; '.join(parts)}{hint}")
    full = dict(state)
    full.update({k: own[k] for k in allowed})
    net.load_state_dict(full, strict=True)


def save_weights(net: nn.Module, spec: ModelSpec, path: str | os.PathLike[str]) -> ModelSpec:
    """Save ``net``'s state dict as safetensors with a JSON sidecar (``<path>.json`` → ``<stem>.json``).

    Both files are written atomically. Returns the spec with ``weights`` filled in (file name and sha256).
    """
    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp))
    digest = file_digest(path)
    w = WeightsSpec(filename=path.name, sha256=digest, format="safetensors", location="package")
    spec = dataclasses.replace(spec, weights=w)
    atomic_write_text(sidecar_path(path), json.dumps(spec.to_dict(), indent=2) + "\n")
    return spec


def sidecar_path(weights_path: str | os.PathLike[str]) -> Path:
    """The JSON sidecar that sits next to a safetensors file."""
    return Path(weights_path).with_suffix(".json")


def read_sidecar(weights_path: str | os.PathLike[str]) -> ModelSpec:
    """Read the sidecar of a safetensors file into a :class:`ModelSpec`."""
    side = sidecar_path(weights_path)
    if not side.is_file():
        raise ModelError(
            f"{weights_path} has no sidecar {side.name}: robustlab needs the architecture, normalisation and "
            "classes it describes. Save weights with robustlab.models.save_weights."
        )
    try:
        return ModelSpec.from_dict(json.loads(side.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, TypeError, KeyError) as exc:
        raise ModelError(f"malformed sidecar {side}: {exc}") from exc
