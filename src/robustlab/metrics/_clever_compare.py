"""CLEVER against attacks: an estimated lower bound above a distortion an attack achieved is a red flag.

CLEVER estimates the minimal distortion; any successful adversarial example is an upper bound on it. Where the
score exceeds the distortion an attack actually found, the estimate is wrong for that input: the gradients
sampled around it understate how fast the margin can fall (gradient masking, e.g. a saturating or
non-differentiable layer) or the Weibull fit is poor (Goodfellow 2018).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from robustlab.errors import ConfigError

if TYPE_CHECKING:
    from robustlab.attacks import AttackResult
    from robustlab.metrics.clever import CleverResult


@dataclass(frozen=True)
class CleverComparison:
    """Per-input CLEVER score against the distortion of a successful attack, in CLEVER's norm.

    Attributes:
        norm: The norm both are measured in.
        score: CLEVER score.
        distortion: The attack's distortion in ``norm`` where the attack succeeded on a correctly classified
            input, else ``nan``.
        compared: The input counts: both numbers exist and the clean prediction is right.
        ratio: ``score / distortion`` (``nan`` where not compared). Below 1 is consistent; CLEVER equals the
            minimal distortion on linear models and should sit below what any attack finds.
        exceeds: CLEVER is above the attack's distortion (beyond the relative tolerance): masking or a poor fit.
        poor_fit: CLEVER's own poor-fit flag, to tell the two causes apart.

    Shape:
        every tensor: ``(N,)``

    References:
        Goodfellow, "Gradient Masking Causes CLEVER to Overestimate Adversarial Perturbation Size", 2018.
    """

    norm: str
    score: Tensor
    distortion: Tensor
    compared: Tensor
    ratio: Tensor
    exceeds: Tensor
    poor_fit: Tensor

    def summary(self) -> dict[str, Any]:
        """Counts and the median ratio, JSON-serialisable."""
        r = self.ratio[self.compared]
        return {
            "norm": self.norm,
            "n": int(self.score.numel()),
            "n_compared": int(self.compared.sum()),
            "n_exceeds": int(self.exceeds.sum()),
            "n_exceeds_with_poor_fit": int((self.exceeds & self.poor_fit).sum()),
            "median_ratio": float(r.median()) if r.numel() else None,
            "max_ratio": float(r.max()) if r.numel() else None,
        }


def compare_with_attack(
    clever_result: CleverResult, attack_result: AttackResult, rtol: float = 1e-6
) -> CleverComparison:
    """Ratio of each CLEVER score to the distortion a (minimal-distortion) attack found on the same inputs.

    Any successful adversarial example bounds the minimal distortion from above in every norm, so the
    attack's norm need not match; its distortion is read in CLEVER's norm. An untargeted score compares with
    any successful attack (a targeted success is also a misclassification); a targeted score only with an
    attack on the same target of each input.

    Args:
        clever_result: From :func:`robustlab.metrics.clever` on inputs ``x``.
        attack_result: From :func:`robustlab.attack` on the same ``x`` in the same order, ideally with
            ``minimal=True`` (or C&W / EAD) so its distortions are as small as it can make them.
        rtol: Relative slack before a score counts as exceeding the distortion.

    Returns:
        Per-input scores, distortions, ratios and flags.

    Raises:
        ConfigError: different numbers of inputs, different labels, or targets that do not match.

    Shape:
        every output tensor: ``(N,)``

    References:
        Goodfellow, "Gradient Masking Causes CLEVER to Overestimate Adversarial Perturbation Size", 2018.
    """
    n = clever_result.n
    if attack_result.n != n:
        raise ConfigError(f"the CLEVER result has {n} inputs, the attack result {attack_result.n}: use the same inputs")
    if not torch.equal(clever_result.label.cpu(), attack_result.label.cpu()):
        bad = (clever_result.label.cpu() != attack_result.label.cpu()).nonzero().flatten()[:5].tolist()
        raise ConfigError(
            f"labels differ between the CLEVER and attack results (positions {bad}): the inputs must be the same, "
            "in the same order, with the same labels (CLEVER defaults to the clean predictions when y is omitted)"
        )
    if clever_result.target_mode != "untargeted":
        wanted = clever_result.targets[:, 0].cpu()
        if not torch.equal(wanted, attack_result.target.cpu()):
            raise ConfigError(
                f"CLEVER ran with {clever_result.target_mode!r} targets that the attack "
                f"({attack_result.target_mode!r}) did not use: a targeted score only compares with an attack on the "
                "same targets (use the same target mode and seed, or pass the CLEVER targets to the attack as a tensor)"
            )
    return compare_with_distortions(
        clever_result, getattr(attack_result, clever_result.norm), attack_result.success, rtol=rtol
    )


def compare_with_distortions(
    clever_result: CleverResult, distortion: Tensor, success: Tensor, rtol: float = 1e-6
) -> CleverComparison:
    """Ratio of each CLEVER score to a distortion, in CLEVER's norm, of an adversarial example found for the same
    input (the comparison :func:`compare_with_attack` makes; the gradient-masking audit passes the distortions of
    its worst candidates).

    Args:
        clever_result: From :func:`robustlab.metrics.clever`.
        distortion: Per input, the distortion in ``clever_result.norm`` of a misclassified point.
        success: Per input, whether that point exists (misclassified, within the budget).
        rtol: Relative slack before a score counts as exceeding the distortion.

    Raises:
        ConfigError: shapes that do not match the CLEVER result, or a negative or non-finite ``rtol``.

    Shape:
        - distortion, success: ``(N,)``; every output tensor: ``(N,)``
    """
    n = clever_result.n
    if tuple(distortion.shape) != (n,) or tuple(success.shape) != (n,):
        raise ConfigError(
            f"distortion and success must have shape ({n},) like the CLEVER result, got {tuple(distortion.shape)} "
            f"and {tuple(success.shape)}"
        )
    if not (math.isfinite(rtol) and rtol >= 0):
        raise ConfigError(f"rtol must be a finite number >= 0, got {rtol!r}")
    score = clever_result.score.double().cpu()
    dist = distortion.detach().double().cpu()
    correct = clever_result.clean_pred.cpu() == clever_result.label.cpu()
    compared = success.cpu().bool() & correct & torch.isfinite(score) & torch.isfinite(dist)
    distortion = torch.where(compared, dist, torch.full_like(dist, math.nan))
    with torch.no_grad():
        ratio = torch.where(compared, score / dist, torch.full_like(dist, math.nan))
    exceeds = compared & (score > dist * (1 + rtol))
    return CleverComparison(
        norm=clever_result.norm,
        score=score,
        distortion=distortion,
        compared=compared,
        ratio=ratio,
        exceeds=exceeds,
        poor_fit=clever_result.poor_fit,
    )
