"""``augmax`` and ``augmix``: training on mixtures of augmentation chains with a Jensen–Shannon consistency loss.

``augmix`` (Hendrycks et al. 2020): per image, two AugMix images (each ``(1 − m)·x + m·Σ_i w_i·chain_i(x)`` with
``w ~ Dirichlet(1, …, 1)``, ``m ~ Beta(1, 1)``, fresh chains each); loss ``CE(f(x), y) + λ·JS(p_clean, p_mix1,
p_mix2)``. A plain model: the baseline of the AugMax finding.

``augmax`` (Wang et al. 2021): the same loss, but the first augmented image is *adversarial*: its mixing weights
``m ∈ [0, 1]`` and ``q`` (``w = softmax(q)``) start uniform in [0, 1) and ascend the cross-entropy by sign steps
of ``alpha`` (``steps``; the FAT early stop of the reference's ``FriendlyAugMaxAttack``: a row stops once it has
been misclassified ``tau`` times, ``tau = 0`` runs every step), with the model in the inner maximiser's mode and
through the auxiliary route ``aux``. The model is DuBIN (instance norm on half of the channels of each block's
first norm, dual batch norm everywhere): AugMax images go through route ``aux`` (the reference's BN-A), the clean
and AugMix images through ``main`` (BN-M), the inference route. Loss, as ``augmax_training_ddp.py`` computes it:
``CE(f_main(x), y) + λ·(KL(p_clean‖M) + KL(p_augmax‖M) + KL(p_augmix‖M))/3`` with ``M`` the mean of the three
softmaxes clamped to [1e-7, 1], each KL averaged over the batch.

The chains are AugMix's ops without those that overlap the corruptions (:data:`robustlab.transforms.AUGMAX_OPS`),
severity 3, width 3, depth uniform in {1, 2, 3}, batched (:func:`robustlab.transforms.sample_chains`). Ops that
need colour are left out on single-channel images and recorded (the step logs their count, and
:attr:`AugMax.skipped_ops` names them). Under ``torchrun`` each process draws the chains of its own rows from the
run's generator (the same draws as one process when the batch splits evenly, assigned to other rows).

Settings: ``steps`` (10: the README's CIFAR setting; the code's default is 5), ``alpha`` (0.1), ``tau`` (1),
``lam`` (λ, 10 for CIFAR-10; AugMax issue #3: 1 for CIFAR-100 ResNet-18), ``width`` (3), ``severity`` (3),
``ops`` (``"augmax"`` or ``"all"``: AugMix's full list with its colour ops).

References:
    Wang, Xiao, Kossaifi, Yu, Anandkumar, Wang, "AugMax: Adversarial Composition of Random Augmentations for
    Robust Training", NeurIPS 2021 (VITA-Group/AugMax).
    Hendrycks, Mu, Cubuk, Zoph, Gilmer, Lakshminarayanan, "AugMix: A Simple Data Processing Method to Improve
    Robustness and Uncertainty", ICLR 2020.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from robustlab.errors import ConfigError
from robustlab.models.norm_layers import route
from robustlab.train.methods import TRAINING_METHODS, StepContext, StepOutput, TrainingMethod


def js_consistency(*logits: Tensor) -> Tensor:
    """The reference's Jensen–Shannon term: ``Σ_i KL(p_i ‖ M) / n`` with ``M`` the mean softmax clamped to
    [1e-7, 1], each KL averaged over the batch.

    Shape:
        each logits: (B, K) → scalar
    """
    probs = [F.softmax(z, dim=1) for z in logits]
    log_m = torch.clamp(sum(probs) / len(probs), 1e-7, 1).log()  # type: ignore[arg-type]
    return sum(F.kl_div(log_m, p, reduction="batchmean") for p in probs) / len(probs)  # type: ignore[return-value]


@dataclass(frozen=True)
class AugMixSettings:
    """Settings of ``augmix`` (see the module docstring)."""

    lam: float = 10.0
    width: int = 3
    severity: float = 3.0
    ops: str = "augmax"


@dataclass(frozen=True)
class AugMaxSettings:
    """Settings of ``augmax`` (see the module docstring)."""

    steps: int = 10
    alpha: float = 0.1
    tau: int = 1
    lam: float = 10.0
    width: int = 3
    severity: float = 3.0
    ops: str = "augmax"


def _ops(name: str) -> tuple[str, ...]:
    from robustlab.transforms import AUGMAX_OPS, AUGMIX_ALL_OPS

    return AUGMAX_OPS if name == "augmax" else AUGMIX_ALL_OPS


def _check_common(method: str, s: Any) -> None:
    if not (math.isfinite(s.lam) and s.lam >= 0):
        raise ConfigError(f"{method}: lam (the consistency weight λ) must be >= 0, got {s.lam}")
    if s.width < 1:
        raise ConfigError(f"{method}: width (chains per image) must be >= 1, got {s.width}")
    if not (math.isfinite(s.severity) and s.severity > 0.1):
        raise ConfigError(f"{method}: severity must be > 0.1 (levels are drawn from [0.1, severity]), got {s.severity}")
    if s.ops not in ("augmax", "all"):
        raise ConfigError(f"{method}: ops must be 'augmax' (no op overlapping the corruptions) or 'all', got {s.ops!r}")


class _Chains(TrainingMethod):
    """What both methods share: the chains, with colour ops skipped (and recorded) on single-channel images."""

    skipped_ops: tuple[str, ...] = ()

    def chains(self, ctx: StepContext, x: Tensor) -> Tensor:
        """Fresh chains of every image. Shape: (B, C, H, W) → (width, B, C, H, W)."""
        from robustlab.transforms import sample_chains

        s = self.settings
        skipped: list[str] = []
        out = sample_chains(x, ctx.generator, width=s.width, severity=s.severity, ops=_ops(s.ops), skipped=skipped)
        if skipped:
            self.skipped_ops = tuple(sorted(set(self.skipped_ops) | set(skipped)))
        return out


class AugMix(_Chains):
    """AugMix with the Jensen–Shannon consistency loss (the baseline of the AugMax finding)."""

    name = "augmix"
    adversarial = False

    def __init__(self) -> None:
        self.settings = AugMixSettings()

    def configure(self, params: Mapping[str, Any]) -> TrainingMethod:
        copy = super().configure(params)
        _check_common(self.name, copy.settings)
        return copy

    def step(self, ctx: StepContext, x: Tensor, y: Tensor) -> StepOutput:
        from robustlab.transforms import augmix_mix

        s = self.settings
        mix1 = augmix_mix(x, self.chains(ctx, x), ctx.generator)
        mix2 = augmix_mix(x, self.chains(ctx, x), ctx.generator)
        logits = ctx.forward(x)  # (B, K)
        logits1, logits2 = ctx.forward_again(mix1), ctx.forward_again(mix2)
        natural = ctx.ce(logits, y)
        consistency = js_consistency(logits, logits1, logits2)
        logs = {"natural_loss": natural.item(), "consistency": consistency.item(), "skipped_ops": len(self.skipped_ops)}
        return StepOutput(natural + s.lam * consistency, logits, logs)


class AugMax(_Chains):
    """AugMax with DuBIN: adversarial mixing weights through the auxiliary route, AugMix and clean through main."""

    name = "augmax"
    adversarial = True  # an inner maximiser (over mixtures, not an L_p ball): label smoothing defaults to 0

    def __init__(self) -> None:
        self.settings = AugMaxSettings()

    def configure(self, params: Mapping[str, Any]) -> TrainingMethod:
        copy = super().configure(params)
        s = copy.settings
        _check_common(self.name, s)
        if s.steps < 0 or s.tau < 0:
            raise ConfigError(f"augmax: steps and tau must be >= 0, got steps={s.steps}, tau={s.tau}")
        if not (math.isfinite(s.alpha) and s.alpha > 0):
            raise ConfigError(f"augmax: alpha (the sign step on the mixing weights) must be > 0, got {s.alpha}")
        return copy

    def inner_steps(self) -> int:
        return int(self.settings.steps)

    def model_kwargs(self) -> dict[str, Any]:
        return {"norm_layer": "dubin", "routes": ["aux"]}

    def inference_route(self) -> str | None:
        return "main"

    def maximise(self, ctx: StepContext, x: Tensor, y: Tensor, chains: Tensor) -> tuple[Tensor, int]:
        """The AugMax image of every row (through route ``aux``, in the inner maximiser's mode) and the steps taken.

        Shape:
            x: (B, C, H, W); y: (B,); chains: (width, B, C, H, W) → (B, C, H, W)
        """
        from robustlab.transforms import augmax_mix

        s = self.settings
        n = len(x)
        start = ctx.draw(
            x.new_empty(n, s.width + 1), lambda t: torch.rand(t.shape, generator=ctx.generator, dtype=t.dtype)
        )
        m, q = start[:, 0], start[:, 1:]  # uniform in [0, 1), as the reference starts
        budget = torch.full((n,), s.tau, dtype=torch.long, device=x.device)
        taken = 0
        with route(ctx.model, "aux"), ctx.attack_mode(), torch.enable_grad():
            for _ in range(s.steps):
                m, q = m.detach().requires_grad_(True), q.detach().requires_grad_(True)
                logits = ctx.model(augmax_mix(x, chains, m, q))  # (B, K)
                active = torch.ones(n, dtype=torch.bool, device=x.device)
                if s.tau > 0:  # FAT: rows misclassified tau times stop moving
                    wrong = logits.argmax(1) != y
                    budget = torch.where(wrong & (budget > 0), budget - 1, budget)
                    active = budget > 0
                    if not bool(active.any()):
                        break
                loss = F.cross_entropy(logits, y, reduction="sum")
                gm, gq = torch.autograd.grad(loss, [m, q])
                a = active.to(x.dtype)
                m = (m + s.alpha * torch.sign(gm) * a).clamp(0.0, 1.0)
                q = q + s.alpha * torch.sign(gq) * a.unsqueeze(1)
                taken += 1
        return augmax_mix(x, chains, m.detach(), q.detach()).detach(), taken

    def step(self, ctx: StepContext, x: Tensor, y: Tensor) -> StepOutput:
        from robustlab.transforms import augmix_mix

        s = self.settings
        t0 = time.perf_counter()
        x_max, taken = self.maximise(ctx, x, y, self.chains(ctx, x))
        ctx.inner_passes += taken * len(x)
        ctx.inner_seconds += time.perf_counter() - t0
        with route(ctx.model, "aux"):
            logits_max = ctx.forward(x_max)  # (B, K) through BN-A
        x_mix = augmix_mix(x, self.chains(ctx, x), ctx.generator)
        with route(ctx.model, "main"):
            logits_mix = ctx.forward_again(x_mix)
            logits = ctx.forward_again(x)
        natural = ctx.ce(logits, y)
        consistency = js_consistency(logits, logits_max, logits_mix)
        logs = {
            "natural_loss": natural.item(),
            "consistency": consistency.item(),
            "augmax_accuracy": float((logits_max.argmax(1) == y).float().mean()),
            "inner_steps_taken": float(taken),
            "skipped_ops": float(len(self.skipped_ops)),
        }
        return StepOutput(natural + s.lam * consistency, logits, logs)


TRAINING_METHODS.register("augmix", AugMix())
TRAINING_METHODS.register("augmax", AugMax())
