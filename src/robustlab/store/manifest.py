"""The run manifest: the spec a run directory belongs to, with versions and seeds."""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from pathlib import Path
from typing import Any

from robustlab._io import atomic_write_text
from robustlab.errors import ConfigError

log = logging.getLogger(__name__)

#: Version of the manifest's own layout (not of any record kind: those are in :mod:`robustlab.store.schema`).
MANIFEST_VERSION = 2


def _versions() -> dict[str, str]:
    import duckdb
    import numpy
    import pyarrow
    import torch

    from robustlab._version import __version__

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


def _finished_jobs(run: Path) -> int:
    return sum(1 for _ in (run / "records").glob("*/*.parquet"))


def open_run(
    run: str | os.PathLike[str], spec: dict[str, Any], digest: str, context: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Create ``run/manifest.json`` or check that an existing one belongs to the same spec.

    A manifest of another spec is replaced when no job of its run has finished (a run that died before
    its first job, e.g. on a spec error found late, can be re-planned with the corrected spec).

    Args:
        run: The run directory (created if needed).
        spec: The canonical spec.
        digest: Its sha256.
        context: What the run learned when it started (class names, the models' sources and recorded
            accuracies), so that analyses need not load models or data again.

    Raises:
        ConfigError: the directory holds finished jobs of another spec; the message lists what changed.
    """
    run = Path(run)
    path = run / "manifest.json"
    if path.is_file():
        manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        if manifest["spec_sha256"] == digest:
            return manifest
        changes = spec_changes(manifest["spec"], spec)
        if _finished_jobs(run):
            raise ConfigError(
                f"{run} holds a run of a different spec; refusing to mix results. Changed:\n  - "
                + "\n  - ".join(changes[:20])
                + "\nUse another output directory, or delete this one to start over."
            )
        log.info("%s: no job of the previous spec finished; re-planning with the new spec", run)
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "spec_sha256": digest,
        "spec": spec,
        "versions": _versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seeds": {"spec": spec.get("seed"), "dataset": spec["dataset"]["seed"]},
        "context": context or {},
    }
    run.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(manifest, indent=2) + "\n")
    return manifest
