"""The typed result of an attack: per-sample records plus a summary."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from robustlab.attacks._evaluator import STATUS_NUMERICAL_ERROR

RECORD_SCHEMA_VERSION = 1

#: Per-sample columns, in record order.
RECORD_FIELDS = (
    "index",
    "label",
    "target",
    "clean_pred",
    "adv_pred",
    "success",
    "status",
    "l0",
    "l1",
    "l2",
    "linf",
    "eps",
    "forward_passes",
    "gradient_passes",
)


def _stat(values: Tensor, fn: str) -> float | None:
    if values.numel() == 0:
        return None
    v = values.double()
    return float(v.median() if fn == "median" else v.mean())


@dataclass
class AttackResult:
    """Outcome of one attack on a batch of inputs, judged by the evaluator.

    Per-sample fields are CPU tensors of shape ``(N,)`` (``status`` is a list of strings). ``target`` is
    ``-1`` for untargeted attacks; ``eps`` is the budget each example was found at (the per-image eps of a
    minimal-distortion search), ``nan`` for unbounded attacks.

    Statuses: ``"success"``, ``"failure"``, ``"misclassified"`` (the clean input is already wrong; excluded
    from the success rate) and ``"numerical_error"`` (non-finite logits; never counted as robust).
    """

    attack: str
    norm: str
    eps: float | None
    target_mode: str
    minimal: bool
    seed: int
    params: dict[str, Any]
    index: Tensor
    label: Tensor
    target: Tensor
    clean_pred: Tensor
    adv_pred: Tensor
    success: Tensor
    status: list[str]
    l0: Tensor
    l1: Tensor
    l2: Tensor
    linf: Tensor
    eps_found: Tensor
    forward_passes: Tensor
    gradient_passes: Tensor
    seconds: float
    adversarials: Tensor | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        """Number of samples."""
        return int(self.index.numel())

    @property
    def clean_correct(self) -> Tensor:
        """``(N,)`` bool: the clean prediction equals the label and the logits were finite."""
        bad = torch.tensor([s == STATUS_NUMERICAL_ERROR for s in self.status], dtype=torch.bool)
        return (self.clean_pred == self.label) & ~bad

    @property
    def robust(self) -> Tensor:
        """``(N,)`` bool: the adversarial example is still classified correctly (never on a numerical error)."""
        bad = torch.tensor([s == STATUS_NUMERICAL_ERROR for s in self.status], dtype=torch.bool)
        return (self.adv_pred == self.label) & ~bad

    def summary(self) -> dict[str, Any]:
        """Aggregate numbers, JSON-serialisable (``None`` where undefined).

        ``success_rate`` is over initially correct inputs; distortions are over successful attacks on
        initially correct inputs.
        """
        n = self.n
        correct = self.clean_correct
        won = self.success & correct
        out: dict[str, Any] = {
            "attack": self.attack,
            "norm": self.norm,
            "eps": self.eps,
            "target": self.target_mode,
            "minimal": self.minimal,
            "seed": self.seed,
            "n": n,
            "clean_accuracy": int(correct.sum()) / n if n else None,
            "robust_accuracy": int(self.robust.sum()) / n if n else None,
            "success_rate": int(won.sum()) / int(correct.sum()) if int(correct.sum()) else None,
            "n_success": int(won.sum()),
            "n_numerical_error": sum(s == STATUS_NUMERICAL_ERROR for s in self.status),
        }
        for name in ("l1", "l2", "linf"):
            values = getattr(self, name)[won]
            out[f"median_{name}"] = _stat(values, "median")
            out[f"mean_{name}"] = _stat(values, "mean")
        out["gradient_passes"] = int(self.gradient_passes.sum())
        out["forward_passes"] = int(self.forward_passes.sum())
        out["seconds"] = self.seconds
        out.update(self.extra)
        return out

    def to_columns(self) -> dict[str, list[Any]]:
        """Column-oriented per-sample data (for Parquet), plus ``params`` and ``seed`` as JSON/int columns."""
        cols: dict[str, list[Any]] = {}
        for name in RECORD_FIELDS:
            if name == "status":
                cols[name] = list(self.status)
            elif name == "eps":
                cols[name] = [None if math.isnan(v) else v for v in self.eps_found.tolist()]
            else:
                cols[name] = getattr(self, name).tolist()
        cols["target"] = [None if t < 0 else t for t in cols["target"]]
        params = json.dumps(self.params, sort_keys=True, default=str)
        cols["attack"] = [self.attack] * self.n
        cols["norm"] = [self.norm] * self.n
        cols["params"] = [params] * self.n
        cols["seed"] = [self.seed] * self.n
        cols["schema_version"] = [RECORD_SCHEMA_VERSION] * self.n
        return cols

    def to_records(self) -> list[dict[str, Any]]:
        """One dict per sample with the fields of :data:`RECORD_FIELDS` plus attack, norm, params and seed."""
        cols = self.to_columns()
        return [{k: v[i] for k, v in cols.items()} for i in range(self.n)]

    def save_adversarials(self, path: str | Path) -> Path:
        """Write the adversarial examples (and their indices and labels) to a safetensors file.

        Raises:
            ValueError: if the attack ran with ``keep_adversarials=False``.
        """
        from safetensors.torch import save_file

        if self.adversarials is None:
            raise ValueError("no adversarial examples kept: run the attack with keep_adversarials=True")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "attack": self.attack,
            "norm": self.norm,
            "eps": json.dumps(self.eps),
            "target": self.target_mode,
            "seed": str(self.seed),
            "params": json.dumps(self.params, sort_keys=True, default=str),
            "schema_version": str(RECORD_SCHEMA_VERSION),
        }
        tensors = {
            "adversarials": self.adversarials.detach().cpu().contiguous(),
            "index": self.index.contiguous(),
            "label": self.label.contiguous(),
            "success": self.success.contiguous(),
        }
        tmp = path.with_name(path.name + ".tmp")
        save_file(tensors, str(tmp), metadata=meta)
        tmp.replace(path)
        return path

    def __repr__(self) -> str:
        s = self.summary()
        return (
            f"AttackResult({self.attack}, norm={self.norm}, eps={self.eps}, target={self.target_mode}, n={s['n']}, "
            f"clean_accuracy={s['clean_accuracy']}, robust_accuracy={s['robust_accuracy']}, "
            f"success_rate={s['success_rate']})"
        )
