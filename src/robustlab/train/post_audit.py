"""The gradient-masking audit of a trained model: after every adversarial training run, and of the robust zoo.

``robustlab train --method pgd-at|fgsm-rs|trades`` ends with :func:`audit_run`: the audit (:mod:`robustlab.audit`)
at the training budget on the first ``n`` held-out test points with a reduced budget (:data:`TRAINING_AUDIT`, a few
minutes on a CPU rather than the default ladder's quarter of an hour), written atomically to ``audit.json`` beside
the checkpoint. A dataset with one split (``npz:``, image folders) has no held-out points: its first training images
are audited, and the record says so. ``robustlab zoo audit --robust`` (:func:`robustlab.train.zoo.audit_zoo`)
audits built robust zoo models and records :func:`summary` in their sidecars.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from robustlab._io import atomic_write_text
from robustlab.audit import AuditConfig
from robustlab.data import Dataset
from robustlab.errors import ConfigError

log = logging.getLogger(__name__)

#: Points audited after a training run by default.
AUDIT_N = 200
#: The audit's file in a run directory.
AUDIT_FILE = "audit.json"
#: The reduced ladder run after training: half the default iterations, 2 restarts, 500 Square queries.
TRAINING_AUDIT = AuditConfig(
    steps_long=50,
    restarts=2,
    apgd_steps=50,
    square_queries=500,
    eot_iter=10,
    judge_draws=20,
    eval_draws=50,
)

AuditProgress = Callable[[str, int, int], None]
"""Called as ``progress(attack, done, total)`` in per-sample model calls of the attack running."""


def check_audit_n(n: object, what: str = "audit_n") -> int:
    """``n`` if it is an integer >= 1.

    Raises:
        ConfigError: naming ``what`` and the value.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"{what} must be an integer >= 1 (points audited), got {n!r}")
    return n


def audit_weights(
    weights: str | os.PathLike[str],
    data: Dataset,
    *,
    eps: float,
    norm: str = "linf",
    n: int = AUDIT_N,
    config: AuditConfig | None = None,
    seed: int = 0,
    batch_size: int = 256,
    device: str = "cpu",
    note: str | None = None,
    progress: AuditProgress | None = None,
) -> dict[str, Any]:
    """Audit the model saved at ``weights`` on the first ``n`` points of ``data``.

    The surrogate is the default one (:func:`robustlab.audit.choose_surrogate` for ``data``'s name).

    Args:
        weights: A robustlab safetensors file with its sidecar.
        data: The points (their first ``n`` rows, in order).
        eps, norm: The budget audited (a trained model's: its training budget).
        n: Points audited (fewer when ``data`` has fewer).
        config: The ladder's budgets (default :data:`TRAINING_AUDIT`).
        seed: The audit's seed.
        batch_size: Points per attack batch.
        device: Where to run.
        note: A caveat recorded with the result (e.g. training images audited).
        progress: The audit's progress callback.

    Returns:
        The audit's JSON form (:meth:`robustlab.audit.AuditResult.to_dict`) with ``weights``, ``weights_sha256``,
        ``data``, ``points``, ``seed``, ``config`` and ``note``.

    Raises:
        ConfigError: ``n`` not an integer >= 1.
    """
    from robustlab.audit import audit
    from robustlab.models.loading import load_safetensors_model
    from robustlab.models.weights import read_sidecar

    check_audit_n(n, "n")
    cfg = config or TRAINING_AUDIT
    model = load_safetensors_model(weights, device)
    spec = read_sidecar(weights)
    points = data.take(torch.arange(min(n, len(data))))
    result = audit(
        model,
        points.images().to(device),
        points.y.to(device),
        eps=eps,
        norm=norm,
        config=cfg,
        seed=seed,
        batch_size=batch_size,
        index=points.indices,
        progress=progress,
        dataset=data.name,
    )
    return {
        "weights": str(weights),
        "weights_sha256": None if spec.weights is None else spec.weights.sha256,
        "data": f"{data.name}/{data.split}",
        "points": f"first {len(points)}",
        "seed": seed,
        "config": dataclasses.asdict(cfg),
        "note": note,
        **result.to_dict(),
    }


def summary(record: dict[str, Any]) -> dict[str, Any]:
    """The short form of an audit record kept in a zoo sidecar and shown by ``zoo list --robust``: verdict,
    masking suspected, the honest number with its interval and attack, the flag codes, and what was audited."""
    honest = record["honest"]
    return {
        "verdict": record["verdict"],
        "masking_suspected": record["masking_suspected"],
        "robust_accuracy": honest["robust_accuracy"],
        "low": honest["low"],
        "high": honest["high"],
        "attack": honest["attack"],
        "first_pgd": honest.get("first_pgd"),
        "codes": [f["code"] for f in record["flags"]],
        "n": record["n"],
        "norm": record["norm"],
        "eps": record["eps"],
        "data": record["data"],
        "note": record.get("note"),
        "surrogate": record["surrogate"],
        "config": record["config"],
        "seconds": record["seconds"],
    }


def describe(s: dict[str, Any]) -> str:
    """One line for a listing: ``masking suspected: 21.3 % (losses-disagree, ...)`` or ``no masking: 81.0 %``."""
    number = f"{100 * s['robust_accuracy']:.1f} %"
    codes = f" ({', '.join(s['codes'])})" if s["codes"] else ""
    head = "masking suspected" if s["masking_suspected"] else "no masking"
    return f"{head}: {number}{codes}"


def _reusable(path: Path, sha256: str | None, n: int, eps: float, norm: str, cfg: AuditConfig, seed: int) -> bool:
    """Whether ``path`` holds an audit of these very weights with these settings (a re-run of a finished run)."""
    if sha256 is None or not path.is_file():
        return False
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    want = {
        "weights_sha256": sha256,
        "seed": seed,
        "norm": norm,
        "config": json.loads(json.dumps(dataclasses.asdict(cfg))),
    }
    same = all(old.get(k) == v for k, v in want.items())
    return same and old.get("requested_n") == n and abs(float(old.get("eps", -1)) - eps) < 1e-12


def audit_run(
    run_dir: str | os.PathLike[str],
    data: Dataset,
    *,
    eps: float,
    norm: str = "linf",
    n: int = AUDIT_N,
    config: AuditConfig | None = None,
    seed: int = 0,
    device: str = "cpu",
    note: str | None = None,
    progress: AuditProgress | None = None,
) -> dict[str, Any]:
    """Audit a training run's ``model.safetensors`` and write the record to ``audit.json`` beside it (atomically).

    A finished run re-run keeps its ``audit.json`` when the weights (by sha256) and the settings are the same.

    Returns:
        The record (:func:`audit_weights`'s, with ``requested_n``), ``reused`` saying whether it was kept.
    """
    from robustlab.models.weights import read_sidecar

    check_audit_n(n, "n")
    run = Path(run_dir)
    weights = run / "model.safetensors"
    path = run / AUDIT_FILE
    cfg = config or TRAINING_AUDIT
    spec = read_sidecar(weights)
    sha = None if spec.weights is None else spec.weights.sha256
    if _reusable(path, sha, n, eps, norm, cfg, seed):
        log.info("%s: the audit of these weights is already there", path)
        return {**json.loads(path.read_text(encoding="utf-8")), "reused": True}
    record = audit_weights(
        weights, data, eps=eps, norm=norm, n=n, config=cfg, seed=seed, device=device, note=note, progress=progress
    )
    record = {"requested_n": n, **record}
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")
    return {**record, "reused": False}
