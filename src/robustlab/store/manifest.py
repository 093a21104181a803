"""The run manifest: the spec a run directory belongs to, with versions and seeds."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from robustlab._io import atomic_write_text
from robustlab.errors import ConfigError


def _versions() -> dict[str, str]:
    import duckdb
    import numpy
    import pyarrow
    import torch

    from robustlab import __version__

    return {
        "robustlab": __version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "pyarrow": pyarrow.__version__,
        "duckdb": duckdb.__version__,
        "python": platform.python_version(),
    }


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(d, list):
        out = {}
        for i, v in enumerate(d):
            out.update(_flatten(v, f"{prefix}.{i}"))
        return out or {prefix: []}
    return {prefix: d}


def spec_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Human-readable differences between two canonical specs, as ``path: old → new``."""
    a, b = _flatten(old), _flatten(new)
    return [
        f"{k}: {a.get(k, '(absent)')!r} → {b.get(k, '(absent)')!r}"
        for k in sorted(set(a) | set(b))
        if a.get(k, "(absent)") != b.get(k, "(absent)")
    ]


def open_run(run: str | os.PathLike[str], spec: dict[str, Any], digest: str) -> dict[str, Any]:
    """Create ``run/manifest.json`` or check that an existing one belongs to the same spec.

    Raises:
        ConfigError: the directory holds a run of another spec; the message lists what changed.
    """
    path = Path(run) / "manifest.json"
    if path.is_file():
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if manifest["spec_sha256"] != digest:
            changes = spec_changes(manifest["spec"], spec)
            raise ConfigError(
                f"{run} holds a run of a different spec; refusing to mix results. Changed:\n  - "
                + "\n  - ".join(changes[:20])
                + "\nUse another output directory, or delete this one to start over."
            )
        return manifest
    manifest = {
        "schema_version": 1,
        "spec_sha256": digest,
        "spec": spec,
        "versions": _versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seeds": {"spec": spec.get("seed"), "dataset": spec["dataset"]["seed"]},
    }
    Path(run).mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(manifest, indent=2) + "\n")
    return manifest
