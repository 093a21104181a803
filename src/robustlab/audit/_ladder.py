"""The attack ladder: registered attacks run on the same points, each only on the points still robust.

A rung is one configured attack with a role (what the flags compare it with). The ladder reuses one clean pass:
the points classified correctly are attacked; the first two rungs (FGSM and PGD with few steps) and the ε sweep run
on all of them, every other rung only on the points every earlier rung left robust, so a strong attack spends its
budget where it can still change the answer. Every candidate is projected into the threat model, clipped to [0, 1]
and classified afresh before it counts (the evaluator's rule); a randomised model is judged by a majority of
``judge_draws`` forward passes, so that one lucky draw does not count as a break.
"""

from __future__ import annotations

import contextlib
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from robustlab.attacks import ATTACKS, AttackMethod, Batch, PassCounter, RunContext, constrain, correct_fraction
from robustlab.audit._model import bypass
from robustlab.errors import ConfigError
from robustlab.threat import Norm

#: Roles whose attack takes the audited model's own input gradients.
GRADIENT_ROLES = frozenset({"fgsm", "short", "long", "loss", "restarts", "apgd", "eot", "guided", "sweep"})


@dataclass(frozen=True)
class Rung:
    """One attack of the ladder.

    Attributes:
        label: Its name in the results (``"pgd-100-margin"``).
        attack: The registered attack.
        role: What the flags compare it with: ``fgsm``, ``short``, ``long``, ``loss``, ``restarts``, ``apgd``,
            ``bpda``, ``eot``, ``square``, ``transfer``, ``guided``, ``sweep``.
        steps: Iterations (``None``: the attack's default).
        params: The attack's settings.
        standalone: Attack every clean-correct point, not only those still robust (FGSM, the short PGD, the sweep).
        eps_factor: The budget as a multiple of the audit's eps; ``None``: the large budget (half the box).
        guide: Whose gradients lead the attack: ``"model"``, ``"surrogate"`` (judged on the model; ``gpga`` takes
            both models' gradients) or ``"bpda"`` (the model with its non-differentiable layers bypassed).
        init_from: The rung whose candidates are this rung's starting points (the long PGD continues the short
            one's runs, so that what it adds is what more iterations give; the guided PGD starts from the transfer
            rung's points).
    """

    label: str
    attack: str
    role: str
    steps: int | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    standalone: bool = False
    eps_factor: float | None = 1.0
    guide: str = "model"
    init_from: str | None = None

    @property
    def in_ladder(self) -> bool:
        """Whether its breaks count towards the honest number (every rung at the audit's eps)."""
        return self.role != "sweep"


@dataclass
class RungResult:
    """What one rung did.

    Attributes:
        rung: The rung.
        params: The attack's resolved settings.
        eps: Its budget.
        attacked: Points it attacked.
        broken: Standalone rungs: the points whose candidate was misclassified (by the majority of draws); other
            rungs: of those, the points every earlier ladder rung had left robust.
        robust_alone: Standalone rungs: the fraction of all points it left robust on its own; else ``None``.
        robust_after: Ladder rungs: the fraction of all points robust to it and every ladder rung before it.
        seconds: Wall time, judging included.
        gradient_passes: Per-sample forward + input-gradient passes it took.
        forward_passes: Per-sample forward-only passes (queries and judging).
    """

    rung: Rung
    params: dict[str, Any]
    eps: float
    attacked: int = 0
    broken: int = 0
    robust_alone: float | None = None
    robust_after: float | None = None
    seconds: float = 0.0
    gradient_passes: int = 0
    forward_passes: int = 0

    @property
    def robust_accuracy(self) -> float | None:
        """The rung's headline number: alone for standalone rungs, else after it and the rungs before it."""
        return self.robust_alone if self.rung.standalone else self.robust_after

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "attack": self.rung.label,
            "registered_attack": self.rung.attack,
            "role": self.rung.role,
            "guide": self.rung.guide,
            "eps": self.eps,
            "standalone": self.rung.standalone,
            "attacked": self.attacked,
            "broken": self.broken,
            "robust_accuracy": self.robust_accuracy,
            "robust_accuracy_alone": self.robust_alone,
            "robust_accuracy_after": self.robust_after,
            "seconds": round(self.seconds, 4),
            "gradient_passes": self.gradient_passes,
            "forward_passes": self.forward_passes,
            "params": self.params,
        }


def build_ladder(
    *,
    steps_short: int,
    steps_long: int,
    restarts: int,
    apgd_steps: int,
    square_queries: int,
    eot_iter: int,
    sweep: tuple[float, ...],
) -> list[Rung]:
    """Every rung the audit may run, in order; :class:`Ladder` skips those whose condition is not met (no
    surrogate, no randomness, no non-differentiable layer, no gradients)."""
    s, n = steps_short, steps_long
    margin = {"loss": "margin"}
    rungs = [
        Rung("fgsm", "fgsm", "fgsm", standalone=True),
        Rung(f"pgd-{s}", "pgd", "short", s, standalone=True),
        Rung(f"pgd-{n}", "pgd", "long", max(n - s, 1), init_from=f"pgd-{s}"),  # PGD-s's runs, on to n steps
        Rung(f"pgd-{n}-x{restarts}", "pgd", "restarts", n, {"restarts": restarts}),
        Rung("apgd-ce", "apgd", "apgd", apgd_steps, {"loss": "ce"}),
        Rung(f"pgd-{n}-margin", "pgd", "loss", n, margin),
        Rung(f"pgd-{n}-dlr", "pgd", "loss", n, {"loss": "dlr"}),
        Rung("apgd-t", "apgd-t", "apgd", apgd_steps, {"n_target_classes": 9}),
        Rung(f"bpda-pgd-{n}", "pgd", "bpda", n, guide="bpda"),
        Rung(f"bpda-pgd-{n}-margin", "pgd", "bpda", n, margin, guide="bpda"),
        Rung("eot-apgd-ce", "apgd", "eot", apgd_steps, {"loss": "ce", "eot_iter": eot_iter}),
        Rung("eot-apgd-dlr", "apgd", "eot", apgd_steps, {"loss": "dlr", "eot_iter": eot_iter}),
        Rung("square", "square", "square", params={"queries": square_queries, "p_init": 0.8}),
        Rung(f"transfer-pgd-{n}", "pgd", "transfer", n, {"early_stop": False}, guide="surrogate"),
        Rung(f"guided-pgd-{n}", "pgd", "guided", n, margin, init_from=f"transfer-pgd-{n}"),
        Rung(f"gpga-{n}", "gpga", "guided", n, guide="surrogate"),  # the model's and the surrogate's gradients
    ]
    rungs += [Rung(f"pgd-{s}@{f:g}eps", "pgd", "sweep", s, standalone=True, eps_factor=f) for f in sweep]
    rungs.append(Rung(f"pgd-{s}@large", "pgd", "sweep", s, standalone=True, eps_factor=None))
    return rungs


def rung_seed(seed: int, label: str) -> int:
    """The seed of one rung: from the audit's seed and the rung's label, so that a rung's randomness does not depend
    on which other rungs ran."""
    return (seed * 1_000_003 + zlib.crc32(label.encode())) % (1 << 62)


class Ladder:
    """The state of one audit's ladder over its points: who is still robust, each point's worst candidate so far,
    which rung broke it, and what each rung did.

    Args:
        model: The audited model (eval mode).
        x: The points; labels: their labels.
        clean: ``(N,)`` float64, the clean correct fraction (0/1 for a deterministic model).
        norm: The threat norm; eps: the audit's budget; large_eps: the sweep's large budget.
        draws: Forward passes that judge a candidate (1 for a deterministic model).
        batch_size: Points per attack batch.
        counter: Counts every model call of the audit.
        surrogate: The surrogate model for transfer rungs, or ``None``.
        bypass_layers: Layers BPDA goes through with the identity.
        progress: ``progress(label, done, total)`` in per-sample model calls.

    Shape:
        - x: ``(N, *)``; labels, clean: ``(N,)``
    """

    def __init__(
        self,
        model: nn.Module,
        x: Tensor,
        labels: Tensor,
        clean: Tensor,
        *,
        norm: Norm,
        eps: float,
        large_eps: float,
        draws: int,
        batch_size: int,
        seed: int,
        counter: PassCounter,
        surrogate: nn.Module | None = None,
        bypass_layers: list[str] | None = None,
        progress: Callable[[str, int, int], None] | None = None,
    ) -> None:
        self.model, self.x, self.labels = model, x, labels
        self.norm, self.eps, self.large_eps = norm, eps, large_eps
        self.draws, self.batch_size, self.seed = draws, batch_size, seed
        self.counter, self.surrogate = counter, surrogate
        self.bypass_layers = bypass_layers or []
        self.progress = progress
        self.n = int(x.shape[0])
        self.clean_correct = (clean >= 0.5) if draws > 1 else (clean > 0.5)
        self.robust = self.clean_correct.clone()  # (N,) bool on the CPU: robust to every ladder rung so far
        self.worst = clean.clone()  # (N,) float64: the correct fraction of each point's worst candidate
        self.worst_x = x.detach().clone()  # (N, *): that candidate (the clean point until one is worse)
        self.broken_by = [""] * self.n
        self.results: list[RungResult] = []
        self.skipped: list[dict[str, str]] = []
        self._kept: dict[str, Tensor] = {}  # candidates of rungs that a later rung starts from, (N, *)

    @property
    def open(self) -> Tensor:
        """``(N,)`` bool: the points a ladder rung attacks — clean-correct, and whose worst candidate so far is still
        classified correctly in some draw (for a deterministic model: the points still robust). A randomised model's
        point broken by a majority of draws stays open, so that a stronger attack can lower its expected accuracy."""
        return self.clean_correct & (self.worst > 0)

    def skip(self, rung: Rung, reason: str) -> None:
        """Record that ``rung`` did not run, and why."""
        self.skipped.append({"attack": rung.label, "reason": reason})

    def configure(self, rung: Rung, num_classes: int) -> AttackMethod:
        """The configured attack of ``rung``.

        Raises:
            ConfigError: the attack cannot run on this model (e.g. the DLR loss with fewer than 3 classes).
        """
        method = ATTACKS.get(rung.attack).configure(rung.steps, None, dict(rung.params))
        if self.norm.name not in method.norms:
            raise ConfigError(f"{rung.attack} does not support norm {self.norm.name}")
        method.check_classes(num_classes, False)
        return method

    def run(self, rung: Rung, method: AttackMethod, keep: bool = False) -> RungResult:
        """Run ``rung`` on its points, judge its candidates and update the ladder's state.

        Args:
            rung: The rung.
            method: Its configured attack (:meth:`configure`).
            keep: Keep its candidates for a later rung's ``init_from``.

        Raises:
            RuntimeError: autograd failed inside the attack (the caller records the rung as skipped).
        """
        t0 = time.perf_counter()
        eps = self.large_eps if rung.eps_factor is None else min(self.eps * rung.eps_factor, self.large_eps)
        todo = (self.clean_correct if rung.standalone else self.open).nonzero().flatten()
        config = method.config
        result = RungResult(rung, {f: getattr(config, f) for f in config.__dataclass_fields__}, eps)
        grad0, fwd0 = int(self.counter.gradient.sum()), int(self.counter.forward.sum())
        device = self.x.device
        candidates = self.x.clone() if keep else None
        generator = torch.Generator(device=device).manual_seed(rung_seed(self.seed, rung.label))
        ctx = RunContext(
            model=self.model,
            norm=self.norm,
            generator=generator,
            counter=self.counter,
            gradient_model=self.surrogate if rung.guide == "surrogate" else None,
        )
        budget, start = int(todo.numel()) * method.cost().calls, self.counter.calls_total

        def report(on: bool) -> None:  # progress of the attack's own model calls (not the judging)
            if self.progress is not None:
                progress = self.progress
                self.counter.on_call = (lambda done: progress(rung.label, done - start, budget)) if on else None

        if self.progress is not None:
            self.progress(rung.label, 0, budget)
        report(True)
        broken_rows: list[Tensor] = []
        try:
            for lo in range(0, todo.numel(), self.batch_size):
                rows = todo[lo : lo + self.batch_size].to(device)
                xb, yb = self.x[rows], self.labels[rows]
                eps_b = torch.full((rows.numel(),), eps, dtype=self.x.dtype, device=device)
                init = self._kept[rung.init_from][rows] if rung.init_from in self._kept else None
                batch = Batch(xb, yb, None, eps_b, rows, init=init)
                with bypass(self.model, self.bypass_layers) if rung.guide == "bpda" else contextlib.nullcontext():
                    proposed = method.propose(ctx, batch)
                cand = constrain(xb, proposed.detach(), self.norm, eps_b)
                report(False)
                frac = correct_fraction(self.model, cand, yb, self.draws, self.batch_size, self.counter, rows)
                report(True)
                broken = (frac < 0.5).cpu()
                rows_cpu = rows.cpu()
                broken_rows.append(rows_cpu[broken])
                if candidates is not None:
                    candidates[rows] = cand
                if rung.in_ladder:
                    worse = frac < self.worst[rows_cpu]
                    self.worst[rows_cpu[worse]] = frac[worse]
                    self.worst_x[rows[worse.to(device)]] = cand[worse.to(device)]
        finally:
            self.counter.on_call = None
        hit = torch.cat(broken_rows) if broken_rows else torch.zeros(0, dtype=torch.int64)
        fresh = hit[self.robust[hit]]  # the points it broke that every earlier ladder rung left robust
        result.attacked = int(todo.numel())
        result.broken = int(hit.numel()) if rung.standalone else int(fresh.numel())
        if rung.standalone:
            result.robust_alone = (result.attacked - result.broken) / self.n
        if rung.in_ladder:
            for i in fresh.tolist():
                self.broken_by[i] = rung.label
            self.robust[fresh] = False
            result.robust_after = float(self.robust.sum()) / self.n
        if candidates is not None:
            self._kept[rung.label] = candidates
        result.gradient_passes = int(self.counter.gradient.sum()) - grad0
        result.forward_passes = int(self.counter.forward.sum()) - fwd0
        result.seconds = time.perf_counter() - t0
        self.results.append(result)
        return result
