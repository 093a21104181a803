"""``pyramid-at``: pyramid adversarial training (Herrmann et al.): a multi-scale, patch-constant perturbation.

The perturbation is a pyramid of levels. Level ``s`` is a tensor of shape ``(B, C, s, s)``, upsampled by nearest
neighbour to the image size (one value per channel and patch of ``H/s × W/s`` pixels) and multiplied by its
multiplier ``M_s``; the levels are added one after the other, the image clipped to [0, 1] after each (as the
reference's ``patched_color_jitter``/``fast_color_perturb`` do). Each level's values are clipped to
``[−level_eps, level_eps]`` separately, so the change of a pixel can reach ``Σ_s M_s · level_eps`` (31 · level_eps
with the default multipliers): **this is not an Lp threat model**, and the method has no ``eps`` setting on
purpose (the loop's catastrophic-overfitting monitor and the zoo read ``eps`` as an L∞ training budget).

Inner maximiser: ``steps`` sign-gradient steps of ``step_size`` on every level (in level units, before the
multiplier) from zero, each followed by the clip, every row taking every step. Its loss is, as in the reference,
``"random-target"``: *descend* the cross-entropy to a target drawn uniformly among the classes other than the true
one (the reference draws among all classes, the true one included: 1 in 1000 on ImageNet, but 1 in 10 on CIFAR-10,
where that row's "attack" would help the model; its ViT also scores the target with a sigmoid loss, here softmax
cross-entropy); or ``"ce"``: ascend the cross-entropy of the true label. It runs in the loop's batch-norm mode
(``TrainConfig.attack_bn``; the reference attacks in train mode, ``attack_in_train_mode=True``, so ``"train"``
reproduces it), never touches the parameters' ``.grad`` (gradients with respect to the levels only) and adds its cost
to the step context like :meth:`~robustlab.train.methods.StepContext.perturb`.

Loss: ``CE(f(x), y) + adv_weight · CE(f(x_pyr), y)``: clean and pyramid passes are both trained, as in the
reference (its matched dropout and stochastic depth are the model's business). The training accuracy is counted on
the clean logits (the reference's metrics are too); both terms are logged (``clean_loss``, ``pyramid_loss``).

Settings and defaults, from the reference (google-research/scenic ``projects/adversarialtraining``: ImageNet
224×224, pixel range [−1, 1]) and research note ``training.md`` §1.8, for 32×32 images in [0, 1]:

- ``scales`` ``"4,8,32"``: the reference's levels are (7, 14, 224), patches of 1/7 and 1/14 of the image plus the
  pixel level; 7 and 14 do not divide 32, and the note proposes (4, 8, 32) (or (2, 4, 32)) for CIFAR: two coarse
  levels a factor 2 apart (patches of 8 and 4 pixels) and the pixel level. Every scale must divide the image's
  height and width.
- ``multipliers`` ``"20,10,1"``: the reference's, one per scale.
- ``level_eps`` 3/255: the reference's ε 6/255 on the [−1, 1] scale, halved for [0, 1] pixels.
- ``step_size`` 0.5/255: the reference's sign-SGD learning rate 1/255 on the [−1, 1] scale, halved. With 5 steps
  from zero a level's value reaches at most 2.5/255 < ``level_eps``, so (as in the reference) the clip does not bind
  at the defaults.
- ``steps`` 5, ``loss`` ``"random-target"``, ``adv_weight`` 1.0: the reference's.

Randomness: the random targets are drawn from the run's generator over the global batch and sliced to this
process's rows (:meth:`~robustlab.train.methods.StepContext.draw`); the pyramid starts at zero (the reference's
``init_mode='zero'``).

References:
    Herrmann, Sargent, Jiang, Zabih, Chang, Liu, Krishnan, Sun, "Pyramid Adversarial Training Improves ViT
    Performance", CVPR 2022.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab.errors import ConfigError
from robustlab.train.methods import TRAINING_METHODS, StepContext, StepOutput, TrainingMethod

#: Inner-maximiser losses of ``pyramid-at``.
PYRAMID_LOSSES = ("random-target", "ce")


@dataclass(frozen=True)
class PyramidSettings:
    """Settings of ``pyramid-at`` (see the module docstring for their source).

    Attributes:
        scales: Comma-separated level sizes ``s`` (level ``s`` is ``s × s`` patches), coarse to fine.
        multipliers: Comma-separated multipliers ``M_s``, one per scale.
        level_eps: Bound of every level's values (before its multiplier), in [0, 1] pixel units.
        step_size: Sign-gradient step on the levels' values, in [0, 1] pixel units.
        steps: Inner sign-gradient steps.
        loss: ``"random-target"`` (descend the CE to a random other class) or ``"ce"`` (ascend the true CE).
        adv_weight: Weight of the pyramid term in the loss.
    """

    scales: str = "4,8,32"
    multipliers: str = "20,10,1"
    level_eps: float = 3 / 255
    step_size: float = 0.5 / 255
    steps: int = 5
    loss: str = "random-target"
    adv_weight: float = 1.0


def upsample(level: Tensor, size: tuple[int, int]) -> Tensor:
    """Nearest-neighbour upsampling of a level: each value repeated over its patch of ``H/s × W/s`` pixels.

    Shape:
        level: (B, C, s, s) → (B, C, H, W)
    """
    s_h, s_w = level.shape[-2:]
    return level.repeat_interleave(size[0] // s_h, dim=-2).repeat_interleave(size[1] // s_w, dim=-1)


def apply_pyramid(x: Tensor, levels: Sequence[Tensor], multipliers: Sequence[float]) -> Tensor:
    """``x`` with the levels added in order, each times its multiplier, clipped to [0, 1] after each.

    Shape:
        x: (B, C, H, W); levels[i]: (B, C, s_i, s_i) → (B, C, H, W)
    """
    size = (x.shape[-2], x.shape[-1])
    out = x
    for level, m in zip(levels, multipliers, strict=True):
        out = (out + m * upsample(level, size)).clamp(0.0, 1.0)
    return out


def pyramid_perturb(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    scales: Sequence[int],
    multipliers: Sequence[float],
    level_eps: float,
    step_size: float,
    steps: int,
    target: Tensor | None = None,
) -> list[Tensor]:
    """The pyramid's levels after ``steps`` sign-gradient steps from zero, each level clipped to ``±level_eps``.

    With ``target``, every step descends ``CE(f(x_pyr), target)``; without, it ascends ``CE(f(x_pyr), y)``. Only
    the levels get gradients (``torch.autograd.grad``); the caller chooses the model's mode and enables gradients.

    Shape:
        x: (B, C, H, W) in [0, 1]; y, target: (B,) → levels[i]: (B, C, s_i, s_i)
    """
    b, c = x.shape[:2]
    levels = [x.new_zeros(b, c, s, s) for s in scales]
    for _ in range(steps):
        levels = [level.detach().requires_grad_(True) for level in levels]
        logits = model(apply_pyramid(x, levels, multipliers))  # (B, K)
        if target is None:
            value = F.cross_entropy(logits, y, reduction="sum")
        else:
            value = -F.cross_entropy(logits, target, reduction="sum")  # ascending it descends the targeted CE
        grads = torch.autograd.grad(value, levels)
        levels = [
            (level.detach() + step_size * torch.nan_to_num(g).sign()).clamp(-level_eps, level_eps)
            for level, g in zip(levels, grads, strict=True)
        ]
    return [level.detach() for level in levels]


def _numbers(text: str, what: str, kind: type) -> list[Any]:
    try:
        values = [kind(v) for v in text.split(",")]
    except ValueError:
        raise ConfigError(f"pyramid-at: {what} must be comma-separated {kind.__name__}s, got {text!r}") from None
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise ConfigError(f"pyramid-at: every one of {what} must be > 0, got {text!r}")
    return values


class PyramidAT(TrainingMethod):
    """Pyramid adversarial training: clean CE plus CE on a multi-scale patch-constant adversarial perturbation.

    References:
        Herrmann et al., "Pyramid Adversarial Training Improves ViT Performance", CVPR 2022.
    """

    name = "pyramid-at"
    adversarial = True

    def __init__(self) -> None:
        self.settings = PyramidSettings()

    def configure(self, params: Mapping[str, Any]) -> TrainingMethod:
        params = dict(params)
        for key in ("level_eps", "step_size"):  # budgets as fractions, e.g. "3/255"
            if isinstance(params.get(key), str):
                from robustlab.attacks import parse_eps

                params[key] = parse_eps(params[key])
        copy = super().configure(params)
        assert isinstance(copy, PyramidAT)
        s = copy.settings
        scales, multipliers = copy.scales(), copy.multipliers()
        if len(scales) != len(multipliers):
            raise ConfigError(
                f"pyramid-at: {len(scales)} scales ({s.scales!r}) but {len(multipliers)} multipliers "
                f"({s.multipliers!r}); give one multiplier per scale"
            )
        for key in ("level_eps", "step_size"):
            value = getattr(s, key)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"pyramid-at: {key} must be > 0, got {value}")
        if s.steps <= 0:
            raise ConfigError(f"pyramid-at: steps must be > 0, got {s.steps}")
        if s.loss not in PYRAMID_LOSSES:
            raise ConfigError(f"pyramid-at: loss must be one of {', '.join(PYRAMID_LOSSES)}; got {s.loss!r}")
        if not (math.isfinite(s.adv_weight) and s.adv_weight >= 0):
            raise ConfigError(f"pyramid-at: adv_weight must be >= 0, got {s.adv_weight}")
        return copy

    def scales(self) -> list[int]:
        """The level sizes as numbers (validated)."""
        return _numbers(self.settings.scales, "scales", int)

    def multipliers(self) -> list[float]:
        """The multipliers as numbers (validated)."""
        return _numbers(self.settings.multipliers, "multipliers", float)

    def inner_steps(self) -> int:
        return int(self.settings.steps)

    def step(self, ctx: StepContext, x: Tensor, y: Tensor) -> StepOutput:
        s = self.settings
        scales = self.scales()
        h, w = x.shape[-2:]
        bad = [k for k in scales if h % k or w % k]
        if bad:
            raise ConfigError(
                f"pyramid-at: every scale must divide the image size {h}×{w}; {', '.join(map(str, bad))} does not"
            )
        logits = ctx.forward(x)  # (B, K)
        clean = ctx.ce(logits, y)
        t0 = time.perf_counter()
        target = None
        if s.loss == "random-target":
            k = logits.shape[1]
            if k < 2:
                raise ConfigError("pyramid-at: the random-target loss needs at least 2 classes; use loss 'ce'")
            offset = ctx.draw(y, lambda t: torch.randint(1, k, t.shape, generator=ctx.generator))
            target = (y + offset) % k  # uniform among the other classes
        with ctx.attack_mode(), torch.enable_grad():
            levels = pyramid_perturb(
                ctx.model,
                x,
                y,
                scales=scales,
                multipliers=self.multipliers(),
                level_eps=s.level_eps,
                step_size=s.step_size,
                steps=s.steps,
                target=target,
            )
        ctx.inner_passes += s.steps * len(x)
        ctx.inner_seconds += time.perf_counter() - t0
        x_pyr = apply_pyramid(x, levels, self.multipliers())
        robust = ctx.ce(ctx.forward_again(x_pyr), y)
        logs = {"clean_loss": clean.item(), "pyramid_loss": robust.item()}
        return StepOutput(clean + s.adv_weight * robust, logits, logs)


TRAINING_METHODS.register("pyramid-at", PyramidAT())
