"""The typed result of an attack: per-sample records plus a summary.

The success rule lives here, once: :attr:`AttackResult.correct` (the clean input is classified right, with finite
logits), :attr:`AttackResult.robust` (the judged adversarial example still is) and :attr:`AttackResult.won` (the
attack succeeded on a clean-correct input) are computed when the result is built; :meth:`AttackResult.summary`
counts them and :meth:`AttackResult.to_columns` stores them, so a Python summary and a DuckDB analysis of the
records read the same booleans. Rates carry their denominator and 95 % Wilson interval (:class:`robustlab.stats.Rate`)
and every median is :func:`robustlab.stats.median` (the average of the two middle values, as numpy and DuckDB).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from robustlab._io import atomic_path
from robustlab.attacks._evaluator import STATUS_NUMERICAL_ERROR
from robustlab.errors import ConfigError
from robustlab.stats import Rate, median

#: Per-sample columns, in record order.
RECORD_FIELDS = (
    "index",
    "label",
    "target",
    "clean_pred",
    "adv_pred",
    "success",
    "status",
    "correct",
    "robust",
    "won",
    "l0",
    "l1",
    "l2",
    "linf",
    "eps",
    "forward_passes",
    "gradient_passes",
)

#: The distances summarised over successful attacks (median and mean of each).
SUMMARY_DISTANCES = ("l1", "l2", "linf")


def _mean(values: Tensor) -> float | None:
    return float(values.double().mean()) if values.numel() else None


@dataclass
class AttackResult:
    """Outcome of one attack on a batch of inputs, judged by the evaluator.

    Per-sample fields are CPU tensors of shape ``(N,)`` (``status`` is a list of strings). ``index`` holds the
    caller's dataset row of each sample (``0..N-1`` unless :func:`~robustlab.attacks.attack` was given
    ``index``). ``target`` is ``-1`` for untargeted attacks; ``eps_found`` is the budget each example was found at
    (the per-image eps of a minimal-distortion search), ``nan`` for unbounded attacks.

    Statuses: ``"success"``, ``"failure"``, ``"misclassified"`` (the clean input is already wrong; excluded
    from the success rate) and ``"numerical_error"`` (non-finite logits; never counted as robust).

    Attributes:
        fixed_budget: The attack ran at a fixed budget (``False`` for minimal-distortion attacks such as C&W and
            EAD, and for a ``minimal=True`` search, whose distortions are what it found, not a budget).
        warnings: What the attack's own diagnostics say about its numbers (e.g. a search that did not
            converge); empty when there is nothing to say.
        columns: Per-sample columns an attack adds to the records (AutoAttack: ``broken_by``, the stage that broke
            each point, ``""`` for none); each a list of length ``n``.
        correct: ``(N,)`` bool, computed once: the clean prediction equals the label and no logit was non-finite.
        robust: ``(N,)`` bool, computed once: the judged adversarial example is still classified as the label
            (never on a numerical error).
        won: ``(N,)`` bool, computed once: the attack succeeded on a clean-correct input (the samples the success
            rate counts and the distortion statistics summarise).
    """

    attack: str
    norm: str
    eps: float | None
    target_mode: str
    minimal: bool
    fixed_budget: bool
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
    warnings: list[str] = field(default_factory=list)
    columns: dict[str, list[Any]] = field(default_factory=dict)
    correct: Tensor = field(init=False, repr=False)
    robust: Tensor = field(init=False, repr=False)
    won: Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        finite = torch.tensor([s != STATUS_NUMERICAL_ERROR for s in self.status], dtype=torch.bool)
        self.correct = (self.clean_pred == self.label) & finite
        self.robust = (self.adv_pred == self.label) & finite
        self.won = self.success & self.correct

    @property
    def n(self) -> int:
        """Number of samples."""
        return int(self.index.numel())

    def rates(self) -> dict[str, Rate]:
        """``clean_accuracy`` and ``robust_accuracy`` (over all samples) and ``success_rate`` (over the clean-correct
        ones), each with its count, denominator and 95 % Wilson interval."""
        n_correct = int(self.correct.sum())
        return {
            "clean_accuracy": Rate(n_correct, self.n),
            "robust_accuracy": Rate(int(self.robust.sum()), self.n),
            "success_rate": Rate(int(self.won.sum()), n_correct),
        }

    def summary(self) -> dict[str, Any]:
        """Aggregate numbers, JSON-serialisable (``None`` where undefined).

        ``clean_accuracy``, ``robust_accuracy`` and ``success_rate`` are the point estimates (``success_rate`` is
        over clean-correct inputs); ``rates`` holds each of them as ``{"value", "low", "high", "k", "n"}`` with
        its 95 % Wilson interval. ``median_*`` and ``mean_*`` summarise the distortions of the successful attacks
        on clean-correct inputs (``won``); the median averages the two middle values of an even count.
        ``warnings`` lists what the attack's diagnostics found (see :attr:`warnings`).
        """
        rates = {name: r.to_dict() for name, r in self.rates().items()}
        out: dict[str, Any] = {
            "attack": self.attack,
            "norm": self.norm,
            "eps": self.eps,
            "target": self.target_mode,
            "minimal": self.minimal,
            "fixed_budget": self.fixed_budget,
            "seed": self.seed,
            "n": self.n,
            **{name: r["value"] for name, r in rates.items()},
            "rates": rates,
            "n_correct": int(self.correct.sum()),
            "n_success": int(self.won.sum()),
            "n_numerical_error": sum(s == STATUS_NUMERICAL_ERROR for s in self.status),
        }
        for name in SUMMARY_DISTANCES:
            values = getattr(self, name)[self.won]
            out[f"median_{name}"] = median(values)
            out[f"mean_{name}"] = _mean(values)
        out["gradient_passes"] = int(self.gradient_passes.sum())
        out["forward_passes"] = int(self.forward_passes.sum())
        out["seconds"] = self.seconds
        out["warnings"] = list(self.warnings)
        out.update(self.extra)
        return out

    def to_columns(self) -> dict[str, list[Any]]:
        """Column-oriented per-sample data (for Parquet): the fields of :data:`RECORD_FIELDS` (with the success
        rule's ``correct``, ``robust`` and ``won``), plus ``attack``, ``norm``, ``fixed_budget``, ``params`` (JSON)
        and ``seed``. The record schema and its version belong to the store, which writes them."""
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
        cols["fixed_budget"] = [self.fixed_budget] * self.n
        cols["params"] = [params] * self.n
        cols["seed"] = [self.seed] * self.n
        cols.update({name: list(values) for name, values in self.columns.items()})
        return cols

    def to_records(self) -> list[dict[str, Any]]:
        """One dict per sample with the columns of :meth:`to_columns`."""
        cols = self.to_columns()
        return [{k: v[i] for k, v in cols.items()} for i in range(self.n)]

    def save_adversarials(self, path: str | Path) -> Path:
        """Write the adversarial examples with their dataset rows (``index``), labels and success flags to a
        safetensors file, atomically and with the usual file permissions (``0666`` less the umask).

        Raises:
            ConfigError: if the attack ran with ``keep_adversarials=False``.

        Shape:
            The file holds ``adversarials`` ``(N, C, H, W)`` and ``index``, ``label``, ``success`` ``(N,)``.
        """
        from safetensors.torch import save_file

        if self.adversarials is None:
            raise ConfigError("no adversarial examples kept: run the attack with keep_adversarials=True")
        meta = {
            "attack": self.attack,
            "norm": self.norm,
            "eps": json.dumps(self.eps),
            "target": self.target_mode,
            "seed": str(self.seed),
            "params": json.dumps(self.params, sort_keys=True, default=str),
        }
        tensors = {
            "adversarials": self.adversarials.detach().cpu().contiguous(),
            "index": self.index.contiguous(),
            "label": self.label.contiguous(),
            "success": self.success.contiguous(),
        }
        path = Path(path)
        with atomic_path(path) as tmp:
            mode = tmp.stat().st_mode & 0o777  # the usual permissions, which atomic_path gave the empty file
            save_file(tensors, str(tmp), metadata=meta)
            tmp.chmod(mode)  # safetensors writes a file of its own, readable by its owner only
        return path

    def __repr__(self) -> str:
        s = self.summary()
        return (
            f"AttackResult({self.attack}, norm={self.norm}, eps={self.eps}, target={self.target_mode}, n={s['n']}, "
            f"clean_accuracy={s['clean_accuracy']}, robust_accuracy={s['robust_accuracy']}, "
            f"success_rate={s['success_rate']})"
        )
