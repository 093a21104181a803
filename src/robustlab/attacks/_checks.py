"""Checks of the model before an AutoAttack-grade evaluation, as flags with stable codes.

AutoAttack prints these as warnings that scroll away; here each is a flag stored with the results and shown in the
report: a code that never changes (scripts test for it), and a sentence that says what was seen and what to do.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Stable flag codes and their explanation (``{...}`` fields are filled with the evidence).
FLAG_TEXT: dict[str, str] = {
    "stochastic-model": (
        "two forward passes of the same inputs gave different logits (largest difference {diff:.3g}): the model is "
        "randomised, so single-draw verdicts are optimistic; evaluate it with version='rand'"
    ),
    "softmax-output": (
        "the model's outputs lie in [0, 1] and sum to 1 per row: they look like probabilities, not logits; the "
        "cross-entropy and DLR losses are then weak — return logits"
    ),
    "zero-gradients": (
        "the input gradient of the loss is exactly zero for {fraction:.1%} of the checked points: gradient-based "
        "attacks cannot move them, so their robustness may be masked; see the gradient-masking audit"
    ),
    "non-finite-gradients": (
        "the input gradient of the loss is NaN or infinite for {fraction:.1%} of the checked points: gradient-based "
        "attacks are unreliable there"
    ),
    "gradients-unavailable": (
        "the input gradient could not be computed ({error}): the gradient-based attacks cannot run as intended; "
        "only the black-box attack's verdicts are meaningful"
    ),
    "few-classes": (
        "the model has {k} classes, fewer than 10: APGD-T and FAB-T use {targets} target classes instead of 9"
    ),
    "black-box-beats-white-box": (
        "Square, run after the white-box attacks, lowered robust accuracy by a further {points:.2f} points (more "
        "than 0.2): the gradient-based attacks were too weak here, a sign of gradient masking"
    ),
}


def flag(code: str, **evidence: object) -> dict[str, str]:
    """A flag: ``{"code", "message"}`` with the evidence filled into the code's sentence."""
    return {"code": code, "message": FLAG_TEXT[code].format(**evidence)}


def check_model(model: nn.Module, x: Tensor, labels: Tensor, *, version: str = "standard") -> list[dict[str, str]]:
    """Run the checks on a batch (the model in eval mode, as the attacks see it).

    Args:
        model: The classifier.
        x: Inputs of the first batch (AutoAttack checks its first batch too).
        labels: Their labels.
        version: The AutoAttack version; ``"rand"`` expects randomness and is not flagged for it.

    Returns:
        The flags raised, in a fixed order.

    Shape:
        - x: ``(N, C, H, W)``; labels: ``(N,)``
    """
    flags: list[dict[str, str]] = []
    with torch.no_grad():
        first, second = model(x), model(x)
    diff = float((first - second).abs().max()) if first.numel() else 0.0
    if version != "rand" and not torch.equal(first, second):
        flags.append(flag("stochastic-model", diff=diff))
    in_unit = bool(torch.isfinite(first).all()) and first.numel() and 0 <= float(first.min()) <= float(first.max()) <= 1
    if in_unit and torch.allclose(first.sum(1), torch.ones_like(first[:, 0]), atol=1e-4):
        flags.append(flag("softmax-output"))
    k = first.shape[1]
    if k < 10:
        flags.append(flag("few-classes", k=k, targets=k - 1))
    try:
        point = x.detach().clone().requires_grad_(True)
        loss = F.cross_entropy(model(point), labels, reduction="sum")
        (grad,) = torch.autograd.grad(loss, point)
    except RuntimeError as err:
        flags.append(flag("gradients-unavailable", error=str(err).splitlines()[0][:120]))
        return flags
    flat = grad.reshape(grad.shape[0], -1)
    bad = ~torch.isfinite(flat).all(1)
    zero = (flat == 0).all(1) & ~bad
    if bool(bad.any()):
        flags.append(flag("non-finite-gradients", fraction=float(bad.double().mean())))
    if bool(zero.any()):
        flags.append(flag("zero-gradients", fraction=float(zero.double().mean())))
    return flags
